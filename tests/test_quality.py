"""The distillation quality check at its smallest size: structure, and that distillation did something.

A few hundred optimiser steps on a tiny model and a synthetic corpus (about a minute
of CPU). The teacher is far from converged at this size, so only what holds for a
barely trained pair is asserted: from the same noise, the one-step student lands
closer to the teacher's 40-step output than the teacher's own single step does
(what consistency distillation is for). Measured with fixed seeds; see docs/benchmarks.md
("Distillation quality") for the full-size numbers.
"""

from __future__ import annotations

import json
import math

import pytest

from comosvc.models.comosvc import VALIDATION_SIGMAS
import numpy as np

from comosvc.measure.quality import (
    GROUND_TRUTH_GL,
    PRIOR_MU,
    QualitySettings,
    main,
    markdown_table,
    parse_variants,
    run_quality,
    variance_ratio,
)


@pytest.fixture(scope="module")
def quick_report():
    return run_quality(QualitySettings.quick())


def test_quality_report_structure(quick_report):
    report = quick_report
    names = [row["name"] for row in report["systems"]]
    assert names == ["teacher-1", "teacher-4", "teacher-40", PRIOR_MU, "student-1", "student-2", "student-4"]
    assert GROUND_TRUTH_GL not in names  # MCD (and its Griffin-Lim floor) is off in the quick size
    nfe = {row["name"]: row["nfe"] for row in report["systems"]}
    assert nfe == {"teacher-1": 2, "teacher-4": 5, "teacher-40": 41, PRIOR_MU: 0, "student-1": 1, "student-2": 2, "student-4": 4}
    for row in report["systems"]:
        assert math.isfinite(row["mel_l1"]) and row["mel_l1"] > 0
        assert math.isfinite(row["mel_l1_to_teacher"])
        assert math.isfinite(row["variance_ratio"]) and row["variance_ratio"] > 0
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


def test_variance_ratio_is_one_for_the_data_and_grows_with_noise():
    rng = np.random.default_rng(0)
    truth = [rng.standard_normal((50, 4)) * [1, 2, 3, 4], rng.standard_normal((30, 4)) * [1, 2, 3, 4]]
    assert variance_ratio(truth, truth) == 1.0
    noisy = [t + rng.standard_normal(t.shape) * 2 for t in truth]
    assert variance_ratio(noisy, truth) > 1.25
    assert variance_ratio([t * 0.5 for t in truth], truth) == 0.25


def test_variants_are_parsed_with_the_default_first():
    assert parse_variants([["no-relu", "model.denoiser_linear_paths=false"], ["model.p_mean=-0.6"]]) == {
        "default": [], "no-relu": ["model.denoiser_linear_paths=false"], "model.p_mean=-0.6": ["model.p_mean=-0.6"]
    }
    with pytest.raises(SystemExit):
        parse_variants([["lonely-name"]])


def test_the_cli_compares_variants_in_one_table(tmp_path, capsys):
    out = tmp_path / "q.json"
    main(["--quick", "--teacher-train-steps", "4", "--distill-steps", "3", "--student-steps", "1",
          "--variant", "no-relu", "model.denoiser_linear_paths=false", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "## Variants" in printed and "| no-relu |" in printed and "| default |" in printed
    report = json.loads(out.read_text())
    assert set(report["variants"]) == {"default", "no-relu"}
    assert report["variants"]["no-relu"]["settings"]["overrides"] == ["model.denoiser_linear_paths=false"]


def test_gpu_preset_runs_the_default_size_model_for_a_few_steps_on_the_cpu():
    settings = QualitySettings.gpu(
        n_singers=2, train_clips_per_singer=2, test_clips_per_singer=1, clip_seconds=(1.0, 1.2),
        teacher_train_steps=2, distill_steps=2, batch_size=2, crop_frames=64,
        teacher_steps=2, teacher_step_list=[1, 2], student_steps=[1], mcd=False, threads=1,
    )
    report = run_quality(settings)
    assert report["settings"]["config"].endswith("comosvc.yaml")
    assert report["training"]["parameters"]["denoiser"] > 20e6  # the default 384-channel, 20-layer denoiser
    assert [row["name"] for row in report["systems"]] == ["teacher-1", "teacher-2", PRIOR_MU, "student-1"]
    assert "| teacher-2 | 3 |" in markdown_table(report)


def test_quality_report_tells_the_students_story(quick_report):
    training = quick_report["training"]
    # student-1 during distillation: before it (the teacher's network) and at evenly spaced steps
    curve = training["distillation_curve"]
    assert [p["step"] for p in curve] == [0, 60, 120, 180, 240]
    assert all(math.isfinite(p["mel_l1"]) and p["mel_l1"] > 0 for p in curve)
    assert training["distill_seconds_per_step"] > 0
    rows = training["student_by_sigma"]
    assert rows and rows[-1]["sigma"] == 80.0
    assert all(math.isfinite(v) for row in rows for v in row.values())
    from comosvc.measure.quality import curve_table, distillation_table, student_table

    assert "| student-1 mel L1 |" in curve_table(quick_report)
    assert student_table(quick_report).count("\n") == len(rows) + 1
    assert "| default | (defaults) |" in distillation_table({"default": quick_report})


def test_variants_that_change_only_distillation_share_the_teacher():
    from comosvc.measure.quality import teacher_key

    base = QualitySettings.quick()
    same = [["distill.loss=pseudo_huber"], ["model.cd_steps=10", "model.ema_decay=0"], ["distill.teacher_regression=1"]]
    for overrides in same:
        assert teacher_key(QualitySettings.quick(overrides=overrides)) == teacher_key(base)
    assert teacher_key(QualitySettings.quick(overrides=["model.denoiser_linear_paths=false"])) != teacher_key(base)
    assert teacher_key(QualitySettings.quick(teacher_train_steps=10)) != teacher_key(base)
