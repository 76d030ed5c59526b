"""Pitch shifting that keeps the length (comosvc/features/pitch_shift.py)."""

from __future__ import annotations

import numpy as np
import pytest

from comosvc.features.pitch_shift import pitch_shift

SR = 24000


def _peak_hz(wav: np.ndarray) -> float:
    """The strongest frequency of ``wav`` (a sine), from a zero-padded, windowed FFT."""
    n = 1 << 18
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav)), n))
    return float(np.argmax(spectrum) * SR / n)


@pytest.mark.parametrize("semitones", [7.0, -7.0, 12.0, -12.0, 3.3])
def test_moves_a_sine_by_the_semitones_it_reports_and_keeps_the_length(semitones):
    t = np.arange(int(1.5 * SR)) / SR
    wav = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    shifted, applied = pitch_shift(wav, SR, semitones)
    assert shifted.shape == wav.shape and shifted.dtype == np.float32
    assert applied == pytest.approx(semitones, abs=0.05)  # the 100 Hz grid of the resampling rate
    moved = 12 * np.log2(_peak_hz(shifted[2048:-2048]) / 220.0)
    assert moved == pytest.approx(applied, abs=0.1)
    # the level stays (within the phase vocoder's ripple)
    assert np.sqrt(np.mean(shifted[2048:-2048] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.25)


def test_no_shift_and_too_short_clips_come_back_unchanged_and_other_shapes_are_refused():
    wav = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    same, applied = pitch_shift(wav, SR, 0.0)
    assert applied == 0.0 and np.array_equal(same, wav)
    short = wav[:500]
    kept, applied = pitch_shift(short, SR, 5.0)
    assert applied == 0.0 and np.array_equal(kept, short)
    with pytest.raises(ValueError, match=r"mono clip \(N,\)"):
        pitch_shift(np.zeros((2, SR), np.float32), SR, 3.0)
