"""Consistency distillation: the loss switches (distill.loss, weighting, sigma_sampling,
teacher_solver, teacher_regression), their formulas by hand, the per-sigma diagnostic of
comosvc.measure.distillation, and ``train/distill.py --resume`` after a SIGKILL ending where an
uninterrupted run ends."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from comosvc.config import ConfigError, load_config
from comosvc.models.comosvc import ComoSVC
from comosvc.models.consistency import (
    LOGNORMAL_MEAN,
    LOGNORMAL_STD,
    ConsistencyDistiller,
    consistency_distance,
)
from comosvc.models.edm import karras_sigmas

from conftest import preprocessed_corpus, sigkill_after_checkpoint

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "configs" / "tiny.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


def tiny_batch(config, batch: int = 2, frames: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = config
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[1, frames - 3:] = False  # a shorter second clip
    return {
        "whisper": torch.randn(batch, frames, c.content.whisper_dim, generator=g),
        "contentvec": torch.randn(batch, frames, c.content.contentvec_dim, generator=g),
        "f0": 200 + 20 * torch.rand(batch, frames, generator=g),
        "energy": torch.rand(batch, frames, generator=g),
        "speaker": torch.zeros(batch, dtype=torch.long),
        "mel": torch.rand(batch, frames, c.audio.n_mels, generator=g) * 2 - 1,
        "mask": mask,
    }


def distiller_with(*overrides: str) -> tuple[ConsistencyDistiller, dict]:
    config = load_config(TINY, overrides=["model.cd_steps=6", *overrides])
    torch.manual_seed(0)
    return ConsistencyDistiller(ComoSVC(config), config.distill), tiny_batch(config)


SWITCHES = [
    (),
    ("distill.teacher_regression=0", "distill.teacher_solver=heun"),  # the reference
    ("distill.loss=pseudo_huber",),
    ("distill.weighting=inverse_gap",),
    ("distill.sigma_sampling=lognormal",),
    ("distill.teacher_solver=euler",),
    ("distill.teacher_regression=0.5", "distill.teacher_regression_steps=2"),
    ("model.ema_decay=0",),
]


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: " ".join(o) or "reference")
def test_every_switch_gives_a_finite_loss_and_gradient(overrides):
    distiller, batch = distiller_with(*overrides)
    distiller.train()
    terms = distiller.loss(batch, generator=torch.Generator().manual_seed(1))
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    grads = [p.grad for p in distiller.trainable_parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in distiller.teacher.parameters())
    if "distill.teacher_regression=0.5" in overrides:
        torch.testing.assert_close(terms["loss"], terms["consistency"] + 0.5 * terms["regression"])


def test_pseudo_huber_and_l2_by_hand():
    prediction = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.0], [9.0, 9.0]]])
    target = torch.zeros_like(prediction)
    mask = torch.tensor([[True, True], [True, False]])  # clip 2: one valid frame, 2 elements
    weights = torch.tensor([2.0, 3.0])
    # l2: weighted sum of squares over the valid elements
    assert consistency_distance(prediction, target, mask, "l2", weights).item() == pytest.approx((2 * 30 + 3 * 0.25) / 6)
    # pseudo-Huber per clip: (sqrt(|d|^2 + c^2) - c) / sqrt(dim), c = 0.00054 sqrt(dim); mean over clips
    c1, c2 = 0.00054 * 2.0, 0.00054 * math.sqrt(2)
    one = (math.sqrt(30 + c1**2) - c1) / 2.0
    two = (math.sqrt(0.25 + c2**2) - c2) / math.sqrt(2)
    assert consistency_distance(prediction, target, mask, "pseudo_huber", weights).item() == pytest.approx((2 * one + 3 * two) / 2)
    # the reference: unit weights give the masked mean square
    assert consistency_distance(prediction, target, mask, "l2").item() == pytest.approx(30.25 / 6)


def test_weights_and_interval_probabilities_by_hand():
    distiller, _ = distiller_with("distill.weighting=inverse_gap", "distill.sigma_sampling=lognormal")
    grid = karras_sigmas(6, 0.002, 80.0, 7.0).flip(0)
    torch.testing.assert_close(distiller.interval_weights(), (1 / (grid[1:] - grid[:-1])).float())
    cdf = [0.5 * (1 + math.erf((math.log(s) - LOGNORMAL_MEAN) / (LOGNORMAL_STD * math.sqrt(2)))) for s in grid.tolist()]
    mass = torch.tensor([b - a for a, b in zip(cdf, cdf[1:])])
    torch.testing.assert_close(distiller.interval_probabilities(), (mass / mass.sum()).float())
    reference, _ = distiller_with()
    assert reference.interval_weights().tolist() == [1.0] * 5
    assert reference.interval_probabilities().tolist() == pytest.approx([0.2] * 5)


def test_euler_teacher_step_and_regression_solution_by_hand():
    distiller, _ = distiller_with("distill.teacher_solver=euler")
    x = torch.randn(2, 3, 4)
    denoised = lambda x_, s: 0.5 * x_  # noqa: E731  (slope (x - D) / s = 0.5 x / s)
    t_next, t_cur = torch.tensor([2.0, 4.0]), torch.tensor([1.0, 1.0])
    expected = x + (t_cur - t_next).reshape(-1, 1, 1) * 0.5 * x / t_next.reshape(-1, 1, 1)
    torch.testing.assert_close(distiller.teacher_step(denoised, x, t_next, t_cur), expected)
    # the 1-step teacher: Euler to s_min, then D (to 0); with D(x, sigma) given, one evaluation fewer
    s_min = distiller.edm.sigma_min
    step = x + (s_min - t_next).reshape(-1, 1, 1) * 0.5 * x / t_next.reshape(-1, 1, 1)
    torch.testing.assert_close(distiller.teacher_solution(denoised, x, t_next, 1), 0.5 * step)
    calls = []
    counting = lambda x_, s: calls.append(s) or denoised(x_, s)  # noqa: E731
    distiller.teacher_solution(counting, x, t_next, 3, denoised=denoised(x, t_next))
    assert len(calls) == 3


def test_a_distill_setting_out_of_range_is_one_line():
    with pytest.raises(ConfigError):
        load_config(TINY, overrides=["distill.loss=huber"])
    config = load_config(TINY)
    config.distill.teacher_regression = -1.0
    with pytest.raises(ValueError, match="distill.teacher_regression must be >= 0"):
        ConsistencyDistiller(ComoSVC(config), config.distill)


def test_student_error_by_sigma_rows():
    from comosvc.measure.distillation import sampler_sigmas, student_error_by_sigma

    distiller, batch = distiller_with()
    teacher = distiller.teacher
    student = distiller.export()
    rows = student_error_by_sigma(teacher, student, batch, seed=0)
    grid = karras_sigmas(6, 0.002, 80.0, 7.0).flip(0).tolist()
    assert [r["n"] for r in rows] == sorted({r["n"] for r in rows}) and rows[-1]["n"] == 5
    assert all(r["sigma"] == pytest.approx(grid[r["n"]], abs=1e-4) for r in rows)
    for row in rows:
        assert all(math.isfinite(v) and v >= 0 for v in row.values())
        # the student is a copy of the teacher's network: one step equals the teacher's only at the lowest sigma
        if row["n"] == 1:
            assert row["student_to_teacher"] < row["student_to_truth"] + 1e-6
    assert sampler_sigmas(teacher.edm, 6, 1) == [80.0] == sampler_sigmas(teacher.edm, 6, 1, stock=True)
    assert len(sampler_sigmas(teacher.edm, 6, 2)) == 2


# --------------------------------------------------------------------------- resume after SIGKILL


@pytest.fixture(scope="module")
def processed(tmp_path_factory, tiny_overrides) -> Path:
    """A preprocessed synthetic corpus of 2 singers x 3 clips (one batch of 4 a step: every step ends an epoch)."""
    return preprocessed_corpus(tmp_path_factory.mktemp("distill"), tiny_overrides)


@pytest.fixture(scope="module")
def teacher_dir(processed, tiny_overrides, tmp_path_factory) -> Path:
    """An (untrained) teacher of the corpus's singers, saved as train/train.py saves one."""
    from comosvc.training.data import load_training_data

    config = load_config(TINY, overrides=list(tiny_overrides))
    data = load_training_data(processed, config.distill)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("teacher") / "model"
    ComoSVC(config, singers=data.singers, stats=data.stats).save_pretrained(folder)
    return folder


def distill_args(processed: Path, teacher: Path, out: Path, tiny_overrides) -> list[str]:
    return [
        sys.executable, str(REPO / "train" / "distill.py"), "--config", str(TINY), "--data", str(processed),
        "--teacher", str(teacher), "--out", str(out), "--max_steps", "40", "distill.checkpoint_every=5",
        "distill.keep_checkpoints=2", "distill.validate_every=100", *tiny_overrides,
    ]


@pytest.mark.slow
def test_distill_resume_after_sigkill_ends_where_an_uninterrupted_run_ends(processed, teacher_dir, tiny_overrides, tmp_path):
    from safetensors.torch import load_file

    from comosvc.training.checkpoint import find_latest_complete, read_trainer_state

    whole = tmp_path / "whole"
    done = subprocess.run(distill_args(processed, teacher_dir, whole, tiny_overrides), cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    process = subprocess.Popen(distill_args(processed, teacher_dir, killed, tiny_overrides), cwd=REPO, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished_early = sigkill_after_checkpoint(process, killed, step=5)
    assert not finished_early, "distillation ended before it could be killed"
    assert process.returncode == -signal.SIGKILL and not (killed / "model").exists()
    step = read_trainer_state(find_latest_complete(killed)).step
    assert 5 <= step < 40
    resumed = subprocess.run(distill_args(processed, teacher_dir, killed, tiny_overrides) + ["--resume"], cwd=REPO,
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}" in resumed.stderr and f"distilled {40 - step} steps" in resumed.stdout

    a, b = whole / "checkpoints" / "step-00000040", killed / "checkpoints" / "step-00000040"
    assert read_trainer_state(a).step == read_trainer_state(b).step == 40
    lr = lambda folder: [g["lr"] for g in torch.load(folder / "optimizer.bin", weights_only=True)["param_groups"]]  # noqa: E731
    assert lr(a) == lr(b)
    weights_a, weights_b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    targets = [name for name in weights_a if ".target." in name or name.startswith("target.")]
    assert targets
    for name in weights_a:
        torch.testing.assert_close(weights_b[name], weights_a[name], rtol=0, atol=0, msg=name)
    # the exports (the EMA target as the denoiser) are the same
    for name, value in load_file(whole / "model" / "model.safetensors").items():
        torch.testing.assert_close(load_file(killed / "model" / "model.safetensors")[name], value, rtol=0, atol=0)
