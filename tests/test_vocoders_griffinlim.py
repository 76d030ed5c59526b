"""The Griffin-Lim vocoder: no weights, keeps length and pitch, and says it is a low-quality fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from comosvc.features.mel import log_mel
from comosvc.vocoders import GRIFFINLIM, load_vocoder

from conftest import dominant_frequency

pytestmark = pytest.mark.usefixtures("one_thread")


def test_griffinlim_keeps_length_and_pitch(caplog):
    sr, f0 = 24000, 220.0
    t = np.arange(sr) / sr
    tone = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3)).astype(np.float32)
    mel = torch.from_numpy(log_mel(tone))  # (93, 100)
    with caplog.at_level(logging.WARNING, logger="comosvc.vocoders"):
        vocoder = load_vocoder(GRIFFINLIM, device="cpu", griffinlim_iters=16)
    assert "low-quality fallback" in caplog.text
    wav = vocoder(mel[None])
    assert wav.shape == (1, mel.shape[0] * 256)
    assert wav.abs().max() <= 1.0 and wav.abs().max() > 0.05
    assert abs(dominant_frequency(wav[0].numpy()) - f0) / f0 < 0.03
    # the reconstruction's mel is close to the input mel (magnitude inversion works)
    again = torch.from_numpy(log_mel(wav[0].numpy()))
    voiced = mel > -6  # bins with energy
    assert (again - mel)[voiced].abs().mean() < 1.0
