"""Preprocessing end to end on fake corpora in all six layouts, with the tiny encoders.

One module-scoped run over every layout (plus a corrupt, an empty and a too-short
file) backs most tests; the caching tests use their own small corpora.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from comosvc.audio import save_audio
from comosvc.config import load_config
from comosvc.data.corpora import CORPORA
from comosvc.data.preprocess import load_processed, main, preprocess, summary
from comosvc.data.singers import TooManySingersError
from comosvc.data.synthetic import write_corpus
from comosvc.data.songs import synthetic_song

from conftest import TINY_CONFIG

SR = 24000


def count_extractions(monkeypatch) -> list[int]:
    """Clips passed to FeatureExtractor.extract_batch from now on (one entry per call)."""
    from comosvc.features.extract import FeatureExtractor

    calls: list[int] = []
    original = FeatureExtractor.extract_batch

    def counting(self, wavs, *args, **kwargs):
        calls.append(len(wavs))
        return original(self, wavs, *args, **kwargs)

    monkeypatch.setattr(FeatureExtractor, "extract_batch", counting)
    return calls


@pytest.fixture(scope="module")
def config(tiny_overrides):
    # 4 cache shards per dataset: small maps, and a changed file still leaves other shards alone
    return load_config(TINY_CONFIG, overrides=tiny_overrides + ["data.cache_shards=4"])


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    # two singers per corpus; one file each, but two in generic (to see the validation split)
    written = {
        c: write_corpus(c, root / c, n_singers=2, files_per_singer=2 if c == "generic" else 1, seconds=(0.6, 1.0), seed=i)
        for i, c in enumerate(CORPORA)
    }
    bad = root / "generic"
    (bad / "singer0" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (bad / "singer1" / "empty.flac").write_bytes(b"")
    save_audio(bad / "singer1" / "short.wav", synthetic_song(0.2, 1, seed=5), SR)
    return root, written


@pytest.fixture(scope="module")
def processed(config, corpora, tmp_path_factory):
    root, written = corpora
    out = tmp_path_factory.mktemp("processed")
    with pytest.MonkeyPatch.context() as mp:
        calls = count_extractions(mp)
        result = preprocess(config, [f"{c}={root / c}" for c in CORPORA], out)
    return result, out, calls


def _rows(dataset_dict):
    rows = []
    for split in dataset_dict:
        for row in dataset_dict[split].with_format("numpy"):
            rows.append((split, row))
    return rows


def test_every_utterance_present_with_aligned_features(processed, corpora, config):
    result, out, calls = processed
    _, written = corpora
    rows = _rows(result.dataset)
    found = {(str(r["dataset"]), str(r["singer"]), str(r["utterance"])) for _, r in rows}
    expected = {(c, s, u) for c, files in written.items() for s, u, _ in files}
    assert found == expected
    hop = config.audio.hop_length
    for _, r in rows:
        t = (int(r["end"]) - int(r["start"])) // hop
        assert t > 0 and int(r["n_frames"]) == t
        assert r["mel"].shape == (t, config.audio.n_mels)
        assert r["whisper"].shape == (t, config.content.whisper_dim)
        assert r["contentvec"].shape == (t, config.content.contentvec_dim)
        assert r["f0"].shape == (t,) and r["energy"].shape == (t,)
        assert np.isfinite(r["mel"]).all() and (r["f0"] >= 0).all() and (r["f0"] > 0).any()
        assert r["audio"]["path"].startswith(str(corpora[0]))
    # the extractor saw every utterance exactly once, in batches
    assert sum(calls) == len(rows) == result.extracted
    assert max(calls) <= config.data.batch_size


def test_validation_share_per_singer(processed):
    result, _, _ = processed
    per_singer: dict[str, dict[str, int]] = {}
    for split, r in _rows(result.dataset):
        key = f"{r['dataset']}_{r['singer']}"
        per_singer.setdefault(key, {"train": 0, "validation": 0})[split] += 1
    for key, counts in per_singer.items():
        assert counts["train"] >= 1, key
        # tiny config: one validation utterance per singer that has two
        assert counts["validation"] == (1 if counts["train"] + counts["validation"] >= 2 else 0), key


def test_bad_inputs_are_reported_and_skipped(processed):
    result, out, _ = processed
    report = (out / "skipped.tsv").read_text().splitlines()
    assert report[0].split("\t") == ["dataset", "singer", "utterance", "path", "reason"]
    reasons = {line.split("\t")[2]: line.split("\t")[4] for line in report[1:]}
    assert set(reasons) == {"corrupt", "empty", "short"}
    assert "not a readable audio file" in reasons["corrupt"]
    assert "empty" in reasons["empty"]
    assert "too short" in reasons["short"]
    text = summary(result)
    assert "skipped 3 input(s)" in text and "corrupt" in text and "skipped.tsv" in text


def test_stats_and_singer_table(processed, config):
    result, out, _ = processed
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats) == {"mel", "f0", "durations"}
    assert set(stats["mel"]) == set(CORPORA)
    for entry in stats["mel"].values():
        assert len(entry["min"]) == len(entry["max"]) == config.audio.n_mels
        assert all(lo <= hi for lo, hi in zip(entry["min"], entry["max"]))
    singers = json.loads((out / "singers.json").read_text())
    assert sorted(singers.values()) == list(range(len(singers)))
    assert set(stats["f0"]) == set(stats["durations"]) == set(singers)
    for key, f0 in stats["f0"].items():
        assert 50 <= f0["p5"] <= f0["median"] <= f0["p95"] <= 1100, key
    total = sum(result.seconds.values())
    assert abs(sum(stats["durations"].values()) - total) < 0.01


def test_second_identical_run_extracts_nothing(processed, corpora, config, monkeypatch):
    result, out, _ = processed
    root, _ = corpora
    calls = count_extractions(monkeypatch)
    again = preprocess(config, [f"{c}={root / c}" for c in CORPORA], out)
    assert calls == [] and again.extracted == 0 and again.sliced_files == 0
    for split in ("train", "validation"):
        assert list(again.dataset[split]["utterance"]) == list(result.dataset[split]["utterance"])
    assert again.singers.to_dict() == result.singers.to_dict()


def test_load_processed_feeds_the_training_dataset(processed, config):
    import torch

    from comosvc.data.dataset import FeatureDataset, MixedSingerSampler, collate

    result, out, _ = processed
    loaded = load_processed(out)
    assert {s: len(loaded[s]) for s in loaded} == {s: len(result.dataset[s]) for s in result.dataset}
    data = FeatureDataset.from_dir(out, "train", crop_frames=32)
    loader = torch.utils.data.DataLoader(
        data, batch_size=4, sampler=MixedSingerSampler(data.speakers), collate_fn=collate
    )
    batch = next(iter(loader))
    b, t = batch["mask"].shape
    assert b == 4 and t <= 32
    assert batch["mel"].shape == (4, t, config.audio.n_mels)
    assert batch["whisper"].shape == (4, t, config.content.whisper_dim)
    assert batch["contentvec"].shape == (4, t, config.content.contentvec_dim)
    assert batch["speaker"].dtype == torch.int64 and batch["speaker"].max() < config.model.n_speakers
    mel = batch["mel"][batch["mask"]]
    assert mel.min() >= -1.0 - 1e-5 and mel.max() <= 1.0 + 1e-5  # train split: inside its own min/max
    val = FeatureDataset.from_dir(out, "validation", crop_frames=None)
    assert len(val) == len(result.dataset["validation"])


def test_singer_ids_stay_when_a_dataset_is_added(config, corpora, tmp_path, monkeypatch):
    root, _ = corpora
    first = preprocess(config, [f"generic={root / 'generic'}"], tmp_path)
    ids = first.singers.to_dict()
    calls = count_extractions(monkeypatch)
    # m4singer sorts before generic: a naive sorted numbering would move generic's ids
    second = preprocess(config, [f"m4singer={root / 'm4singer'}", f"generic={root / 'generic'}"], tmp_path)
    table = second.singers.to_dict()
    assert {k: table[k] for k in ids} == ids
    new = {k: v for k, v in table.items() if k not in ids}
    assert set(new) == {"m4singer_Alto-1", "m4singer_Tenor-2"}
    assert min(new.values()) > max(ids.values())
    # only the new dataset was extracted
    n_m4singer = sum(list(second.dataset[s]["dataset"]).count("m4singer") for s in ("train", "validation"))
    assert sum(calls) == second.extracted == n_m4singer == 2
    assert json.loads((tmp_path / "singers.json").read_text()) == table


def test_changed_file_or_setting_reextracts_what_it_affects(config, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    files = write_corpus("generic", corpus, n_singers=2, files_per_singer=2, seconds=0.7, seed=7)
    out = tmp_path / "out"
    first = preprocess(config, [f"generic={corpus}"], out)
    assert first.extracted == 4
    singer, utt, path = files[0]
    before = _features_of(first.dataset, singer, utt)

    calls = count_extractions(monkeypatch)
    save_audio(path, synthetic_song(1.1, 2, seed=99), SR)  # new content, size and mtime
    second = preprocess(config, [f"generic={corpus}"], out)
    assert 1 <= second.extracted < 4 and sum(calls) == second.extracted
    assert second.sliced_files < 4
    after = _features_of(second.dataset, singer, utt)
    assert after.shape != before.shape or not np.allclose(after, before)
    # the stale cache files of the old version are gone
    manifest = json.loads((out / "dataset.json").read_text())
    listed = {f for files_ in manifest["splits"].values() for f in files_}
    on_disk = {str(p.relative_to(out)) for p in (out / "cache" / "features").glob("*.arrow")}
    assert on_disk == listed

    calls.clear()
    third = preprocess(replace(config, f0=replace(config.f0, f0_max=1000.0)), [f"generic={corpus}"], out)
    assert third.extracted == 4 and sum(calls) == 4 and third.sliced_files == 0


def _features_of(dataset_dict, singer, utterance):
    for split in dataset_dict:
        ds = dataset_dict[split].with_format("numpy")
        for i, (s, u) in enumerate(zip(ds["singer"], ds["utterance"])):
            if s == singer and u == utterance:
                return ds[i]["mel"]
    raise AssertionError(f"{singer}/{utterance} not found")


def test_too_many_singers_fails_before_extraction(config, corpora, tmp_path, monkeypatch):
    root, _ = corpora
    small = replace(config, model=replace(config.model, n_speakers=3))
    calls = count_extractions(monkeypatch)
    with pytest.raises(TooManySingersError, match="model.n_speakers=3"):
        preprocess(small, [f"vctk={root / 'vctk'}", f"svcc={root / 'svcc'}"], tmp_path)
    assert calls == []


def test_cli_fails_at_once_on_bad_names_and_paths(tmp_path, capsys, corpora):
    root, _ = corpora
    out = tmp_path / "out"
    cases = [
        ([f"nus48e={root}"], "Unknown corpus 'nus48e'. Valid names: m4singer, opencpop, opensinger, svcc, vctk, generic"),
        ([f"vctk={root / 'vctk'}", f"opencpop={tmp_path / 'missing'}"], "does not exist"),
        ([f"vctk={root / 'm4singer'}"], "No audio found for 'vctk'"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append(([f"generic={tmp_path / 'empty'}"], "is empty"))
    for datasets, message in cases:
        argv = ["--config", str(TINY_CONFIG), "--out", str(out)]
        for d in datasets:
            argv += ["--dataset", d]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()  # nothing was read or written
