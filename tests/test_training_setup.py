"""What the training scripts set up before the loop: config and flags, precision, teacher/data checks."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from comosvc.training.args import build_parser, load_run_config, resolve_mixed_precision, tracker_config
from comosvc.training.data import TrainingData, check_teacher_matches

from tests.conftest import TINY_CONFIG


def test_shorthand_flags_override_the_scripts_own_section(tiny_overrides):
    parser = build_parser("distill", teacher_arg=True)
    args = parser.parse_args(
        ["--config", str(TINY_CONFIG), "--teacher", "t", "--data", "d", "--out", "o", "--max_steps", "7",
         "--lr", "1e-3", "--batch_size", "2", "distill.log_every=3", *tiny_overrides]
    )
    cfg = load_run_config(args, "distill")
    assert (cfg.distill.max_steps, cfg.distill.lr, cfg.distill.batch_size, cfg.distill.log_every) == (7, 1e-3, 2, 3)
    assert cfg.train.max_steps == 40 and cfg.train.lr == 4e-4  # the teacher's section is untouched
    flat = tracker_config(cfg)
    assert flat["distill.lr"] == 1e-3 and flat["train.adam_betas"] == "[0.9, 0.999]"


def test_mixed_precision_flag_then_launcher_then_config(monkeypatch, tiny_config):
    tc = dataclasses.replace(tiny_config.train, mixed_precision="no")
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert resolve_mixed_precision(None, tc) == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # accelerate launch --mixed_precision bf16
    assert resolve_mixed_precision(None, tc) == "bf16"
    assert resolve_mixed_precision("fp16", tc) == "fp16"


def fake_data(singers: dict[str, int], stats: dict) -> TrainingData:
    return TrainingData(None, None, singers, stats, {}, [])


def test_distilling_on_data_with_other_singer_ids_is_refused(tiny_config, caplog):
    from comosvc.models import ComoSVC

    stats = {"mel": {"generic": {"min": [-11.0] * 100, "max": [2.0] * 100}}}
    teacher = ComoSVC(tiny_config, singers={"generic_a": 0, "generic_b": 1}, stats=stats)
    check_teacher_matches(teacher, tiny_config, fake_data({"generic_a": 0, "generic_b": 1}, stats))

    with pytest.raises(ValueError, match=r"generic_b \(id 0 here, 1 in the teacher\)"):
        check_teacher_matches(teacher, tiny_config, fake_data({"generic_b": 0}, stats))
    with pytest.raises(ValueError, match="audio/mel settings"):
        other = dataclasses.replace(tiny_config, audio=dataclasses.replace(tiny_config.audio, n_mels=80))
        check_teacher_matches(teacher, other, fake_data({"generic_a": 0}, stats))

    bigger = dataclasses.replace(tiny_config, model=dataclasses.replace(tiny_config.model, ema_decay=0.99))
    with caplog.at_level(logging.WARNING, logger="comosvc.training.data"):
        check_teacher_matches(teacher, bigger, fake_data({"generic_a": 0}, stats))
    assert "model.ema_decay=0.99" in caplog.text and "come from the teacher" in caplog.text
