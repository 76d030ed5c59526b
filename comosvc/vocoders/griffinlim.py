"""Griffin-Lim: our Slaney mel inverted (non-negative least squares), then phase reconstruction.

No weights and low quality: the fallback when no neural vocoder is reachable, and a
fast stand-in for tests. Picked by the name :data:`GRIFFINLIM`; its "random weights"
builder is just the vocoder.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from comosvc.config import AudioConfig
from comosvc.features.mel import MelSpectrogram
from comosvc.vocoders.base import Vocoder, VocoderFamily, VocoderSource
from comosvc.vocoders.bigvgan import CPU_VOCODER, DEFAULT_VOCODER
from comosvc.vocoders.names import GRIFFINLIM

logger = logging.getLogger(__name__)


class GriffinLimVocoder(Vocoder):
    """Low-quality fallback: mel -> linear magnitude (non-negative least squares) -> Griffin-Lim.

    Expect phasey, metallic audio; it keeps pitch and timing, which is enough for
    smoke tests and for a pipeline without network access.
    """

    def __init__(self, audio: AudioConfig = AudioConfig(), n_iter: int = 32, momentum: float = 0.99, nnls_iters: int = 30):
        super().__init__(GRIFFINLIM, audio.sample_rate, audio.hop_length, audio.n_mels)
        logger.warning(
            "Using the Griffin-Lim vocoder: a low-quality fallback (phasey, metallic sound). For real "
            "conversions use a BigVGAN checkpoint, e.g. %s or %s (14M parameters, CPU-friendly).",
            DEFAULT_VOCODER,
            CPU_VOCODER,
        )
        self.n_fft, self.win_length = audio.n_fft, audio.win_length
        self.n_iter, self.momentum, self.nnls_iters = n_iter, momentum, nnls_iters
        basis = MelSpectrogram(audio).mel_basis  # (M, F): the Slaney filterbank of our mel
        self.register_buffer("mel_basis", basis)
        self.register_buffer("mel_pinv", torch.linalg.pinv(basis))  # (F, M)
        self.register_buffer("window", torch.hann_window(audio.win_length))
        # our frame t covers samples [t*hop - (n_fft-hop)/2, ...): its centre is hop/2 later
        # than the centre of frame t of a centred STFT, which Griffin-Lim inverts
        self.offset = audio.n_fft // 2 - (audio.n_fft - audio.hop_length) // 2

    def magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, M) log mel -> (B, F, T) linear STFT magnitude >= 0 with basis @ mag ~= mel."""
        mel = log_mel.exp().transpose(1, 2)  # (B, M, T)
        mag = (self.mel_pinv @ mel).clamp(min=1e-8)
        # multiplicative NNLS updates (Lee & Seung): stay non-negative, decrease |basis @ mag - mel|
        numerator = self.mel_basis.T @ mel
        gram = self.mel_basis.T @ self.mel_basis
        for _ in range(self.nnls_iters):
            mag = mag * numerator / (gram @ mag + 1e-10)
        return mag

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        import torchaudio.functional as AF

        n_samples = log_mel.shape[1] * self.hop_length
        magnitude = self.magnitude(log_mel)
        # a centred STFT of T * hop samples has T + 1 frames: repeat the last one
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
        wav = AF.griffinlim(
            magnitude,
            self.window,
            self.n_fft,
            self.hop_length,
            self.win_length,
            power=1.0,
            n_iter=self.n_iter,
            momentum=self.momentum,
            length=n_samples,
            rand_init=False,
        )
        wav = F.pad(wav, (self.offset, 0))[:, :n_samples]
        return wav.clamp(-1.0, 1.0)


def load_griffinlim(source: VocoderSource) -> GriffinLimVocoder:
    """Griffin-Lim for ``source.audio`` with ``source.griffinlim_iters`` iterations."""
    return GriffinLimVocoder(source.audio, n_iter=source.griffinlim_iters)


def random_griffinlim(name: str, audio: AudioConfig, seed: int = 0) -> GriffinLimVocoder:
    """Griffin-Lim has no weights: the "random" one is the vocoder itself."""
    return GriffinLimVocoder(audio)


FAMILY = VocoderFamily(name=GRIFFINLIM, load=load_griffinlim, random=random_griffinlim, names=(GRIFFINLIM,))
