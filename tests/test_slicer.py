"""Silence slicing on synthetic phrases with known gaps."""

from __future__ import annotations

import numpy as np
import pytest

from comosvc.data.songs import sung_tone
from comosvc.slicer import frame_rms_db, slice_audio

SR = 24000


def phrase(note_seconds: list[float], gap_seconds: list[float], lead: float = 0.5) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Notes separated by digital silence; returns the wav and each note's sample range."""
    parts, spans, t = [np.zeros(int(lead * SR), np.float32)], [], int(lead * SR)
    for i, sec in enumerate(note_seconds):
        wav, _ = sung_tone(220.0 * (1 + 0.1 * i), sec, SR, seed=i)
        spans.append((t, t + len(wav)))
        parts.append(wav)
        t += len(wav)
        gap = np.zeros(int(gap_seconds[i] * SR) if i < len(gap_seconds) else int(lead * SR), np.float32)
        parts.append(gap)
        t += len(gap)
    return np.concatenate(parts), spans


def covers(ranges, span, slack=int(0.05 * SR)):
    return any(s <= span[0] + slack and e >= span[1] - slack for s, e in ranges)


def test_rms_db_levels():
    wav = np.concatenate([np.zeros(SR), 0.5 * np.ones(SR)])
    level = frame_rms_db(wav, 240)
    assert level.shape == (200,)
    assert level[:90].max() < -100
    assert abs(level[-50:].mean() - 20 * np.log10(0.5)) < 0.1


def test_short_input_is_one_piece_without_edge_silence():
    wav, spans = phrase([1.0], [])
    ranges = slice_audio(wav, SR, max_seconds=15.0)
    assert len(ranges) == 1
    (s, e), (ns, ne) = ranges[0], spans[0]
    # leading/trailing 0.5 s of silence trimmed to about keep_silence (0.1 s)
    assert ns - int(0.15 * SR) <= s <= ns and ne <= e <= ne + int(0.15 * SR)


def test_cuts_at_gaps_respecting_max():
    # 3 phrases of 2 s separated by 0.5 s gaps; max 3 s forces a cut at every gap.
    wav, spans = phrase([2.0, 2.0, 2.0], [0.5, 0.5])
    ranges = slice_audio(wav, SR, max_seconds=3.0, min_seconds=0.5)
    assert len(ranges) == 3
    for r, span in zip(ranges, spans):
        assert r[1] - r[0] <= 3.0 * SR
        assert covers([r], span)
    # sorted, non-overlapping
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))


def test_merges_phrases_while_they_fit():
    wav, spans = phrase([1.0, 1.0, 1.0, 1.0], [0.4, 0.4, 0.4])
    ranges = slice_audio(wav, SR, max_seconds=2.6, min_seconds=0.5)
    # 1 + 0.4 + 1 (+ padding) fits in 2.6 s; three notes do not.
    assert len(ranges) == 2
    assert all(e - s <= 2.6 * SR for s, e in ranges)
    assert all(any(covers([r], sp) for r in ranges) for sp in spans)


def test_long_gap_is_not_merged():
    wav, spans = phrase([1.0, 1.0], [3.0])
    ranges = slice_audio(wav, SR, max_seconds=15.0, max_gap_seconds=1.0)
    assert len(ranges) == 2


def test_hard_cut_without_silence():
    wav, _ = sung_tone(220.0, 7.0, SR)
    ranges = slice_audio(wav, SR, max_seconds=2.0, min_seconds=0.5)
    assert len(ranges) >= 4
    assert all(0.5 * SR <= e - s <= 2.0 * SR for s, e in ranges)
    # contiguous: a hard cut loses nothing
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert ranges[0][0] == 0 and ranges[-1][1] == len(wav)


def test_short_blip_merged_or_dropped():
    blip, _ = sung_tone(300.0, 0.15, SR)
    long_note, _ = sung_tone(220.0, 2.0, SR)
    gap = np.zeros(int(0.5 * SR), np.float32)
    # blip close to a note: merged into it
    wav = np.concatenate([gap, long_note, gap, blip, gap])
    ranges = slice_audio(wav, SR, max_seconds=5.0, min_seconds=0.5, max_gap_seconds=0.2)
    assert len(ranges) == 1 and ranges[0][1] >= int(3.0 * SR)
    # blip that cannot be merged (the note fills max_seconds): dropped
    ranges = slice_audio(wav, SR, max_seconds=2.25, min_seconds=0.5, max_gap_seconds=0.2)
    assert len(ranges) == 1 and ranges[0][1] <= int(2.7 * SR)
    # min_seconds=0 keeps every sound
    ranges = slice_audio(wav, SR, max_seconds=2.25, min_seconds=0.0, max_gap_seconds=0.2)
    assert len(ranges) == 2


def test_silence_and_empty():
    assert slice_audio(np.zeros(SR, np.float32), SR, max_seconds=5.0) == []
    assert slice_audio(np.zeros(0, np.float32), SR, max_seconds=5.0) == []
    assert slice_audio(1e-4 * np.ones(SR), SR, max_seconds=5.0, silence_db=-40.0) == []
    with pytest.raises(ValueError):
        slice_audio(np.ones(10), SR, max_seconds=0)


def test_sung_phrase_from_synthetic_module():
    from comosvc.data.songs import sung_phrase

    wav, f0 = sung_phrase([220.0, 262.0, 330.0, 392.0, 440.0, 494.0], note_seconds=0.8, gap_seconds=0.4)
    ranges = slice_audio(wav, SR, max_seconds=2.0, min_seconds=0.5)
    assert all(e - s <= 2.0 * SR for s, e in ranges)
    voiced = np.flatnonzero(f0 > 0)
    # every voiced sample (away from note edges) falls inside some piece
    inside = np.zeros(len(wav), bool)
    for s, e in ranges:
        inside[s:e] = True
    assert inside[voiced].mean() > 0.97


def test_many_short_pauses_give_long_pieces():
    # 12 s of 0.4 s notes with 0.1 s pauses (shorter than min_silence): no usable silence,
    # and every pause is equally quiet; pieces must still be long, not one note each.
    from comosvc.data.songs import sung_phrase

    wav, _ = sung_phrase([220.0, 247.0, 262.0] * 8, note_seconds=0.4, gap_seconds=0.1)
    ranges = slice_audio(wav, SR, max_seconds=4.0, min_seconds=0.5)
    lengths = [(e - s) / SR for s, e in ranges]
    assert all(x <= 4.0 for x in lengths)
    assert all(x >= 2.0 for x in lengths[:-1]) and lengths[-1] >= 0.5
    assert len(ranges) <= 6
    # the cuts fall in pauses, not inside notes
    level = frame_rms_db(wav, 240)
    for s, _ in ranges[1:]:
        assert level[s // 240] < -60
