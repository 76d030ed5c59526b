"""Frame masks: ``mask`` is ``(B, T)`` bool, True on valid frames, False on padding."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``(B, T, ...)`` over the valid frames of ``mask`` ``(B, T)`` (and all trailing dims)."""
    weights = mask.to(values.dtype).reshape(*mask.shape, *([1] * (values.dim() - 2)))
    per_frame = values[0, 0].numel()
    return (values * weights).sum() / (weights.sum() * per_frame).clamp(min=1)


def apply_mask(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the padded frames of ``values`` ``(B, T, ...)`` (``where``, so NaN/inf there cannot leak)."""
    keep = mask.reshape(*mask.shape, *([1] * (values.dim() - 2)))
    return torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))


__all__ = ["apply_mask", "masked_mean"]
