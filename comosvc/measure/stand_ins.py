"""Stand-ins for what a speed measurement or a test does not need trained: statistics and model copies.

Speed does not depend on the weights, so a benchmark builds random-weight models
with :func:`random_stats`, and runs the teacher's sampler on a student's network
(or the reverse) with :func:`copy_model`. ``python -m comosvc bench --acoustic-only``
times the acoustic model alone, on :class:`StandInFeatures` and a :func:`null_vocoder`.
"""

from __future__ import annotations

import numpy as np
import torch

from comosvc.pipeline.conversion import random_stats  # noqa: F401 (the stand-ins of from_config, listed here too)


def copy_model(model, *, distilled: bool, distilled_from: str | None = None):
    """A ComoSVC with ``model``'s config, singers, stats and weights, marked a teacher or a student.

    ``distilled=False``: a teacher stand-in for a student whose teacher is missing;
    ``distilled=True``: a "student" of ``model`` (``distilled_from`` names its
    teacher) without any distillation. On ``model``'s device, in eval mode.
    """
    from comosvc.models import ComoSVC

    copy = ComoSVC(model.config, singers=model.singers, stats=model.stats, distilled=distilled, distilled_from=distilled_from)
    copy.load_state_dict(model.state_dict())
    return copy.to(model.device).eval()


class StandInFeatures:
    """Instant features of the right shapes, so only the acoustic model costs time (``--acoustic-only``).

    Same interface as :meth:`comosvc.features.extract.FeatureExtractor.extract_batch`.
    The acoustic model's cost does not depend on the values: content vectors are
    seeded Gaussian noise, F0 is 220 Hz on every frame, energy comes from the mel.
    """

    def __init__(self, config, seed: int = 0):
        from comosvc.features.mel import MelSpectrogram

        self.config = config
        self.seed = seed
        self.mel = MelSpectrogram(config.audio)

    def extract_batch(self, wavs, features=("mel", "f0", "energy", "whisper", "contentvec")) -> list[dict[str, np.ndarray]]:
        from comosvc.features.energy import energy_from_mel

        c, hop = self.config.content, self.config.audio.hop_length
        out = []
        for wav in wavs:
            frames = len(wav) // hop
            rng = np.random.default_rng(self.seed + frames)
            item: dict[str, np.ndarray] = {}
            if "mel" in features or "energy" in features:
                with torch.no_grad():
                    mel = self.mel(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)))
                item["mel"] = mel.numpy()
                item["energy"] = energy_from_mel(mel).numpy()
            if "f0" in features:
                item["f0"] = np.full(frames, 220.0, dtype=np.float32)
            if "whisper" in features:
                item["whisper"] = rng.standard_normal((frames, c.whisper_dim), dtype=np.float32)
            if "contentvec" in features:
                item["contentvec"] = rng.standard_normal((frames, c.contentvec_dim), dtype=np.float32)
            out.append({k: v for k, v in item.items() if k in features})
        return out


def null_vocoder(audio_config):
    """A vocoder that returns silence of the right length at no cost (``--acoustic-only``)."""
    from comosvc.vocoders import Vocoder

    class NullVocoder(Vocoder):
        def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
            return log_mel.new_zeros(log_mel.shape[0], log_mel.shape[1] * self.hop_length)

    return NullVocoder("none (acoustic only)", audio_config.sample_rate, audio_config.hop_length, audio_config.n_mels)


__all__ = ["StandInFeatures", "copy_model", "null_vocoder", "random_stats"]
