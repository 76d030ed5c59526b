"""Pull content vectors towards their nearest neighbours in a singer's index.

    >>> out = blend(whisper, index_rows, ratio=0.5)         # (T, D) and (K, D) -> (T, D)
    >>> out = blend_mix(whisper, [(rows_a, 0.7), (rows_b, 0.3)], ratio=0.5)

Each frame ``x`` moves to ``(1 - ratio) * x + ratio * m``, where ``m`` is the
inverse-distance-weighted mean of its ``k`` nearest index rows (Euclidean
distance; weights ``1 / d``, normalised to sum 1). For a mix of singers ``m`` is
the weighted mean of each singer's ``m``, by the singers' weights. The search is
one matrix product per chunk of ``chunk`` frames: memory ``O(chunk * K)``.
"""

from __future__ import annotations

from typing import Sequence

import torch

# A frame that coincides with an index row gets weight 1 / MIN_DISTANCE: in effect that row alone.
MIN_DISTANCE = 1e-6


def check_ratio(ratio: float) -> float:
    """``ratio`` as a float in [0, 1], else a one-line ``ValueError``."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"index_ratio must be a number in [0, 1], got {ratio!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"index_ratio must be in [0, 1] (0 = no index, 1 = index vectors only), got {ratio!r}")
    return value


@torch.no_grad()
def neighbour_mean(features: torch.Tensor, index: torch.Tensor, k: int = 8, chunk: int = 2048) -> torch.Tensor:
    """``(T, D)`` float32: per frame of ``features`` ``(T, D)``, the inverse-distance-weighted mean of its
    ``min(k, K)`` nearest rows of ``index`` ``(K, D)``. Computed on ``features``' device."""
    if features.ndim != 2 or index.ndim != 2 or features.shape[1] != index.shape[1]:
        raise ValueError(
            f"blend needs features (T, D) and an index (K, D) of one D, got {tuple(features.shape)} and {tuple(index.shape)}"
        )
    x = features.float()
    rows = index.to(device=x.device, dtype=torch.float32)
    k = min(k, len(rows))
    r_norm = (rows * rows).sum(1)
    out = torch.empty_like(x)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        d2 = r_norm[None, :] - 2.0 * part @ rows.T  # squared distance less |x|^2: the same order
        near = d2.topk(k, dim=1, largest=False).indices
        # the k distances again, exactly (the expanded form above cancels for near rows)
        distance = (part[:, None, :] - rows[near]).norm(dim=2)
        weights = 1.0 / distance.clamp_min(MIN_DISTANCE)
        weights = weights / weights.sum(1, keepdim=True)
        out[start : start + chunk] = (weights[:, :, None] * rows[near]).sum(1)
    return out


def blend_mix(
    features: torch.Tensor, indexes: Sequence[tuple[torch.Tensor, float]], ratio: float, k: int = 8, chunk: int = 2048
) -> torch.Tensor:
    """``features`` ``(T, D)`` moved by ``ratio`` towards ``sum_s w_s * neighbour_mean(features, index_s)``
    over ``indexes`` = ``[(index_s (K_s, D), w_s)]`` (weights summing to 1). Ratio 0 returns ``features`` itself."""
    ratio = check_ratio(ratio)
    if ratio == 0.0:
        return features
    target = None
    for rows, weight in indexes:
        part = float(weight) * neighbour_mean(features, rows, k, chunk)
        target = part if target is None else target + part
    if target is None:
        raise ValueError("blend_mix needs at least one (index, weight)")
    # lerp's end point is exact: ratio 1 gives the neighbour mean itself
    return torch.lerp(features.float(), target, ratio).to(features.dtype)


def blend(features: torch.Tensor, index: torch.Tensor, ratio: float, k: int = 8, chunk: int = 2048) -> torch.Tensor:
    """``(1 - ratio) * features + ratio * neighbour_mean(features, index, k)``, ``(T, D)``.

    Ratio 0 returns ``features`` itself (the same tensor); ratio 1 only weighted means of index rows.
    """
    return blend_mix(features, [(index, 1.0)], ratio, k, chunk)


__all__ = ["MIN_DISTANCE", "blend", "blend_mix", "check_ratio", "neighbour_mean"]
