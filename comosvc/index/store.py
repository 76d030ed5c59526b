"""The timbre index of a model: per singer, a bounded set of their own content vectors.

    >>> index = TimbreIndex({"opencpop_female1": {"whisper": w, "contentvec": c}})   # (K, Dw), (K, Dc)
    >>> index.save(folder / INDEX_FILE)                  # written to a temporary file, then renamed
    >>> index = TimbreIndex.load(folder / INDEX_FILE)    # one-line IndexFileError if damaged
    >>> out = index.blend_batch(batch, mix, ratio=0.5)   # the model batch with whisper/contentvec blended

File format (safetensors): a tensor ``"<singer key>.<feature>"`` ``(K, D)`` float16
per singer and feature of :data:`INDEX_FEATURES`; the metadata holds ``format``,
``version``, ``singers`` (a JSON list of singer keys) and ``features``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import torch

from comosvc.index.neighbours import blend_mix, check_ratio

# The content features the model consumes, each indexed on its own (docs/design.md "Timbre index").
INDEX_FEATURES = ("whisper", "contentvec")
FORMAT = "comosvc-timbre-index"
VERSION = "1"
BUILD_COMMAND = "python -m comosvc index --model MODEL_DIR --data DATA_DIR"


class IndexFileError(ValueError):
    """An index file that cannot be read; the message says how to rebuild it."""


class NoIndexError(ValueError):
    """A conversion asked for the index of a model or singer that has none; the message says how to build it."""


def _rebuild(path: Path) -> str:
    return f"python -m comosvc index --model {path.parent} --data DATA_DIR"


class TimbreIndex:
    """Per singer key, per feature of :data:`INDEX_FEATURES`, index vectors ``(K, D)`` (stored float16)."""

    def __init__(self, vectors: Mapping[str, Mapping[str, torch.Tensor]]):
        self.vectors = {
            singer: {name: feats[name].detach().to("cpu", torch.float16).contiguous() for name in INDEX_FEATURES}
            for singer, feats in vectors.items()
        }
        self._on_device: dict[tuple[str, str], torch.Tensor] = {}  # float32 copies where blending runs

    @property
    def singers(self) -> list[str]:
        return list(self.vectors)

    def __contains__(self, singer: str) -> bool:
        return singer in self.vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def size(self, singer: str) -> int:
        """Index vectors ``K`` of ``singer``."""
        return len(self.vectors[singer][INDEX_FEATURES[0]])

    def merged(self, newer: "TimbreIndex") -> "TimbreIndex":
        """This index with ``newer``'s singers added or replaced."""
        return TimbreIndex({**self.vectors, **newer.vectors})

    def rows(self, singer: str, feature: str, device: torch.device | str) -> torch.Tensor:
        """``singer``'s index of ``feature`` ``(K, D)`` float32 on ``device`` (copied there once)."""
        key = (singer, f"{feature}@{device}")
        if key not in self._on_device:
            self._on_device[key] = self.vectors[singer][feature].to(device=device, dtype=torch.float32)
        return self._on_device[key]

    def require(self, singers) -> None:
        """A one-line :class:`NoIndexError` when one of ``singers`` (keys) has no index."""
        missing = [key for key in singers if key not in self.vectors]
        if missing:
            raise NoIndexError(
                f"The timbre index has no vectors for singer(s) {', '.join(missing)}: rebuild it with them "
                f"({BUILD_COMMAND} --singer NAME), or use index_ratio 0."
            )

    # ------------------------------------------------------------------ conversion

    def blend_batch(self, batch: dict[str, torch.Tensor], mix, ratio: float, k: int = 8) -> dict[str, torch.Tensor]:
        """The model batch with ``"whisper"`` and ``"contentvec"`` ``(B, T, D)`` blended towards ``mix``'s index.

        ``mix``: a :class:`~comosvc.pipeline.mix.SingerMix` (keys and weights). Only real
        frames (``batch["mask"]``) are blended; padding stays 0. Ratio 0 returns ``batch``.
        """
        ratio = check_ratio(ratio)
        if ratio == 0.0:
            return batch
        self.require(mix.keys)
        out = dict(batch)
        mask = batch["mask"].bool()
        for name in INDEX_FEATURES:
            feats = batch[name]
            frames = feats[mask]  # (N, D), the real frames of every row
            indexes = [(self.rows(key, name, frames.device), weight) for key, weight in zip(mix.keys, mix.weights)]
            blended = feats.clone()
            blended[mask] = blend_mix(frames, indexes, ratio, k).to(feats.dtype)
            out[name] = blended
        return out

    # ------------------------------------------------------------------ file

    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` atomically: a temporary file next to it, renamed over it once complete
        (a failure leaves any index already at ``path`` untouched)."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {f"{singer}.{name}": feats[name] for singer, feats in self.vectors.items() for name in INDEX_FEATURES}
        metadata = {
            "format": FORMAT,
            "version": VERSION,
            "singers": json.dumps(self.singers, ensure_ascii=False),
            "features": json.dumps(list(INDEX_FEATURES)),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path, dims: Mapping[str, int] | None = None) -> "TimbreIndex":
        """Read an index written by :meth:`save`; ``dims`` (``{"whisper": Dw, "contentvec": Dc}``) checks the
        feature sizes against the model's. Any damage is one :class:`IndexFileError` line."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as file:
                meta = file.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise ValueError("not a ComoSVC timbre index")
                singers = json.loads(meta["singers"])
                vectors = {singer: {name: file.get_tensor(f"{singer}.{name}") for name in INDEX_FEATURES} for singer in singers}
        except Exception as err:  # noqa: BLE001 - safetensors, JSON and key errors all mean a damaged file
            raise IndexFileError(
                f"{path} is damaged or not a timbre index ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                f"rebuild it with `{_rebuild(path)}`, or delete it."
            ) from None
        for singer, feats in vectors.items():
            for name, rows in feats.items():
                want = (dims or {}).get(name)
                if rows.ndim != 2 or len(rows) == 0 or (want is not None and rows.shape[1] != want) or not torch.isfinite(rows).all():
                    raise IndexFileError(
                        f"{path}: the {name} index of {singer} has shape {tuple(rows.shape)}"
                        + (f", the model's {name} features have {want} dims" if want is not None else "")
                        + f" (or values that are not finite); rebuild it with `{_rebuild(path)}`."
                    )
        return cls(vectors)


def index_for(index: TimbreIndex | None, singers, ratio: float, model: str | None = None) -> TimbreIndex | None:
    """The index to blend ``singers`` (keys) with at ``ratio``: ``None`` at ratio 0; a one-line ``ValueError``
    for a ratio outside [0, 1], a :class:`NoIndexError` when the model (``model``: its folder, for the
    message) or one of the singers has no index."""
    if check_ratio(ratio) == 0.0:
        return None
    if index is None:
        raise NoIndexError(
            f"index_ratio {float(ratio):g} needs a timbre index and the model{f' {model}' if model else ''} has none: build one with "
            f"`python -m comosvc index --model {model or 'MODEL_DIR'} --data DATA_DIR` (DATA_DIR: the model's "
            "train/preprocess.py folder), or use index_ratio 0."
        )
    index.require(singers)
    return index


__all__ = ["BUILD_COMMAND", "INDEX_FEATURES", "IndexFileError", "NoIndexError", "TimbreIndex", "index_for"]
