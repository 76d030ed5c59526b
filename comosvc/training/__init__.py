"""Training infrastructure shared by ``train/train.py``, ``train/distill.py`` and the quality check.

- :mod:`~comosvc.training.setup`: :func:`prepare_training`, the one setup of a run
  (accelerator, AdamW, plateau LR, checkpointing, resume or start, trackers) and its
  :class:`TrainingRun` (``fit``, ``save_model``, ``end``).
- :mod:`~comosvc.training.loop`: the Accelerate training loop (clipping, accumulation,
  non-finite skipping, validation, tracking).
- :mod:`~comosvc.training.checkpoint`: crash-safe checkpoints, keep-last-K, resume.
- :mod:`~comosvc.training.args`: the scripts' command line and prologue.
- :mod:`~comosvc.training.data`, :mod:`~comosvc.training.media`: loaders over
  ``--data``; mel images and audio of validation clips.
- :mod:`~comosvc.training.finetune`: ``train/finetune.py`` as one call, a trained teacher
  and student fine-tuned on a new voice (its refusals in
  :mod:`~comosvc.training.finetune_checks`, the singer rows in
  :mod:`~comosvc.training.speaker_rows`).
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
from comosvc.training.loop import NonFiniteLossError, Objective, TrainSummary, evaluate, train_loop
from comosvc.training.setup import TrainingRun, checkpoint_to_resume, prepare_training

__all__ = [
    "NonFiniteLossError",
    "Objective",
    "TrainSummary",
    "TrainerState",
    "TrainingRun",
    "checkpoint_dir",
    "checkpoint_to_resume",
    "evaluate",
    "find_latest_complete",
    "list_complete_checkpoints",
    "load_checkpoint",
    "prepare_training",
    "prune_checkpoints",
    "save_checkpoint",
    "train_loop",
]
