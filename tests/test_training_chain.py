"""End to end on the CPU with configs/tiny.yaml, running the scripts the way a user does.

preprocess a synthetic 2-singer corpus -> ``python train/train.py`` (teacher) ->
``python train/distill.py`` (student) -> load the export -> convert a clip; and a
teacher run killed with SIGKILL mid-run, then continued with ``--resume``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from comosvc.training.checkpoint import find_latest_complete, list_complete_checkpoints, read_trainer_state
from comosvc.vocoders import GRIFFINLIM

from conftest import preprocessed_corpus, sigkill_after_checkpoint

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "configs" / "tiny.yaml"

pytestmark = pytest.mark.slow

# One torch thread: the suite shares 2 cores with other processes, and OpenMP threads
# spinning against each other make tiny models ~10x slower.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def processed(tmp_path_factory, tiny_overrides) -> Path:
    """A preprocessed synthetic corpus: 2 singers x 3 clips of 1-2 s (train/preprocess.py's main)."""
    return preprocessed_corpus(tmp_path_factory.mktemp("chain"), tiny_overrides)


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(REPO / "train" / script), *args],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def teacher_run(processed, tiny_overrides, tmp_path_factory) -> dict:
    """Teacher training killed with SIGKILL once a checkpoint at step >= 10 exists, then resumed to 40 steps.

    Returns what the tests check: the checkpoint resumed from, the resumed run's output,
    and the optimiser state a resume loads next to the one saved in the checkpoint.
    """
    out = tmp_path_factory.mktemp("runs") / "teacher"
    args = [
        "--config", str(TINY), "--data", str(processed), "--out", str(out), "--max_steps", "40",
        "train.checkpoint_every=5", "train.keep_checkpoints=3", "train.validate_every=20", *tiny_overrides,
    ]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train" / "train.py"), *args],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    finished_early = sigkill_after_checkpoint(process, out, step=10)
    assert not finished_early, f"training ended before it could be killed:\n{process.stderr.read()[-3000:]}"
    killed_at = find_latest_complete(out)
    run = {
        "out": out,
        "returncode": process.returncode,
        "model_after_kill": (out / "model").exists(),
        "killed_at": killed_at,
        "killed_step": read_trainer_state(killed_at).step,
        "optimizer": resumed_optimizer_state(out, processed, killed_at),
    }
    run["resumed"] = run_script("train.py", *args, "--resume")
    return run


def resumed_optimizer_state(out: Path, processed: Path, checkpoint: Path) -> dict:
    """Set up the teacher run as train/train.py does and resume it in this process.

    Returns the resumed step and the optimiser state tensors, loaded and as saved in the checkpoint.
    """
    import dataclasses

    from comosvc.config import load_config
    from comosvc.models import ComoSVC
    from comosvc.training import Objective, prepare_training
    from comosvc.training.data import load_training_data
    from comosvc.training.setup import reset_accelerate_state

    cfg = load_config(out / "config.yaml")
    tc = dataclasses.replace(cfg.train, log_with="none")
    reset_accelerate_state()
    try:
        data = load_training_data(processed, tc)
        model = ComoSVC(cfg, singers=data.singers, stats=data.stats)
        run = prepare_training(
            Objective(model, "teacher_loss"), tc, out, data.train_loader, data.val_loader, resume=True
        )
        return {
            "step": run.state.step,
            "loaded": run.optimizer.state_dict()["state"],
            "saved": torch.load(checkpoint / "optimizer.bin", weights_only=True)["state"],
        }
    finally:
        reset_accelerate_state()


def test_sigkill_then_resume_continues_from_the_last_complete_checkpoint(teacher_run):
    out, killed_at, step = teacher_run["out"], teacher_run["killed_at"], teacher_run["killed_step"]
    assert teacher_run["returncode"] == -signal.SIGKILL and not teacher_run["model_after_kill"]
    assert 10 <= step < 40

    # a resume restores the checkpoint's optimiser state, tensor for tensor
    optimizer = teacher_run["optimizer"]
    assert optimizer["step"] == step
    assert optimizer["loaded"].keys() == optimizer["saved"].keys() and len(optimizer["saved"]) > 0
    for index, tensors in optimizer["saved"].items():
        for name, value in tensors.items():
            torch.testing.assert_close(optimizer["loaded"][index][name], value, rtol=0, atol=0)

    # the resumed script started there and went on to the target step count
    resumed = teacher_run["resumed"]
    assert f"Resumed from {killed_at} at step {step}" in resumed.stderr
    assert f"trained {40 - step} steps" in resumed.stdout
    assert [p.name for p in list_complete_checkpoints(out)] == ["step-00000030", "step-00000035", "step-00000040"]
    assert read_trainer_state(out / "checkpoints" / "step-00000040").step == 40
    assert not list((out / "checkpoints").glob("*.tmp"))
    # AdamW's per-parameter step counters went on from the checkpoint's (a fresh optimiser would say 40 - step)
    final_optimizer = torch.load(out / "checkpoints" / "step-00000040" / "optimizer.bin", weights_only=True)["state"]
    assert {int(s["step"]) for s in final_optimizer.values()} == {40}


def test_teacher_then_student_then_conversion(teacher_run, processed, tiny_overrides, tmp_path):
    from comosvc.data.songs import synthetic_song
    from comosvc.models import ComoSVC
    from comosvc.pipeline import ConversionPipeline

    teacher_out, student_out = teacher_run["out"], tmp_path / "student"
    model_dir = teacher_out / "model"
    for name in ("config.json", "model.safetensors", "singers.json", "stats.json", "README.md"):
        assert (model_dir / name).is_file(), name
    tags = tensorboard_tags(teacher_out / "logs" / "teacher")
    assert {"train/loss", "train/diffusion", "train/prior", "train/ssim", "train/lr", "train/steps_per_second",
            "val/loss", "val/diffusion_sigma_0.03", "val/diffusion_sigma_10"} <= set(tags["scalars"])
    assert {"samples/0/mel", "samples/1/mel"} <= set(tags["images"])
    assert {"samples/0/audio", "samples/0/target"} <= set(tags["audio"])
    assert (teacher_out / "config.yaml").is_file()
    teacher = ComoSVC.from_pretrained(model_dir)
    assert not teacher.distilled and teacher.training_steps == 40
    assert set(teacher.singers) == {"generic_singer0", "generic_singer1"}
    assert teacher.stats["mel"].keys() == {"generic"}

    result = run_script(
        "distill.py", "--config", str(TINY), "--data", str(processed), "--max_steps", "30",
        "--teacher", str(model_dir), "--out", str(student_out), *tiny_overrides,
    )
    assert "student saved to" in result.stdout
    assert {"train/loss", "val/loss"} <= set(tensorboard_tags(student_out / "logs" / "distill")["scalars"])
    assert [p.name for p in list_complete_checkpoints(student_out)] == ["step-00000020", "step-00000030"]
    student = ComoSVC.from_pretrained(student_out / "model")
    assert student.distilled and student.distillation_steps == 30 and student.training_steps == 40
    assert student.distilled_from == str(model_dir)
    assert student.singers == teacher.singers and student.stats == teacher.stats
    # the export holds one denoiser: the same tensors as the teacher, no more
    assert student.state_dict().keys() == teacher.state_dict().keys()
    assert "student" in (student_out / "model" / "README.md").read_text().lower()
    # frozen in distillation: condition encoder and prior are the teacher's bit for bit; the denoiser moved
    for part in ("condition_encoder", "prior"):
        for name, value in getattr(teacher, part).state_dict().items():
            torch.testing.assert_close(getattr(student, part).state_dict()[name], value, rtol=0, atol=0)
    assert any(
        not torch.equal(value, student.denoiser.state_dict()[name]) for name, value in teacher.denoiser.state_dict().items()
    )

    pipe = ConversionPipeline.from_pretrained(student_out / "model", vocoder=GRIFFINLIM, device="cpu")
    clip = synthetic_song(1.5, singer_index=0, seed=11)
    converted = pipe(clip, singer="generic_singer1", sampler="student", steps=1, seed=0)
    assert converted.audio.shape == clip.shape and converted.sample_rate == 24000
    assert np.isfinite(converted.audio).all() and np.abs(converted.audio).max() > 0
    assert converted.nfe == 1


def tensorboard_tags(folder: Path) -> dict:
    """The scalar, image and audio tags TensorBoard finds in a run's log folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict[str, set] = {"scalars": set(), "images": set(), "audio": set()}
    for events in folder.glob("events.out.tfevents*"):  # one file per run (a resumed run adds one)
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0, "audio": 0})
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    return tags
