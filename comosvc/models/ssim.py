"""SSIM between two mel spectrograms, treated as one-channel images ``(T, n_mels)``, with a frame mask.

Wang et al. 2004 with an ``11 x 11`` Gaussian window (sigma 1.5) over time and mel
bins, ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` for the data range ``L`` (2 for
mels normalised to [-1, 1]). Padded frames are zeroed in both inputs (so their
content cannot matter) and the SSIM map is averaged over valid frames only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from comosvc.models.masking import apply_mask, masked_mean


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``."""
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def _blur(image: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, 1, T, M)`` with zero padding (same size out)."""
    pad = window.numel() // 2
    image = F.conv2d(image, window.view(1, 1, -1, 1), padding=(pad, 0))
    return F.conv2d(image, window.view(1, 1, 1, -1), padding=(0, pad))


def masked_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 2.0,
) -> torch.Tensor:
    """Mean SSIM of ``x`` and ``y`` ``(B, T, n_mels)`` over the valid frames of ``mask`` ``(B, T)``; 1 = identical."""
    window = gaussian_window(window_size, sigma, x.device, x.dtype)
    x = apply_mask(x, mask)[:, None]
    y = apply_mask(y, mask)[:, None]
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov = _blur(x * y, window) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return masked_mean(ssim_map[:, 0], mask)


__all__ = ["gaussian_window", "masked_ssim"]
