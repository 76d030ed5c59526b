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

What is fast on a CPU with bfloat16 matrix instructions is bfloat16 *matrix products*
only: ``inference.cpu_matmul_precision``, part of the CPU plan (:mod:`comosvc.cpu_plan`,
:mod:`comosvc.bf16_matmuls`); docs/benchmarks.md "Conversion on a CPU" has the figures.

    >>> resolve_dtype("auto", "cpu")
    torch.float32
    >>> resolve_dtype("auto", "cuda")
    torch.float16
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from comosvc.config import PRECISIONS

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
            f"inference.dtype={name} is not supported on the {kind} device (half-precision networks are slower "
            "than float32 on a CPU). Use inference.dtype=float32 (what 'auto' picks on a CPU) or run on CUDA "
            "(--device cuda); inference.cpu_matmul_precision=bfloat16 gives bfloat16 where it pays on a CPU, "
            "in the matrix products only."
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
    is not a torch module are returned unchanged: they stay in float32. So is a module whose
    floating parameters are all in ``dtype`` already (its buffers are not touched).
    """
    if not isinstance(module, nn.Module):
        return module
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
    if dtypes and dtypes != {dtype}:
        module.to(dtype)
    return module


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


__all__ = ["AUTO", "DTYPES", "HALF_DTYPES", "PrecisionError", "cast_module", "float32_io", "module_dtype", "resolve_dtype"]
