"""Pitch shifting that keeps a clip's length: a phase-vocoder stretch, then resampling.

    >>> shifted, semitones = pitch_shift(wav, 24000, 7.0)   # (N,) -> (N,), about 7 semitones up

Used to make content features that disagree with a clip's F0 (comosvc/data/shifted_content.py).
The resampling rate is rounded to a 100 Hz grid, which keeps the resampling kernel short
(``torchaudio.functional.pitch_shift`` resamples at ``int(rate)``, whose kernel can take tens of
seconds to build); the shift actually applied is returned beside the audio.
"""

from __future__ import annotations

import math

import numpy as np
import torch

RATE_GRID_HZ = 100  # the resampling rate's grid
N_FFT, HOP = 1024, 256  # the stretch's STFT (42.7 ms window at 24 kHz)


def pitch_shift(wav: np.ndarray, sample_rate: int, semitones: float) -> tuple[np.ndarray, float]:
    """``wav`` ``(N,)`` float at ``sample_rate`` Hz, its pitch moved by about ``semitones``
    (positive: up), with its length kept: ``((N,) float32, the semitones applied)``.

    The formants move with the pitch, as a resampled recording's do; the clip's RMS level is kept.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"pitch_shift takes a mono clip (N,), got {wav.shape}")
    import torchaudio.functional as AF

    rate = round(sample_rate * 2.0 ** (semitones / 12.0) / RATE_GRID_HZ) * RATE_GRID_HZ  # Hz, the stretched clip's
    ratio = rate / sample_rate  # the pitch ratio applied
    if rate == sample_rate or len(wav) < N_FFT:
        return wav.copy(), 0.0
    x = torch.from_numpy(wav)
    window = torch.hann_window(N_FFT)
    spec = torch.stft(x, N_FFT, HOP, window=window, return_complex=True)  # (F, frames)
    advance = torch.linspace(0, math.pi * HOP, N_FFT // 2 + 1)[:, None]
    stretched = AF.phase_vocoder(spec, 1.0 / ratio, advance)  # ``ratio`` times longer, same pitch
    longer = torch.istft(stretched, N_FFT, HOP, window=window, length=round(len(wav) * ratio))
    out = AF.resample(longer, rate, sample_rate)  # back to N samples, the pitch times ``ratio``
    out = torch.nn.functional.pad(out, (0, max(0, len(wav) - len(out))))[: len(wav)]
    # torchaudio's phase vocoder loses about half the level when it lengthens (an upward shift): the
    # clip's RMS is put back
    level = float(x.pow(2).mean().sqrt())
    out = out * (level / float(out.pow(2).mean().sqrt().clamp_min(1e-8))) if level > 0 else out
    return out.numpy().astype(np.float32), 12.0 * math.log2(ratio)


__all__ = ["pitch_shift"]
