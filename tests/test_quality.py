"""The distillation quality check at its smallest size: structure, and that distillation did something.

A few hundred optimiser steps on a tiny model and a synthetic corpus (about a minute
of CPU). The teacher is far from converged at this size, so only what holds for a
barely trained pair is asserted: from the same noise, the one-step student lands
closer to the teacher's 40-step output than the teacher's own single step does
(what consistency distillation is for). Measured with fixed seeds; see the README
"Distillation quality" section for the full-size numbers.
"""

from __future__ import annotations

import json
import math

import pytest

from comosvc.models.comosvc import VALIDATION_SIGMAS
from comosvc.quality import GROUND_TRUTH_GL, PRIOR_MU, QualitySettings, main, markdown_table, run_quality


@pytest.fixture(scope="module")
def quick_report():
    return run_quality(QualitySettings.quick())


def test_quality_report_structure(quick_report):
    report = quick_report
    names = [row["name"] for row in report["systems"]]
    assert names == ["teacher-40", PRIOR_MU, "teacher-1", "student-1", "student-2", "student-4"]
    assert GROUND_TRUTH_GL not in names  # MCD (and its Griffin-Lim floor) is off in the quick size
    nfe = {row["name"]: row["nfe"] for row in report["systems"]}
    assert nfe == {"teacher-40": 41, PRIOR_MU: 0, "teacher-1": 2, "student-1": 1, "student-2": 2, "student-4": 4}
    for row in report["systems"]:
        assert math.isfinite(row["mel_l1"]) and row["mel_l1"] > 0
        assert math.isfinite(row["mel_l1_to_teacher"])
    assert {row["name"]: row["mel_l1_to_teacher"] for row in report["systems"]}["teacher-40"] == 0.0
    corpus, training = report["corpus"], report["training"]
    assert corpus["singers"] == 3 and corpus["train_clips"] == 12 and corpus["test_clips"] == 3
    assert training["teacher_train_steps"] == report["settings"]["teacher_train_steps"]
    assert training["distill_steps"] == report["settings"]["distill_steps"]
    by_sigma = training["teacher_loss_by_sigma"]
    assert list(by_sigma) == [f"{s:g}" for s in VALIDATION_SIGMAS]
    assert all(math.isfinite(v) and v > 0 for v in by_sigma.values())
    # A barely trained denoiser has begun to learn high-noise denoising, not low-noise
    # (measured 0.56 at sigma 10 vs 1.03 at 0.03 after 150 steps).
    assert by_sigma["10"] < 0.75 * by_sigma["0.03"]
    json.dumps(report)  # JSON-ready
    table = markdown_table(report)
    assert table.count("\n") == len(names) + 1 and "| student-1 | 1 |" in table


def test_one_step_student_is_closer_to_the_teacher_than_one_teacher_step(quick_report):
    rows = {row["name"]: row for row in quick_report["systems"]}
    assert rows["student-1"]["mel_l1_to_teacher"] < rows["teacher-1"]["mel_l1_to_teacher"]


def test_quality_cli_refuses_unknown_options(capsys):
    with pytest.raises(SystemExit):
        main(["--no-such-option"])
