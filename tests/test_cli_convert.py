"""``python -m comosvc convert`` and ``singers`` with a tiny random model (Griffin-Lim vocoder from tiny.yaml)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from comosvc.audio import load_audio
from comosvc.cli import main
from comosvc.config import load_config
from comosvc.data.songs import sung_phrase
from comosvc.vocoders import GRIFFINLIM
from conftest import TINY_CONFIG, fast_vocoder, save_tiny_models


@pytest.fixture(autouse=True)
def quick_vocoder(monkeypatch):
    """Vocoder names asked for; each gets a 2-iteration Griffin-Lim (the tests check plumbing, not sound)."""
    asked = []

    def load_vocoder(name, *args, **kwargs):
        asked.append(name)
        return fast_vocoder()

    monkeypatch.setattr("comosvc.vocoders.load_vocoder", load_vocoder)
    return asked


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_overrides):
    return save_tiny_models(tmp_path_factory.mktemp("cli-models"), load_config(TINY_CONFIG, overrides=tiny_overrides))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A sung clip at 24 kHz, one at 16 kHz (flac), a silent one and a text file posing as audio."""
    folder = tmp_path_factory.mktemp("inputs")
    wav, _ = sung_phrase([262.0], note_seconds=0.5, gap_seconds=0.1, seed=1)
    sf.write(folder / "song.wav", wav, 24000)
    sf.write(folder / "other.flac", wav[::3][:-11], 8000)
    sf.write(folder / "quiet.wav", np.zeros(12000, dtype=np.float32), 24000)
    (folder / "broken.wav").write_text("this is not audio")
    return folder


def test_a_bad_file_is_reported_and_the_others_still_convert(model_dirs, inputs, tmp_path, capsys, quick_vocoder):
    out = tmp_path / "out"
    names = ["song.wav", "broken.wav", "other.flac", "quiet.wav"]
    code = main(
        ["convert", *(str(inputs / n) for n in names), "--model", str(model_dirs[1]), "--singer", "synth_alto",
         "--out", str(out), "--seed", "0"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert quick_vocoder == [GRIFFINLIM]  # inference.vocoder of the model's (tiny) config
    assert "FAILED" in err and "broken.wav" in err and "not a readable audio file" in err
    assert "converted 3 of 4" in err
    assert "silent" in err  # the silent input's warning
    assert not (out / "broken_synth_alto.wav").exists()
    for name in ("song.wav", "other.flac", "quiet.wav"):
        converted, rate = sf.read(out / f"{name.rsplit('.', 1)[0]}_synth_alto.wav")
        assert rate == 24000
        assert len(converted) == len(load_audio(inputs / name, 24000))  # same length as the input at 24 kHz
    assert not sf.read(out / "quiet_synth_alto.wav")[0].any()


def test_teacher_sampler_key_vocoder_and_loudness_options(model_dirs, inputs, tmp_path, capsys, quick_vocoder):
    code = main(
        ["convert", str(inputs / "song.wav"), "--model", str(model_dirs[1]), "--singer", "bass", "--sampler", "teacher",
         "--steps", "1", "--key", "auto", "--loudness-match", "--vocoder", "my/vocoder", "--out", str(tmp_path)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "teacher, 2 NFE" in captured.out  # 1 Karras step = 2 Euler updates
    assert quick_vocoder == ["my/vocoder"]
    assert (tmp_path / "song_synth_bass.wav").is_file()


def test_unknown_singer_or_bad_options_fail_before_converting(model_dirs, inputs, tmp_path, capsys):
    args = ["convert", str(inputs / "song.wav"), "--model", str(model_dirs[1]), "--out", str(tmp_path)]
    assert main([*args, "--singer", "tenor"]) == 2
    err = capsys.readouterr().err
    assert "Unknown singer 'tenor'" in err and "other_alto, synth_alto, synth_bass" in err
    assert main([*args, "--singer", "synth_alto", "--key", "up"]) == 2
    assert "semitones" in capsys.readouterr().err
    assert main(["convert", str(inputs / "song.wav"), "--model", str(model_dirs[0]), "--singer", "synth_alto",
                 "--sampler", "student"]) == 2
    assert "no consistency student" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_singers_lists_names_ids_and_f0(model_dirs, capsys):
    assert main(["singers", "--model", str(model_dirs[1])]) == 0
    out = capsys.readouterr().out
    assert "synth_bass" in out and "110.0 Hz" in out and "0.17" in out  # 600 s = 0.17 h
    assert main(["singers", "--model", str(model_dirs[1]), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["singer"] for r in rows] == ["synth_alto", "synth_bass", "other_alto"]  # id order
    assert rows[0]["f0_median_hz"] == 330.0
    assert main(["singers", "--model", str(model_dirs[1] / "nope")]) == 2
