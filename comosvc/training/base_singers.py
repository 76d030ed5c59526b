"""Keeping the base singers while a fine-tune teaches a new voice, without their audio.

A fine-tune sees only the new singer's recordings. Trained on them alone, the prior and
the denoiser learn to sing every input in the new voice, and the base singers' rows, kept
as they were, come out in it too (docs/benchmarks.md "Your own voice"). The base model
itself knows how each base singer sings any content, so it serves as their teacher
(learning without forgetting, Li & Hoiem 2016): on the new audio's content, F0 and energy,
given a base singer's id, the fine-tuned model is asked to answer as the base model does.

- :class:`AnchoredTeacherLoss` (the teacher phase): the teacher loss on the new audio plus
  ``finetune.base_anchor`` times the anchor: for each clip a random base singer, then the
  prior's ``mu`` held to the base's (the prior loss's scale) and the denoised estimate at a
  training noise level held to the base's (the EDM loss's weighting), at the same noisy input.
  That input is noise around the new clip's mel for half the clips (a real mel's detail: it
  keeps the base singers' voice best) and around the base's ``mu`` for the others (the base
  singer's coarse mel at its own pitch: it keeps their melody best); measured in
  docs/benchmarks.md "Your own voice";
- :class:`WithBaseSingers` (the student phase): a share ``finetune.base_share`` of each
  distillation batch sung by random base singers, whose targets come from the (anchored)
  fine-tuned teacher like every other clip's.

Either way a clip given to a base singer is moved into that singer's register first
(:func:`in_register`: its F0 times the ratio of the two singers' median F0s, as
``key="auto"`` moves a source): base singers are sung at their own pitches, which the new
voice's recordings may never reach, and the fine-tune must not forget how to sing there.

Tensors as in :class:`~comosvc.models.comosvc.ComoSVC`: ``mel``/``mu`` ``(B, T, n_mels)``
normalised log mel, ``mask`` ``(B, T)``, ``speaker`` ``(B,)`` int64 global singer ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from comosvc.models.masking import masked_mean
from comosvc.training.loop import Objective


def base_singer_ids(base_singers: dict[str, int], trained_ids: Sequence[int]) -> list[int]:
    """The ids the anchor draws from: the base table's singers that are not being fine-tuned."""
    trained = set(trained_ids)
    return sorted(i for i in base_singers.values() if i not in trained)


def draw_singers(ids: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` ids drawn uniformly (with replacement) from ``ids`` ``(K,)``; ``(count,)`` on ``ids``' device."""
    pick = torch.randint(0, ids.numel(), (count,), generator=generator, device=ids.device)
    return ids[pick]


def median_f0_by_id(singers: dict[str, int], stats: dict, n_speakers: int) -> torch.Tensor:
    """Each singer id's median voiced F0 in Hz from ``stats.json``'s ``f0`` entries, ``(n_speakers,)``;
    0 where unknown."""
    medians = torch.zeros(n_speakers)
    for key, index in singers.items():
        medians[index] = float(stats.get("f0", {}).get(key, {}).get("median") or 0.0)
    return medians


def _keep_base_singers(module: torch.nn.Module, base_ids: Sequence[int], medians: torch.Tensor | None, model) -> None:
    """Register ``module``'s ``base_ids`` ``(K,)`` and ``medians`` ``(n_speakers,)`` buffers (not saved);
    ``medians`` default: :func:`median_f0_by_id` of ``model``'s singers and stats."""
    if medians is None:
        medians = median_f0_by_id(model.singers, model.stats, model.config.model.n_speakers)
    module.register_buffer("base_ids", torch.tensor(list(base_ids), dtype=torch.long), persistent=False)
    module.register_buffer("medians", medians.float(), persistent=False)


def in_register(f0: torch.Tensor, own: torch.Tensor, new: torch.Tensor, medians: torch.Tensor) -> torch.Tensor:
    """``f0`` ``(B, T)`` Hz of clips sung by ``own`` ``(B,)``, moved for singers ``new`` ``(B,)``: times
    ``medians[new] / medians[own]`` (unvoiced 0 stays 0; unchanged where either median is unknown)."""
    medians = medians.to(f0.device, f0.dtype)
    to, frm = medians[new], medians[own]
    ratio = torch.where((to > 0) & (frm > 0), to / frm.clamp_min(1e-6), torch.ones_like(to))
    return f0 * ratio[:, None]


class AnchoredTeacherLoss(Objective):
    """The fine-tune's teacher objective: ``teacher_loss`` on the batch plus ``weight`` times the anchor.

    ``model`` is trained (``objective.model``, as :class:`~comosvc.training.loop.Objective`);
    ``frozen`` is the base teacher as loaded, never trained (a submodule, so that it moves,
    checkpoints and resumes with the run). ``base_ids``: the ids to draw from (see
    :func:`base_singer_ids`); none, or ``weight`` 0, gives the plain teacher loss.
    ``medians``: each id's median F0 (:func:`median_f0_by_id`; default: the model's singers
    and stats), to sing each clip in its base singer's register (:func:`in_register`).
    Returns the teacher loss's entries, ``loss`` including ``weight * anchor``, and
    ``anchor``, ``anchor_prior`` and ``anchor_denoiser``.
    """

    def __init__(self, model, frozen, base_ids: Sequence[int], weight: float, medians: torch.Tensor | None = None):
        super().__init__(model, "teacher_loss")
        self.frozen = frozen.requires_grad_(False).eval()
        self.weight = float(weight)
        _keep_base_singers(self, base_ids, medians, model)

    def train(self, mode: bool = True) -> "AnchoredTeacherLoss":
        super().train(mode)
        self.frozen.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = self.model.teacher_loss(batch)
        if self.weight <= 0 or self.base_ids.numel() == 0:
            return losses
        prior, denoiser = self.anchor(batch)
        anchor = prior + denoiser
        return {**losses, "loss": losses["loss"] + self.weight * anchor, "anchor": anchor,
                "anchor_prior": prior, "anchor_denoiser": denoiser}

    def anchor(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None):
        """``(prior term, denoiser term)`` of the batch's content sung by random base singers."""
        model, edm = self.model, self.model.edm
        batch = model.prepare_batch(batch, need_mel=True)
        batch.pop("speaker_weights", None)
        singers = draw_singers(self.base_ids, batch["mel"].shape[0], generator)
        batch["f0"] = in_register(batch["f0"], batch["speaker"], singers, self.medians)
        batch["speaker"] = singers
        mel, mask = batch["mel"], batch["mask"]
        with torch.no_grad():
            mu_base = self.frozen.encode(batch)
            sigma = edm.draw_training_sigma(mel, generator)
            around_mel = torch.rand(mel.shape[0], 1, 1, generator=generator, device=mel.device) < 0.5
            noisy = torch.where(around_mel, mel, mu_base) + sigma * edm.draw_noise(mu_base, generator)
            denoised_base = edm.denoised(self.frozen.denoiser, noisy, sigma, mu_base, mask)
        mu = model.encode(batch)
        prior = masked_mean(0.5 * (mu - mu_base) ** 2, mask) / mel.shape[-1]
        denoised = edm.denoised(model.denoiser, noisy, sigma, mu, mask)
        return prior, edm.weighted_distance(denoised, denoised_base, sigma, mask)


class WithBaseSingers(Objective):
    """A distillation objective whose batches are sung, for a ``share`` of their clips, by random
    base singers (``base_ids``), each in its register (``medians`` as :class:`AnchoredTeacherLoss`'s,
    default: the teacher's); ``objective.model`` is the :class:`~comosvc.models.ConsistencyDistiller`."""

    def __init__(self, distiller, base_ids: Sequence[int], share: float, medians: torch.Tensor | None = None):
        super().__init__(distiller, "loss")
        self.share = float(share)
        _keep_base_singers(self, base_ids, medians, distiller.teacher)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.share > 0 and self.base_ids.numel():
            own = torch.as_tensor(batch["speaker"]).to(self.base_ids.device)
            singers = self.reassigned(own)
            f0 = in_register(torch.as_tensor(batch["f0"]).to(self.base_ids.device), own, singers, self.medians)
            batch = {**batch, "speaker": singers, "f0": f0}
        return self.model.loss(batch)

    def reassigned(self, speaker: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``speaker`` ``(B,)`` with each clip's id replaced, with probability ``share``, by a random base singer's."""
        speaker = speaker.to(self.base_ids.device)
        chosen = torch.rand(speaker.shape, generator=generator, device=speaker.device) < self.share
        return torch.where(chosen, draw_singers(self.base_ids, speaker.numel(), generator), speaker)


__all__ = ["AnchoredTeacherLoss", "WithBaseSingers", "base_singer_ids", "draw_singers", "in_register", "median_f0_by_id"]
