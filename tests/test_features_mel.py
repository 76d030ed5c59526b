"""The BigVGAN log mel against an independent NumPy/librosa computation, and MelStats."""

from __future__ import annotations

import json

import librosa
import numpy as np
import pytest
import torch

from comosvc.config import AudioConfig
from comosvc.features.mel import MelSpectrogram, MelStats, log_mel


def reference_log_mel(wav: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """The mel of docs/design.md written out with NumPy and librosa only: (T, n_mels), float64."""
    pad = (cfg.n_fft - cfg.hop_length) // 2
    x = np.pad(wav.astype(np.float64), pad, mode="reflect")
    n_frames = 1 + (len(x) - cfg.n_fft) // cfg.hop_length
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.win_length) / cfg.win_length)  # periodic Hann
    frames = np.stack([x[i * cfg.hop_length : i * cfg.hop_length + cfg.n_fft] for i in range(n_frames)])
    spec = np.fft.rfft(frames * window, n=cfg.n_fft, axis=1)  # (T, n_freqs)
    magnitude = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    basis = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
    )  # (n_mels, n_freqs), Slaney
    return np.log(np.maximum(magnitude @ basis.T.astype(np.float64), 1e-5))


def test_mel_matches_numpy_librosa(sung_clip):
    cfg = AudioConfig()
    wav = sung_clip[0]
    rng = np.random.default_rng(0)
    wav = wav + 0.01 * rng.standard_normal(len(wav)).astype(np.float32)  # content in every bin
    ours = log_mel(wav, cfg)
    ref = reference_log_mel(wav, cfg)
    assert ours.shape == ref.shape == (len(wav) // 256, 100)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_mel_filterbank_is_librosa_slaney():
    cfg = AudioConfig()
    ours = MelSpectrogram(cfg).mel_basis.numpy()
    ref = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=100, fmin=0.0, fmax=12000.0)
    np.testing.assert_allclose(ours, ref, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("n", [1024, 1025, 1279, 1280, 4095, 24000, 24001, 24255, 24256, 48000 + 77])
def test_mel_frame_count(n):
    wav = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    assert log_mel(wav).shape == (n // 256, 100)


def test_mel_batched_equals_single_and_silence_floor():
    mel = MelSpectrogram(AudioConfig())
    wav = torch.randn(3, 5000) * 0.1
    batch = mel(wav)
    assert batch.shape == (3, 5000 // 256, 100)
    torch.testing.assert_close(batch[1], mel(wav[1]), atol=1e-5, rtol=0)
    silent = mel(torch.zeros(2048))
    # sqrt(1e-9) in every bin: log of a tiny positive number, clamped at log(1e-5)
    assert torch.all(silent >= np.log(1e-5) - 1e-6) and torch.all(silent < -9)


def test_mel_rejects_too_short():
    with pytest.raises(ValueError, match="too short"):
        MelSpectrogram()(torch.zeros(100))


def test_mel_stats_update_normalize_roundtrip():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 100)) - 5, rng.normal(size=(30, 100)) - 3
    stats = MelStats().update(a).update(torch.from_numpy(b))
    both = np.concatenate([a, b])
    np.testing.assert_allclose(stats.min, both.min(0))
    np.testing.assert_allclose(stats.max, both.max(0))
    x = stats.normalize(both)
    assert x.min() >= -1 - 1e-9 and x.max() <= 1 + 1e-9
    np.testing.assert_allclose(x.min(0), -1, atol=1e-9)
    np.testing.assert_allclose(x.max(0), 1, atol=1e-9)
    np.testing.assert_allclose(stats.denormalize(x), both, atol=1e-9)
    # torch path, same numbers
    xt = stats.normalize(torch.from_numpy(both).float())
    np.testing.assert_allclose(xt.numpy(), x, atol=1e-5)
    # stats.json "mel" per-dataset format survives JSON
    again = MelStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert set(stats.to_dict()) == {"min", "max"} and len(stats.to_dict()["min"]) == 100
    np.testing.assert_allclose(again.normalize(both), x)


def test_mel_stats_errors():
    with pytest.raises(ValueError, match="empty"):
        MelStats().normalize(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="min"):
        MelStats.from_dict({"max": [1.0]})
