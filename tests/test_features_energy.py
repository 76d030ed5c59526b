"""Frame energy from the log mel, and the coarse F0 / energy bins of comosvc.features.bins."""

from __future__ import annotations

import math

import numpy as np
import torch

from comosvc.config import EnergyConfig, F0Config
from comosvc.features.bins import coarse_f0, energy_bins, voiced_flag
from comosvc.features.energy import energy_from_mel
from comosvc.features.mel import log_mel


def test_energy_formula_numpy_and_torch():
    mel = np.log(np.array([[3.0, 4.0], [1e-5, 1e-5]], dtype=np.float32))
    e = energy_from_mel(mel)
    np.testing.assert_allclose(e, [5.0, math.sqrt(2) * 1e-5], rtol=1e-5)
    assert e.dtype == np.float32 and e.shape == (2,)
    et = energy_from_mel(torch.from_numpy(mel)[None])
    assert et.shape == (1, 2)
    np.testing.assert_allclose(et[0].numpy(), e, rtol=1e-6)


def test_energy_of_real_mel_tracks_loudness(sung_clip):
    wav = sung_clip[0]
    quiet, loud = energy_from_mel(log_mel(wav * 0.1)), energy_from_mel(log_mel(wav))
    assert quiet.shape == (len(wav) // 256,)
    voiced = loud > loud.max() * 0.1
    np.testing.assert_allclose(quiet[voiced] / loud[voiced], 0.1, rtol=0.01)


def test_coarse_f0_matches_design_formula_by_hand():
    f0 = torch.tensor([0.0, 50.0, 100.0, 440.0, 1100.0, 3000.0, 20.0])
    m = lambda hz: 1127 * math.log(1 + hz / 700)  # noqa: E731
    m50, m1100 = m(50), m(1100)
    by_hand = [1]  # unvoiced -> 1
    for hz in (50.0, 100.0, 440.0, 1100.0, 3000.0, 20.0):
        by_hand.append(int(round(min(max((m(hz) - m50) * 254 / (m1100 - m50) + 1, 1), 255))))
    assert coarse_f0(f0, F0Config()).tolist() == by_hand
    assert by_hand[1] == 1 and by_hand[4] == 255 and by_hand[5] == 255 and by_hand[6] == 1
    assert voiced_flag(f0).tolist() == [0, 1, 1, 1, 1, 1, 1]


def test_energy_bins_are_log_spaced():
    cfg = EnergyConfig()
    edges = np.logspace(math.log10(cfg.min), math.log10(cfg.max), cfg.n_bins - 1)
    # just above edge j lands in bin j + 1; below the first edge -> 0; above the last -> 255
    probe = torch.tensor([0.0, 1e-31, *(edges[[0, 100, 200, 254]] * 1.0001), 10.0], dtype=torch.float64)
    assert energy_bins(probe, cfg).tolist() == [0, 0, 1, 101, 201, 255, 255]
    ratios = edges[1:] / edges[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # constant ratio = log-spaced
    e = torch.tensor([1e-3, 1e-2, 1e-1])
    b = energy_bins(e, cfg)
    assert abs((b[1] - b[0]) - (b[2] - b[1])) <= 1  # every decade spans ~8.4 bins
