"""``python -m comosvc convert`` refuses bad inputs with one ``error:`` line and exit code 2, before converting:
a damaged model or vocoder file, a key shift beyond the stated range, an --out that cannot be a folder."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import soundfile as sf

from comosvc.cli import main
from comosvc.config import load_config
from comosvc.files import WEIGHTS_FILE
from comosvc.data.songs import sung_phrase
from comosvc.pipeline.pitch import MAX_KEY_SEMITONES, parse_key
from conftest import TINY_CONFIG, fast_vocoder, save_tiny_models


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tiny_overrides):
    return save_tiny_models(tmp_path_factory.mktemp("models"), load_config(TINY_CONFIG, overrides=tiny_overrides))[1]


def convert(capsys, *args: str) -> tuple[int, str]:
    """Exit code and stderr of ``convert`` (nothing on stdout: nothing was converted)."""
    code = main(["convert", *map(str, args)])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


def one_error_line(err: str) -> str:
    """The one ``error:`` line that ends stderr (progress bars of the encoders' loading may come before it)."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n") and "Traceback" not in err, err
    return errors[0]


# --------------------------------------------------------------------------- key range


@pytest.mark.parametrize("key", ["99", "-37", "nan", "inf"])
def test_a_key_beyond_the_range_is_refused_before_the_model_loads(key, tmp_path, capsys):
    code, err = convert(capsys, "song.wav", "--model", tmp_path / "no-model", "--singer", "synth_alto", f"--key={key}")
    line = one_error_line(err)
    assert code == 2 and repr(key) in line
    if key not in ("nan", "inf"):
        assert f"-{MAX_KEY_SEMITONES}..+{MAX_KEY_SEMITONES} semitones" in line


def test_the_key_range_is_inclusive_and_shared_by_every_entry_point():
    assert parse_key(f"+{MAX_KEY_SEMITONES}") == MAX_KEY_SEMITONES and parse_key(-MAX_KEY_SEMITONES) == -MAX_KEY_SEMITONES
    for key in (MAX_KEY_SEMITONES + 0.5, "-40", float("nan")):
        with pytest.raises(ValueError, match="semitones"):
            parse_key(key)


def test_the_pipeline_request_refuses_it_too(student_dir):
    from comosvc.pipeline import ConversionPipeline

    pipe = ConversionPipeline.from_pretrained(student_dir, vocoder=fast_vocoder(), device="cpu")
    assert pipe.request("synth_alto", key=MAX_KEY_SEMITONES).key == MAX_KEY_SEMITONES
    with pytest.raises(ValueError, match=f"-{MAX_KEY_SEMITONES}..\\+{MAX_KEY_SEMITONES}"):
        pipe.request("synth_alto", key=99)


# --------------------------------------------------------------------------- --out


@pytest.mark.parametrize("under", ["", "converted", "converted/deeper"])
def test_an_out_folder_at_or_under_a_file_is_refused_before_the_model_loads(under, tmp_path, capsys):
    a_file = tmp_path / "take1.wav"
    a_file.write_bytes(b"not a folder")
    out = a_file / under if under else a_file
    code, err = convert(capsys, "song.wav", "--model", tmp_path / "no-model", "--singer", "synth_alto", "--out", out)
    line = one_error_line(err)
    assert code == 2
    assert f"--out {out} cannot be a folder: {a_file} is a file" in line and "Give --out a folder" in line
    assert a_file.read_bytes() == b"not a folder"


def test_an_out_folder_without_write_permission_is_refused(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access

    def no_write_in_locked(path, mode, **kwargs) -> bool:  # root may write anywhere: denied here, not with chmod
        return False if os.fspath(path) == str(locked) else access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", no_write_in_locked)
    code, err = convert(capsys, "song.wav", "--model", tmp_path / "no-model", "--singer", "synth_alto",
                        "--out", locked / "converted")
    line = one_error_line(err)
    assert code == 2
    assert f"no write permission in {locked}" in line and "folder you can write to" in line
    assert not (locked / "converted").exists()


def test_a_usable_out_folder_is_only_created_when_a_file_is_saved(student_dir, tmp_path, capsys):
    out = tmp_path / "new" / "deeper"
    code, err = convert(capsys, tmp_path / "missing.wav", "--model", student_dir, "--singer", "nobody", "--out", out)
    assert code == 2 and "Unknown singer" in one_error_line(err)
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- damaged weights


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "song.wav"
    wav, _ = sung_phrase([262.0], note_seconds=0.5, gap_seconds=0.1, seed=1)
    sf.write(path, wav, 24000)
    return path


def test_a_truncated_model_file_is_named_with_what_to_do(student_dir, song, tmp_path, capsys):
    damaged = shutil.copytree(student_dir, tmp_path / "model")
    weights = damaged / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, err = convert(capsys, song, "--model", damaged, "--singer", "synth_alto", "--out", tmp_path / "out")
    line = one_error_line(err)
    assert code == 2
    assert str(weights) in line and "truncated or damaged" in line
    assert "force_download=True" in line and "save_pretrained" in line
    assert not (tmp_path / "out").exists()


def test_a_truncated_vocoder_file_is_one_line_too(student_dir, song, tmp_path, capsys):
    from comosvc.vocoders import CPU_VOCODER, KNOWN_CONFIGS

    vocoder = tmp_path / "vocoder"  # NVIDIA's layout; the checkpoint cut short mid-download
    vocoder.mkdir()
    (vocoder / "config.json").write_text(json.dumps(KNOWN_CONFIGS[CPU_VOCODER].to_dict()))
    (vocoder / "bigvgan_generator.pt").write_bytes(b"PK\x03\x04" + bytes(60))
    code, err = convert(capsys, song, "--model", student_dir, "--singer", "synth_alto", "--vocoder", vocoder,
                        "--out", tmp_path / "out")
    line = one_error_line(err)
    assert code == 2
    assert str(vocoder / "bigvgan_generator.pt") in line and "Download it again" in line
