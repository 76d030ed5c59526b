"""The voices measurement (comosvc/measure/voices.py) at its smallest size: both protocols run end to end
and the report has its structure. A few optimiser steps on a tiny model: the numbers mean nothing here;
see docs/benchmarks.md ("Your own voice", "Timbre index") for the measured tables."""

from __future__ import annotations

import json

import pytest

from comosvc.measure.voices import VoicesSettings, index_table, main, own_voice_table

pytestmark = pytest.mark.usefixtures("one_thread")

SCORES = ("conversions", "nearest_is_target", "margin", "f0_corr")


@pytest.fixture(scope="module")
def quick_reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("voices") / "voices.json"
    assert main(["--quick", "--out", str(out)]) == 0
    return json.loads(out.read_text()), out


def test_own_voice_report(quick_reports):
    report = quick_reports[0]["own-voice"]
    settings = VoicesSettings.quick()
    systems = {f"teacher-{settings.teacher_steps}", f"student-{settings.student_steps}"}
    assert report["corpus"]["new_singer"] == f"synthetic_singer{settings.n_singers - 1}"
    assert [f["start_embedding"] for f in report["finetunes"]] == settings.start_embeddings
    for finetune in report["finetunes"]:
        assert finetune["wall_seconds"] > 0 and finetune["cpu_seconds"] > 0
        assert list(finetune["started_from"]) == [report["corpus"]["new_singer"]]
    groups = {(row["system"], row["start_embedding"], row["conversions_into"]) for row in report["rows"]}
    expected = {(s, "", "base singers, before") for s in systems}
    intos = ["new singer", "base singers, after"] + [f"new singer, index {r:g}" for r in settings.ratios if r > 0]
    expected |= {(s, start, into) for s in systems for start in settings.start_embeddings for into in intos}
    assert groups == expected  # into the new singer also through the index the fine-tune built
    for row in report["rows"]:
        assert set(SCORES) <= set(row) and row["conversions"] > 0
        assert 0.0 <= row["nearest_is_target"] <= 1.0 and -2.0 <= row["margin"] <= 2.0
        # the notes sung above the base singers' range (the top of their F0 p95s), and the jumps on either side
        assert 0.0 <= row["above_base_range"] <= 1.0
        for side in ("above", "below"):
            value = row[f"f0_octave_jumps_{side}"]
            assert value is None or 0.0 <= value <= 1.0
    assert report["corpus"]["base_f0_ceiling_hz"] > 0
    assert own_voice_table(report).count("\n") == len(report["rows"]) + 1


def test_index_report(quick_reports):
    report = quick_reports[0]["index"]
    settings = VoicesSettings.quick()
    assert {(row["system"], row["ratio"]) for row in report["rows"]} == {
        (s, r) for s in (f"teacher-{settings.teacher_steps}", f"student-{settings.student_steps}") for r in settings.ratios}
    index = report["index"]
    assert len(index["vectors_per_singer"]) == settings.n_singers and min(index["vectors_per_singer"].values()) >= 1
    assert index["file_bytes"] > 0
    for row in report["rows"]:
        assert set(SCORES) <= set(row)
        assert row["reconstruction_l1_to_ratio_0"] >= 0.0
        if row["ratio"] == 0.0:  # the same noise and no index: the same mel
            assert row["reconstruction_l1_to_ratio_0"] == 0.0 and row["extra_seconds_per_audio_second"] == 0.0
    assert index_table(report).count("\n") == len(report["rows"]) + 1


def test_ground_truth_floor_in_both_reports(quick_reports):
    for report in quick_reports[0].values():
        floor = report["ground_truth_griffinlim"]
        assert set(SCORES) <= set(floor) and floor["conversions"] == report["corpus"]["test_clips"]


def test_markdown_written_beside_the_json(quick_reports):
    out = quick_reports[1]
    text = out.with_suffix(".md").read_text()
    assert "## own-voice" in text and "## index" in text


def test_a_second_own_voice_run_in_the_same_work_folder_reuses_the_base(tmp_path):
    """--work keeps the trained base: a second run fine-tunes again on it (its own earlier fine-tunes
    replaced), and a run whose base settings differ is refused with one line."""
    work = tmp_path / "work"
    reports = []
    for _ in range(2):
        out = tmp_path / f"run{len(reports)}.json"
        assert main(["--quick", "--protocol", "own-voice", "--work", str(work), "--out", str(out)]) == 0
        reports.append(json.loads(out.read_text())["own-voice"])
    first, second = reports
    assert "base_reused" not in first["training"] and second["training"]["base_reused"] is True
    before = [[row for row in report["rows"] if row["conversions_into"] == "base singers, before"] for report in reports]
    assert before[0] == before[1]  # the same base models converted the same clips
    with pytest.raises(SystemExit, match="holds a base trained with other settings"):
        main(["--quick", "--protocol", "own-voice", "--work", str(work), "--teacher-train-steps", "7"])
    with pytest.raises(SystemExit, match="holds a base trained with other settings"):
        main(["--quick", "--protocol", "own-voice", "--work", str(work), "--new-singer", "0"])
    with pytest.raises(SystemExit, match="--new-singer 3: choose one of the 3 synthetic singers, 0 to 2"):
        main(["--quick", "--protocol", "own-voice", "--work", str(tmp_path / "other"), "--new-singer", "3"])
