"""Quantised conditioning features: coarse F0 bins, the voiced flag and energy bins.

They work on torch tensors of any shape so the condition encoder can bucketise
F0 (after a key shift) and energy on the fly. One voiced-flag polarity is used
everywhere: 1 = voiced, 0 = unvoiced (the reference mixes both polarities).
"""

from __future__ import annotations

import math

import torch

from comosvc.config import EnergyConfig, F0Config


def hz_to_mel(f0: torch.Tensor | float) -> torch.Tensor | float:
    """The mel scale used for F0 bins: m = 1127 ln(1 + f / 700)."""
    if isinstance(f0, torch.Tensor):
        return 1127.0 * torch.log1p(f0 / 700.0)
    return 1127.0 * math.log1p(f0 / 700.0)


def voiced_flag(f0: torch.Tensor) -> torch.Tensor:
    """1 where F0 > 0 (voiced), 0 elsewhere; same shape as ``f0``, int64."""
    return (f0 > 0).long()


def coarse_f0(f0: torch.Tensor, cfg: F0Config = F0Config()) -> torch.Tensor:
    """F0 in Hz -> bins 1..n_bins-1 on the mel scale (docs/design.md "Features"); unvoiced frames -> 1.

    Voiced: ``round((m - m_min) * (n_bins - 2) / (m_max - m_min) + 1)`` clamped to
    ``[1, n_bins - 1]``, with ``m_min``/``m_max`` the mel of ``f0_min``/``f0_max``.
    """
    m_min, m_max = hz_to_mel(cfg.f0_min), hz_to_mel(cfg.f0_max)
    m = hz_to_mel(f0.float().clamp(min=0))
    bins = (m - m_min) * (cfg.n_bins - 2) / (m_max - m_min) + 1
    bins = torch.where(f0 > 0, bins, torch.ones_like(bins))
    return bins.clamp(1, cfg.n_bins - 1).round().long()


def energy_bins(energy: torch.Tensor, cfg: EnergyConfig = EnergyConfig()) -> torch.Tensor:
    """Frame energy -> bins 0..n_bins-1, log-spaced boundaries between ``cfg.min`` and ``cfg.max``."""
    boundaries = torch.logspace(
        math.log10(cfg.min), math.log10(cfg.max), cfg.n_bins - 1, dtype=torch.float64, device=energy.device
    )
    return torch.bucketize(energy.double(), boundaries).long()


__all__ = ["coarse_f0", "energy_bins", "hz_to_mel", "voiced_flag"]
