"""Frame energy from the unnormalised log mel (docs/design.md "Features").

``E = sqrt(sum_k exp(mel_k) ** 2)``: the L2 norm of the linear mel magnitudes of a
frame. Its 256 log-spaced bins for the condition encoder live in
:func:`comosvc.features.bins.energy_bins`.
"""

from __future__ import annotations

import numpy as np
import torch


def energy_from_mel(log_mel: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``(..., T, n_mels)`` natural-log mel -> ``(..., T)`` linear frame energy (same array type)."""
    if isinstance(log_mel, torch.Tensor):
        return torch.linalg.vector_norm(torch.exp(log_mel), dim=-1)
    log_mel = np.asarray(log_mel)
    return np.sqrt(np.sum(np.exp(log_mel) ** 2, axis=-1)).astype(log_mel.dtype, copy=False)


__all__ = ["energy_from_mel"]
