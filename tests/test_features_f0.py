"""F0 extractors: pitch of a synthetic sung tone with vibrato, silence and noise unvoiced."""

from __future__ import annotations

import numpy as np
import pytest

from comosvc.config import AudioConfig, F0Config
from comosvc.features.f0 import F0_METHODS, extract_f0, periodicity, to_mel_frames
from comosvc.data.songs import f0_at_frames, sung_tone

SR = 24000
PITCHES = [150.0, 247.0, 392.0, 600.0]
# CREPE "full" is slow on a CPU: the sweep uses "tiny"; the default model gets one short clip.
FAST = F0Config(crepe_model="tiny")


def check_tone(method: str, hz: float, cfg: F0Config, seconds: float = 1.0, vowel: str = "a"):
    wav, f0_samples = sung_tone(hz, seconds, vowel=vowel, seed=int(hz))
    truth = f0_at_frames(f0_samples)
    f0 = extract_f0(wav, cfg, AudioConfig(), device="cpu", method=method)
    assert f0.shape == (len(wav) // 256,) and f0.dtype == np.float32
    voiced = f0 > 0
    assert voiced.mean() >= 0.9, f"{method} at {hz} Hz: only {voiced.mean():.0%} of frames voiced"
    error = np.median(np.abs(f0[voiced] / truth[voiced] - 1))
    assert error < 0.01, f"{method} at {hz} Hz: median error {error:.2%}"


@pytest.mark.parametrize("method", list(F0_METHODS))
def test_f0_of_sung_tone_with_vibrato(method):
    for i, hz in enumerate(PITCHES):
        check_tone(method, hz, FAST, vowel="aeiou"[i])


def test_crepe_default_full_model():
    assert F0Config().crepe_model == "full"
    check_tone("crepe", 300.0, F0Config(), seconds=0.5)


@pytest.mark.parametrize("method", list(F0_METHODS))
def test_silence_and_white_noise_are_unvoiced(method):
    silence = np.zeros(SR, dtype=np.float32)
    assert not extract_f0(silence, FAST, method=method, device="cpu").any()
    for seed in range(2):
        noise = (0.1 * np.random.default_rng(seed).standard_normal(SR)).astype(np.float32)
        f0 = extract_f0(noise, FAST, method=method, device="cpu")
        assert (f0 == 0).mean() >= 0.95, f"{method}: {(f0 > 0).mean():.0%} of white-noise frames voiced"


def test_phrase_voicing_follows_notes_and_gaps(sung_clip):
    wav, f0_samples = sung_clip
    truth = f0_at_frames(f0_samples)
    f0 = extract_f0(wav)  # default: parselmouth
    assert len(f0) == len(wav) // 256
    agree = ((f0 > 0) == (truth > 0)).mean()
    assert agree >= 0.9, f"V/UV agreement {agree:.0%}"


@pytest.mark.parametrize("n", [1024, 1300, 5000, 12345])
def test_f0_frame_count(n):
    wav, _ = sung_tone(220.0, n / SR)
    for method in ("parselmouth", "dio"):
        assert extract_f0(wav, method=method).shape == (n // 256,)


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="parselmouth.*fcpe.*crepe.*harvest.*dio"):
        extract_f0(np.zeros(4096, np.float32), method="yin")


def test_to_mel_frames_hand_example():
    times = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    f0 = np.array([100.0, 200.0, 0.0, 0.0, 400.0])
    out = to_mel_frames(times, f0, np.array([0.05, 0.12, 0.26, 0.38, 0.5]))
    # voicing from the nearest source frame; values interpolated between voiced frames only
    expected = [150.0, 200.0 + 200.0 * 0.02 / 0.3, 0.0, 200.0 + 200.0 * 0.28 / 0.3, 400.0]
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_periodicity_of_tone_and_noise():
    wav, f0_samples = sung_tone(440.0, 0.5)
    f0 = f0_at_frames(f0_samples)
    assert np.median(periodicity(wav, f0, SR, 256)) > 0.9
    noise = np.random.default_rng(0).standard_normal(len(wav))
    assert np.median(periodicity(noise, f0, SR, 256)) < 0.3
