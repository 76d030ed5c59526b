"""Training infrastructure shared by ``train/train.py`` and ``train/distill.py``.

- :mod:`~comosvc.training.checkpoint`: crash-safe checkpoints, keep-last-K, resume.
- :mod:`~comosvc.training.loop`: the Accelerate training loop (AdamW, plateau LR,
  clipping, accumulation, non-finite skipping, validation, tracking).
"""

from comosvc.training.checkpoint import (
    TrainerState,
    checkpoint_dir,
    find_latest_complete,
    list_complete_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from comosvc.training.loop import (
    NonFiniteLossError,
    Objective,
    TrainSummary,
    build_optimizer,
    build_plateau,
    check_can_start,
    evaluate,
    make_accelerator,
    resolve_mixed_precision,
    resume_or_start,
    train_loop,
)

__all__ = [
    "NonFiniteLossError",
    "Objective",
    "TrainSummary",
    "TrainerState",
    "build_optimizer",
    "build_plateau",
    "check_can_start",
    "checkpoint_dir",
    "evaluate",
    "find_latest_complete",
    "list_complete_checkpoints",
    "load_checkpoint",
    "make_accelerator",
    "prune_checkpoints",
    "resolve_mixed_precision",
    "resume_or_start",
    "save_checkpoint",
    "train_loop",
]
