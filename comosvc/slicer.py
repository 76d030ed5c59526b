"""Slice long audio at silences into pieces no longer than a maximum.

Shared by preprocessing (long recordings -> training utterances) and conversion
(a whole song -> chunks the acoustic model handles in bounded time).

How it works, on frame RMS in dBFS (10 ms hops):

1. Runs of frames quieter than ``silence_db`` lasting at least
   ``min_silence_seconds`` split the audio into sounding regions; each region keeps
   up to ``keep_silence_seconds`` of the silence on either side (never more than
   half of the gap, so pieces never overlap).
2. Neighbouring regions are merged again while the merged piece stays within
   ``max_seconds`` and the gap between them is at most ``max_gap_seconds``: pieces
   are as long as allowed, not cut at every breath.
3. A piece still longer than ``max_seconds`` (no usable silence) is cut at quiet
   frames: each cut at the quietest frame between half and all of ``max_seconds``
   after the previous one, never leaving a part shorter than ``min_seconds`` when
   that can be helped.
4. A piece shorter than ``min_seconds`` is merged into its nearer neighbour if the
   result fits in ``max_seconds``, otherwise dropped. Pass ``min_seconds=0`` to keep
   every sound (conversion does, so nothing the user sang is lost).

Leading, trailing and long inner silences are left out; an all-silent input gives
``[]``.
"""

from __future__ import annotations

import numpy as np


def frame_rms_db(wav: np.ndarray, hop: int, window: int | None = None) -> np.ndarray:
    """RMS level of each hop of ``wav`` in dBFS, shape ``(ceil(N / hop),)``.

    Frame ``i`` covers samples ``[i*hop - (window-hop)/2, i*hop + hop + (window-hop)/2)``
    (zero-padded at the ends); ``window`` defaults to ``2 * hop``.
    """
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    window = window or 2 * hop
    n_frames = max(1, -(-len(wav) // hop))
    pad = (window - hop) // 2
    padded = np.pad(wav, (pad, n_frames * hop - len(wav) + (window - hop - pad)))
    # Sum of squares over each window via a cumulative sum: O(N), no frame copies.
    csum = np.concatenate([[0.0], np.cumsum(padded * padded)])
    starts = np.arange(n_frames) * hop
    power = (csum[starts + window] - csum[starts]) / window
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges where ``mask`` is True."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _split_long(
    start: int, end: int, level: np.ndarray, max_len: int, min_len: int
) -> list[tuple[int, int]]:
    """Cut frames ``[start, end)`` at quiet frames until every part is <= ``max_len``.

    Left to right, each cut goes to the quietest frame between half and all of
    ``max_len`` from the previous cut (the latest of equally quiet frames), so pieces
    stay long (a cut at the first of many equal pauses would make many tiny ones)
    and the rest keeps at least ``min_len`` frames when possible.
    """
    pieces = []
    while end - start > max_len:
        lo = start + max(min_len, max_len // 2, 1)
        hi = min(start + max_len, end - min_len)
        if hi < lo:  # no cut leaves both sides long enough: cut as late as allowed
            lo = hi = min(start + max_len, end - 1)
        window = level[lo : hi + 1]
        cut = lo + len(window) - 1 - int(np.argmin(window[::-1]))  # latest quietest frame
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _sounding_regions(loud: np.ndarray, min_sil: int) -> list[tuple[int, int]]:
    """Step 1: frame ranges ``[start, end)`` between silent runs of at least ``min_sil`` frames.

    ``loud``: ``(n_frames,)`` booleans, True where a frame is above the silence level.
    """
    n_frames = len(loud)
    silent_runs = [(s, e) for s, e in _runs(~loud) if e - s >= min_sil]
    regions: list[tuple[int, int]] = []
    cursor = 0
    for s, e in silent_runs:
        if s > cursor:
            regions.append((cursor, s))
        cursor = e
    if cursor < n_frames:
        regions.append((cursor, n_frames))
    return regions


def _keep_silence(regions: list[tuple[int, int]], keep: int, n_frames: int) -> list[tuple[int, int]]:
    """Step 1: widen each region by up to ``keep`` frames of silence, at most half of each inner gap."""
    padded: list[tuple[int, int]] = []
    for i, (s, e) in enumerate(regions):
        left_gap = s - (regions[i - 1][1] if i > 0 else 0)
        right_gap = (regions[i + 1][0] if i + 1 < len(regions) else n_frames) - e
        left = min(keep, left_gap if i == 0 else left_gap // 2)
        right = min(keep, right_gap if i + 1 == len(regions) else right_gap // 2)
        padded.append((s - left, e + right))
    return padded


def _merge_neighbours(regions: list[tuple[int, int]], max_gap: int, max_len: int) -> list[tuple[int, int]]:
    """Step 2: merge neighbours (frames) while the gap is at most ``max_gap`` and the result fits ``max_len``."""
    merged: list[tuple[int, int]] = []
    for s, e in regions:
        if merged and s - merged[-1][1] <= max_gap and e - merged[-1][0] <= max_len:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _absorb_short(pieces: list[tuple[int, int]], min_len: int, max_len: int) -> list[tuple[int, int]]:
    """Step 4: merge each piece shorter than ``min_len`` frames into its nearer neighbour when
    the result fits ``max_len``, else drop it (in place; returns ``pieces``)."""
    if min_len > 0 and len(pieces) > 1:
        i = 0
        while i < len(pieces):
            s, e = pieces[i]
            if e - s >= min_len:
                i += 1
                continue
            options = []
            if i > 0 and e - pieces[i - 1][0] <= max_len:
                options.append((s - pieces[i - 1][1], i - 1))
            if i + 1 < len(pieces) and pieces[i + 1][1] - s <= max_len:
                options.append((pieces[i + 1][0] - e, i + 1))
            if options:
                _, j = min(options)
                lo, hi = min(i, j), max(i, j)
                pieces[lo : hi + 1] = [(pieces[lo][0], pieces[hi][1])]
                i = lo  # the merged piece may still be short: look at it again
            elif len(pieces) > 1:
                del pieces[i]
            else:  # pragma: no cover - loop guard
                i += 1
    return pieces


def slice_audio(
    wav: np.ndarray,
    sample_rate: int,
    max_seconds: float,
    min_seconds: float = 0.5,
    silence_db: float = -40.0,
    min_silence_seconds: float = 0.3,
    keep_silence_seconds: float = 0.1,
    max_gap_seconds: float = 1.0,
    hop_seconds: float = 0.01,
) -> list[tuple[int, int]]:
    """Sample ranges ``[(start, end), ...]`` of the sounding pieces of ``wav``.

    ``wav``: ``(N,)`` samples at ``sample_rate`` Hz. Every piece lasts at most
    ``max_seconds`` and (unless it could neither be merged nor is the only sound)
    at least ``min_seconds``; ranges are sorted and do not overlap. ``silence_db``
    is an absolute level in dBFS (full scale = 1.0).
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    wav = np.asarray(wav).reshape(-1)
    n = len(wav)
    if n == 0:
        return []
    hop = max(1, int(round(hop_seconds * sample_rate)))
    level = frame_rms_db(wav, hop)
    n_frames = len(level)
    max_len = max(1, int(max_seconds * sample_rate) // hop)  # frames, rounded down: never exceed
    min_len = int(np.ceil(min_seconds * sample_rate / hop)) if min_seconds > 0 else 0
    min_sil = max(1, int(round(min_silence_seconds * sample_rate / hop)))
    keep = int(round(keep_silence_seconds * sample_rate / hop))
    max_gap = int(round(max_gap_seconds * sample_rate / hop))

    loud = level > silence_db
    if not loud.any():
        return []
    # 1. sounding regions, each with a little of the silence around it.
    padded = _keep_silence(_sounding_regions(loud, min_sil), keep, n_frames)
    # 2. merge neighbours while the result fits and the gap is short.
    merged = _merge_neighbours(padded, max_gap, max_len)
    # 3. hard cuts at the quietest frames of pieces that are still too long.
    pieces = [p for s, e in merged for p in _split_long(s, e, level, max_len, min_len)]
    # 4. short pieces: merge into the nearer neighbour when it fits, else drop.
    pieces = _absorb_short(pieces, min_len, max_len)

    return [(s * hop, min(e * hop, n)) for s, e in pieces if min(e * hop, n) > s * hop]


__all__ = ["frame_rms_db", "slice_audio"]
