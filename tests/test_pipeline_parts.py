"""The conversion pipeline's pure parts: chunk planning and joining, noise, key shift, loudness, singers."""

from __future__ import annotations

import numpy as np
import pytest

from comosvc.pipeline.chunks import (
    ChunkJoiner,
    crossfade_weights,
    frame_noise,
    join_frames,
    plan_chunks,
    split_at,
)
from comosvc.pipeline.loudness import frame_rms, match_loudness, peak_normalise
from comosvc.pipeline.pitch import auto_key, notes_beyond_range, parse_key, shift_f0, trained_range, voiced_median
from comosvc.pipeline.singers import UnknownSingerError, resolve_singer, singer_dataset, singer_f0

HOP = 256


def test_chunks_cover_the_padded_song_and_cuts_snap_to_hops():
    n = 100 * HOP + 17
    chunks = split_at(n, cuts=[30 * HOP + 100, 31 * HOP, 70 * HOP - 90], hop=HOP, margin=3 * HOP)
    # the second cut is too close to the first to leave room for two crossfades: dropped
    assert [c.core_start for c in chunks] == [0, 30 * HOP, 70 * HOP]
    assert chunks[-1].core_end == 101 * HOP and chunks[-1].end == 101 * HOP
    for a, b in zip(chunks, chunks[1:]):
        assert a.core_end == b.core_start
        assert a.end - a.core_end == 3 * HOP == b.core_start - b.start
    assert all(c.start % HOP == 0 and c.end % HOP == 0 for c in chunks)
    assert split_at(n, cuts=[], hop=HOP, margin=3 * HOP)[0].start == 0


def test_long_silences_become_silent_chunks_and_short_gaps_are_cut_in_the_middle():
    n = 200 * HOP
    pieces = [(20 * HOP, 60 * HOP), (64 * HOP, 100 * HOP), (150 * HOP, 190 * HOP + 5)]
    chunks = plan_chunks(n, pieces, hop=HOP, margin=2 * HOP)
    cores = [(c.core_start // HOP, c.core_end // HOP, c.silent) for c in chunks]
    assert cores == [(0, 20, True), (20, 62, False), (62, 100, False), (100, 150, True), (150, 190, False), (190, 200, True)]
    # a leading silence too short for its own chunk joins the first piece
    assert plan_chunks(n, [(3 * HOP, 200 * HOP)], hop=HOP, margin=2 * HOP)[0].core_start == 0


def test_crossfade_weights_sum_to_one_everywhere():
    n = 57 * HOP + 3
    chunks = split_at(n, cuts=[10 * HOP, 25 * HOP, 40 * HOP], hop=HOP, margin=2 * HOP)
    total = np.zeros(58 * HOP)
    for c in chunks:
        total[c.start : c.end] += crossfade_weights(c)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_joining_the_chunks_of_a_signal_gives_the_signal_back():
    rng = np.random.default_rng(0)
    n = 40 * HOP + 11
    song = rng.standard_normal(n).astype(np.float32)
    padded = np.pad(song, (0, 41 * HOP - n))
    chunks = split_at(n, cuts=[12 * HOP, 27 * HOP], hop=HOP, margin=HOP)
    joiner = ChunkJoiner(n, HOP)
    for c in chunks:
        joiner.add(c, padded[c.start : c.end])
    out = joiner.result()
    assert out.shape == (n,)
    np.testing.assert_allclose(out, song, atol=1e-5)
    frames = join_frames(chunks, [np.arange(c.start // HOP, c.end // HOP) for c in chunks], HOP)
    np.testing.assert_array_equal(frames, np.arange(41))


def test_frame_noise_depends_only_on_the_song_frame():
    whole = frame_noise(7, 0, 0, 300, 4)
    np.testing.assert_array_equal(frame_noise(7, 0, 37, 100, 4), whole[37:137])
    np.testing.assert_array_equal(frame_noise(7, 0, 250, 50, 4), whole[250:])
    assert not np.allclose(frame_noise(7, 1, 0, 300, 4), whole)
    assert not np.allclose(frame_noise(8, 0, 0, 300, 4), whole)
    assert abs(float(whole.std()) - 1.0) < 0.1


def test_auto_key_keeps_the_source_inside_the_target_range():
    def st(hz):
        return 12 * np.log2(hz)

    rng = np.random.default_rng(0)
    # a melody around 200 Hz reaching 7 semitones above its median and 3 below (median-skewed)
    semis = np.concatenate([rng.uniform(-3, 0, 500), rng.uniform(0, 7, 500)])
    f0 = np.concatenate([200.0 * 2 ** (semis / 12), np.zeros(50)])
    voiced = f0[f0 > 0]
    p5, p95 = np.percentile(voiced, [5, 95])
    median_shift = auto_key(f0, 300.0)
    assert median_shift == pytest.approx(st(300.0) - st(np.median(voiced)))

    # the range holds the median-aligned melody: the median shift, unchanged
    assert auto_key(f0, 300.0, (100.0, 900.0)) == pytest.approx(median_shift, abs=1e-12)
    # its top would pass the range's: the largest shift that keeps the source's p95 at the top
    capped = auto_key(f0, 300.0, (150.0, 400.0))
    assert capped == pytest.approx(st(400.0) - st(p95)) and capped < median_shift
    assert np.percentile(shift_f0(f0, capped)[f0 > 0], 95) == pytest.approx(400.0, rel=1e-4)
    # its bottom would fall below: the smallest shift that keeps p5 at the bottom
    raised = auto_key(f0, 300.0, (290.0, 2000.0))
    assert raised == pytest.approx(st(290.0) - st(p5)) and raised > median_shift
    # wider than the range (10 semitones into 5): centred on it, in semitones
    centred = auto_key(f0, 300.0, (250.0, 250.0 * 2 ** (5 / 12)))
    assert centred == pytest.approx(st(250.0 * 2 ** (2.5 / 12)) - (st(p5) + st(p95)) / 2)
    assert auto_key(np.zeros(5), 300.0, (100.0, 900.0)) is None


def test_key_shift_scales_voiced_frames_only():
    f0 = np.array([0.0, 110.0, 220.0, 0.0], dtype=np.float32)
    np.testing.assert_allclose(shift_f0(f0, 12), [0.0, 220.0, 440.0, 0.0])
    np.testing.assert_allclose(shift_f0(f0, -12), [0.0, 55.0, 110.0, 0.0])
    semitones = auto_key(f0, target_median_hz=330.0)
    assert voiced_median(shift_f0(f0, semitones)) == pytest.approx(330.0, rel=1e-5)
    assert auto_key(np.zeros(5), 330.0) is None
    assert parse_key("auto") == "auto" and parse_key("+12") == 12.0 and parse_key(-2.5) == -2.5
    with pytest.raises(ValueError, match="semitones"):
        parse_key("up")


def test_notes_beyond_every_singers_range_earn_one_line_with_the_key_to_move_by():
    stats = {"a": {"median": 200.0, "p5": 150.0, "p95": 300.0}, "b": {"median": 400.0, "p5": 250.0, "p95": 500.0},
             "c": {"median": None, "p5": None, "p95": None}}
    assert trained_range(stats) == (150.0, 500.0) and trained_range({}) is None
    inside = np.concatenate([np.zeros(10), np.full(90, 480.0), np.full(10, 520.0)])  # 520 Hz: within a semitone
    assert notes_beyond_range(inside, stats) is None
    high = np.concatenate([np.zeros(10), np.full(80, 400.0), np.full(20, 800.0)])  # a fifth of the notes at 800 Hz
    warning = notes_beyond_range(high, stats)
    assert "20% of the notes asked lie above 500 Hz" in warning and "lower the key by about 9 semitones" in warning
    assert "\n" not in warning
    low = np.concatenate([np.full(80, 200.0), np.full(20, 100.0)])
    assert "lie below 150 Hz" in notes_beyond_range(low, stats) and "raise the key by about 8 semitones" in notes_beyond_range(low, stats)
    assert notes_beyond_range(np.full(100, 100.0)[:4].tolist() + [200.0] * 96, stats) is None  # 4 %: not enough
    assert notes_beyond_range(np.zeros(5), stats) is None and notes_beyond_range(high, {}) is None


def test_loudness_matching_follows_the_source_envelope():
    rng = np.random.default_rng(1)
    n = 24000
    envelope = np.linspace(0.01, 0.5, n).astype(np.float32)
    source = envelope * np.sin(np.arange(n) * 0.05).astype(np.float32)
    converted = 0.1 * rng.standard_normal(n).astype(np.float32)
    matched = match_loudness(converted, source)
    ratio = frame_rms(matched)[5:-5] / frame_rms(source)[5:-5]
    assert np.all(np.abs(ratio - 1.0) < 0.15)
    assert np.abs(peak_normalise(source, 0.9)).max() == pytest.approx(0.9)
    assert not peak_normalise(np.zeros(10), 0.9).any()


def test_singer_lookup_accepts_full_and_unambiguous_bare_names():
    singers = {"m4singer_Alto-1": 0, "opensinger_Alto-1": 1, "my_data_Bob": 2}
    stats = {"mel": {"m4singer": {}, "my_data": {}, "my": {}}, "f0": {"my_data_Bob": {"median": 180.0}}}
    assert resolve_singer("my_data_Bob", singers) == "my_data_Bob"
    assert resolve_singer("Bob", singers) == "my_data_Bob"
    with pytest.raises(UnknownSingerError, match="ambiguous.*m4singer_Alto-1.*opensinger_Alto-1"):
        resolve_singer("Alto-1", singers)
    with pytest.raises(UnknownSingerError, match="Valid singers: m4singer_Alto-1, my_data_Bob, opensinger_Alto-1"):
        resolve_singer("Carol", singers)
    assert singer_dataset("my_data_Bob", stats) == "my_data"
    assert singer_f0("my_data_Bob", stats) == 180.0
    assert singer_f0("m4singer_Alto-1", stats) is None
    assert singer_f0("my_data_Bob", stats, "p95") is None  # only the median recorded
