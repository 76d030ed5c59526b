"""The condition encoder: every per-frame input of the acoustic model summed into one vector.

Content (Whisper, ContentVec) is projected linearly; F0, the voiced flag and the
frame energy are bucketised and embedded; the singer is an embedding. F0 arrives in
Hz and is bucketised here, so a key shift (``f0 * 2 ** (k / 12)``) is applied to the
batch before the encoder and needs no feature re-extraction.
"""

from __future__ import annotations

import torch
from torch import nn

from comosvc.config import ComoSVCConfig
from comosvc.features.bins import coarse_f0, energy_bins, voiced_flag


class ConditionEncoder(nn.Module):
    """``batch`` -> ``(B, T, hidden)`` condition, the sum of six projections/embeddings.

    Batch keys (docs/design.md contract): ``whisper`` ``(B, T, whisper_dim)``,
    ``contentvec`` ``(B, T, contentvec_dim)``, ``f0`` ``(B, T)`` Hz (0 = unvoiced),
    ``energy`` ``(B, T)`` linear frame energy, ``speaker`` ``(B,)`` int64 global singer id, or for
    a mix of singers ``speaker`` ``(B, K)`` ids with ``speaker_weights`` ``(B, K)`` float (the
    embedding is the weighted sum of the K rows, see :meth:`speaker_embedding`).
    """

    def __init__(self, config: ComoSVCConfig):
        super().__init__()
        hidden = config.model.hidden
        self.f0_config = config.f0
        self.energy_config = config.energy
        self.whisper = nn.Linear(config.content.whisper_dim, hidden)
        self.contentvec = nn.Linear(config.content.contentvec_dim, hidden)
        self.f0 = nn.Embedding(config.f0.n_bins, hidden)
        self.voiced = nn.Embedding(2, hidden)
        self.energy = nn.Embedding(config.energy.n_bins, hidden)
        self.speaker = nn.Embedding(config.model.n_speakers, hidden)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        f0 = batch["f0"]
        speaker = batch["speaker"].long()
        # not while torch.export traces (a data-dependent branch); comosvc.onnx checks the ids at run time
        if not torch.compiler.is_exporting() and speaker.numel() and (speaker.min() < 0 or speaker.max() >= self.speaker.num_embeddings):
            raise ValueError(
                f"speaker ids must be in [0, {self.speaker.num_embeddings}); got {speaker.tolist()}. "
                "Look singers up in the model's singer table (model.singers) or raise model.n_speakers."
            )
        dtype = self.whisper.weight.dtype
        return (
            self.whisper(batch["whisper"].to(dtype))
            + self.contentvec(batch["contentvec"].to(dtype))
            + self.f0(coarse_f0(f0, self.f0_config))
            + self.voiced(voiced_flag(f0))
            + self.energy(energy_bins(batch["energy"], self.energy_config))
            + self.speaker_embedding(speaker, batch.get("speaker_weights"))[:, None, :]
        )

    def speaker_embedding(self, speaker: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, hidden)`` singer embedding: the row of ``speaker`` ``(B,)``, or with ``weights`` ``(B, K)``
        the weighted sum of the rows of ``speaker`` ``(B, K)`` (summed in float32, returned in the table's dtype)."""
        rows = self.speaker(speaker)
        if weights is None:
            return rows
        return (weights.float()[..., None] * rows.float()).sum(1).to(rows.dtype)


__all__ = ["ConditionEncoder"]
