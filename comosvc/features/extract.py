"""The one place where a 24 kHz clip becomes features: mel, F0, energy, Whisper, ContentVec.

Data preprocessing and the conversion pipeline both call :class:`FeatureExtractor`,
so training and inference see features made the same way. Every feature of a
clip of ``N`` samples has exactly ``T = N // hop`` frames (93.75 frames/s):

    "mel":        (T, n_mels) float32  natural-log mel, NOT normalised
    "f0":         (T,)        float32  Hz, 0 = unvoiced
    "energy":     (T,)        float32  linear frame energy from the mel
    "whisper":    (T, content.whisper_dim)    float32
    "contentvec": (T, content.contentvec_dim) float32
"""

from __future__ import annotations

import numpy as np
import torch

from comosvc.audio import check_samples, resample
from comosvc.config import ComoSVCConfig
from comosvc.features.content import (
    CONTENT_FRAME_HOP,
    CONTENT_SAMPLE_RATE,
    ContentVecEncoder,
    WhisperContentEncoder,
    align_to_mel,
)
from comosvc.features.energy import energy_from_mel
from comosvc.features.f0 import extract_f0
from comosvc.features.mel import MelSpectrogram
from comosvc.precision import resolve_dtype

FEATURE_NAMES = ("mel", "f0", "energy", "whisper", "contentvec")


class FeatureExtractor:
    """Turns 24 kHz mono clips into aligned per-frame features (see the module docstring).

    The content encoders are loaded once, from ``cfg.content.whisper`` and
    ``cfg.content.contentvec`` (Hub ids or local folders), unless ready encoders
    are passed in (e.g. ``WhisperContentEncoder.random("default")`` for a benchmark).
    Loaded encoders run in ``dtype``: default ``inference.dtype`` resolved for the device
    (:func:`comosvc.precision.resolve_dtype`); their features are float32 either way.
    """

    def __init__(
        self,
        cfg: ComoSVCConfig,
        device: str | torch.device | None = None,
        whisper: WhisperContentEncoder | None = None,
        contentvec: ContentVecEncoder | None = None,
        dtype: torch.dtype | None = None,
    ):
        self.cfg = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        c = cfg.content
        dtype = dtype or resolve_dtype(cfg.inference.dtype, self.device)
        self.whisper = whisper or WhisperContentEncoder.from_pretrained(
            c.whisper, mode=c.whisper_mode, device=self.device, dtype=dtype
        )
        self.whisper.mode = c.whisper_mode  # the config decides, also for an encoder passed in
        self.contentvec = contentvec or ContentVecEncoder.from_pretrained(
            c.contentvec, layer=c.contentvec_layer, device=self.device, dtype=dtype
        )
        for name, enc, want in (("whisper", self.whisper, c.whisper_dim), ("contentvec", self.contentvec, c.contentvec_dim)):
            if enc.dim != want:
                raise ValueError(
                    f"content.{name}_dim is {want} but the {name} encoder gives {enc.dim}-d features; "
                    f"set content.{name}_dim={enc.dim} (the model's input size follows it)"
                )
        self.mel = MelSpectrogram(cfg.audio).to(self.device)
        # content hop in output samples: 320 at 16 kHz = 480 at 24 kHz (20 ms)
        hop = CONTENT_FRAME_HOP * cfg.audio.sample_rate / CONTENT_SAMPLE_RATE
        if hop != int(hop):
            raise ValueError(
                f"audio.sample_rate={cfg.audio.sample_rate} Hz does not hold a whole number of samples per 20 ms "
                "content frame; use a rate that is a multiple of 50 Hz (24000, the default)."
            )
        self.content_hop = int(hop)

    def _check(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"expected a mono clip of shape (N,), got {wav.shape}")
        rate = self.cfg.audio.sample_rate
        check_samples(wav, rate, min_seconds=self.cfg.audio.n_fft / rate, name=f"A clip of {len(wav)} samples")
        return wav

    def __call__(self, wav_24k: np.ndarray) -> dict[str, np.ndarray]:
        """One clip ``(N,)`` at ``audio.sample_rate`` -> dict of aligned features (module docstring)."""
        return self.extract_batch([wav_24k])[0]

    @torch.no_grad()
    def extract_batch(
        self, wavs_24k: list[np.ndarray], features: tuple[str, ...] = FEATURE_NAMES
    ) -> list[dict[str, np.ndarray]]:
        """Several clips -> one feature dict each; the content encoders run batched.

        ``features`` picks a subset of :data:`FEATURE_NAMES` (the conversion pipeline
        extracts F0 and content separately to time them).
        """
        unknown = sorted(set(features) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(f"unknown features {unknown}; choose from {', '.join(FEATURE_NAMES)}")
        cfg = self.cfg
        wavs = [self._check(w) for w in wavs_24k]
        out = []
        for wav in wavs:
            item = {}
            if "mel" in features or "energy" in features:
                mel = self.mel(torch.from_numpy(wav).to(self.device))  # (T, n_mels)
                if "mel" in features:
                    item["mel"] = mel.cpu().numpy()
                if "energy" in features:
                    item["energy"] = energy_from_mel(mel).cpu().numpy()
            if "f0" in features:
                item["f0"] = extract_f0(wav, cfg.f0, cfg.audio, device=str(self.device))
            out.append(item)
        content = [name for name in ("whisper", "contentvec") if name in features]
        wavs_16k = [resample(w, cfg.audio.sample_rate, CONTENT_SAMPLE_RATE) for w in wavs] if content else []
        for name, encoder in (("whisper", self.whisper), ("contentvec", self.contentvec)):
            if name not in content:
                continue
            feats = encoder(wavs_16k, batch_size=cfg.content.batch_size)
            for item, f, wav in zip(out, feats, wavs):
                n_frames = len(wav) // cfg.audio.hop_length
                item[name] = align_to_mel(f, n_frames, self.content_hop, cfg.audio.hop_length).cpu().numpy()
        return out


__all__ = ["FEATURE_NAMES", "FeatureExtractor"]
