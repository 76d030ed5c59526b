"""Key shift of the conditioning F0: fixed semitones or "auto" (move the source into the target's range).

F0 tracks are in Hz at the mel frame rate with 0 for unvoiced frames; a shift only
ever scales voiced frames, so unvoiced frames stay exactly 0.
"""

from __future__ import annotations

import math

import numpy as np


def shift_f0(f0: np.ndarray, semitones: float) -> np.ndarray:
    """Scale voiced F0 by ``2 ** (semitones / 12)``; ``(T,)`` Hz in, ``(T,)`` Hz out, unvoiced stays 0."""
    f0 = np.asarray(f0, dtype=np.float32)
    if semitones == 0:
        return f0.copy()
    factor = np.float32(2.0 ** (semitones / 12.0))
    return np.where(f0 > 0, f0 * factor, np.float32(0.0)).astype(np.float32)


def voiced_median(f0: np.ndarray) -> float | None:
    """Median of the voiced frames (F0 > 0) in Hz, or ``None`` when nothing is voiced."""
    f0 = np.asarray(f0)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else None


def auto_key(source_f0: np.ndarray, target_median_hz: float,
             target_range_hz: tuple[float, float] | None = None) -> float | None:
    """Semitones for ``key="auto"``: the source's voiced median F0 onto ``target_median_hz``, kept
    within the target's range.

    ``12 * log2(target_median / source_median)`` moves the median exactly (the median commutes
    with scaling). With ``target_range_hz`` ``(p5, p95)`` Hz (the target singer's, ``stats.json``),
    that shift is then clamped to the shifts that keep the source's own 5th..95th percentiles
    inside the range, so a melody that spans more above its median than the singer sings above
    theirs is not sent past the singer's top notes (a model sings notes no singer trained an
    octave off). A source wider than the range is centred on it (its percentiles' geometric
    midpoint onto the range's). Returns ``None`` when the source has no voiced frame.
    """
    source = np.asarray(source_f0, dtype=np.float64)
    source_median = voiced_median(source)
    if source_median is None:
        return None
    semitones = 12.0 * math.log2(target_median_hz / source_median)
    if target_range_hz is None:
        return semitones
    low, high = (float(v) for v in np.percentile(source[source > 0], [5, 95]))
    lowest = 12.0 * math.log2(target_range_hz[0] / low)  # any smaller puts the source's p5 below the range
    highest = 12.0 * math.log2(target_range_hz[1] / high)  # any larger puts its p95 above
    if lowest > highest:  # wider than the range: centre it
        return 0.5 * (lowest + highest)
    return min(max(semitones, lowest), highest)


def trained_range(f0_stats: dict) -> tuple[float, float] | None:
    """``(lowest p5, highest p95)`` Hz over the singers of ``stats.json``'s ``"f0"`` entries: the notes a
    model was trained on (F0 reaches it only through the embedding of coarse bins, and a bin learns only
    from frames sung there); ``None`` when no singer records them."""
    lows = [v["p5"] for v in f0_stats.values() if v.get("p5")]
    highs = [v["p95"] for v in f0_stats.values() if v.get("p95")]
    return (min(lows), max(highs)) if lows and highs else None


BEYOND_SHARE = 0.05  # the share of voiced frames beyond the trained range that earns a warning
BEYOND_SEMITONES = 1.0  # how far past the range a frame must lie to count


def past_range(hz, bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``(above, below)``: where ``hz`` (Hz, any shape) lies more than :data:`BEYOND_SEMITONES` above
    ``bounds``' high end, and as far below its low end (``bounds`` from :func:`trained_range`)."""
    margin = 2.0 ** (BEYOND_SEMITONES / 12.0)
    hz = np.asarray(hz, dtype=np.float64)
    return hz > bounds[1] * margin, hz < bounds[0] / margin


def notes_beyond_range(f0: np.ndarray, f0_stats: dict) -> str | None:
    """A one-line warning when more than :data:`BEYOND_SHARE` of the voiced frames of ``f0`` ``(T,)`` Hz
    (the conditioning F0, after the key shift) lie more than :data:`BEYOND_SEMITONES` above the highest
    note the model was trained on, or as far below the lowest (:func:`trained_range`); else ``None``.

    A model sings such notes from embeddings no singer trained, often an octave off.
    """
    bounds = trained_range(f0_stats)
    voiced = np.asarray(f0, dtype=np.float64)
    voiced = voiced[voiced > 0]
    if bounds is None or voiced.size == 0:
        return None
    low, high = bounds
    above, below = (np.mean(side) for side in past_range(voiced, bounds))
    if above > BEYOND_SHARE:
        lower = math.ceil(12.0 * math.log2(np.percentile(voiced, 95) / high))
        return (f"{above:.0%} of the notes asked lie above {high:.0f} Hz, the highest this model's singers were "
                f"trained on; they may come out an octave off: lower the key by about {lower} semitones.")
    if below > BEYOND_SHARE:
        higher = math.ceil(12.0 * math.log2(low / np.percentile(voiced, 5)))
        return (f"{below:.0%} of the notes asked lie below {low:.0f} Hz, the lowest this model's singers were "
                f"trained on; they may come out an octave off: raise the key by about {higher} semitones.")
    return None


MAX_KEY_SEMITONES = 36
"""The largest key shift :func:`parse_key` accepts, either way: three octaves (F0 times 8 or divided by 8),
more than the range of any singing voice, so a larger shift is a typing mistake."""


def parse_key(key: float | int | str) -> float | str:
    """``"auto"`` or a number of semitones (``"-3"``, ``"+12"``, ``2.5``) -> ``"auto"`` or float.

    Raises ValueError for anything else, including shifts beyond ±:data:`MAX_KEY_SEMITONES`.
    """
    if isinstance(key, str):
        text = key.strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"Key {key!r} is neither a number of semitones (e.g. -3, +12, 2.5) nor 'auto'."
            ) from None
    else:
        value = float(key)
    if not math.isfinite(value):
        raise ValueError(f"Key {key!r} must be a finite number of semitones or 'auto'.")
    if abs(value) > MAX_KEY_SEMITONES:
        raise ValueError(
            f"Key {key!r} is outside -{MAX_KEY_SEMITONES}..+{MAX_KEY_SEMITONES} semitones (three octaves either way): "
            "give a smaller shift (12 semitones = one octave), or 'auto'."
        )
    return value


__all__ = ["MAX_KEY_SEMITONES", "auto_key", "notes_beyond_range", "parse_key", "past_range", "shift_f0", "trained_range", "voiced_median"]
