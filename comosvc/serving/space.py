"""What a Hugging Face Space serves by default, and the weights it downloads when it is built.

README's front matter (``preload_from_hub``) lists exactly :func:`space_weights`, so no
request waits for a download; ``tests/test_app_space.py`` checks that the two agree
(docs/space.md).
"""

from __future__ import annotations

import os
from typing import Mapping

# The model a Space serves when no model is named, and the teacher it was distilled from.
# Placeholders: replace them with the Hub ids the project publishes before building a Space.
SPACE_MODEL = "comosvc/comosvc-student"
SPACE_TEACHER = "comosvc/comosvc-teacher"

# the files ComoSVC.from_pretrained reads from a save_pretrained folder
MODEL_FILES = ("config.json", "model.safetensors", "singers.json", "stats.json")


def on_space(environ: Mapping[str, str] | None = None) -> bool:
    """True on a Hugging Face Space (it sets ``SPACE_ID``); ``environ`` defaults to ``os.environ``."""
    return bool((os.environ if environ is None else environ).get("SPACE_ID"))


def space_weights() -> list[tuple[str, list[str]]]:
    """``(Hub id, files)`` the Space downloads at build time (README's ``preload_from_hub``).

    The model and its teacher (a ``save_pretrained`` folder each), the default vocoder
    (NVIDIA's BigVGAN layout) and the default content encoders, all read from the code's
    defaults, and only the files the loaders read.
    """
    from comosvc.config import ComoSVCConfig

    config = ComoSVCConfig()
    return [
        (SPACE_MODEL, list(MODEL_FILES)),
        (SPACE_TEACHER, list(MODEL_FILES)),
        (config.inference.vocoder, ["config.json", "bigvgan_generator.pt"]),
        (config.content.whisper, ["config.json", "preprocessor_config.json", "model.safetensors"]),
        (config.content.contentvec, ["config.json", "pytorch_model.bin"]),  # the repo has no safetensors
    ]
