"""Data loaders for training and distillation, over the folder of ``train/preprocess.py``.

    >>> data = load_training_data("data/processed", cfg.train)
    >>> batch = next(iter(data.train_loader))   # the model batch dict of the conventions

Training batches are random ``crop_frames`` windows drawn so every batch mixes
singers; validation batches are the first ``crop_frames`` frames of each held-out
utterance (deterministic, so validation losses compare across steps).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from comosvc.config import ComoSVCConfig, TrainConfig
from comosvc.data.dataset import FeatureDataset, MixedSingerSampler, collate
from comosvc.data.preprocess import load_processed, load_stats
from comosvc.data.singers import SINGERS_FILE, SingerTable

logger = logging.getLogger(__name__)


class TeacherMismatchError(ValueError):
    """The teacher and the data (or config) of a distillation do not belong together."""


@dataclass
class TrainingData:
    """Everything a training script needs from ``--data``."""

    train_loader: DataLoader
    val_loader: DataLoader
    singers: dict[str, int]  # singers.json: "<dataset>_<singer>" -> global id
    stats: dict  # stats.json
    examples: dict[str, torch.Tensor]  # a small collated batch of validation clips for audio samples
    example_datasets: list[str]  # the dataset of each example (to pick its mel stats)


def load_training_data(data_dir: str | Path, tc: TrainConfig, num_examples: int = 2) -> TrainingData:
    """Loaders of the train and validation splits of a processed folder.

    Without a validation split (a tiny corpus), the validation loss is computed on
    the first frames of the training utterances, with a warning.
    """
    data_dir = Path(data_dir)
    splits = load_processed(data_dir)
    stats = load_stats(data_dir)
    singers = SingerTable.load(data_dir / SINGERS_FILE)
    train = FeatureDataset(splits["train"], stats, singers, crop_frames=tc.crop_frames, random_crop=True)
    if len(train) == 0:
        raise ValueError(f"The train split of {data_dir} is empty: preprocess more audio (train/preprocess.py).")
    val_split = splits["validation"]
    if len(val_split) == 0:
        logger.warning("%s has no validation split; validating on the training utterances.", data_dir)
        val_split = splits["train"]
    val = FeatureDataset(val_split, stats, singers, crop_frames=tc.crop_frames, random_crop=False)

    pin = torch.cuda.is_available()
    train_loader = DataLoader(
        train,
        batch_size=tc.batch_size,
        sampler=MixedSingerSampler(train.speakers, seed=tc.seed),
        collate_fn=collate,
        num_workers=tc.num_workers,
        drop_last=len(train) >= tc.batch_size,
        pin_memory=pin,
        persistent_workers=tc.num_workers > 0,
    )
    val_loader = DataLoader(
        val, batch_size=tc.batch_size, shuffle=False, collate_fn=collate, num_workers=tc.num_workers, pin_memory=pin
    )
    n = min(num_examples, len(val))
    examples = collate([val[i] for i in range(n)])
    example_datasets = [str(name) for name in val_split.select(range(n))["dataset"]]
    return TrainingData(train_loader, val_loader, singers.to_dict(), stats, examples, example_datasets)


def check_teacher_matches(teacher, cfg: ComoSVCConfig, data: TrainingData) -> None:
    """Refuse to distil a teacher on data whose singer ids or mel settings mean something else.

    ``teacher`` is a :class:`~comosvc.models.ComoSVC`. Model sizes and constants always
    come from the teacher; differing ``model`` values in ``cfg`` are reported and ignored.
    """
    if cfg.audio != teacher.config.audio:
        raise TeacherMismatchError(
            "The audio/mel settings of --config differ from the teacher's; distil with the config the teacher "
            f"was trained with (its config.json). Teacher: {teacher.config.audio}; config: {cfg.audio}."
        )
    wrong = {name: i for name, i in data.singers.items() if teacher.singers.get(name) != i}
    if wrong:
        listed = ", ".join(f"{name} (id {i} here, {teacher.singers.get(name)} in the teacher)" for name, i in list(wrong.items())[:5])
        raise TeacherMismatchError(
            f"Singers of --data do not match the teacher's singer table: {listed}. Distil on the data the "
            "teacher was trained on (the same preprocessing folder)."
        )
    ignored = [
        f"model.{key}={value!r} (teacher: {getattr(teacher.config.model, key)!r})"
        for key, value in vars(cfg.model).items()
        if getattr(teacher.config.model, key) != value
    ]
    if ignored:
        logger.warning("Model settings come from the teacher; ignoring %s.", ", ".join(ignored))
    for dataset, stats in data.stats.get("mel", {}).items():
        theirs = teacher.stats.get("mel", {}).get(dataset)
        if theirs is not None and theirs != stats:
            logger.warning(
                "The mel stats of dataset %s in --data differ from the teacher's; the student learns on "
                "mels normalised with the data's stats.", dataset,
            )


__all__ = ["TeacherMismatchError", "TrainingData", "check_teacher_matches", "load_training_data"]
