"""The BigVGAN log mel spectrogram and its per-bin min/max normalisation.

The mel is exactly the one NVIDIA's BigVGAN v2 (24 kHz, 100 bands, hop 256) and
Amphion's singing BigVGAN were trained on (docs/design.md "Audio and the mel spectrogram"), so their
checkpoints vocode our mels:

1. reflect-pad ``(n_fft - hop) / 2`` samples on each side (384 at the defaults);
2. STFT with ``center=False`` and a periodic Hann window of ``win_length``;
3. magnitude ``sqrt(re^2 + im^2 + 1e-9)``;
4. Slaney-normalised Slaney-scale mel filterbank (``librosa.filters.mel`` defaults);
5. natural log of ``clamp(x, 1e-5)``.

A clip of ``N`` samples gives ``T = N // hop`` frames; frame ``i`` is centred on
sample ``i * hop + hop / 2``.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF

from comosvc.config import AudioConfig

MAGNITUDE_EPS = 1e-9  # added under the square root of the power spectrum
LOG_CLAMP = 1e-5  # log(clamp(mel, LOG_CLAMP)); log(1e-5) = -11.51 is the floor of the log mel


class MelSpectrogram(torch.nn.Module):
    """Waveform -> BigVGAN log mel.

    ``forward(wav)``: ``(B, N)`` or ``(N,)`` float samples at ``cfg.sample_rate`` ->
    ``(B, T, n_mels)`` or ``(T, n_mels)`` natural-log mel, ``T = N // hop_length``.
    """

    def __init__(self, cfg: AudioConfig = AudioConfig()):
        super().__init__()
        if cfg.n_fft < cfg.hop_length or (cfg.n_fft - cfg.hop_length) % 2:
            raise ValueError(
                f"n_fft - hop_length must be even and >= 0 (got n_fft={cfg.n_fft}, hop={cfg.hop_length})"
            )
        self.n_fft = cfg.n_fft
        self.hop_length = cfg.hop_length
        self.win_length = cfg.win_length
        self.pad = (cfg.n_fft - cfg.hop_length) // 2
        # (n_freqs, n_mels): identical to librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) (Slaney).
        fbank = AF.melscale_fbanks(
            n_freqs=cfg.n_fft // 2 + 1,
            f_min=cfg.fmin,
            f_max=cfg.fmax,
            n_mels=cfg.n_mels,
            sample_rate=cfg.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_basis", fbank.T.contiguous(), persistent=False)  # (n_mels, n_freqs)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        squeeze = wav.dim() == 1
        if squeeze:
            wav = wav.unsqueeze(0)
        if wav.dim() != 2:
            raise ValueError(f"expected a waveform of shape (B, N) or (N,), got {tuple(wav.shape)}")
        if wav.shape[-1] <= self.pad:
            raise ValueError(
                f"a waveform of {wav.shape[-1]} samples is too short for the mel "
                f"(needs more than {self.pad}; one analysis frame is {self.n_fft})"
            )
        wav = wav.float()
        padded = torch.nn.functional.pad(wav.unsqueeze(1), (self.pad, self.pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            padded,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        )  # (B, n_freqs, T)
        magnitude = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAGNITUDE_EPS)
        mel = torch.log(torch.clamp(self.mel_basis @ magnitude, min=LOG_CLAMP))  # (B, n_mels, T)
        mel = mel.transpose(1, 2)  # (B, T, n_mels)
        return mel[0] if squeeze else mel


_MEL_CACHE: dict[tuple, MelSpectrogram] = {}


def log_mel(wav: np.ndarray, cfg: AudioConfig = AudioConfig()) -> np.ndarray:
    """NumPy convenience: ``(N,)`` samples at ``cfg.sample_rate`` -> ``(N // hop, n_mels)`` float32 log mel."""
    key = (cfg.sample_rate, cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = MelSpectrogram(cfg)
    with torch.no_grad():
        mel = _MEL_CACHE[key](torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)))
    return mel.numpy()


class MelStats:
    """Per-mel-bin min/max over a dataset; maps log mel to the model space [-1, 1].

    ``normalize(mel) = (mel - min) / (max - min + 1e-12) * 2 - 1``. Works on NumPy
    arrays and torch tensors of shape ``(..., n_mels)``. ``to_dict()`` is one
    dataset's entry of stats.json's ``"mel"`` section: ``{"min": [...], "max": [...]}``.
    """

    EPS = 1e-12

    def __init__(self, mel_min: np.ndarray | None = None, mel_max: np.ndarray | None = None):
        self.min = None if mel_min is None else np.asarray(mel_min, dtype=np.float64)
        self.max = None if mel_max is None else np.asarray(mel_max, dtype=np.float64)

    def update(self, mel: np.ndarray | torch.Tensor) -> "MelStats":
        """Fold the frames of one log mel ``(..., T, n_mels)`` into the running min/max."""
        if isinstance(mel, torch.Tensor):
            mel = mel.detach().double().cpu().numpy()
        frames = np.asarray(mel, dtype=np.float64).reshape(-1, np.shape(mel)[-1])
        if frames.shape[0] == 0:
            return self
        lo, hi = frames.min(axis=0), frames.max(axis=0)
        if self.min is None:
            self.min, self.max = lo, hi
        else:
            if lo.shape != self.min.shape:
                raise ValueError(f"mel has {lo.shape[0]} bins but the stats have {self.min.shape[0]}")
            self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)
        return self

    def _bounds(self, like):
        if self.min is None:
            raise ValueError("MelStats is empty: update() it with training mels or load it with from_dict()")
        if isinstance(like, torch.Tensor):
            return (
                torch.as_tensor(self.min, dtype=like.dtype, device=like.device),
                torch.as_tensor(self.max, dtype=like.dtype, device=like.device),
            )
        dtype = like.dtype if np.issubdtype(np.asarray(like).dtype, np.floating) else np.float32
        return self.min.astype(dtype), self.max.astype(dtype)

    def normalize(self, mel):
        """Log mel ``(..., n_mels)`` -> model space, [-1, 1] on the training data."""
        lo, hi = self._bounds(mel)
        return (mel - lo) / (hi - lo + self.EPS) * 2 - 1

    def denormalize(self, x):
        """Model space ``(..., n_mels)`` -> log mel (the inverse of :meth:`normalize`)."""
        lo, hi = self._bounds(x)
        return (x + 1) / 2 * (hi - lo + self.EPS) + lo

    def to_dict(self) -> dict:
        if self.min is None:
            raise ValueError("MelStats is empty: nothing to save")
        return {"min": [float(v) for v in self.min], "max": [float(v) for v in self.max]}

    @classmethod
    def from_dict(cls, data: dict) -> "MelStats":
        try:
            lo, hi = data["min"], data["max"]
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"mel stats must look like {{'min': [...], 'max': [...]}}, got {str(data)[:80]!r}"
            ) from err
        if len(lo) != len(hi):
            raise ValueError(f"mel stats min has {len(lo)} bins but max has {len(hi)}")
        return cls(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))

    def __repr__(self) -> str:
        n = 0 if self.min is None else len(self.min)
        return f"MelStats(n_mels={n})"


__all__ = ["LOG_CLAMP", "MelSpectrogram", "MelStats", "log_mel"]
