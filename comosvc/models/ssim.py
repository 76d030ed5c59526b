"""SSIM between two mel spectrograms, treated as one-channel images ``(T, n_mels)``, with a frame mask.

Wang et al. 2004 with an ``11 x 11`` Gaussian window (sigma 1.5) over time and mel
bins, ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` for the data range ``L``. The loss is
the reference's form: both images are offset by 6.0 before the SSIM and ``L = 1``, so
``C1 = 0.01^2``, ``C2 = 0.03^2``; the offset makes the local means large, which makes
the SSIM mostly a structure/contrast term. Padded frames are zeroed in the two inputs
(so their content cannot matter) and the SSIM map is averaged over valid frames only
(the reference averages over the whole padded batch; with no padding the two agree).
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
    offset: float = 0.0,
) -> torch.Tensor:
    """Mean SSIM of ``x`` and ``y`` ``(B, T, n_mels)`` over the valid frames of ``mask`` ``(B, T)``; 1 = identical.

    ``offset`` is added to both images after padded frames are zeroed.
    """
    window = gaussian_window(window_size, sigma, x.device, x.dtype)
    x = apply_mask(x, mask)[:, None] + offset
    y = apply_mask(y, mask)[:, None] + offset
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov = _blur(x * y, window) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return masked_mean(ssim_map[:, 0], mask)


# the reference's data range and offset
SSIM_DATA_RANGE, SSIM_OFFSET = 1.0, 6.0


def ssim_loss(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM(x + 6, y + 6)`` with data range 1 (the reference's form); scalar."""
    return 1 - masked_ssim(x, y, mask, data_range=SSIM_DATA_RANGE, offset=SSIM_OFFSET)


__all__ = ["gaussian_window", "masked_ssim", "ssim_loss"]
