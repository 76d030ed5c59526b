"""Stand-ins for what a speed measurement or a test does not need trained: statistics and model copies.

Speed does not depend on the weights, so a benchmark builds random-weight models
with :func:`random_stats`, and runs the teacher's sampler on a student's network
(or the reverse) with :func:`copy_model`.
"""

from __future__ import annotations

import numpy as np


def random_stats(config, singers: dict[str, int]) -> dict:
    """Plausible ``stats.json`` content for random-weight models: one dataset ``"random"``, 220 Hz singers.

    Mel min/max per bin (``config.audio.n_mels`` bins, natural-log mel) and F0
    median/p5/p95 in Hz per singer of ``singers``.
    """
    from comosvc.features.mel import LOG_CLAMP

    n_mels = config.audio.n_mels
    return {
        "mel": {"random": {"min": [float(np.log(LOG_CLAMP))] * n_mels, "max": [2.0] * n_mels}},
        "f0": {name: {"median": 220.0, "p5": 150.0, "p95": 400.0} for name in singers},
    }


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


__all__ = ["copy_model", "random_stats"]
