"""Objective metrics for singing voice conversion, computed the way SVC papers do.

Every function is pure (arrays in, numbers out) except the speaker encoder, which
loads Resemblyzer's weights once from its wheel. Conventions:

- F0 tracks are ``(T,)`` arrays in Hz with 0 = unvoiced, at any common frame rate
  (ComoSVC uses the mel frame rate, hop 256 at 24 kHz). Two tracks of different
  lengths are compared on their first ``min(T_ref, T_conv)`` frames: a converter
  keeps the timing of its input, so frame ``t`` of one is frame ``t`` of the other.
- "Voiced in both" frames carry the pitch metrics (FPC, cents RMSE); the V/UV F1
  scores the voiced/unvoiced decision itself with voiced as the positive class.
- Spectral metrics (MCD, multi-resolution STFT) take waveforms ``(N,)`` float at
  ``sample_rate`` Hz. MCD aligns the two with DTW; the STFT distance does not
  (it compares the first ``min(N_ref, N_conv)`` samples).
- An undefined value (e.g. FPC with fewer than two frames voiced in both) is
  ``nan``; averaging code should use ``np.nanmean``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# --------------------------------------------------------------------------- F0


def _common_frames(f0_ref: np.ndarray, f0_conv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f0_ref = np.asarray(f0_ref, dtype=np.float64).reshape(-1)
    f0_conv = np.asarray(f0_conv, dtype=np.float64).reshape(-1)
    n = min(len(f0_ref), len(f0_conv))
    return f0_ref[:n], f0_conv[:n]


def hz_to_cents(f0: np.ndarray, reference_hz: float = 10.0) -> np.ndarray:
    """Hz -> cents above ``reference_hz``: ``1200 * log2(f0 / reference_hz)``. Only for f0 > 0."""
    return 1200.0 * np.log2(np.asarray(f0, dtype=np.float64) / reference_hz)


def f0_pearson_correlation(f0_ref: np.ndarray, f0_conv: np.ndarray) -> float:
    """F0 Pearson correlation (FPC), unitless in [-1, 1], on frames voiced in both tracks.

    Computed on F0 in Hz (as in the SVC papers that report FPC). ``nan`` when fewer
    than two frames are voiced in both or either track is constant there.
    """
    ref, conv = _common_frames(f0_ref, f0_conv)
    both = (ref > 0) & (conv > 0)
    if both.sum() < 2:
        return float("nan")
    a, b = ref[both] - ref[both].mean(), conv[both] - conv[both].mean()
    denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
    if denominator == 0.0:
        return float("nan")
    return float((a * b).sum() / denominator)


def f0_octave_jumps(f0_ref: np.ndarray, f0_conv: np.ndarray, among: np.ndarray | None = None) -> float:
    """The share of frames voiced in both tracks where the conversion leaves the source's melody by
    more than half an octave (600 cents), after the conversion's median transposition is taken out.

    What drags :func:`f0_pearson_correlation` (on Hz) down when a conversion keeps the melody but
    jumps an octave in places (a weak fundamental read at twice or half the pitch): a few such frames
    weigh like a lost melody there. ``among``: a ``(T,)`` bool per frame, to count the share among
    those frames only (the transposition still taken over all). ``nan`` when no frame counted is
    voiced in both.
    """
    ref, conv = _common_frames(f0_ref, f0_conv)
    both = (ref > 0) & (conv > 0)
    if among is not None:  # frames past its end are not counted
        among = np.asarray(among, bool).reshape(-1)[: len(ref)]
        both_among = np.zeros_like(both)
        both_among[: len(among)] = among
    counted = both if among is None else both & both_among
    if not counted.any():
        return float("nan")
    cents = hz_to_cents(np.where(both, conv, 1.0)) - hz_to_cents(np.where(both, ref, 1.0))
    jumps = np.abs(cents - np.median(cents[both])) > 600.0
    return float(np.mean(jumps[counted]))


def f0_rmse_cents(f0_ref: np.ndarray, f0_conv: np.ndarray, subtract_median: bool = True) -> float:
    """F0 root-mean-square error in cents on frames voiced in both tracks.

    ``subtract_median=True`` (what ``evaluate`` reports, the SVC convention): each
    track is converted to cents and its own median over the voiced-in-both frames
    is subtracted before the error, so a constant transposition (a key shift, or a
    target singer's register) costs nothing and only the melody's shape counts.
    ``subtract_median=False`` gives the raw error: a pitch shift of ``k`` cents
    gives ``k``. ``nan`` when no frame is voiced in both.
    """
    ref, conv = _common_frames(f0_ref, f0_conv)
    both = (ref > 0) & (conv > 0)
    if not both.any():
        return float("nan")
    cents_ref, cents_conv = hz_to_cents(ref[both]), hz_to_cents(conv[both])
    if subtract_median:
        cents_ref = cents_ref - np.median(cents_ref)
        cents_conv = cents_conv - np.median(cents_conv)
    return float(np.sqrt(np.mean((cents_conv - cents_ref) ** 2)))


def vuv_f1(f0_ref: np.ndarray, f0_conv: np.ndarray) -> float:
    """F1 of the voiced/unvoiced decision, unitless in [0, 1]; voiced (F0 > 0) is the positive class.

    The reference track is the truth: ``F1 = 2 TP / (2 TP + FP + FN)``. ``nan`` when
    neither track has a voiced frame (F1 is undefined without positives).
    """
    ref, conv = _common_frames(f0_ref, f0_conv)
    truth, guess = ref > 0, conv > 0
    tp = int((truth & guess).sum())
    fp = int((~truth & guess).sum())
    fn = int((truth & ~guess).sum())
    if tp + fp + fn == 0:
        return float("nan")
    return 2.0 * tp / (2.0 * tp + fp + fn)


# --------------------------------------------------------------------------- mel-cepstrum and MCD

# Frequency-warping constant of the all-pass filter that best approximates the mel
# scale at each sample rate (the SPTK values used across the speech literature).
ALL_PASS_ALPHA = {8000: 0.31, 16000: 0.42, 22050: 0.455, 24000: 0.466, 32000: 0.504, 44100: 0.544, 48000: 0.554}


@functools.lru_cache(maxsize=8)
def _frequency_warp_matrix(n_in: int, order: int, alpha: float) -> np.ndarray:
    """Matrix ``W`` (n_in, order + 1) with ``mel_cepstrum = cepstrum @ W``.

    The SPTK ``freqt`` recursion (Oppenheim's all-pass warping of a cepstrum) is
    linear in its input, so running it once on the identity gives its matrix.
    Input coefficients are fed from the highest quefrency down to 0.
    """
    beta = 1.0 - alpha * alpha
    basis = np.eye(n_in)  # row k = unit cepstrum at quefrency k
    out = np.zeros((n_in, order + 1))
    for i in range(n_in - 1, -1, -1):
        prev = out.copy()
        out[:, 0] = basis[:, i] + alpha * prev[:, 0]
        if order >= 1:
            out[:, 1] = beta * prev[:, 0] + alpha * prev[:, 1]
        for j in range(2, order + 1):
            out[:, j] = prev[:, j - 1] + alpha * (prev[:, j] - out[:, j - 1])
    return out


def spectrum_to_mel_cepstrum(power_spectrum: np.ndarray, order: int = 24, alpha: float = 0.466) -> np.ndarray:
    """Power spectral envelope ``(T, n_fft // 2 + 1)`` -> mel-cepstrum ``(T, order + 1)``.

    The minimum-phase cepstrum of the amplitude envelope (``c(0)`` = mean log
    amplitude, ``c(m) = 2 * real cepstrum``, the SPTK convention, so that
    ``log|H(w)| = c(0) + sum c(m) cos(m w)``), warped onto the mel scale by the
    first-order all-pass ``alpha`` and truncated to ``order``. Equivalent to SPTK's
    ``sp2mc`` except that only the causal half of the cepstrum is warped.
    """
    log_power = np.log(np.maximum(np.asarray(power_spectrum, dtype=np.float64), 1e-300))
    n_bins = log_power.shape[-1]
    cepstrum = np.fft.irfft(log_power, axis=-1)[..., :n_bins]  # of log power = 2 * of log amplitude
    cepstrum[..., 0] /= 2.0
    return cepstrum @ _frequency_warp_matrix(n_bins, order, float(alpha))


def mel_cepstrum(
    wav: np.ndarray,
    sample_rate: int = 24000,
    order: int = 24,
    alpha: float | None = None,
    hop_length: int = 256,
) -> np.ndarray:
    """Mel-cepstrum ``(T, order + 1)`` of a waveform from the WORLD spectral envelope.

    WORLD analysis (pyworld ``dio`` + ``stonemask`` F0, then ``cheaptrick``) every
    ``hop_length`` samples, then :func:`spectrum_to_mel_cepstrum`. ``alpha``
    defaults to :data:`ALL_PASS_ALPHA` for ``sample_rate`` (0.466 at 24 kHz).
    Column 0 is the energy term ``c0``; MCD leaves it out.
    """
    import pyworld

    if alpha is None:
        if sample_rate not in ALL_PASS_ALPHA:
            raise ValueError(
                f"No standard all-pass alpha for {sample_rate} Hz; pass alpha= (known rates: "
                f"{sorted(ALL_PASS_ALPHA)})."
            )
        alpha = ALL_PASS_ALPHA[sample_rate]
    x = np.ascontiguousarray(np.asarray(wav, dtype=np.float64).reshape(-1))
    frame_period_ms = 1000.0 * hop_length / sample_rate
    f0, times = pyworld.dio(x, sample_rate, frame_period=frame_period_ms)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    return spectrum_to_mel_cepstrum(envelope, order, alpha)


DTW_RADIUS = 300  # frames either side of the diagonal searched by DTW (3.2 s at 93.75 frames/s)


def dtw_path(x: np.ndarray, y: np.ndarray, radius: int | None = DTW_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping of ``x`` (N, D) and ``y`` (M, D) with Euclidean frame distance.

    Returns index arrays ``(i, j)`` of the cheapest path from (0, 0) to (N-1, M-1)
    with steps (1, 0), (0, 1) and (1, 1) and unit weights. Row ``i`` of ``x`` may
    only pair with columns within ``radius`` of the straight line from corner to
    corner (a Sakoe-Chiba band, which keeps memory at ``N * (2 radius + 1)`` for
    whole songs); ``radius=None`` searches the full matrix.

    Each row of the accumulated cost is computed at once: enter row ``i`` from row
    ``i - 1`` (down or diagonal), then take any run of steps along the row, which
    is a running minimum over prefix sums of the row's costs.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    n, m = len(x), len(y)
    r = max(n, m) if radius is None else max(int(radius), 1)
    centre = np.round(np.arange(n) * (m - 1) / max(n - 1, 1)).astype(int)
    hi = np.minimum(centre + r, m - 1)
    hi[-1] = m - 1  # the path ends at (N-1, M-1), even for N = 1
    lo = np.maximum(centre - r, 0)
    lo = np.minimum(lo, np.concatenate([[0], hi[:-1] + 1]))  # consecutive rows always connect
    acc: list[np.ndarray] = []  # acc[i][k] = accumulated cost of cell (i, lo[i] + k)

    def accumulated(i: int, cols: np.ndarray) -> np.ndarray:  # inf outside the band
        out = np.full(len(cols), np.inf)
        inside = (cols >= lo[i]) & (cols <= hi[i])
        out[inside] = acc[i][cols[inside] - lo[i]]
        return out

    def cell(i: int, j: int) -> float:
        return float(acc[i][j - lo[i]]) if i >= 0 and lo[i] <= j <= hi[i] else np.inf

    for i in range(n):
        cols = np.arange(lo[i], hi[i] + 1)
        cost = np.sqrt(((y[cols] - x[i]) ** 2).sum(-1))
        if i == 0:
            entry = np.full(len(cols), np.inf)
            entry[0] = cost[0]  # the path starts at (0, 0)
        else:
            entry = np.minimum(accumulated(i - 1, cols), accumulated(i - 1, cols - 1)) + cost
        prefix = np.cumsum(cost)
        acc.append(prefix + np.minimum.accumulate(entry - prefix))

    # backtrack from the end, preferring the diagonal on ties
    i, j = n - 1, m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        i, j = min([(i - 1, j - 1), (i - 1, j), (i, j - 1)], key=lambda step: cell(*step))
        path.append((i, j))
    path.reverse()
    rows, cols = np.array(path).T
    return rows, cols


MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)  # dB per unit of cepstral Euclidean distance


def mel_cepstral_distortion(
    mcep_ref: np.ndarray, mcep_conv: np.ndarray, align: bool = True, radius: int | None = DTW_RADIUS
) -> float:
    """Mel-cepstral distortion in dB between two mel-cepstra ``(T, order + 1)``.

    ``MCD = 10 / ln 10 * sqrt(2 * sum_{d=1}^{order} (c_d - c'_d)^2)`` per frame pair,
    ``c0`` (energy) excluded, averaged over the frame pairs of the DTW path
    (Euclidean cost on the same coefficients, band ``radius`` frames, see
    :func:`dtw_path`; ``align=False`` pairs frames by index over the shorter
    length instead). Every frame counts, silences included.
    """
    ref = np.asarray(mcep_ref, dtype=np.float64)[:, 1:]
    conv = np.asarray(mcep_conv, dtype=np.float64)[:, 1:]
    if align:
        rows, cols = dtw_path(ref, conv, radius)
        ref, conv = ref[rows], conv[cols]
    else:
        n = min(len(ref), len(conv))
        ref, conv = ref[:n], conv[:n]
    distance = np.sqrt(((ref - conv) ** 2).sum(-1))
    return float(MCD_SCALE * distance.mean())


def mcd(wav_ref: np.ndarray, wav_conv: np.ndarray, sample_rate: int = 24000, order: int = 24) -> float:
    """MCD in dB between two waveforms: 24-order WORLD mel-cepstra, DTW-aligned (see above)."""
    return mel_cepstral_distortion(
        mel_cepstrum(wav_ref, sample_rate, order), mel_cepstrum(wav_conv, sample_rate, order)
    )


# --------------------------------------------------------------------------- multi-resolution STFT

STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft = window, hop) with Hann windows


def multi_resolution_stft_distance(
    wav_ref: np.ndarray,
    wav_conv: np.ndarray,
    resolutions: tuple[tuple[int, int], ...] = STFT_RESOLUTIONS,
    eps: float = 1e-7,
) -> float:
    """Multi-resolution STFT distance (unitless, 0 = identical), the vocoder/SVC loss used as a metric.

    For each (n_fft, hop) with a Hann window of n_fft samples: spectral convergence
    ``||S_ref| - |S_conv||_F / ||S_ref||_F`` plus the mean absolute difference of
    log magnitudes (natural log, magnitudes floored at ``eps``); the result is the
    mean over resolutions of that sum. Compares the first ``min(N_ref, N_conv)``
    samples without alignment.
    """
    import torch

    n = min(len(wav_ref), len(wav_conv))
    ref = torch.as_tensor(np.asarray(wav_ref, dtype=np.float32).reshape(-1)[:n])
    conv = torch.as_tensor(np.asarray(wav_conv, dtype=np.float32).reshape(-1)[:n])
    totals = []
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft)
        pad_mode = "reflect" if n > n_fft // 2 else "constant"  # reflect needs more samples than the pad

        def magnitude(x: torch.Tensor) -> torch.Tensor:
            spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode=pad_mode, return_complex=True)
            return spec.abs().double().clamp(min=eps)

        spec = [magnitude(ref), magnitude(conv)]
        convergence = torch.linalg.norm(spec[0] - spec[1]) / torch.linalg.norm(spec[0])
        log_l1 = (spec[0].log() - spec[1].log()).abs().mean()
        totals.append(float(convergence + log_l1))
    return float(np.mean(totals))


# --------------------------------------------------------------------------- speaker similarity

RESEMBLYZER_RATE = 16000  # Hz, what the encoder expects after preprocess_wav


@functools.lru_cache(maxsize=1)
def _voice_encoder():
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def speaker_embedding(wav: np.ndarray, sample_rate: int = 24000) -> np.ndarray:
    """Resemblyzer embedding ``(256,)`` with unit L2 norm of one clip.

    ``preprocess_wav`` resamples to 16 kHz, normalises loudness and shortens long
    silences; the pretrained GE2E encoder (weights in the resemblyzer wheel) runs
    on the CPU. A clip whose voice is trimmed away entirely falls back to the raw
    16 kHz audio.
    """
    from resemblyzer import preprocess_wav

    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    processed = preprocess_wav(wav, source_sr=sample_rate)
    if len(processed) < RESEMBLYZER_RATE // 10:
        processed = _resample_16k(wav, sample_rate)
    return _voice_encoder().embed_utterance(processed).astype(np.float64)


def _resample_16k(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    from comosvc.audio import resample

    return resample(wav, sample_rate, RESEMBLYZER_RATE)


def mean_speaker_embedding(embeddings: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Mean of clip embeddings ``(K, D)``, renormalised to unit length ``(D,)`` (Resemblyzer's speaker embedding)."""
    mean = np.mean(np.asarray(embeddings, dtype=np.float64), axis=0)
    return mean / np.linalg.norm(mean)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors, in [-1, 1]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def speaker_similarity(wav: np.ndarray, target_embedding: np.ndarray, sample_rate: int = 24000) -> float:
    """Speaker similarity in [-1, 1]: cosine of a clip's Resemblyzer embedding and the target singer's mean embedding."""
    return cosine_similarity(speaker_embedding(wav, sample_rate), target_embedding)


__all__ = [
    "ALL_PASS_ALPHA",
    "DTW_RADIUS",
    "MCD_SCALE",
    "STFT_RESOLUTIONS",
    "cosine_similarity",
    "dtw_path",
    "f0_pearson_correlation",
    "f0_rmse_cents",
    "hz_to_cents",
    "mcd",
    "mean_speaker_embedding",
    "mel_cepstral_distortion",
    "mel_cepstrum",
    "multi_resolution_stft_distance",
    "speaker_embedding",
    "speaker_similarity",
    "spectrum_to_mel_cepstrum",
    "vuv_f1",
]
