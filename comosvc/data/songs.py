"""Synthetic singing for tests, smoke runs, fake corpora and benchmarks.

A source-filter voice: a band-limited harmonic source whose F0 follows notes with
vibrato, shaped by vowel formant resonators, with a little breath noise. It is not
music, but it has what the feature extractors and the model care about: a known
F0 (Hz, per sample), voiced and silent regions, and a timbre that differs per
"singer" (formants and spectral tilt), so a multi-singer corpus can be learned.

:func:`synthetic_song` is the song every measurement and fake corpus uses;
:func:`sung_phrase` and :func:`sung_tone` are the building blocks (tests use them
for a known F0).

    >>> wav = synthetic_song(2.5, singer_index=1, seed=0)  # (60000,) float32 at 24 kHz
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

# (F1, F2, F3) in Hz for a few vowels.
VOWELS = {
    "a": (800.0, 1150.0, 2900.0),
    "e": (400.0, 1600.0, 2700.0),
    "i": (300.0, 2200.0, 3000.0),
    "o": (450.0, 800.0, 2830.0),
    "u": (325.0, 700.0, 2530.0),
}


@dataclass(frozen=True)
class Voice:
    """Timbre of one synthetic singer."""

    formant_scale: float = 1.0  # multiplies every formant frequency
    tilt: float = 1.0  # harmonic k has amplitude k ** -tilt
    breath: float = 0.003  # white-noise level added to voiced parts


def singer_voice(index: int) -> Voice:
    """A distinct, deterministic timbre for synthetic singer ``index``."""
    return Voice(formant_scale=0.85 + 0.12 * (index % 4), tilt=0.8 + 0.25 * (index % 3))


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * freq / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    b = [1.0 - r]
    return lfilter(b, a, x)


def sung_tone(
    f0: float | np.ndarray,
    seconds: float,
    sr: int = 24000,
    vibrato_hz: float = 5.5,
    vibrato_cents: float = 50.0,
    vowel: str = "a",
    voice: Voice = Voice(),
    amplitude: float = 0.3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One sung vowel. Returns ``(wav, f0_per_sample)``, both ``(N,)`` float32, Hz.

    ``f0`` is a constant or a per-sample base contour in Hz; vibrato is applied on top.
    """
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    base = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    f0_track = base * 2.0 ** (vibrato_cents / 1200.0 * np.sin(2 * np.pi * vibrato_hz * t))
    phase = 2 * np.pi * np.cumsum(f0_track) / sr
    source = np.zeros(n)
    max_harmonic = int(0.45 * sr / max(float(f0_track.max()), 1.0))
    for k in range(1, max_harmonic + 1):
        audible = (k * f0_track) < 0.45 * sr
        source += audible * np.sin(k * phase) * k ** (-voice.tilt)
    rng = np.random.default_rng(seed)
    source += voice.breath * rng.standard_normal(n) * np.abs(source).max()
    out = np.zeros(n)
    for formant, bandwidth in zip(VOWELS[vowel], (80.0, 90.0, 120.0)):
        out += _resonator(source, formant * voice.formant_scale, bandwidth, sr)
    # 20 ms raised-cosine fades so notes start and end without clicks.
    fade = min(int(0.02 * sr), n // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    out *= amplitude / (np.abs(out).max() + 1e-9)
    return out.astype(np.float32), f0_track.astype(np.float32)


def sung_phrase(
    notes_hz: list[float],
    note_seconds: float = 0.6,
    gap_seconds: float = 0.15,
    sr: int = 24000,
    voice: Voice = Voice(),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Notes separated by silent gaps. Returns ``(wav, f0_per_sample)``; F0 is 0 in the gaps."""
    rng = np.random.default_rng(seed)
    vowels = list(VOWELS)
    wavs, f0s = [], []
    gap = np.zeros(int(round(gap_seconds * sr)), dtype=np.float32)
    for i, hz in enumerate(notes_hz):
        wav, f0 = sung_tone(
            hz, note_seconds, sr, vowel=vowels[int(rng.integers(len(vowels)))], voice=voice, seed=seed + i
        )
        wavs += [gap, wav]
        f0s += [gap, f0]
    wavs.append(gap)
    f0s.append(gap)
    return np.concatenate(wavs), np.concatenate(f0s)


def synthetic_song(seconds: float, singer_index: int = 0, seed: int = 0, sample_rate: int = 24000) -> np.ndarray:
    """Exactly ``seconds`` of sung notes with short gaps, ``(round(seconds * sample_rate),)`` float32.

    Notes of about 0.5 s (random pitches within an octave above a base that depends
    on ``singer_index``), separated by 80 ms of silence, in the timbre of
    :func:`singer_voice` ``(singer_index)``. The phrase is zero-padded or cut to the
    exact length (a few samples of the closing gap at most, except below ~0.26 s
    where the single 0.1 s note is the shortest phrase).
    """
    rng = np.random.default_rng(seed)
    n_notes = max(1, int(round(seconds / 0.5)))
    gap = 0.08
    note = max(0.1, (seconds - gap * (n_notes + 1)) / n_notes)
    base = 150.0 * 2 ** (singer_index % 5 / 5)
    notes = [float(base * 2 ** (rng.integers(0, 12) / 12)) for _ in range(n_notes)]
    voice = singer_voice(singer_index)
    wav, _ = sung_phrase(notes, note_seconds=note, gap_seconds=gap, sr=sample_rate, voice=voice, seed=seed)
    n = int(round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(wav))] = wav[:n]
    return out


def f0_at_frames(f0_per_sample: np.ndarray, hop: int = 256, n_fft: int = 1024) -> np.ndarray:
    """Sample a per-sample F0 track at the centres of the mel frames, ``(len // hop,)`` Hz.

    With the BigVGAN mel (reflect padding ``(n_fft - hop) / 2``, ``center=False``)
    frame ``i`` is centred on sample ``i * hop + hop / 2``.
    """
    n_frames = len(f0_per_sample) // hop
    centres = np.minimum(np.arange(n_frames) * hop + hop // 2, len(f0_per_sample) - 1)
    return f0_per_sample[centres]


__all__ = ["VOWELS", "Voice", "f0_at_frames", "singer_voice", "sung_phrase", "sung_tone", "synthetic_song"]
