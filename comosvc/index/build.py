"""Build the timbre index of singers from their preprocessed training features.

    >>> index = build_index("data/processed", singers=["opencpop_female1"])   # all singers when None

Reads the ``train`` split of a ``train/preprocess.py`` folder (the 🤗 Datasets
cache), gathers each singer's ``whisper`` and ``contentvec`` frames (at the mel
frame rate, 93.75 frames/s) and reduces each to
``index_size(frames) = min(max_size, frames // frames_per_vector)`` vectors
(:mod:`comosvc.index.sizes`) with
:func:`~comosvc.index.clustering.kmeans`. Singers with more than ``max_points``
frames are subsampled evenly (every ``ceil(frames / max_points)``-th frame) before
the k-means, so memory and time stay bounded whatever the corpus size.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from comosvc.index.clustering import kmeans
from comosvc.index.sizes import FRAMES_PER_VECTOR, MAX_POINTS, MAX_SIZE, index_size
from comosvc.index.store import INDEX_FEATURES, TimbreIndex

logger = logging.getLogger(__name__)

def data_singers(split) -> dict[str, list[int]]:
    """``{"<dataset>_<singer>": [row, ...]}`` of a processed split (:func:`~comosvc.data.preprocess.load_processed`)."""
    names = split.select_columns(["dataset", "singer"])
    rows: dict[str, list[int]] = {}
    for i, (dataset, singer) in enumerate(zip(names["dataset"], names["singer"])):
        rows.setdefault(f"{dataset}_{singer}", []).append(i)
    return rows


def singer_frames(split, rows: Sequence[int], max_points: int = MAX_POINTS) -> dict[str, torch.Tensor]:
    """``{feature: (N, D) float32}`` of the given rows of a processed split, every ``ceil(frames / max_points)``-th frame."""
    subset = split.select(list(rows))
    total = int(np.sum(list(subset.select_columns(["n_frames"])["n_frames"])))
    stride = max(1, math.ceil(total / max_points))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in INDEX_FEATURES}
    position = 0  # frame number of the singer's frames so far: the stride runs across utterances
    for row in subset.with_format("numpy", columns=list(INDEX_FEATURES)):
        n = len(row[INDEX_FEATURES[0]])
        first = (-position) % stride
        for name in INDEX_FEATURES:
            parts[name].append(np.asarray(row[name][first::stride], dtype=np.float32))
        position += n
    return {name: torch.from_numpy(np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)) for name, chunks in parts.items()}


def build_index(
    data_dir: str | Path,
    singers: Sequence[str] | None = None,
    max_size: int = MAX_SIZE,
    frames_per_vector: int = FRAMES_PER_VECTOR,
    max_points: int = MAX_POINTS,
    iterations: int = 10,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> TimbreIndex:
    """The index of ``singers`` (keys ``"<dataset>_<singer>"``; default every singer of the data).

    A one-line ``ValueError`` names the singers that have no training frames in ``data_dir``.
    """
    from tqdm.auto import tqdm

    from comosvc.data.preprocess import load_processed

    split = load_processed(data_dir, splits=["train"])["train"]
    rows = data_singers(split)
    wanted = list(rows) if singers is None else list(singers)
    absent = [key for key in wanted if key not in rows]
    if absent or not wanted:
        raise ValueError(
            f"The train split of {data_dir} has no frames of singer(s) {', '.join(absent) or '(none asked)'} "
            f"(its singers: {', '.join(sorted(rows)) or 'none'}); pass the data the model was trained on."
        )
    lengths = list(split.select_columns(["n_frames"])["n_frames"])
    vectors = {}
    for key in tqdm(wanted, desc="timbre index", unit="singer", disable=not progress):
        frames = int(sum(lengths[i] for i in rows[key]))
        size = index_size(frames, max_size, frames_per_vector)
        feats = singer_frames(split, rows[key], max_points)
        vectors[key] = {
            name: kmeans(feats[name].to(device), size, iterations=iterations, seed=seed).cpu() for name in INDEX_FEATURES
        }
    return TimbreIndex(vectors)


def build_index_at_end_of_training(
    data_dir: str | Path,
    device: str | torch.device = "cpu",
    singers: Sequence[str] | None = None,
    base: TimbreIndex | None = None,
) -> TimbreIndex | None:
    """The index of ``singers`` (default every singer of the data) over ``base``'s (a fine-tune's base
    model's index: its other singers are kept, a singer trained on again is replaced), or ``base`` with a
    warning if it cannot be built: a finished training run still saves its model, and the index can be
    built later with ``python -m comosvc index``."""
    try:
        built = build_index(data_dir, singers=singers, device=device)
    except Exception as err:  # noqa: BLE001 - the trained model matters more than its index
        which = "" if singers is None else "".join(f" --singer {key}" for key in singers)
        logger.warning(
            "The timbre index could not be built (%s: %s); the model is saved without it. Build it later with "
            "`python -m comosvc index --model OUT/model --data %s%s`.", type(err).__name__, err, data_dir, which,
        )
        return base
    return built if base is None else base.merged(built)


__all__ = ["build_index", "build_index_at_end_of_training", "data_singers", "singer_frames"]
