"""Anti-aliased periodic activations (BigVGAN's "AMP" activations) and their filters.

A Snake/SnakeBeta nonlinearity run at twice the sample rate between kaiser-windowed
sinc low-pass filters. All modules map ``(B, C, T)`` to ``(B, C, T)`` except the
resamplers, whose docstrings give their output lengths.

Two ways to compute the same activation (:class:`AntiAliasedActivation`):

- the reference's: replicate-pad, zero-stuffing transposed convolution, the periodic
  function on the ``2T`` samples, replicate-pad again, strided low-pass (training, export,
  compilation, CUDA);
- :func:`polyphase_activation` (inference on a CPU): the 2x upsampler split into its
  even and odd output phases (two 6-tap filters on the ``T`` input samples), the
  periodic function in place on each phase, and the strided low-pass split the same way
  (each phase through its 6 taps, summed). No zero-stuffed signal, no second pad, and
  three in-place passes instead of five allocating ones for the nonlinearity. It equals
  the reference's output to float rounding (tests/test_vocoders_antialias.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Low-pass FIR filter ``(1, 1, kernel_size)``: a sinc windowed by a Kaiser window.

    ``cutoff`` and ``half_width`` (transition band half-width) are in cycles per sample
    (0.5 = Nyquist). The Kaiser beta follows Kaiser's empirical formula for the
    attenuation this length and transition width can reach; taps sum to 1 (DC gain 1).
    """
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95  # dB
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    if kernel_size % 2 == 0:
        t = torch.arange(-half, half) + 0.5  # taps sit between samples
    else:
        t = torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class LowPassFilter1d(nn.Module):
    """Depthwise FIR low-pass with replicate padding, optionally decimating by ``stride``."""

    def __init__(self, cutoff: float, half_width: float, stride: int = 1, kernel_size: int = 12):
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, ceil(T / stride))."""
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(x.shape[1], -1, -1), stride=self.stride, groups=x.shape[1])


class UpSample1d(nn.Module):
    """Band-limited upsampling by ``ratio``: zero-stuffing plus the kaiser-sinc low-pass."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1  # input samples of context on each side
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T * ratio)."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels)
        return x[..., self.crop_left : x.shape[-1] - self.crop_right]


class DownSample1d(nn.Module):
    """Band-limited downsampling by ``ratio``: the kaiser-sinc low-pass with stride ``ratio``."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, stride=ratio, kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T / ratio)."""
        return self.lowpass(x)


class Snake(nn.Module):
    """Periodic activation ``x + sin^2(alpha x) / alpha`` with one learnt alpha per channel."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per channel ``(alpha, 1 / magnitude)`` ``(C,)`` each: the activation is ``x + sin^2(alpha x) / magnitude``."""
        alpha = self.alpha.exp() if self.logscale else self.alpha
        return alpha, 1.0 / (alpha + 1e-9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        alpha, inverse = (t.view(1, -1, 1) for t in self.terms())
        return x + inverse * torch.sin(x * alpha).pow(2)


class SnakeBeta(nn.Module):
    """Snake with a separate magnitude: ``x + sin^2(alpha x) / beta``, per channel."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per channel ``(alpha, 1 / beta)`` ``(C,)`` each: the activation is ``x + sin^2(alpha x) / beta``."""
        alpha, beta = (self.alpha.exp(), self.beta.exp()) if self.logscale else (self.alpha, self.beta)
        return alpha, 1.0 / (beta + 1e-9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        alpha, inverse = (t.view(1, -1, 1) for t in self.terms())
        return x + inverse * torch.sin(x * alpha).pow(2)


class AntiAliasedActivation(nn.Module):
    """Upsample 2x, apply the periodic activation, low-pass and downsample 2x.

    Running the nonlinearity at twice the rate keeps the harmonics it creates below
    the new Nyquist, so the filter removes them instead of letting them alias.
    """

    def __init__(self, activation: nn.Module, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(ratio, kernel_size)
        self.downsample = DownSample1d(ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        if polyphase_applies(self, x):
            return polyphase_activation(self, x)
        return self.downsample(self.act(self.upsample(x)))


# --------------------------------------------------------------------------- polyphase form
#
# With h the upsampler's 12 taps (times the ratio 2) and x clamped at its ends (replicate
# padding), the upsampled signal's two phases are
#     y[2n]     = sum_{t=0..5} h[11 - 2t] x[n - 3 + t]
#     y[2n + 1] = sum_{t=1..6} h[12 - 2t] x[n - 3 + t]
# and, with g the downsampler's 12 taps and s = act(y) clamped at ITS ends,
#     z[n] = sum_{t=1..6} g[2t - 1] s[2(n - 3 + t)] + sum_{t=0..5} g[2t] s[2(n - 3 + t) + 1].
# Both phases are computed for n = -3 .. T + 2 (x padded by 6), so the downsampler needs no
# padding; the 3 samples of each phase beyond either end are then set to s's end values,
# s[0] and s[2T - 1], which is what replicate padding of the 2T-sample signal gives.

POLYPHASE_PAD = 6  # input samples of context per side: 3 for the upsampler's taps + 3 beyond the ends


def polyphase_applies(module: "AntiAliasedActivation", x: torch.Tensor) -> bool:
    """Whether :func:`polyphase_activation` computes ``module(x)``: CPU inference of BigVGAN's 2x, 12-tap activation.

    Not while autograd records (its passes are in place), exports, or compiles (the
    reference's functional graph is what those expect), and not on CUDA.
    """
    return (
        x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and module.upsample.ratio == 2
        and module.upsample.filter.shape[-1] == 12
        and module.downsample.lowpass.stride == 2
        and module.downsample.lowpass.filter.shape[-1] == 12
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch.onnx.is_in_onnx_export()
    )


def _depthwise(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The same FIR ``taps`` (K,) on every channel, no padding: (B, C, L) -> (B, C, L - K + 1)."""
    channels = x.shape[1]
    return F.conv1d(x, taps.view(1, 1, -1).expand(channels, 1, -1), bias, groups=channels)


def polyphase_activation(module: "AntiAliasedActivation", x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` computed phase by phase (see the comment above): (B, C, T) -> (B, C, T)."""
    length = x.shape[-1]
    up = module.upsample.filter.view(-1) * module.upsample.ratio
    down = module.downsample.lowpass.filter.view(-1)
    zero = up.new_zeros(1)
    even_up, odd_up = torch.cat([up[1::2].flip(0), zero]), torch.cat([zero, up[0::2].flip(0)])
    even_down, odd_down = torch.cat([zero, down[1::2]]), torch.cat([down[0::2], zero])
    alpha, inverse = module.act.terms()
    # sin^2(a y) / m = (1 - cos(2 a y)) / (2 m): the constant 1 / (2 m) passes the low-pass as a bias
    twice_alpha, half_inverse = (2 * alpha).view(1, -1, 1), (-0.5 * inverse).view(1, -1, 1)
    padded = torch.cat([x[..., :1].expand(*x.shape[:-1], POLYPHASE_PAD), x, x[..., -1:].expand(*x.shape[:-1], POLYPHASE_PAD)], -1)
    phases = []
    for taps in (even_up, odd_up):
        y = _depthwise(padded, taps)  # (B, C, T + 6): this phase for n = -3 .. T + 2
        cosine = (y * twice_alpha).cos_()
        phases.append(y.addcmul_(cosine, half_inverse))
    even, odd = phases
    first, last = even[..., 3:4].clone(), odd[..., length + 2 : length + 3].clone()  # s[0], s[2T - 1]
    for phase in phases:
        phase[..., :3] = first
        phase[..., length + 3 :] = last
    out = _depthwise(even, even_down, bias=0.5 * inverse * down.sum())
    return out.add_(_depthwise(odd, odd_down))
