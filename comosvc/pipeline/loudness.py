"""Loudness of the converted song: frame-RMS envelope matching and peak normalisation."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

PEAK = 0.9  # peak level of the output without loudness matching (the reference's volume peak)
CLIP_PEAK = 0.99  # with loudness matching, scale down only above this


def frame_rms(wav: np.ndarray, hop: int = 256, window: int = 1024) -> np.ndarray:
    """RMS of ``window``-sample frames centred on samples ``i * hop + hop // 2``: ``(ceil(N / hop),)``."""
    wav = np.asarray(wav, dtype=np.float64)
    n_frames = -(-len(wav) // hop)
    # Running sum of squares; frame i covers [c - window/2, c + window/2) clipped to the signal.
    cumulative = np.concatenate([[0.0], np.cumsum(wav * wav)])
    centres = np.arange(n_frames) * hop + hop // 2
    lo = np.clip(centres - window // 2, 0, len(wav))
    hi = np.clip(centres + window // 2, 0, len(wav))
    energy = (cumulative[hi] - cumulative[lo]) / np.maximum(hi - lo, 1)
    return np.sqrt(np.maximum(energy, 0.0))


def match_loudness(
    converted: np.ndarray,
    source: np.ndarray,
    hop: int = 256,
    window: int = 1024,
    smoothing_frames: int = 5,
    max_gain_db: float = 30.0,
    floor: float = 1e-5,
) -> np.ndarray:
    """Give ``converted`` the frame-RMS envelope of ``source`` (both ``(N,)`` float32, same rate).

    Per frame the gain is ``rms(source) / rms(converted)``, capped at ``max_gain_db``
    so near-silent converted frames are not blown up into noise, smoothed over
    ``smoothing_frames`` frames and interpolated to a per-sample gain curve.
    """
    converted = np.asarray(converted, dtype=np.float32)
    if len(converted) != len(source):
        raise ValueError(f"converted has {len(converted)} samples, source {len(source)}: they must match")
    target = frame_rms(source, hop, window)
    current = frame_rms(converted, hop, window)
    gain = target / np.maximum(current, floor)
    gain = np.minimum(gain, 10.0 ** (max_gain_db / 20.0))
    if smoothing_frames > 1:
        gain = uniform_filter1d(gain, smoothing_frames, mode="nearest")
    centres = np.arange(len(gain)) * hop + hop // 2
    per_sample = np.interp(np.arange(len(converted)), centres, gain)
    return (converted * per_sample).astype(np.float32)


def peak_normalise(wav: np.ndarray, peak: float) -> np.ndarray:
    """Scale ``wav`` so its largest absolute sample equals ``peak``; silence stays silence."""
    wav = np.asarray(wav, dtype=np.float32)
    current = float(np.abs(wav).max()) if wav.size else 0.0
    if current <= 0.0:
        return wav.copy()
    return (wav * np.float32(peak / current)).astype(np.float32)


def finish_loudness(
    converted: np.ndarray, source: np.ndarray, loudness_match: bool, hop: int = 256, window: int = 1024
) -> np.ndarray:
    """The song's final level: peak-normalised to :data:`PEAK`, or (``loudness_match``) given
    the source's envelope by :func:`match_loudness` and scaled down only if it would clip
    (peak above :data:`CLIP_PEAK`). Both ``(N,)`` float32."""
    if not loudness_match:
        return peak_normalise(converted, PEAK)
    matched = match_loudness(converted, source, hop=hop, window=window)
    if float(np.abs(matched).max()) > CLIP_PEAK:
        matched = peak_normalise(matched, CLIP_PEAK)
    return matched


__all__ = ["CLIP_PEAK", "PEAK", "finish_loudness", "frame_rms", "match_loudness", "peak_normalise"]
