"""Linear layers and 1-D convolutions that multiply in bfloat16 on a CPU, built once as new modules.

On a CPU with bfloat16 matrix instructions (AMX, or AVX512-BF16), a matrix product with
bfloat16 inputs and weights (sums in float32) is much faster than in float32, while
everything else (activations, normalisation, BigVGAN's element-wise work) is faster in
float32. :func:`with_bf16_matmuls` therefore gives a network whose large matrix products
run in bfloat16 and whose interfaces, parameters and other operations stay float32.

It works the way transformers' quantisation layers do (``replace_with_*``): each eligible
``nn.Linear``/``nn.Conv1d``/``nn.ConvTranspose1d`` is replaced by a new
:class:`Bf16Linear`/:class:`Bf16Conv1d`/:class:`Bf16ConvTranspose1d`, built once, with its
bfloat16 weight copy made at construction. The network passed in is **never changed**:
the result is a new module tree that shares the float32 parameters of the original and
has new modules only where something was replaced (and on the path to them). So a
module shared by two pipelines keeps its own numerics in each, and the state dict of the
result has the same keys and float32 values as the original's.

Only layers that sum at least :data:`MIN_BF16_REDUCTION` products per output are
replaced (:func:`reduction_size`): small layers gain nothing (the casts cost what the
product saves), and they are where bfloat16 hurts: BigVGAN's last convolution (32
channels x 7 taps in, one out) would round the waveform itself. docs/benchmarks.md
("Conversion on a CPU") has the measurements behind the threshold.

The bfloat16 copies are a snapshot of the weights at construction: build the result
for inference, after training or loading.

    >>> fast = with_bf16_matmuls(vocoder)      # vocoder itself is unchanged
    >>> uses_bf16_matmuls(fast), uses_bf16_matmuls(vocoder)
    (True, False)
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

MIN_BF16_REDUCTION = 512


def reduction_size(layer: nn.Module) -> int:
    """How many products one output of a linear layer or convolution sums (input features, or channels per group x taps)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * math.prod(layer.kernel_size)


class _Bf16Copies:
    """Mixin: the bfloat16 weight and bias, made once from the float32 ones (non-persistent buffers)."""

    def _copy_weights(self, layer: nn.Module) -> None:
        self.weight, self.bias = layer.weight, layer.bias  # the same float32 parameters: the state dict is unchanged
        with torch.no_grad():
            self.register_buffer("weight_bf16", layer.weight.detach().to(torch.bfloat16), persistent=False)
            bias = None if layer.bias is None else layer.bias.detach().to(torch.bfloat16)
            self.register_buffer("bias_bf16", bias, persistent=False)

    def _apply(self, fn, recurse: bool = True):
        # Module.to(dtype) casts every floating buffer; the copies stay bfloat16 (a bfloat16 ->
        # float32 -> bfloat16 round trip is exact), so moving or re-casting a planned network keeps it planned
        super()._apply(fn, recurse)
        self.weight_bf16 = self.weight_bf16.to(torch.bfloat16)
        if self.bias_bf16 is not None:
            self.bias_bf16 = self.bias_bf16.to(torch.bfloat16)
        return self


class Bf16Linear(_Bf16Copies, nn.Linear):
    """``nn.Linear`` whose product is bfloat16 (input and weights rounded), its output in the input's dtype."""

    @classmethod
    def from_float(cls, layer: nn.Linear) -> "Bf16Linear":
        new = cls(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        new._copy_weights(layer)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight_bf16, self.bias_bf16).to(x.dtype)


def _conv_args(layer: nn.Module) -> dict:
    return dict(
        stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
        bias=layer.bias is not None, padding_mode=layer.padding_mode, device="meta",
    )


class Bf16Conv1d(_Bf16Copies, nn.Conv1d):
    """``nn.Conv1d`` whose product is bfloat16, its output in the input's dtype."""

    @classmethod
    def from_float(cls, layer: nn.Conv1d) -> "Bf16Conv1d":
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, **_conv_args(layer))
        new._copy_weights(layer)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x.to(torch.bfloat16), self.weight_bf16, self.bias_bf16).to(x.dtype)


class Bf16ConvTranspose1d(_Bf16Copies, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` whose product is bfloat16, its output in the input's dtype."""

    @classmethod
    def from_float(cls, layer: nn.ConvTranspose1d) -> "Bf16ConvTranspose1d":
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size,
                  output_padding=layer.output_padding, **_conv_args(layer))
        new._copy_weights(layer)
        return new

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 1, self.dilation)
        out = F.conv_transpose1d(
            x.to(torch.bfloat16), self.weight_bf16, self.bias_bf16, self.stride, self.padding, padding, self.groups,
            self.dilation,
        )
        return out.to(x.dtype)


BF16_LAYERS: dict[type, type] = {nn.Linear: Bf16Linear, nn.Conv1d: Bf16Conv1d, nn.ConvTranspose1d: Bf16ConvTranspose1d}


def _eligible(layer: nn.Module, min_reduction: int) -> bool:
    return (
        type(layer) in BF16_LAYERS  # exactly these classes: a subclass may compute differently
        and not parametrize.is_parametrized(layer)  # its weight is recomputed on every call
        and layer.weight.dtype == torch.float32
        and reduction_size(layer) >= min_reduction
    )


def with_bf16_matmuls(module, min_reduction: int = MIN_BF16_REDUCTION):
    """A new module tree like ``module`` whose eligible layers multiply in bfloat16; ``module`` is not changed.

    Shares every parameter and unreplaced submodule with ``module``; only replaced layers
    and their ancestors are new objects. Returns ``module`` itself when nothing is
    eligible, and anything that is not a torch module unchanged.
    """
    if not isinstance(module, nn.Module):
        return module
    return _replaced(module, min_reduction, memo={})


def _replaced(module: nn.Module, min_reduction: int, memo: dict[int, nn.Module]) -> nn.Module:
    if id(module) in memo:  # a submodule used twice stays one module
        return memo[id(module)]
    if _eligible(module, min_reduction):
        new = BF16_LAYERS[type(module)].from_float(module)
    else:
        children = {name: _replaced(child, min_reduction, memo) for name, child in module.named_children()}
        if all(new_child is getattr(module, name) for name, new_child in children.items()):
            new = module
        else:
            new = copy.copy(module)  # same attributes; its own registries, so the original keeps its children
            new._modules, new._parameters, new._buffers = dict(module._modules), dict(module._parameters), dict(module._buffers)
            for name, child in children.items():
                setattr(new, name, child)
    memo[id(module)] = new
    return new


def uses_bf16_matmuls(module) -> bool:
    """Whether ``module`` contains layers built by :func:`with_bf16_matmuls`."""
    return isinstance(module, nn.Module) and any(isinstance(m, _Bf16Copies) for m in module.modules())


__all__ = [
    "BF16_LAYERS",
    "Bf16Conv1d",
    "Bf16ConvTranspose1d",
    "Bf16Linear",
    "MIN_BF16_REDUCTION",
    "reduction_size",
    "uses_bf16_matmuls",
    "with_bf16_matmuls",
]
