"""SVC metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comosvc import metrics as M
from comosvc.data.songs import singer_voice, sung_phrase

# --------------------------------------------------------------------------- F0


@pytest.fixture(scope="module")
def f0_track() -> np.ndarray:
    """A vibrato melody with unvoiced gaps, (200,) Hz."""
    t = np.arange(200)
    f0 = 220.0 * 2 ** (np.sin(t / 9.0) / 6.0)
    f0[:20] = 0.0
    f0[90:110] = 0.0
    return f0


def test_identical_tracks_are_perfect(f0_track):
    assert M.f0_pearson_correlation(f0_track, f0_track) == pytest.approx(1.0)
    assert M.f0_rmse_cents(f0_track, f0_track) == 0.0
    assert M.f0_rmse_cents(f0_track, f0_track, subtract_median=False) == 0.0
    assert M.vuv_f1(f0_track, f0_track) == 1.0


def test_known_pitch_shift_in_cents(f0_track):
    shifted = f0_track * 2 ** (100 / 1200)  # +100 cents on voiced frames, 0 stays 0
    assert M.f0_rmse_cents(f0_track, shifted, subtract_median=False) == pytest.approx(100.0)
    assert M.f0_rmse_cents(f0_track, shifted) == pytest.approx(0.0, abs=1e-9)  # what evaluate reports
    assert M.f0_pearson_correlation(f0_track, shifted) == pytest.approx(1.0)
    assert M.vuv_f1(f0_track, shifted) == 1.0


def test_fpc_hand_computed_on_frames_voiced_in_both():
    ref = np.array([100.0, 200.0, 300.0, 0.0, 150.0])
    conv = np.array([110.0, 190.0, 330.0, 120.0, 0.0])  # last two frames are voiced in one track only
    # a = [-100, 0, 100], b = [-100, -20, 120]: r = 22000 / sqrt(20000 * 24800)
    assert M.f0_pearson_correlation(ref, conv) == pytest.approx(22000 / math.sqrt(20000 * 24800))


def test_cents_rmse_hand_computed_after_median_subtraction():
    ref = np.array([100.0, 200.0, 400.0])  # cents minus median: -1200, 0, 1200
    conv = np.array([100.0, 200.0, 800.0])  # -1200, 0, 2400
    assert M.f0_rmse_cents(ref, conv) == pytest.approx(math.sqrt(1200**2 / 3))
    # raw: errors 0, 0, 1200 cents too (same medians here)
    assert M.f0_rmse_cents(ref, conv, subtract_median=False) == pytest.approx(math.sqrt(1200**2 / 3))


def test_octave_jumps_count_only_frames_off_the_transposed_melody():
    ref = np.array([200.0, 220.0, 240.0, 260.0, 0.0, 280.0, 300.0, 320.0, 340.0])
    conv = ref * 2 ** (5 / 12)  # a fifth up: a transposition, no jump
    assert M.f0_octave_jumps(ref, conv) == 0.0
    conv[[1, 6]] *= 2  # two of the 8 voiced frames an octave up
    conv[3] = 0.0  # unvoiced in the conversion: not counted
    assert M.f0_octave_jumps(ref, conv) == pytest.approx(2 / 7)
    assert M.f0_pearson_correlation(ref, conv) < 0.5  # what the jumps do to the correlation
    assert math.isnan(M.f0_octave_jumps(ref, np.zeros_like(ref)))
    # among chosen frames: the high notes (>= 300 Hz: frames 6, 7, 8) hold one jump of 3, the others one of 4
    high = ref >= 300
    assert M.f0_octave_jumps(ref, conv, among=high) == pytest.approx(1 / 3)
    assert M.f0_octave_jumps(ref, conv, among=~high) == pytest.approx(1 / 4)
    assert M.f0_octave_jumps(ref, conv, among=high[:7]) == pytest.approx(1 / 1)  # frames past its end not counted
    assert math.isnan(M.f0_octave_jumps(ref, conv, among=ref > 1000))


def test_vuv_f1_hand_computed():
    ref = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float) * 200
    conv = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], dtype=float) * 300
    # TP = 3, FP = 2, FN = 1: F1 = 6 / (6 + 2 + 1)
    assert M.vuv_f1(ref, conv) == pytest.approx(2 / 3)
    assert M.vuv_f1(conv, ref) == pytest.approx(2 / 3)  # symmetric in TP/(FP+FN) terms


def test_undefined_cases_are_nan_and_lengths_are_trimmed():
    silent = np.zeros(10)
    voiced = np.full(10, 200.0)
    assert math.isnan(M.f0_pearson_correlation(silent, voiced))
    assert math.isnan(M.f0_pearson_correlation(voiced, voiced))  # constant: correlation undefined
    assert math.isnan(M.f0_rmse_cents(silent, voiced))
    assert math.isnan(M.vuv_f1(silent, silent))
    assert M.vuv_f1(silent, voiced) == 0.0
    # a converter output one frame longer is compared on the common frames
    assert M.f0_rmse_cents(voiced, np.append(voiced, 400.0), subtract_median=False) == 0.0


# --------------------------------------------------------------------------- mel-cepstrum and MCD


def test_mel_cepstrum_follows_the_warped_envelope():
    w = np.linspace(0, np.pi, 513)
    log_amplitude = 0.2 + np.cos(w) + 0.5 * np.cos(2 * w) - 0.3 * np.cos(3 * w)
    power = np.exp(2 * log_amplitude)[None]
    # alpha = 0: the ordinary (minimum-phase) cepstrum: c0 = 0.2, c1..c3 = 1, 0.5, -0.3
    np.testing.assert_allclose(M.spectrum_to_mel_cepstrum(power, 5, 0.0)[0], [0.2, 1, 0.5, -0.3, 0, 0], atol=1e-12)
    # alpha = 0.466: log|H(w)| = c0 + sum c_m cos(m * warped(w)), warped = phase of the all-pass
    alpha, order = 0.466, 60
    mc = M.spectrum_to_mel_cepstrum(power, order, alpha)[0]
    warped = np.arctan2((1 - alpha**2) * np.sin(w), (1 + alpha**2) * np.cos(w) - 2 * alpha)
    rebuilt = mc[0] + np.cos(np.outer(warped, np.arange(1, order + 1))) @ mc[1:]
    np.testing.assert_allclose(rebuilt, log_amplitude, atol=1e-9)


def test_mcd_hand_computed_and_c0_excluded():
    a = np.zeros((7, 25))
    b = a.copy()
    b[:, 0] = 5.0  # energy only: ignored
    assert M.mel_cepstral_distortion(a, b) == 0.0
    b[:, 3] = 0.1
    assert M.mel_cepstral_distortion(a, b, align=False) == pytest.approx(10 / math.log(10) * math.sqrt(2 * 0.01))


def test_dtw_path_hand_computed():
    x = np.array([[0.0], [1.0], [2.0], [2.1]])
    y = np.array([[0.0], [1.0], [2.0]])
    # the last frame of x pairs with the last of y; everything else on the diagonal
    for radius in (None, 1):
        rows, cols = M.dtw_path(x, y, radius)
        assert list(zip(rows, cols)) == [(0, 0), (1, 1), (2, 2), (3, 2)]
    rows, cols = M.dtw_path(y, x)  # and the other way round
    assert list(zip(rows, cols)) == [(0, 0), (1, 1), (2, 2), (2, 3)]


def test_dtw_finds_the_cheapest_path():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n, m = rng.integers(1, 12, 2)
        x, y = rng.standard_normal((n, 2)), rng.standard_normal((m, 2))
        cost = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
        best = np.full((n + 1, m + 1), np.inf)  # textbook O(N M) recursion
        best[0, 0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                best[i, j] = cost[i - 1, j - 1] + min(best[i - 1, j], best[i, j - 1], best[i - 1, j - 1])
        rows, cols = M.dtw_path(x, y, radius=None)
        assert cost[rows, cols].sum() == pytest.approx(best[n, m])
        rows, cols = M.dtw_path(x, y, radius=1)  # a narrow band still ends in the corner
        assert (rows[-1], cols[-1]) == (n - 1, m - 1)
        assert set(zip(np.diff(rows), np.diff(cols))) <= {(1, 0), (0, 1), (1, 1)}


def test_dtw_undoes_a_frame_repetition():
    rng = np.random.default_rng(0)
    mcep = rng.standard_normal((40, 25))
    stretched = mcep[np.repeat(np.arange(40), [1, 2] * 20)]  # 60 frames: every other frame twice
    for radius in (None, 3):
        assert M.mel_cepstral_distortion(mcep, stretched, radius=radius) == pytest.approx(0.0, abs=1e-12)
    assert M.mel_cepstral_distortion(mcep, stretched, align=False) > 5.0


def test_dtw_band_handles_long_sequences():
    # 5000 x 6000 frames (about a minute) with a narrow band: no N x M matrix is built
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5000, 4))
    y = x[np.sort(rng.integers(0, 5000, 6000))]
    rows, cols = M.dtw_path(x, y, radius=20)
    assert rows[0] == cols[0] == 0 and rows[-1] == 4999 and cols[-1] == 5999
    assert np.all(np.diff(rows) >= 0) and np.all(np.diff(cols) >= 0)
    assert np.all(np.diff(rows) + np.diff(cols) >= 1)


@pytest.fixture(scope="module")
def phrases() -> dict[str, np.ndarray]:
    """The same phrase, a slower copy of it, and a different phrase by a different voice (24 kHz)."""
    same, _ = sung_phrase([220.0, 330.0, 262.0], note_seconds=0.5, gap_seconds=0.1, seed=3)
    slower, _ = sung_phrase([220.0, 330.0, 262.0], note_seconds=0.65, gap_seconds=0.13, seed=3)
    other, _ = sung_phrase([300.0, 200.0, 400.0], note_seconds=0.5, gap_seconds=0.1, voice=singer_voice(2), seed=5)
    return {"same": same, "slower": slower, "other": other}


def test_waveform_mcd(phrases):
    same, slower, other = phrases["same"], phrases["slower"], phrases["other"]
    mcep = M.mel_cepstrum(same)
    assert mcep.shape == (len(same) // 256 + 1, 25)  # WORLD frames include both ends
    assert M.mcd(same, same) == 0.0
    stretched, different = M.mcd(same, slower), M.mcd(same, other)
    assert stretched < 2.0 < 4.0 < different  # measured: 0.84 dB vs 6.3 dB
    unaligned = M.mel_cepstral_distortion(mcep, M.mel_cepstrum(slower), align=False)
    assert unaligned > 3 * stretched


def test_mrstft(phrases):
    same, other = phrases["same"], phrases["other"]
    assert M.multi_resolution_stft_distance(same, same) == 0.0
    noise = 0.1 * np.random.default_rng(0).standard_normal(24000)
    # half the amplitude: spectral convergence 0.5, log-magnitude L1 ln 2, at every resolution
    assert M.multi_resolution_stft_distance(noise, 0.5 * noise) == pytest.approx(0.5 + math.log(2), rel=1e-6)
    assert M.multi_resolution_stft_distance(same, other) > 1.0
    assert M.multi_resolution_stft_distance(same[:300], same[:300]) == 0.0  # shorter than the largest window


# --------------------------------------------------------------------------- speaker similarity


def test_speaker_similarity_self_and_symmetry(phrases):
    same, other = phrases["same"], phrases["other"]
    embedding = M.speaker_embedding(same)
    assert embedding.shape == (256,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    noisy = same + 0.001 * np.random.default_rng(1).standard_normal(len(same)).astype(np.float32)
    target = M.mean_speaker_embedding([embedding])
    assert M.speaker_similarity(noisy, target) > 0.99
    other_embedding = M.speaker_embedding(other)
    assert M.cosine_similarity(embedding, other_embedding) == pytest.approx(M.cosine_similarity(other_embedding, embedding))
    assert np.linalg.norm(M.mean_speaker_embedding([embedding, other_embedding])) == pytest.approx(1.0)
    # Resemblyzer does not separate our synthetic voices reliably (a different voice singing the
    # same notes scored 0.98, the same voice singing other notes 0.73), so no cross-voice ordering is tested.
