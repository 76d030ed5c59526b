"""``evaluate``: folders of synthetic clips in, JSON + markdown out; clear errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from comosvc.audio import save_audio
from comosvc.evaluate import METRICS, EvaluationError, evaluate_dirs, markdown_table, match_files, write_report
from comosvc.data.songs import singer_voice, sung_phrase

REPO = Path(__file__).resolve().parent.parent


def _phrase(notes, voice_index=0, seed=0):
    wav, _ = sung_phrase(notes, note_seconds=0.35, gap_seconds=0.08, voice=singer_voice(voice_index), seed=seed)
    return wav


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """reference/{same,shifted,lonely_ref,broken}, converted/{same,shifted,lonely_conv,broken}, target/{t1,t2}."""
    root = tmp_path_factory.mktemp("evaluate")
    ref, conv, target = root / "reference", root / "converted", root / "target"
    notes = [220.0, 294.0, 262.0]
    clip = _phrase(notes, seed=1)
    save_audio(ref / "same.wav", clip)
    save_audio(conv / "same.wav", clip)
    save_audio(ref / "shifted.wav", _phrase(notes, seed=2))
    save_audio(conv / "shifted.flac", _phrase([n * 2 ** (3 / 12) for n in notes], voice_index=1, seed=2))
    save_audio(ref / "lonely_ref.wav", clip)
    save_audio(conv / "lonely_conv.wav", clip)
    save_audio(ref / "broken.wav", clip)
    (conv / "broken.wav").write_bytes(b"this is not audio")
    (conv / "notes.txt").write_text("not an audio file: ignored")
    save_audio(target / "t1.wav", _phrase([247.0, 330.0], voice_index=1, seed=5))
    save_audio(target / "t2.wav", _phrase([196.0, 262.0], voice_index=1, seed=6))
    return {"root": root, "reference": ref, "converted": conv, "target": target}


@pytest.fixture(scope="module")
def report(folders) -> dict:
    return evaluate_dirs(folders["reference"], folders["converted"], folders["target"])


def test_matching_by_stem(folders):
    pairs, reference_only, converted_only = match_files(folders["reference"], folders["converted"])
    assert [name for name, _, _ in pairs] == ["broken", "same", "shifted"]
    assert pairs[2][2].name == "shifted.flac"
    assert reference_only == ["lonely_ref"] and converted_only == ["lonely_conv"]


def test_report_values(report):
    assert set(report["files"]) == {"broken", "same", "shifted"}
    same = report["files"]["same"]
    assert set(same) == set(METRICS)
    assert same["fpc"] == pytest.approx(1.0)
    assert same["f0_rmse_cents"] == pytest.approx(0.0, abs=1e-6)
    assert same["vuv_f1"] == 1.0
    assert same["mcd_db"] == 0.0
    assert same["mrstft"] == 0.0
    assert -1.0 <= same["speaker_similarity"] <= 1.0
    shifted = report["files"]["shifted"]
    assert shifted["fpc"] > 0.8  # same melody three semitones up
    assert shifted["f0_rmse_cents"] < 100  # the transposition is forgiven by the median subtraction
    assert shifted["mcd_db"] > 0.5 and shifted["mrstft"] > 0.5
    # unreadable file: reported with its reason, the others still count
    assert "broken" in report["failed"] and "not a readable audio file" in report["failed"]["broken"]
    assert report["files"]["broken"] == {"error": report["failed"]["broken"]}
    assert report["n_evaluated"] == 2
    assert report["mean"]["mcd_db"] == pytest.approx((same["mcd_db"] + shifted["mcd_db"]) / 2)
    assert report["reference_only"] == ["lonely_ref"] and report["converted_only"] == ["lonely_conv"]
    assert report["target_singer_clips"] == ["t1", "t2"]


def test_written_json_and_markdown(report, tmp_path):
    json_path, md_path = write_report(report, tmp_path / "out" / "scores.json")
    assert md_path == tmp_path / "out" / "scores.md"
    loaded = json.loads(json_path.read_text())
    assert set(loaded) >= {"files", "mean", "n_evaluated", "failed", "reference_only", "converted_only", "settings"}
    assert set(loaded["mean"]) == set(METRICS)
    table = md_path.read_text()
    assert table == markdown_table(report)
    assert "| same |" in table and "| shifted |" in table and "**mean of 2**" in table
    assert "MCD (dB)" in table and "Speaker sim." in table
    assert "no conversion for: lonely_ref" in table and "no reference for: lonely_conv" in table
    assert "broken:" in table


def test_errors_are_clear(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    save_audio(other / "alpha.wav", np.zeros(4800, dtype=np.float32))
    with pytest.raises(EvaluationError, match="no audio files"):
        match_files(empty, other)
    with pytest.raises(EvaluationError, match="not a folder"):
        match_files(tmp_path / "missing", other)
    mismatched = tmp_path / "mismatched"
    save_audio(mismatched / "beta.wav", np.zeros(4800, dtype=np.float32))
    with pytest.raises(EvaluationError, match="No file names match") as err:
        match_files(other, mismatched)
    assert "'alpha'" in str(err.value) and "'beta'" in str(err.value)


def _cli(argv: list[str]) -> int:
    from comosvc.cli import evaluate as cli_evaluate

    parser = argparse.ArgumentParser()
    cli_evaluate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", *argv])
    return args.func(args)


def test_cli_writes_report(folders, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = _cli(["--reference", str(folders["reference"]), "--converted", str(folders["converted"]),
                 "--out", str(out), "--f0-method", "harvest"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| same |" in printed and "no conversion for: lonely_ref" in printed
    report = json.loads(out.read_text())
    assert report["settings"]["f0_method"] == "harvest"
    assert report["files"]["same"]["speaker_similarity"] is None
    assert out.with_suffix(".md").exists()


def test_cli_reports_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _cli(["--reference", str(tmp_path / "empty"), "--converted", str(tmp_path / "empty")]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(["--reference", "a", "--converted", "b", "--f0-method", "nonsense"])


def test_python_m_comosvc_evaluate(folders, tmp_path):
    out = tmp_path / "cli.json"
    result = subprocess.run(
        [sys.executable, "-m", "comosvc", "evaluate", "--reference", str(folders["reference"]),
         "--converted", str(folders["converted"]), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| same |" in result.stdout
    assert json.loads(out.read_text())["n_evaluated"] == 2
