"""The bench command: systems, settings, and tiny end-to-end runs whose JSON adds up.

The harness it runs on (interleaving, medians, the timer) is tested in test_measure.py.

Timings are never asserted (shared CPUs); only structure and arithmetic between the numbers.
"""

from __future__ import annotations

import json

import pytest

from comosvc.measure.bench import BenchSettings, System, bench_systems, markdown_report
from comosvc.cli import main
from comosvc.vocoders import GRIFFINLIM
from tests.conftest import TINY_CONFIG

# The tiny random content encoders of comosvc.features.content ("tiny" size).
TINY_SIZES = ["--set", "content.whisper_dim=64", "--set", "content.contentvec_layer=2"]


def test_systems_and_settings():
    from comosvc.config import load_config
    from comosvc.models import StudentSampler

    config = load_config(TINY_CONFIG, overrides=["inference.teacher_steps=12"])
    assert [s.name for s in bench_systems(config)] == ["teacher-12", "student-1", "student-2", "student-4"]  # the model's steps
    assert [s.name for s in bench_systems(config, 40, [1, 2])] == ["teacher-40", "student-1", "student-2"]
    assert bench_systems(config, 8, [1, 1])[1:] == [System(StudentSampler(1, config.model.cd_steps))]
    assert bench_systems(config, 8, [1], ["torch", "onnx"])[-1].name == "student-1-onnx"
    with pytest.raises(ValueError, match="1 or more steps"):
        bench_systems(config, 0, [1])
    with pytest.raises(ValueError, match=r"1\.\.40 steps"):
        bench_systems(config, 8, [41])
    with pytest.raises(ValueError, match="exactly one"):
        BenchSettings(model="x", config="y").check()
    with pytest.raises(ValueError, match="exactly one"):
        BenchSettings().check()


def _check_report(report: dict, seconds: float, student_steps: list[int], teacher_steps: int, full: bool) -> None:
    (d,) = report["durations"]
    assert d["seconds"] == seconds and d["frames"] == int(seconds * 24000) // 256 and d["chunks"] >= 1
    names = [e["name"] for e in d["systems"]]
    assert names == [f"teacher-{teacher_steps}"] + [f"student-{k}" for k in student_steps]
    teacher = d["systems"][0]
    assert teacher["nfe"] == teacher_steps + 1  # Euler on steps + 1 sigmas (the reference's 41 for 40)
    stages = ("content", "f0", "acoustic", "vocoder", "total", "prior") if full else ("acoustic", "total", "prior")
    for e in d["systems"]:
        if e["sampler"] == "student":
            assert e["nfe"] == e["steps"]
        med = e["median"]
        assert set(stages) <= set(med)
        assert all(v >= 0 for v in med.values())
        assert len(e["runs"]) == report["settings"]["repeats"]
        assert med["prior"] <= med["acoustic"] + 1e-9 and med["acoustic"] <= med["total"] + 1e-9
        assert e["rtf"]["acoustic"] == pytest.approx(med["acoustic"] / seconds)
        assert e["rtf"]["total"] == pytest.approx(med["total"] / seconds)
        for key in ("acoustic", "total", "prior"):
            assert e["speedup"][key] == pytest.approx(teacher["median"][key] / med[key])
            # the same from process CPU seconds (steadier than wall time on a shared machine)
            assert e["speedup_cpu"][key] == pytest.approx(teacher["median_cpu"][key] / e["median_cpu"][key])
        assert set(stages) <= set(e["median_cpu"])
    assert teacher["speedup"]["acoustic"] == pytest.approx(1.0)
    if full:
        w = d["whisper"]
        assert w["speedup"] == pytest.approx(w["padded"] / w["unpadded"])
        assert w["cpu"]["speedup"] == pytest.approx(w["cpu"]["padded"] / w["cpu"]["unpadded"])
        assert len(w["clips_seconds"]) == d["chunks"]
    else:
        assert d["whisper"] is None


def test_bench_command_full_pipeline_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        ["bench", "--config", str(TINY_CONFIG), *TINY_SIZES, "--seconds", "2", "--repeats", "1",
         "--teacher-steps", "12", "--student-steps", "1", "2", "--warmup", "0", "--threads", "1", "--out", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    _check_report(report, 2.0, [1, 2], 12, full=True)
    assert report["model"]["random_weights"] and report["model"]["vocoder"] == GRIFFINLIM
    table = capsys.readouterr().out
    assert "| teacher-12 | 13 |" in table and "padded / unpadded" in table and "per-stage split" in table
    assert out.with_suffix(".md").read_text().strip() == markdown_report(report).strip()


def test_bench_acoustic_only_from_a_saved_teacher(tmp_path, tiny_config):
    from comosvc.measure.stand_ins import random_stats
    from comosvc.models import ComoSVC

    singers = {"random_a": 0}
    ComoSVC(tiny_config, singers=singers, stats=random_stats(tiny_config, singers)).save_pretrained(tmp_path / "teacher")
    out = tmp_path / "acoustic.json"
    code = main(
        ["bench", "--model", str(tmp_path / "teacher"), "--acoustic-only", "--seconds", "1.5", "--repeats", "2",
         "--teacher-steps", "8", "--student-steps", "1", "--warmup", "0", "--threads", "1", "--out", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    _check_report(report, 1.5, [1], 8, full=False)
    assert any("teacher" in note for note in report["model"]["notes"])  # the student rows are an undistilled copy


def test_bench_refuses_bad_arguments(capsys):
    assert main(["bench", "--config", str(TINY_CONFIG), "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err


def test_bench_measures_each_vocoder_in_turn(tmp_path):
    """Several --vocoder names: the whole conversion (per-stage split) once per vocoder, random weights."""
    out = tmp_path / "vocoders.json"
    code = main(
        ["bench", "--config", str(TINY_CONFIG), *TINY_SIZES, "--seconds", "1", "--repeats", "1", "--teacher-steps", "2",
         "--student-steps", "1", "--warmup", "0", "--no-whisper", "--threads", "1",
         "--vocoder", "griffinlim", "nvidia/bigvgan_base_24khz_100band", "--out", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    vocoders = [d["vocoder"] for d in report["durations"]]
    assert vocoders[0] == "griffinlim" and vocoders[1].startswith("nvidia/bigvgan_base_24khz_100band")
    assert report["model"]["vocoder"] == ", ".join(vocoders)
    for d in report["durations"]:
        assert all(e["median"]["vocoder"] <= e["median"]["total"] for e in d["systems"])
    table = markdown_report(report)
    assert "**1 s of audio with griffinlim**" in table and table.count("per-stage split") == 2
    # the distance to the limit: FLOPs per stage (BigVGAN's convolutions dominate), GFLOP/s, fraction of the peak
    _check_flops(report)
    bigvgan = report["durations"][1]
    assert bigvgan["stage_flops"]["vocoder"] > 20 * report["durations"][0]["stage_flops"]["vocoder"]
    assert table.count("GEMM peak") >= 2


def test_bench_with_parallel_vocoder_workers_counts_the_same_flops(tmp_path):
    """inference.vocoder_workers=2: the FLOP count is the one-piece vocoder's (the useful work)."""
    reports = []
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}.json"
        code = main(
            ["bench", "--config", str(TINY_CONFIG), *TINY_SIZES, "--seconds", "1", "--repeats", "1", "--teacher-steps",
             "2", "--student-steps", "1", "--warmup", "0", "--no-whisper", "--threads", "1", "--set",
             f"inference.vocoder_workers={workers}", "--vocoder", "nvidia/bigvgan_base_24khz_100band", "--out", str(out)]
        )
        assert code == 0
        reports.append(json.loads(out.read_text()))
    assert reports[1]["model"]["vocoder_workers"] == 2
    assert reports[0]["durations"][0]["stage_flops"] == reports[1]["durations"][0]["stage_flops"]
    assert "2 worker threads" in markdown_report(reports[1])


def _check_flops(report: dict) -> None:
    peak = report["gemm_peak"]
    assert peak["gflops"] > 0 and peak["threads"] == 1 and peak["size"] == 2048
    for d in report["durations"]:
        flops = d["stage_flops"]
        assert flops["f0"] == 0 and flops["content"] > 0 and 0 < flops["prior"] < flops["acoustic"]
        assert flops["denoiser_step"] > 0
        for e in d["systems"]:
            f = e["flops"]
            assert f["acoustic"] == flops["prior"] + e["nfe"] * flops["denoiser_step"]
            assert f["total"] == sum(f[k] for k in ("content", "f0", "acoustic", "vocoder"))
            for k, rate in e["gflops_per_s"].items():
                assert rate == pytest.approx(f[k] / e["median"][k] / 1e9)
                assert e["peak_fraction"][k] == pytest.approx(rate / peak["gflops"])
