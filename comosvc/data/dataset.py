"""Training examples from the processed data: random crops, padding masks, mixed-singer batches.

    >>> data = FeatureDataset.from_dir("data/processed", "train", crop_frames=512)
    >>> loader = torch.utils.data.DataLoader(
    ...     data, batch_size=64, sampler=MixedSingerSampler(data.speakers), collate_fn=collate)
    >>> batch = next(iter(loader))   # the model batch dict (see collate)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from comosvc.data.singers import SINGERS_FILE, SingerTable

# (column, feature dims after T) of one example; "mel" is normalised on the way out.
SEQUENCE_KEYS = ("mel", "whisper", "contentvec", "f0", "energy")


class FeatureDataset(torch.utils.data.Dataset):
    """One split of the processed data as model inputs.

    ``split``: a :class:`datasets.Dataset` from :func:`comosvc.data.preprocess.load_processed`.
    ``stats``: the ``stats.json`` dict (its per-dataset mel min/max normalise the mel).
    ``singers``: the singer table (``singers.json``) giving the global speaker ids.
    ``crop_frames``: examples longer than this are cut to a window of this many
    frames (random when ``random_crop``, else the first frames); ``None`` keeps whole
    utterances (validation).

    An example is a dict of tensors: ``"mel"`` ``(T, n_mels)`` in [-1, 1],
    ``"whisper"`` ``(T, Dw)``, ``"contentvec"`` ``(T, Dc)``, ``"f0"`` ``(T,)`` Hz,
    ``"energy"`` ``(T,)``, ``"speaker"`` ``()`` int64.
    """

    def __init__(
        self,
        split: Any,
        stats: dict,
        singers: SingerTable | dict[str, int],
        crop_frames: int | None = 512,
        random_crop: bool = True,
    ):
        from comosvc.features.mel import MelStats

        self.data = split.with_format("numpy", columns=list(SEQUENCE_KEYS))
        self.crop_frames = crop_frames
        self.random_crop = random_crop
        table = singers.to_dict() if isinstance(singers, SingerTable) else dict(singers)
        names = split.select_columns(["dataset", "singer"])
        datasets_col = list(names["dataset"])
        singers_col = list(names["singer"])
        missing = sorted({f"{d}_{s}" for d, s in zip(datasets_col, singers_col)} - set(table))
        if missing:
            raise KeyError(
                f"Singers {', '.join(missing[:5])} of the data are not in the singer table; "
                f"use the {SINGERS_FILE} written next to the processed data."
            )
        self.speakers = np.array([table[f"{d}_{s}"] for d, s in zip(datasets_col, singers_col)], dtype=np.int64)
        mel_stats = stats.get("mel", {})
        absent = sorted(set(datasets_col) - set(mel_stats))
        if absent:
            raise KeyError(f"stats.json has no mel stats for dataset(s) {', '.join(absent)}; rerun preprocessing.")
        self._stats = {name: MelStats.from_dict(mel_stats[name]) for name in set(datasets_col)}
        self._dataset_of = datasets_col

    @classmethod
    def from_dir(
        cls, out_dir: str | Path, split: str = "train", crop_frames: int | None = 512, random_crop: bool | None = None
    ) -> "FeatureDataset":
        """The ``split`` of a preprocessing output folder, with its stats and singer table."""
        from comosvc.data.preprocess import load_processed, load_stats

        data = load_processed(out_dir, splits=[split])[split]
        singers = SingerTable.load(Path(out_dir) / SINGERS_FILE)
        random_crop = (split == "train") if random_crop is None else random_crop
        return cls(data, load_stats(out_dir), singers, crop_frames=crop_frames, random_crop=random_crop)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        row = self.data[index]
        n_frames = len(row["f0"])
        start, stop = 0, n_frames
        if self.crop_frames is not None and n_frames > self.crop_frames:
            if self.random_crop:
                # torch's RNG: DataLoader workers get distinct seeds, numpy's global RNG would repeat
                start = int(torch.randint(0, n_frames - self.crop_frames + 1, ()).item())
            stop = start + self.crop_frames
        item = {key: torch.from_numpy(np.asarray(row[key][start:stop], dtype=np.float32)) for key in SEQUENCE_KEYS}
        item["mel"] = self._stats[self._dataset_of[index]].normalize(item["mel"]).float()
        item["speaker"] = torch.tensor(self.speakers[index], dtype=torch.int64)
        return item


def collate(examples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad examples to the longest and stack: the model batch dict.

    ``"mel"`` ``(B, T, n_mels)``, ``"whisper"`` ``(B, T, Dw)``, ``"contentvec"``
    ``(B, T, Dc)``, ``"f0"`` ``(B, T)`` Hz, ``"energy"`` ``(B, T)``, ``"speaker"``
    ``(B,)`` int64 and ``"mask"`` ``(B, T)`` bool, True on real frames. Padding is 0.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    lengths = torch.tensor([len(ex["f0"]) for ex in examples])
    t_max = int(lengths.max())
    batch: dict[str, torch.Tensor] = {}
    for key in SEQUENCE_KEYS:
        first = examples[0][key]
        out = first.new_zeros((len(examples), t_max, *first.shape[1:]))
        for i, ex in enumerate(examples):
            out[i, : len(ex[key])] = ex[key]
        batch[key] = out
    batch["speaker"] = torch.stack([ex["speaker"] for ex in examples]).long()
    batch["mask"] = torch.arange(t_max)[None, :] < lengths[:, None]
    return batch


class MixedSingerSampler(torch.utils.data.Sampler[int]):
    """Each index once per epoch, ordered so that every batch mixes singers.

    Stratified shuffle: each singer's examples are shuffled and spread evenly over
    the epoch (example ``k`` of a singer with ``n`` examples lands near position
    ``(k + u) / n``, ``u ~ U(0, 1)``), so a batch holds singers in proportion to
    their share of the data instead of long single-singer runs. Call
    :meth:`set_epoch` for a new order each epoch (Accelerate does).
    """

    def __init__(self, speakers: Sequence[int] | np.ndarray, seed: int = 0):
        self.speakers = np.asarray(speakers)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.speakers)

    def order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        keys = np.empty(len(self.speakers))
        for spk in np.unique(self.speakers):
            idx = np.flatnonzero(self.speakers == spk)
            rng.shuffle(idx)
            keys[idx] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
        return np.argsort(keys, kind="stable")

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        self.epoch += 1  # a fresh order next time even without set_epoch
        return iter(order.tolist())


__all__ = ["FeatureDataset", "MixedSingerSampler", "SEQUENCE_KEYS", "collate"]
