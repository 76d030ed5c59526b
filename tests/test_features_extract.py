"""FeatureExtractor: every feature of a clip aligned to len // 256 frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from comosvc.audio import TooShortError
from comosvc.config import load_config
from comosvc.features.extract import FEATURE_NAMES, FeatureExtractor
from comosvc.features.mel import log_mel
from comosvc.data.songs import f0_at_frames

TINY_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def extractor(tiny_overrides):
    return FeatureExtractor(load_config(TINY_CONFIG, overrides=tiny_overrides), device="cpu")


def test_all_features_aligned(extractor, sung_clip):
    wav, f0_samples = sung_clip
    feats = extractor(wav)
    cfg = extractor.cfg
    T = len(wav) // 256
    assert set(feats) == set(FEATURE_NAMES)
    assert feats["mel"].shape == (T, 100)
    assert feats["f0"].shape == feats["energy"].shape == (T,)
    assert feats["whisper"].shape == (T, cfg.content.whisper_dim)
    assert feats["contentvec"].shape == (T, cfg.content.contentvec_dim)
    for value in feats.values():
        assert value.dtype == np.float32 and np.isfinite(value).all()
    np.testing.assert_allclose(feats["mel"], log_mel(wav), atol=1e-5)  # unnormalised log mel
    truth = f0_at_frames(f0_samples)
    assert ((feats["f0"] > 0) == (truth > 0)).mean() > 0.9
    # energy is high where the notes are and low in the gaps
    assert np.median(feats["energy"][truth > 0]) > 100 * np.median(feats["energy"][truth == 0])


def test_batch_equals_single(extractor, sung_clip):
    wav = sung_clip[0]
    clips = [wav[:30000], wav, wav[5000:20000]]
    batch = extractor.extract_batch(clips)
    for clip, feats in zip(clips, batch):
        single = extractor(clip)
        assert all(feats[k].shape[0] == len(clip) // 256 for k in FEATURE_NAMES)
        for k in FEATURE_NAMES:
            np.testing.assert_allclose(feats[k], single[k], atol=1e-4, rtol=1e-4)


def test_bad_clips_are_refused(extractor):
    with pytest.raises(TooShortError, match="shorter than one analysis frame"):
        extractor(np.zeros(500, np.float32))
    with pytest.raises(ValueError, match="mono"):
        extractor(np.zeros((2, 4096), np.float32))


def test_dim_mismatch_is_a_clear_error(tiny_overrides):
    cfg = load_config(TINY_CONFIG, overrides=[*tiny_overrides, "content.whisper_dim=1024"])
    with pytest.raises(ValueError, match="content.whisper_dim"):
        FeatureExtractor(cfg, device="cpu")
