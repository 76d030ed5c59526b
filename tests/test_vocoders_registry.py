"""The vocoder registry: names and folder layouts pick a family, unreachable vocoders fall back
to Griffin-Lim, and a new family is one module plus one registry entry (a test-only sine vocoder).
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from comosvc.config import AudioConfig
from comosvc.pipeline import ConversionPipeline
from comosvc.data.songs import sung_phrase
from comosvc.vocoders import (
    CPU_VOCODER,
    DEFAULT_VOCODER,
    GRIFFINLIM,
    GriffinLimVocoder,
    Layout,
    Vocoder,
    VocoderFamily,
    VocoderMismatchError,
    VocoderNotFoundError,
    VocoderSource,
    load_vocoder,
    random_names,
    random_vocoder,
    register,
    unregister,
)
from comosvc.measure.vocoder_bench import main

from conftest import dominant_frequency

pytestmark = pytest.mark.usefixtures("one_thread")


def test_unreachable_hub_vocoder_falls_back_with_a_clear_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kwargs = dict(device="cpu", cache_dir=str(tmp_path / "empty_cache"), local_files_only=True)
    with pytest.raises(VocoderNotFoundError, match="hf download nvidia/bigvgan_v2_24khz_100band_256x"):
        load_vocoder(DEFAULT_VOCODER, **kwargs)
    with caplog.at_level(logging.WARNING, logger="comosvc.vocoders"):
        vocoder = load_vocoder(DEFAULT_VOCODER, fallback=True, griffinlim_iters=2, **kwargs)
    assert isinstance(vocoder, GriffinLimVocoder) and vocoder.name == GRIFFINLIM
    assert DEFAULT_VOCODER in caplog.text and "Falling back to the Griffin-Lim" in caplog.text
    assert "low-quality fallback" in caplog.text

    # a local folder without the files behaves the same way
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "incomplete" / "config.json").write_text("{}")
    with pytest.raises(VocoderNotFoundError, match="bigvgan_generator.pt"):
        load_vocoder(str(tmp_path / "incomplete"), device="cpu")
    assert isinstance(load_vocoder(str(tmp_path / "incomplete"), device="cpu", fallback=True), GriffinLimVocoder)
    with pytest.raises(VocoderNotFoundError, match="does not exist"):
        load_vocoder(str(tmp_path / "missing"), device="cpu")


def test_bench_cli_runs(capsys):
    assert main(["--model", CPU_VOCODER, "--seconds", "0.1", "--runs", "1"]) == 0
    assert "M parameters" in capsys.readouterr().out


def test_random_vocoder_knows_the_registered_names():
    assert random_names() == [DEFAULT_VOCODER, CPU_VOCODER, GRIFFINLIM]
    assert isinstance(random_vocoder("Griffin-Lim", AudioConfig()), GriffinLimVocoder)
    with pytest.raises(ValueError, match=rf"no random-weight config for vocoder 'someone/unknown'.*{GRIFFINLIM}"):
        random_vocoder("someone/unknown")


# --------------------------------------------------------------------------- a new family


class SineVocoder(Vocoder):
    """Test-only family: a sine of ``hz`` (amplitude 0.5) as long as the mel, whatever the mel says."""

    def __init__(self, audio: AudioConfig, hz: float = 440.0, name: str = "sine"):
        super().__init__(name, audio.sample_rate, audio.hop_length, audio.n_mels)
        self.hz = hz

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        t = torch.arange(log_mel.shape[1] * self.hop_length) / self.sample_rate
        return (0.5 * torch.sin(2 * math.pi * self.hz * t)).expand(log_mel.shape[0], -1)


def _sine_settings(source: VocoderSource) -> dict:
    return json.loads(source.files[0].read_text()) if source.files else {}


def _check_sine_mel(source: VocoderSource) -> None:
    rate = _sine_settings(source).get("sample_rate", source.audio.sample_rate)
    if rate != source.audio.sample_rate:
        raise VocoderMismatchError(f"the sine vocoder {source.name} is at {rate} Hz, not {source.audio.sample_rate}")


SINE = VocoderFamily(
    name="sine",
    load=lambda source: SineVocoder(source.audio, _sine_settings(source).get("hz", 440.0), name=source.name),
    random=lambda name, audio, seed: SineVocoder(audio),
    check_mel=_check_sine_mel,
    names=("sine",),
    layouts=(Layout("sine", ("sine.json",), label="sine.json (test sine)"),),
)


@pytest.fixture()
def sine_family():
    register(SINE)
    yield SINE
    unregister(SINE.name)


def test_a_registered_family_loads_by_name_and_by_folder_layout(sine_family, tmp_path):
    with pytest.raises(ValueError, match="already registered"):
        register(SINE)
    by_name = load_vocoder("sine", device="cpu")
    assert isinstance(by_name, SineVocoder) and by_name.hz == 440.0
    wav = by_name(torch.zeros(1, 10, 100))
    assert wav.shape == (1, 10 * 256) and dominant_frequency(wav[0].numpy()) == pytest.approx(440.0, abs=10)

    folder = tmp_path / "my-sine"
    folder.mkdir()
    (folder / "sine.json").write_text(json.dumps({"hz": 330.0}))
    by_folder = load_vocoder(str(folder), device="cpu")
    assert isinstance(by_folder, SineVocoder) and by_folder.hz == 330.0 and by_folder.name == str(folder)

    (folder / "sine.json").write_text(json.dumps({"hz": 330.0, "sample_rate": 16000}))
    with pytest.raises(VocoderMismatchError, match="16000 Hz"):
        load_vocoder(str(folder), device="cpu", fallback=True)  # a mismatch never falls back
    assert "sine" in random_names()


def test_a_registered_family_vocodes_a_conversion(sine_family, tiny_config):
    pipe = ConversionPipeline.from_config(tiny_config, vocoder="sine", device="cpu", distilled=True)
    assert isinstance(pipe.vocoder, SineVocoder) and pipe.vocoder_name == "sine"
    wav, _ = sung_phrase([220.0], note_seconds=0.5, gap_seconds=0.0, seed=3)
    result = pipe(wav[:12000], "random_0", seed=0)
    assert result.audio.shape == (12000,)
    assert dominant_frequency(result.audio) == pytest.approx(440.0, abs=10)  # the sine made the audio


def test_an_unregistered_family_is_gone(tmp_path):
    assert "sine" not in random_names()
    with pytest.raises(VocoderNotFoundError, match="does not exist"):
        load_vocoder("sine", device="cpu")
    (tmp_path / "sine.json").write_text("{}")
    with pytest.raises(VocoderNotFoundError, match="holds no vocoder checkpoint"):
        load_vocoder(str(tmp_path), device="cpu")
