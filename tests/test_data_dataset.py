"""FeatureDataset crops and normalisation, collate padding and masks, mixed-singer sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comosvc.data.dataset import FeatureDataset, MixedSingerSampler, collate
from comosvc.data.singers import SingerTable

N_MELS, DW, DC = 100, 8, 4


def _split(lengths, singers):
    from datasets import Array2D, Dataset, Features, List, Value

    rng = np.random.default_rng(0)
    rows = {"dataset": [], "singer": [], "mel": [], "whisper": [], "contentvec": [], "f0": [], "energy": []}
    for t, (dataset, singer) in zip(lengths, singers):
        rows["dataset"].append(dataset)
        rows["singer"].append(singer)
        rows["mel"].append(rng.uniform(-11, 2, (t, N_MELS)).astype(np.float32))
        rows["whisper"].append(rng.standard_normal((t, DW)).astype(np.float16))
        rows["contentvec"].append(rng.standard_normal((t, DC)).astype(np.float16))
        rows["f0"].append(np.arange(t, dtype=np.float32))  # frame index: shows where a crop starts
        rows["energy"].append(np.ones(t, np.float32))
    features = Features(
        {
            "dataset": Value("string"),
            "singer": Value("string"),
            "mel": Array2D((None, N_MELS), "float32"),
            "whisper": Array2D((None, DW), "float16"),
            "contentvec": Array2D((None, DC), "float16"),
            "f0": List(Value("float32")),
            "energy": List(Value("float32")),
        }
    )
    return Dataset.from_dict(rows, features=features)


STATS = {"mel": {"a": {"min": [-11.0] * N_MELS, "max": [2.0] * N_MELS}, "b": {"min": [-5.0] * N_MELS, "max": [0.0] * N_MELS}}}
SINGERS = SingerTable({"a_x": 3, "a_y": 0, "b_z": 7})


def test_random_crops_and_normalised_mel():
    split = _split([100, 40], [("a", "x"), ("b", "z")])
    data = FeatureDataset(split, STATS, SINGERS, crop_frames=32)
    assert list(data.speakers) == [3, 7]
    starts = set()
    for _ in range(20):
        item = data[0]
        assert item["mel"].shape == (32, N_MELS) and item["whisper"].shape == (32, DW)
        assert item["contentvec"].shape == (32, DC) and item["f0"].shape == (32,) and item["energy"].shape == (32,)
        assert item["whisper"].dtype == torch.float32 and item["speaker"].dtype == torch.int64
        start = int(item["f0"][0])
        starts.add(start)
        # a contiguous window of the original frames
        assert torch.equal(item["f0"], torch.arange(start, start + 32).float())
    assert len(starts) > 1 and max(starts) <= 100 - 32
    assert -1.0 <= float(data[0]["mel"].min()) and float(data[0]["mel"].max()) <= 1.0
    # normalised with its own dataset's stats: b's mel values > 0 map above 1
    assert float(data[1]["mel"].max()) > 1.0


def test_fixed_crop_and_whole_utterances():
    split = _split([100, 40], [("a", "x"), ("a", "y")])
    first = FeatureDataset(split, STATS, SINGERS, crop_frames=32, random_crop=False)
    assert int(first[0]["f0"][0]) == 0 and len(first[0]["f0"]) == 32
    assert len(first[1]["f0"]) == 32
    whole = FeatureDataset(split, STATS, SINGERS, crop_frames=None)
    assert len(whole[0]["f0"]) == 100 and len(whole[1]["f0"]) == 40


def test_collate_pads_and_masks():
    split = _split([50, 20, 35], [("a", "x"), ("a", "y"), ("b", "z")])
    data = FeatureDataset(split, STATS, SINGERS, crop_frames=None)
    batch = collate([data[0], data[1], data[2]])
    assert batch["mel"].shape == (3, 50, N_MELS)
    assert batch["whisper"].shape == (3, 50, DW) and batch["contentvec"].shape == (3, 50, DC)
    assert batch["f0"].shape == (3, 50) and batch["energy"].shape == (3, 50)
    assert batch["speaker"].tolist() == [3, 0, 7] and batch["speaker"].dtype == torch.int64
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(1).tolist() == [50, 20, 35]
    assert not batch["mask"][1, 20:].any() and batch["mask"][1, :20].all()
    assert (batch["energy"][1, 20:] == 0).all() and (batch["mel"][1, 20:] == 0).all()
    loader = torch.utils.data.DataLoader(data, batch_size=2, collate_fn=collate)
    assert [b["mask"].shape[0] for b in loader] == [2, 1]


def test_unknown_singer_or_dataset_is_a_clear_error():
    split = _split([10], [("c", "q")])
    with pytest.raises(KeyError, match="singers.json"):
        FeatureDataset(split, STATS, SINGERS)
    with pytest.raises(KeyError, match="mel stats"):
        FeatureDataset(split, STATS, {"c_q": 0})


def test_sampler_mixes_singers_in_every_batch():
    # a big singer (60), two small ones (20 each): shuffled naively, runs of one singer are common
    speakers = np.array([0] * 60 + [1] * 20 + [2] * 20)
    sampler = MixedSingerSampler(speakers, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(100))  # each example once per epoch
    for b in range(0, 100, 10):
        batch = speakers[order[b : b + 10]]
        assert len(set(batch.tolist())) == 3  # every batch of 10 holds all three singers
        assert 4 <= (batch == 0).sum() <= 8  # in proportion to their share
    assert list(sampler) != order  # a new order each epoch
    sampler.set_epoch(0)
    assert list(sampler) == order  # deterministic per (seed, epoch)
