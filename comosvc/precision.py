"""The floating-point precision networks run in: ``inference.dtype``, resolved for a device, and casts.

``inference.dtype`` is ``"auto"`` (the default: float16 on CUDA, float32 on the CPU),
``"float32"``, ``"float16"`` or ``"bfloat16"``. It applies to every network of a
conversion: the acoustic model (condition encoder, prior, denoiser), the vocoder and the
content encoders (Whisper, ContentVec). What stays in float32 whatever it says:

- the sampler's arithmetic (noise levels, preconditioning, ODE updates): the denoiser
  network is called through :func:`float32_io`, which casts its inputs to the network's
  dtype and its output back to float32;
- F0 and energy, which become embedding indices (half precision would move bins);
- networkless DSP (Griffin-Lim, the mel filterbank), and everything a stage hands on
  (features, mels and audio are float32).

A half dtype on the CPU is refused (:func:`resolve_dtype`): float16 convolutions are
slow or missing there, and bfloat16 throughout (autocast, or every tensor in bfloat16)
measured 0.4-0.6x the speed of float32 for BigVGAN on a 2-core CPU: its element-wise
work is slow in bfloat16.

What is fast on a CPU with AMX is bfloat16 *matrix products*: ``inference.cpu_matmul_precision``
(:func:`resolve_cpu_matmul`, :func:`cpu_bf16_matmuls`). Every linear layer and convolution
that sums at least 512 products per output then rounds its input and weights to bfloat16
and runs on the AMX units (sums in float32, output back to float32); everything else, and
the networks' interfaces, stay float32.
On this project's 2-core Xeon: linear 6x, convolution 2.8x, BigVGAN v2 1.75x
(docs/benchmarks.md "Conversion on a CPU").

    >>> resolve_dtype("auto", "cpu")
    torch.float32
    >>> resolve_dtype("auto", "cuda")
    torch.float16
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from comosvc.config import CPU_MATMUL_PRECISIONS, PRECISIONS

AUTO = "auto"
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
HALF_DTYPES = (torch.float16, torch.bfloat16)
DEFAULT_ON = {"cuda": torch.float16}  # device type -> what "auto" means there; any other device: float32


class PrecisionError(ValueError):
    """``inference.dtype`` cannot be used on this device; the message says what to set instead."""


def resolve_dtype(name: str, device: str | torch.device, *, allow_cpu_half: bool = False) -> torch.dtype:
    """``inference.dtype`` (``"auto"``, ``"float32"``, ``"float16"``, ``"bfloat16"``) -> the torch dtype on ``device``.

    A half dtype on a non-CUDA device raises :class:`PrecisionError` unless
    ``allow_cpu_half`` (for tests that exercise the half path on a CPU).
    """
    kind = torch.device(device).type
    if name == AUTO:
        return DEFAULT_ON.get(kind, torch.float32)
    if name not in DTYPES:
        raise PrecisionError(f"inference.dtype must be one of {list(PRECISIONS)}, got {name!r}")
    dtype = DTYPES[name]
    if dtype in HALF_DTYPES and kind != "cuda" and not allow_cpu_half:
        raise PrecisionError(
            f"inference.dtype={name} is not supported on the {kind} device: float16 convolutions are slow or "
            "missing on a CPU, and bfloat16 measured 0.6x the speed of float32 (BigVGAN, 2-core CPU). "
            "Use inference.dtype=float32 (the default on a CPU, also what 'auto' picks) or run on CUDA (--device cuda). "
            "On a CPU with AMX, inference.cpu_matmul_precision=bfloat16 (what 'auto' picks there) gives the speed of "
            "bfloat16 where it pays: in the matrix products only."
        )
    return dtype


def module_dtype(module: object) -> torch.dtype:
    """The dtype of ``module``'s first floating-point parameter; float32 when it has none (DSP, not a torch module)."""
    if isinstance(module, nn.Module):
        for parameter in module.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return torch.float32


def cast_module(module, dtype: torch.dtype):
    """``module`` with its floating parameters and buffers in ``dtype`` (in place, like ``Module.to``).

    A module without parameters (Griffin-Lim: an STFT and a filterbank) and anything that
    is not a torch module are returned unchanged: they stay in float32.
    """
    if isinstance(module, nn.Module) and any(p.is_floating_point() for p in module.parameters()):
        module.to(dtype)
    return module


# --------------------------------------------------------------------------- bf16 matrix products on a CPU

def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (bfloat16 matrix units: Intel Sapphire Rapids and later)."""
    checks = getattr(torch._C, "_cpu", None)
    return bool(checks is not None and checks._is_amx_tile_supported())


def resolve_cpu_matmul(name: str, device: str | torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """``inference.cpu_matmul_precision`` -> whether a float32 network on ``device`` gets bfloat16 matrix products.

    Only on a CPU and only for float32 networks. ``auto``: where the CPU has AMX.
    ``bfloat16`` on a CPU without bfloat16 matrix instructions raises :class:`PrecisionError`.
    """
    if name not in CPU_MATMUL_PRECISIONS:
        raise PrecisionError(f"inference.cpu_matmul_precision must be one of {list(CPU_MATMUL_PRECISIONS)}, got {name!r}")
    if torch.device(device).type != "cpu" or dtype != torch.float32 or name == "float32":
        return False
    if name == AUTO:
        return cpu_has_amx()
    if not (cpu_has_amx() or torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        raise PrecisionError(
            "inference.cpu_matmul_precision=bfloat16: this CPU has no bfloat16 matrix instructions "
            "(AMX or AVX512-BF16), so bfloat16 matrix products would be slower than float32. "
            "Use inference.cpu_matmul_precision=float32 (or auto)."
        )
    return True


class _Bf16Matmul:
    """Mixin: the layer's product in bfloat16 (input and weights rounded), its output float32.

    The float32 parameters stay (state dict, saving and :func:`module_dtype` see float32);
    their bfloat16 copies are non-persistent buffers made by :func:`cpu_bf16_matmuls`.
    """

    def _bf16_args(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if self.bf16_weight.dtype != torch.bfloat16:  # a Module.to(dtype) cast the copies too: make them again
            _make_bf16_copies(self)
        return x.to(torch.bfloat16), self.bf16_weight, self.bf16_bias


class Bf16Linear(_Bf16Matmul, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(*self._bf16_args(x)).to(x.dtype)


class Bf16Conv1d(_Bf16Matmul, nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(*self._bf16_args(x)).to(x.dtype)


class Bf16ConvTranspose1d(_Bf16Matmul, nn.ConvTranspose1d):
    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 1, self.dilation)
        x16, weight, bias = self._bf16_args(x)
        out = F.conv_transpose1d(x16, weight, bias, self.stride, self.padding, padding, self.groups, self.dilation)
        return out.to(x.dtype)


_BF16_CLASSES = {nn.Linear: Bf16Linear, nn.Conv1d: Bf16Conv1d, nn.ConvTranspose1d: Bf16ConvTranspose1d}


def _make_bf16_copies(layer: nn.Module) -> None:
    with torch.no_grad():
        layer.register_buffer("bf16_weight", layer.weight.detach().to(torch.bfloat16), persistent=False)
        bias = None if layer.bias is None else layer.bias.detach().to(torch.bfloat16)
        layer.register_buffer("bf16_bias", bias, persistent=False)


# Layers whose products sum over fewer terms stay float32. They gain nothing from AMX (the casts
# cost what the product saves), and they are where bfloat16 hurts: BigVGAN's last convolutions
# (32 channels x 7 taps in, 1 out) would round the waveform itself to bfloat16. Measured on
# random BigVGANs against float32, same speed: waveform SNR 35.8 -> 58.8 dB (v1 base) and
# 43.6 -> 78.5 dB (v2) with this threshold instead of none.
MIN_BF16_REDUCTION = 512


def reduction_size(layer: nn.Module) -> int:
    """How many products one output of a linear layer or convolution sums (input features, or channels per group x taps)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * math.prod(layer.kernel_size)


def cpu_bf16_matmuls(module, enabled: bool = True, min_reduction: int | None = None):
    """``module`` (in place) with its linear layers and 1-D convolutions computing in bfloat16 on the CPU.

    Only layers that sum at least ``min_reduction`` (default :data:`MIN_BF16_REDUCTION`) products
    per output (:func:`reduction_size`) switch. ``enabled=False`` undoes it. Layers of other types, parametrized layers whose
    weight is recomputed each call, and non-float32 layers are left alone; anything that is
    not a torch module is returned unchanged.
    """
    if not isinstance(module, nn.Module):
        return module
    min_reduction = MIN_BF16_REDUCTION if min_reduction is None else min_reduction
    for layer in module.modules():
        if (
            enabled
            and type(layer) in _BF16_CLASSES
            and layer.weight.dtype == torch.float32
            and reduction_size(layer) >= min_reduction
        ):
            _make_bf16_copies(layer)
            layer.__class__ = _BF16_CLASSES[type(layer)]
        elif enabled and isinstance(layer, _Bf16Matmul):
            _make_bf16_copies(layer)  # applied before: the weights may have changed since
        elif not enabled and isinstance(layer, _Bf16Matmul):
            layer.__class__ = next(base for base, fast in _BF16_CLASSES.items() if fast is type(layer))
            del layer.bf16_weight, layer.bf16_bias
    return module


def uses_bf16_matmuls(module) -> bool:
    """Whether :func:`cpu_bf16_matmuls` is applied somewhere in ``module``."""
    return isinstance(module, nn.Module) and any(isinstance(m, _Bf16Matmul) for m in module.modules())


def apply_precision(module, dtype: torch.dtype, bf16_matmuls: bool = False):
    """``module`` in ``dtype`` (:func:`cast_module`), with bfloat16 matrix products exactly when ``bf16_matmuls``.

    A module shared by several pipelines (the bench's teacher and student share their
    content encoders) follows the last one applied.
    """
    cast_module(module, dtype)
    return cpu_bf16_matmuls(module, enabled=bf16_matmuls)


def float32_io(network: nn.Module) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """A denoiser network ``F(x_in, c_noise, mu, mask)`` with a float32 interface.

    ``x_in`` and ``mu`` ``(B, T, n_mels)`` are cast to the network's dtype and its output
    back to float32; ``c_noise`` ``(B,)`` stays float32 (the step embedding computes its
    sinusoids in float32 anyway) and ``mask`` is boolean. For a float32 network this is
    the network itself: nothing is cast and results are bit-identical. The sampler
    around it keeps its noise levels and updates in float32.
    """
    dtype = module_dtype(network)
    if dtype == torch.float32:
        return network

    def call(x_in: torch.Tensor, c_noise: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return network(x_in.to(dtype), c_noise, mu.to(dtype), mask).float()

    return call


__all__ = [
    "AUTO",
    "MIN_BF16_REDUCTION",
    "CPU_MATMUL_PRECISIONS",
    "DTYPES",
    "HALF_DTYPES",
    "PrecisionError",
    "apply_precision",
    "cast_module",
    "cpu_bf16_matmuls",
    "cpu_has_amx",
    "float32_io",
    "module_dtype",
    "reduction_size",
    "resolve_cpu_matmul",
    "resolve_dtype",
    "uses_bf16_matmuls",
]
