"""Shared fixtures: the tiny config, tiny content encoders built locally, synthetic singing.

Nothing here touches the network: the content encoders are random tiny
transformers models saved with ``save_pretrained`` into a temporary folder and
loaded back by path, exactly as a Hub id or a downloaded folder would be.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_encoder_dirs(tmp_path_factory) -> dict:
    """Folders holding a tiny random Whisper and ContentVec (HF format), built once per session."""
    from comosvc.features.content import build_tiny_encoders

    return build_tiny_encoders(tmp_path_factory.mktemp("encoders"))


@pytest.fixture(scope="session")
def tiny_overrides(tiny_encoder_dirs) -> list[str]:
    """Config overrides that point configs/tiny.yaml at the tiny local encoders."""
    return [f"content.{key}={value}" for key, value in tiny_encoder_dirs.items()]


@pytest.fixture()
def tiny_config(tiny_overrides):
    """configs/tiny.yaml with the tiny local encoders; a fresh object per test."""
    from comosvc.config import load_config

    return load_config(TINY_CONFIG, overrides=tiny_overrides)


@pytest.fixture(scope="session")
def sung_clip() -> tuple[np.ndarray, np.ndarray]:
    """2 s of a synthetic sung phrase at 24 kHz: ``(wav, f0_per_sample)``."""
    from comosvc.synthetic import sung_phrase

    return sung_phrase([220.0, 330.0, 262.0], note_seconds=0.55, gap_seconds=0.1, seed=3)
