"""The training loop and its checkpoints, in process, on a toy regression model (fast).

What ComoSVC-specific code runs through is covered end to end by
tests/test_training_chain.py; here the loop's own guarantees are checked:
keep-last-K, ``.tmp`` checkpoints ignored, non-finite skip and stop, resume.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from torch import nn

from comosvc.config import TrainConfig
from comosvc.training import (
    NonFiniteLossError,
    TrainerState,
    find_latest_complete,
    list_complete_checkpoints,
    prepare_training,
)
from comosvc.training.checkpoint import STATE_FILE, read_trainer_state
from comosvc.training.setup import reset_accelerate_state


class ToyObjective(nn.Module):
    """y = w x regression; ``nan_calls`` are forward-call indices (training only) whose loss is NaN."""

    def __init__(self, nan_calls=()):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.nan_calls = set(nan_calls)
        self.calls = 0

    def forward(self, batch):
        loss = ((self.linear(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        if self.training:
            if self.calls in self.nan_calls:
                loss = loss * float("nan")
            self.calls += 1
        return {"loss": loss, "mse": loss.detach()}


def toy_loader(n=32, batch_size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    rows = [{"x": x[i], "y": y[i]} for i in range(n)]
    collate = lambda items: {k: torch.stack([it[k] for it in items]) for k in items[0]}  # noqa: E731
    return torch.utils.data.DataLoader(rows, batch_size=batch_size, shuffle=True, collate_fn=collate)


def toy_config(**changes) -> TrainConfig:
    base = dict(
        lr=1e-2, max_steps=12, checkpoint_every=3, keep_checkpoints=2, validate_every=4, log_every=2,
        max_nonfinite_steps=3, log_with="none", plateau_patience=1, min_lr=1e-4,
    )
    base.update(changes)
    return dataclasses.replace(TrainConfig(), **base)


pytestmark = pytest.mark.usefixtures("fresh_accelerate")  # every test starts and ends without accelerate state


def setup_run(tc, out, resume=False, nan_calls=()):
    torch.manual_seed(0)
    return prepare_training(ToyObjective(nan_calls), tc, out, toy_loader(), toy_loader(n=8, seed=1), resume=resume)


def train(tc, out, resume=False, nan_calls=(), **hooks):
    run = setup_run(tc, out, resume, nan_calls)
    summary = run.fit(**hooks)
    return summary, run.objective, run.optimizer, run.plateau


def test_keeps_last_k_and_ignores_incomplete(tmp_path):
    tc = toy_config()
    summary, *_ = train(tc, tmp_path)
    assert summary.state.step == 12 and summary.steps_run == 12
    names = [p.name for p in list_complete_checkpoints(tmp_path)]
    assert names == ["step-00000009", "step-00000012"]  # 3 and 6 were pruned (keep 2)
    assert read_trainer_state(tmp_path / "checkpoints" / "step-00000012").step == 12
    # A crash while writing step 15 leaves a .tmp folder; a folder without the state file is incomplete too.
    (tmp_path / "checkpoints" / "step-00000015.tmp").mkdir()
    (tmp_path / "checkpoints" / "step-00000018").mkdir()
    assert find_latest_complete(tmp_path).name == "step-00000012"


def test_resume_restores_step_optimizer_and_scheduler(tmp_path):
    tc = toy_config(max_steps=6, validate_every=2, checkpoint_every=6)
    _, model_a, optimizer_a, plateau_a = train(tc, tmp_path)
    saved_optimizer = optimizer_a.state_dict()
    saved_plateau = plateau_a.state_dict()
    saved_weights = {k: v.clone() for k, v in model_a.state_dict().items()}
    reset_accelerate_state()

    # Half-written later checkpoint, as a SIGKILL during save_state would leave it.
    (tmp_path / "checkpoints" / "step-00000008.tmp").mkdir()
    tc = dataclasses.replace(tc, max_steps=10)
    with pytest.raises(FileExistsError, match="--resume"):
        setup_run(tc, tmp_path, resume=False)
    run = setup_run(tc, tmp_path, resume=True)
    model, optimizer, plateau, state = run.objective, run.optimizer, run.plateau, run.state
    assert state.step == 6
    for key, value in saved_weights.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    loaded = optimizer.state_dict()
    assert loaded["state"].keys() == saved_optimizer["state"].keys()
    for index, tensors in saved_optimizer["state"].items():
        for name, value in tensors.items():
            torch.testing.assert_close(loaded["state"][index][name], value, rtol=0, atol=0)
    assert plateau.state_dict() == saved_plateau
    assert type(plateau) is torch.optim.lr_scheduler.ReduceLROnPlateau  # not prepared: that would step it per process

    summary = run.fit()
    assert summary.steps_run == 4 and summary.state.step == 10
    assert find_latest_complete(tmp_path).name == "step-00000010"
    assert not (tmp_path / "checkpoints" / "step-00000008.tmp").exists()  # superseded partial write pruned


def test_nonfinite_loss_skips_the_update(tmp_path, caplog):
    tc = toy_config(max_steps=5, checkpoint_every=100, validate_every=100)
    before = {}

    def remember(step):
        before[step] = torch.cat([p.detach().flatten().clone() for p in model_params])

    run = setup_run(tc, tmp_path, nan_calls={2})
    model = run.objective
    model_params = list(model.parameters())
    remember(0)
    with caplog.at_level(logging.WARNING, logger="comosvc.training.loop"):
        summary = run.fit(after_update=remember)
    assert summary.state.step == 5 and summary.state.nonfinite_total == 1
    assert summary.state.nonfinite_in_a_row == 0
    assert model.calls == 6  # one forward more than updates: the NaN one was skipped
    assert all(torch.isfinite(p).all() for p in model_params)
    assert "non-finite loss" in caplog.text and "skipped the update" in caplog.text


def test_nonfinite_losses_in_a_row_stop_with_a_checkpoint(tmp_path):
    tc = toy_config(max_steps=50, checkpoint_every=100, validate_every=100, max_nonfinite_steps=3)
    with pytest.raises(NonFiniteLossError, match=r"3 non-finite losses in a row at step 4.*--resume"):
        train(tc, tmp_path, nan_calls=set(range(4, 100)))
    latest = find_latest_complete(tmp_path)
    assert latest is not None and latest.name == "step-00000004"
    state = TrainerState.from_json((latest / STATE_FILE).read_text())
    assert state.nonfinite_in_a_row == 3 and state.step == 4


def test_evaluation_does_not_update_the_ema(tmp_path):
    """after_update (the distiller's EMA) runs once per optimiser step, never during validation."""
    tc = toy_config(max_steps=8, validate_every=2, checkpoint_every=100)
    updates = []
    summary, *_ = train(tc, tmp_path, after_update=updates.append)
    assert updates == list(range(1, 9))
    assert summary.state.best_val_loss is not None


def test_gradient_accumulation_steps_once_per_window(tmp_path):
    """Each update uses exactly gradient_accumulation_steps micro-batches, across epoch ends too."""
    tc = toy_config(max_steps=5, gradient_accumulation_steps=3, checkpoint_every=100, validate_every=100)
    updates = []
    # 32 examples / batch 4 = 8 batches per epoch: windows of 3 straddle the epoch end
    summary, model, optimizer, _ = train(tc, tmp_path, after_update=updates.append)
    assert model.calls == 15 and updates == [1, 2, 3, 4, 5]
    assert {int(s["step"]) for s in optimizer.state_dict()["state"].values()} == {5}
