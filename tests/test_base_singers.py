"""Keeping the base singers in a fine-tune (comosvc/training/base_singers.py).

The anchor compares the fine-tuned model with the base at the same input (zero before any
step), reaches the prior and the denoiser but no base singer's row, and, trained on one
new singer's batches, keeps what the model answers for base singers nearer the base's than
the same training without it. The distillation batches are sung by base singers in the
share asked for, never by a singer being fine-tuned.
"""

from __future__ import annotations

import copy

import pytest
import torch

from comosvc.config import load_config
from comosvc.models import ComoSVC
from comosvc.training.base_singers import AnchoredTeacherLoss, WithBaseSingers, base_singer_ids
from comosvc.training.finetune import select_parts
from tests.conftest import TINY_CONFIG

pytestmark = pytest.mark.usefixtures("one_thread")

NEW = 3  # the fine-tuned singer's id; 0-2 are the base singers


def new_singer_batch(config, batch: int = 4, frames: int = 24, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random features of one new singer, its mel a fixed random "voice" (so training can overfit to it)."""
    g = torch.Generator().manual_seed(seed)
    c = config
    voice = torch.linspace(-1, 1, c.audio.n_mels)
    return {
        "whisper": torch.randn(batch, frames, c.content.whisper_dim, generator=g),
        "contentvec": torch.randn(batch, frames, c.content.contentvec_dim, generator=g),
        "f0": 200 + 20 * torch.rand(batch, frames, generator=g),
        "energy": torch.rand(batch, frames, generator=g),
        "speaker": torch.full((batch,), NEW, dtype=torch.long),
        "mel": voice.expand(batch, frames, -1) + 0.1 * torch.randn(batch, frames, c.audio.n_mels, generator=g),
        "mask": torch.ones(batch, frames, dtype=torch.bool),
    }


@pytest.fixture()
def base_model():
    config = load_config(TINY_CONFIG, overrides=["model.n_speakers=8"])
    torch.manual_seed(0)
    model = ComoSVC(config, singers={"a": 0, "b": 1, "c": 2})
    torch.nn.init.normal_(model.denoiser.output[-1].weight, std=0.1)  # a fresh denoiser outputs exactly 0
    return model


def test_base_singer_ids_leave_out_the_singers_being_trained():
    assert base_singer_ids({"a": 0, "b": 1, "c": 5}, [1, 7]) == [0, 5]


def test_anchor_is_zero_before_training_and_grows_as_the_model_moves(base_model):
    objective = AnchoredTeacherLoss(base_model, copy.deepcopy(base_model), [0, 1, 2], weight=1.0).train()
    batch = new_singer_batch(base_model.config)
    torch.manual_seed(1)
    prior, denoiser = objective.anchor(batch)
    assert prior.item() < 1e-12 and denoiser.item() < 1e-12  # same weights, same input: the same answer
    with torch.no_grad():
        for p in [*base_model.prior.parameters(), *base_model.denoiser.parameters()]:
            p.add_(0.01 * torch.randn_like(p))
    torch.manual_seed(1)
    prior_after, denoiser_after = objective.anchor(batch)
    assert prior_after.item() > 1e-8 and denoiser_after.item() > 1e-6


def test_anchor_adds_to_the_teacher_loss_only_when_asked(base_model):
    batch = new_singer_batch(base_model.config)
    frozen = copy.deepcopy(base_model)
    with torch.no_grad():  # move the model away from the base, so the anchor is not 0
        for p in base_model.denoiser.parameters():
            p.add_(0.01 * torch.randn_like(p))
    torch.manual_seed(2)
    plain = AnchoredTeacherLoss(base_model, frozen, [0, 1, 2], weight=0.0)(batch)
    torch.manual_seed(2)
    reference = base_model.teacher_loss(batch)
    assert "anchor" not in plain and torch.equal(plain["loss"], reference["loss"])
    torch.manual_seed(2)
    anchored = AnchoredTeacherLoss(base_model, frozen, [0, 1, 2], weight=2.0)(batch)
    assert anchored["anchor"].item() > 0
    torch.testing.assert_close(anchored["loss"], reference["loss"] + 2.0 * anchored["anchor"])


def test_anchor_gradient_reaches_the_networks_but_no_base_row(base_model):
    frozen = copy.deepcopy(base_model)
    parameters = select_parts(base_model, ["speaker", "prior", "denoiser"], rows=[NEW])
    with torch.no_grad():
        for p in base_model.denoiser.parameters():
            p.add_(0.01 * torch.randn_like(p))
    objective = AnchoredTeacherLoss(base_model, frozen, [0, 1, 2], weight=1.0).train()
    prior, denoiser = objective.anchor(new_singer_batch(base_model.config))
    (prior + denoiser).backward()
    table = base_model.condition_encoder.speaker.weight
    assert table.grad is not None and table.grad[[0, 1, 2]].abs().sum() == 0  # base rows never move
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in base_model.denoiser.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in base_model.prior.parameters())
    assert all(p.requires_grad for group in parameters for p in group["params"])
    assert not any(p.requires_grad for p in frozen.parameters())


def answers_for_base_singers(model, batch) -> torch.Tensor:
    """The denoised estimate, for base singers, of the batch's content at a mid noise level (fixed noise)."""
    batch = model.prepare_batch({**batch, "speaker": torch.tensor([0, 1, 2, 0])}, need_mel=True)
    with torch.no_grad():
        mu = model.encode(batch)
        noisy = batch["mel"] + 1.0 * torch.randn(batch["mel"].shape, generator=torch.Generator().manual_seed(9))
        return model.edm.denoised(model.denoiser, noisy, 1.0, mu, batch["mask"])


def test_anchored_training_keeps_the_base_singers_nearer_the_base(base_model):
    """Forty steps on one new singer, with and without the anchor: the anchored model's answers
    for base singers stay nearer the base model's, and both learn the new singer about as well."""
    batch = new_singer_batch(base_model.config)
    reference = answers_for_base_singers(base_model, batch)
    drift, new_loss = {}, {}
    for weight in (0.0, 1.0):
        model = copy.deepcopy(base_model)
        objective = AnchoredTeacherLoss(model, copy.deepcopy(base_model), [0, 1, 2], weight).train()
        optimizer = torch.optim.Adam(select_parts(model, ["speaker", "prior", "denoiser"], rows=[NEW]), lr=3e-3)
        torch.manual_seed(3)
        for _ in range(40):
            optimizer.zero_grad()
            objective(batch)["loss"].backward()
            optimizer.step()
        drift[weight] = (answers_for_base_singers(model, batch) - reference).pow(2).mean().item()
        model.eval()
        torch.manual_seed(4)
        new_loss[weight] = model.teacher_loss(batch)["diffusion"].item()
    assert drift[1.0] < 0.5 * drift[0.0], drift
    assert new_loss[1.0] < 2.0 * new_loss[0.0], new_loss


def test_distillation_batches_are_sung_by_base_singers_in_the_share_asked(base_model):
    from comosvc.models import ConsistencyDistiller

    distiller = ConsistencyDistiller(base_model)
    speaker = torch.full((4000,), NEW, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(WithBaseSingers(distiller, [0, 2], 0.0).reassigned(speaker, generator), speaker)
    mixed = WithBaseSingers(distiller, [0, 2], 0.5).reassigned(speaker, generator)
    assert set(mixed.unique().tolist()) == {0, 2, NEW}
    assert abs((mixed != NEW).float().mean().item() - 0.5) < 0.05
    every = WithBaseSingers(distiller, [0, 2], 1.0).reassigned(speaker, generator)
    assert set(every.unique().tolist()) == {0, 2}
    batch = new_singer_batch(base_model.config)
    torch.manual_seed(5)
    loss = WithBaseSingers(distiller, [0, 1, 2], 0.5)(batch)["loss"]
    assert torch.isfinite(loss) and loss.requires_grad


def test_a_clip_given_to_a_base_singer_moves_into_its_register():
    from comosvc.training.base_singers import in_register, median_f0_by_id

    medians = median_f0_by_id({"low": 0, "high": 1, "unknown": 2}, {"f0": {"low": {"median": 110.0}, "high": {"median": 440.0}}}, 4)
    assert medians.tolist() == [110.0, 440.0, 0.0, 0.0]
    f0 = torch.tensor([[220.0, 0.0, 230.0], [220.0, 0.0, 230.0], [220.0, 0.0, 230.0]])
    moved = in_register(f0, own=torch.tensor([1, 0, 2]), new=torch.tensor([0, 0, 1]), medians=medians)
    # high -> low: two octaves down; low -> low: as it was; unknown -> high: as it was (no median to move by)
    torch.testing.assert_close(moved, torch.tensor([[55.0, 0.0, 57.5], [220.0, 0.0, 230.0], [220.0, 0.0, 230.0]]))


def test_the_anchor_sings_in_the_base_singers_register(base_model):
    """The anchor's batch reaches the networks with the drawn base singer's register: with a base
    singer two octaves below the new one, the F0 the condition encoder sees is a quarter."""
    from comosvc.training.base_singers import median_f0_by_id

    medians = median_f0_by_id({"a": 0, "b": 1, "c": 2, "new": NEW},
                              {"f0": {"a": {"median": 55.0}, "b": {"median": 55.0}, "c": {"median": 55.0}, "new": {"median": 220.0}}},
                              base_model.config.model.n_speakers)
    seen = []
    hook = base_model.condition_encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]["f0"].clone()))
    batch = new_singer_batch(base_model.config)
    AnchoredTeacherLoss(base_model, copy.deepcopy(base_model), [0, 1, 2], weight=1.0, medians=medians).anchor(batch)
    hook.remove()
    torch.testing.assert_close(seen[-1], batch["f0"] / 4)
