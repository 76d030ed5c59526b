"""Corpora -> cached, training-ready features: a :class:`datasets.DatasetDict`.

``python train/preprocess.py --config configs/comosvc.yaml --dataset m4singer=/data/m4singer
--dataset generic:alice=/data/alice --out data/processed``

Stages (each with a progress bar):

1. **reading** -- every ``--dataset`` is checked (corpus name, folder) and listed
   by its reader before any other work; a bad name or an empty folder fails here.
2. **slicing** -- every file is decoded once (:func:`comosvc.audio.load_audio`)
   and cut at silences into utterances of at most ``data.max_utterance_seconds``
   (:func:`comosvc.slicer.slice_audio`). Unreadable, empty, silent or too-short
   files are recorded with their reason, never fatal.
3. **split** -- per singer, a deterministic share of the utterances (by hash of
   their id) goes to ``validation`` (``data.validation_per_singer`` or
   ``data.validation_fraction``, whichever is larger; at least one stays in train).
4. **extracting** -- :class:`comosvc.features.extract.FeatureExtractor` is mapped
   over the utterances with ``datasets.Dataset.map`` (batched; ``num_proc`` on a
   CPU, batched content encoding on a GPU).

Caching is the datasets cache, nothing hand-made: the files of a dataset are
spread over ``data.cache_shards`` shards by a hash of their id, and each shard is
mapped with ``new_fingerprint`` = hash(its files' path/size/mtime + the settings
that stage depends on) and ``cache_file_name`` under ``OUT/cache/``. An unchanged
shard loads its Arrow file and runs nothing; a changed file or setting changes
the fingerprint of exactly the shards it affects.

The output folder (``OUT``):

- ``dataset.json`` -- which cache files form ``train`` and ``validation``; load with
  :func:`load_processed` (memory-mapped, no copy).
- ``singers.json`` -- the global singer table (:class:`~comosvc.data.singers.SingerTable`).
- ``stats.json`` -- per-dataset mel min/max (train split), per-singer voiced F0
  median/p5/p95 and seconds of audio.
- ``skipped.tsv`` -- every input left out and why.
- ``config.yaml`` -- the config of the run.
- ``cache/`` -- the Arrow files (``slices/``, ``features/``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from comosvc.audio import AudioError, load_audio
from comosvc.config import ComoSVCConfig, load_config
from comosvc.data.corpora import AudioRecord, CorpusError, DatasetSpec
from comosvc.data.singers import SingerTable
from comosvc.files import RUN_CONFIG_FILE, SINGERS_FILE, STATS_FILE
from comosvc.slicer import slice_audio

# Bump when the code of a stage changes its output: old caches then stop matching.
SLICE_VERSION = 1
FEATURE_VERSION = 1

MANIFEST_FILE = "dataset.json"
REPORT_FILE = "skipped.tsv"
SPLITS = ("train", "validation")
FEATURE_COLUMNS = ("mel", "f0", "energy", "whisper", "contentvec")


@dataclass(frozen=True)
class Skipped:
    """An input left out of the processed data, and why."""

    dataset: str
    singer: str
    utterance: str
    path: str
    reason: str


@dataclass
class PreprocessResult:
    """What :func:`preprocess` built; ``extracted`` counts utterances extracted in this run."""

    dataset: Any  # datasets.DatasetDict
    out_dir: Path
    singers: SingerTable
    stats: dict
    skipped: list[Skipped]
    extracted: int = 0
    sliced_files: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per split


# --------------------------------------------------------------------------- features (schema)


def _file_features():
    from datasets import Audio, Features, Value

    return Features(
        {
            "dataset": Value("string"),
            "singer": Value("string"),
            "utterance": Value("string"),
            "audio": Audio(decode=False),
            "size": Value("int64"),
            "mtime_ns": Value("int64"),
        }
    )


def _segment_features():
    from datasets import Features, Value

    return Features(
        {
            **_file_features(),
            "segment": Value("int32"),
            "start": Value("int64"),  # samples at audio.sample_rate
            "end": Value("int64"),
            "error": Value("string"),  # "" = usable
        }
    )


def _output_features(config: ComoSVCConfig):
    from datasets import Array2D, Features, List, Value

    content = config.data.content_dtype
    return Features(
        {
            **_segment_features(),
            "n_frames": Value("int32"),
            "mel": Array2D(shape=(None, config.audio.n_mels), dtype="float32"),
            "f0": List(Value("float32")),
            "energy": List(Value("float32")),
            "whisper": Array2D(shape=(None, config.content.whisper_dim), dtype=content),
            "contentvec": Array2D(shape=(None, config.content.contentvec_dim), dtype=content),
        }
    )


def _with_audio_column(rows: dict[str, list], features) -> Any:
    """A Dataset from columns, with the ``audio`` column as ``Audio(decode=False)``.

    datasets' Audio encoder imports torchcodec even for bare paths, so the column
    is built as a plain struct and cast (a metadata change).
    """
    from datasets import Audio, Dataset, Features, Value

    plain = Features({**features, "audio": {"bytes": Value("binary"), "path": Value("string")}})
    return Dataset.from_dict(rows, features=plain).cast_column("audio", Audio(decode=False))


# --------------------------------------------------------------------------- fingerprints


def _digest(obj: Any, n: int = 20) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _model_identity(name: str) -> Any:
    """A Hub id as is; a local folder by its files' names, sizes and mtimes."""
    path = Path(name).expanduser()
    if path.is_dir():
        return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir()) if p.is_file()]
    return name


def slicing_settings(config: ComoSVCConfig) -> dict:
    d = config.data
    return {
        "version": SLICE_VERSION,
        "sample_rate": config.audio.sample_rate,
        "max_duration": config.audio.max_duration,
        "max_seconds": d.max_utterance_seconds,
        "min_seconds": d.min_utterance_seconds,
        "silence_db": d.silence_db,
        "min_silence_seconds": d.min_silence_seconds,
    }


def feature_settings(config: ComoSVCConfig) -> dict:
    """Everything the extracted features depend on (not batch sizes or worker counts)."""
    content = {k: v for k, v in asdict(config.content).items() if k != "batch_size"}
    content["whisper"] = _model_identity(config.content.whisper)
    content["contentvec"] = _model_identity(config.content.contentvec)
    audio = {k: v for k, v in asdict(config.audio).items() if k != "max_duration"}
    return {
        "version": FEATURE_VERSION,
        "audio": audio,
        "content": content,
        "f0": asdict(config.f0),
        "energy": asdict(config.energy),
        "content_dtype": config.data.content_dtype,
    }


def _shard_of(record_id: str, n_shards: int) -> int:
    return zlib.crc32(record_id.encode("utf-8")) % max(1, n_shards)


# --------------------------------------------------------------------------- map functions


def _in_worker(forked: bool) -> None:
    """In a forked map worker, torch must run single-threaded: OpenMP's pool does not
    survive fork, and the first parallel op of the child would hang forever."""
    if forked:
        import torch

        torch.set_num_threads(1)


def _slice_batch(batch: dict[str, list], config: ComoSVCConfig, forked: bool = False) -> dict[str, list]:
    """datasets.map function: files -> utterances ``(start, end)``, or one error row per bad file."""
    _in_worker(forked)
    d, sr = config.data, config.audio.sample_rate
    out: dict[str, list] = defaultdict(list)

    def emit(i: int, segment: int, start: int, end: int, error: str) -> None:
        for key in ("dataset", "singer", "utterance", "audio", "size", "mtime_ns"):
            out[key].append(batch[key][i])
        out["segment"].append(segment)
        out["start"].append(start)
        out["end"].append(end)
        out["error"].append(error)

    for i, audio in enumerate(batch["audio"]):
        try:
            wav = load_audio(audio["path"], sr, max_seconds=config.audio.max_duration)
        except AudioError as err:
            emit(i, 0, 0, 0, str(err))
            continue
        except Exception as err:  # noqa: BLE001 - a bad input must never abort the run
            emit(i, 0, 0, 0, f"{audio['path']}: cannot be read ({type(err).__name__}: {err})")
            continue
        pieces = slice_audio(
            wav,
            sr,
            max_seconds=d.max_utterance_seconds,
            min_seconds=d.min_utterance_seconds,
            silence_db=d.silence_db,
            min_silence_seconds=d.min_silence_seconds,
        )
        pieces = [(s, e) for s, e in pieces if (e - s) / sr >= d.min_utterance_seconds]
        if not pieces:
            total = len(wav) / sr
            if total < d.min_utterance_seconds:
                reason = f"too short: {total:.2f} s < data.min_utterance_seconds={d.min_utterance_seconds}"
            else:
                reason = (
                    f"no sound of at least {d.min_utterance_seconds} s above data.silence_db="
                    f"{d.silence_db} dBFS (silent or too quiet; normalise the recording)"
                )
            emit(i, 0, 0, 0, reason)
            continue
        for k, (s, e) in enumerate(pieces):
            emit(i, k, int(s), int(e), "")
    return dict(out)


_EXTRACTORS: dict[str, Any] = {}


def _get_extractor(config: ComoSVCConfig, device: str | None):
    """One FeatureExtractor per process and settings (forked map workers inherit it)."""
    from comosvc.features.extract import FeatureExtractor

    key = _digest([config.to_dict(), str(device)], 32)
    if key not in _EXTRACTORS:
        _EXTRACTORS.clear()
        _EXTRACTORS[key] = FeatureExtractor(config, device=device)
    return _EXTRACTORS[key]


def _extract_batch(
    batch: dict[str, list], config: ComoSVCConfig, device: str | None, forked: bool = False
) -> dict[str, list]:
    """datasets.map function: utterances -> features, all with ``T = (end - start) // hop`` frames."""
    _in_worker(forked)
    sr, hop = config.audio.sample_rate, config.audio.hop_length
    content_dtype = np.float16 if config.data.content_dtype == "float16" else np.float32
    n = len(batch["start"])
    wavs: list[np.ndarray | None] = []
    errors = [""] * n
    loaded: dict[str, np.ndarray] = {}
    for i in range(n):
        path = batch["audio"][i]["path"]
        try:
            if path not in loaded:
                loaded.clear()  # rows are sorted by file: keep one file decoded at a time
                loaded[path] = load_audio(path, sr, max_seconds=config.audio.max_duration)
            wavs.append(loaded[path][batch["start"][i] : batch["end"][i]])
        except Exception as err:  # noqa: BLE001 - the file changed or vanished since slicing
            wavs.append(None)
            errors[i] = f"{path}: cannot be read for feature extraction ({err})"

    extractor = _get_extractor(config, device)
    good = [i for i in range(n) if wavs[i] is not None]
    feats: dict[int, dict] = {}
    try:
        feats = dict(zip(good, extractor.extract_batch([wavs[i] for i in good]))) if good else {}
    except Exception:  # noqa: BLE001 - retry one by one so one bad clip spoils nothing else
        for i in good:
            try:
                feats[i] = extractor.extract_batch([wavs[i]])[0]
            except Exception as err:  # noqa: BLE001
                errors[i] = f"feature extraction failed ({type(err).__name__}: {err})"

    out = {key: list(batch[key]) for key in batch}
    out["error"] = [batch["error"][i] or errors[i] for i in range(n)]
    out["n_frames"] = []
    columns: dict[str, list] = {c: [] for c in FEATURE_COLUMNS}
    dims = {
        "mel": config.audio.n_mels,
        "whisper": config.content.whisper_dim,
        "contentvec": config.content.contentvec_dim,
    }
    for i in range(n):
        f = feats.get(i)
        t = (batch["end"][i] - batch["start"][i]) // hop
        if f is not None:
            lengths = {c: len(f[c]) for c in FEATURE_COLUMNS}
            if any(v != t for v in lengths.values()):
                f = None
                out["error"][i] = f"feature lengths {lengths} differ from the mel length {t} frames"
        if f is None:
            out["error"][i] = out["error"][i] or "feature extraction failed"
            out["n_frames"].append(0)
            for c in FEATURE_COLUMNS:
                columns[c].append(np.zeros((0, dims[c]), np.float32) if c in dims else np.zeros(0, np.float32))
            continue
        out["n_frames"].append(t)
        columns["mel"].append(np.asarray(f["mel"], np.float32))
        columns["f0"].append(np.asarray(f["f0"], np.float32))
        columns["energy"].append(np.asarray(f["energy"], np.float32))
        columns["whisper"].append(np.asarray(f["whisper"]).astype(content_dtype))
        columns["contentvec"].append(np.asarray(f["contentvec"]).astype(content_dtype))
    out.update(columns)
    return out


# --------------------------------------------------------------------------- stages


@contextlib.contextmanager
def _quiet_datasets():
    """Our own progress bars replace datasets' per-shard ones for the duration."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _read(specs: Sequence[DatasetSpec]) -> dict[str, list[tuple[AudioRecord, int, int]]]:
    """List every dataset (fails before any work on a bad layout) and stat its files."""
    listed = {spec.name: spec.records() for spec in specs}  # raises CorpusError with the layout
    out: dict[str, list[tuple[AudioRecord, int, int]]] = {}
    with tqdm(total=sum(map(len, listed.values())), desc="reading", unit="file") as bar:
        for name, records in listed.items():
            rows = []
            for rec in records:
                st = rec.path.stat()
                rows.append((rec, st.st_size, st.st_mtime_ns))
                bar.update()
            out[name] = rows
    return out


def _shard_rows(files: list[tuple[AudioRecord, int, int]], n_shards: int) -> dict[int, dict[str, list]]:
    shards: dict[int, dict[str, list]] = {}
    for rec, size, mtime in files:
        k = _shard_of(f"{rec.singer}/{rec.utterance}", n_shards)
        rows = shards.setdefault(k, defaultdict(list))
        rows["dataset"].append(rec.dataset)
        rows["singer"].append(rec.singer)
        rows["utterance"].append(rec.utterance)
        rows["audio"].append({"bytes": None, "path": str(rec.path)})
        rows["size"].append(size)
        rows["mtime_ns"].append(mtime)
    return shards


def _map_kwargs(config: ComoSVCConfig, n_rows: int, device: str | None) -> dict:
    num_proc = config.data.num_proc
    if device is not None and str(device).startswith("cuda"):
        num_proc = 1  # CUDA does not survive fork; a GPU batches instead
    return {
        "batched": True,
        "batch_size": config.data.batch_size,
        "writer_batch_size": max(1, config.data.batch_size),  # rows of big arrays: keep buffers small
        "num_proc": num_proc if num_proc > 1 and n_rows > 1 else None,
        "load_from_cache_file": True,
    }


def _slice(files: dict[str, list], config: ComoSVCConfig, cache: Path):
    """Slice every shard of every dataset (cached); returns the slice datasets and the file count."""
    n_shards = config.data.cache_shards
    settings = slicing_settings(config)
    results, sliced = [], 0
    total = sum(map(len, files.values()))
    with tqdm(total=total, desc="slicing", unit="file") as bar:
        for name, rows in files.items():
            for k, shard in sorted(_shard_rows(rows, n_shards).items()):
                identity = list(zip(shard["utterance"], [a["path"] for a in shard["audio"]], shard["size"], shard["mtime_ns"]))
                fp = _digest(["slice", settings, name, identity])
                target = cache / "slices" / f"{name}-{k:03d}-{fp}.arrow"
                n = len(shard["utterance"])
                cached = _is_cached(target)
                kwargs = _map_kwargs(config, n, None)
                ds = _with_audio_column(dict(shard), _file_features()).map(
                    _slice_batch,
                    fn_kwargs={"config": config, "forked": kwargs["num_proc"] is not None},
                    features=_segment_features(),
                    cache_file_name=str(target),
                    new_fingerprint=fp,
                    **{**kwargs, "batch_size": 4, "writer_batch_size": 1000},
                )
                sliced += 0 if cached else n
                results.append(ds)
                bar.update(n)
    return results, sliced


def _is_cached(target: Path) -> bool:
    return target.exists() or any(target.parent.glob(target.stem + "_*_of_*" + target.suffix))


def _assign_splits(segments: list[dict], config: ComoSVCConfig) -> dict[int, str]:
    """Index of each usable segment -> "train" | "validation", per singer, by hash of its id."""
    by_singer: dict[str, list[int]] = defaultdict(list)
    for i, seg in enumerate(segments):
        by_singer[f"{seg['dataset']}_{seg['singer']}"].append(i)
    split: dict[int, str] = {}
    d = config.data
    for key, idx in by_singer.items():
        n = len(idx)
        k = max(d.validation_per_singer, int(math.floor(d.validation_fraction * n)))
        k = min(k, n - 1)  # at least one utterance of every singer is trained on
        order = sorted(
            idx,
            key=lambda i: hashlib.sha1(
                f"{d.seed}/{key}/{segments[i]['utterance']}/{segments[i]['segment']}".encode()
            ).hexdigest(),
        )
        for j, i in enumerate(order):
            split[i] = "validation" if j < k else "train"
    return split


def _extract(
    segments: list[dict],
    split_of: dict[int, str],
    config: ComoSVCConfig,
    cache: Path,
    device: str | None,
) -> tuple[dict[str, list], int]:
    """Map feature extraction over every (split, dataset, shard) group (cached)."""
    n_shards = config.data.cache_shards
    settings = feature_settings(config)
    groups: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for i, seg in enumerate(segments):
        k = _shard_of(f"{seg['singer']}/{seg['utterance']}", n_shards)
        groups[(split_of[i], seg["dataset"], k)].append(i)
    out: dict[str, list] = {s: [] for s in SPLITS}
    extracted = 0
    features = _output_features(config)
    with tqdm(total=len(segments), desc="extracting", unit="utt") as bar:
        for (split, name, k), idx in sorted(groups.items()):
            idx.sort(key=lambda i: (segments[i]["audio"]["path"], segments[i]["start"]))
            rows = {c: [segments[i][c] for i in idx] for c in _segment_features()}
            identity = [
                (r["utterance"], r["segment"], r["audio"]["path"], r["size"], r["mtime_ns"], r["start"], r["end"])
                for r in (segments[i] for i in idx)
            ]
            fp = _digest(["features", settings, split, name, identity])
            target = cache / "features" / f"{name}-{split}-{k:03d}-{fp}.arrow"
            if not _is_cached(target):
                extracted += len(idx)
                # load the encoders in this process before forking: workers inherit them
                _get_extractor(config, device)
            kwargs = _map_kwargs(config, len(idx), device)
            ds = _with_audio_column(rows, _segment_features()).map(
                _extract_batch,
                fn_kwargs={"config": config, "device": device, "forked": kwargs["num_proc"] is not None},
                features=features,
                cache_file_name=str(target),
                new_fingerprint=fp,
                **kwargs,
            )
            out[split].append(ds)
            bar.update(len(idx))
    return out, extracted


def _usable(ds) -> Any:
    """Drop rows whose extraction failed (rare), without copying the data."""
    errors = ds["error"]
    bad = [i for i, e in enumerate(errors) if e]
    if not bad:
        return ds
    keep = sorted(set(range(len(ds))) - set(bad))
    return ds.select(keep, keep_in_memory=True)


def compute_stats(dataset_dict, config: ComoSVCConfig) -> dict:
    """stats.json: per-dataset mel min/max (train), per-singer F0 median/p5/p95 and seconds."""
    from comosvc.features.mel import MelStats

    sr = config.audio.sample_rate
    mel_stats: dict[str, MelStats] = defaultdict(MelStats)
    f0s: dict[str, list[np.ndarray]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    total = sum(len(dataset_dict[s]) for s in dataset_dict)
    with tqdm(total=total, desc="stats", unit="utt") as bar:
        for split in dataset_dict:
            ds = dataset_dict[split].select_columns(["dataset", "singer", "mel", "f0", "start", "end"])
            for batch in ds.with_format("numpy").iter(batch_size=64):
                for i in range(len(batch["dataset"])):
                    dataset, key = str(batch["dataset"][i]), f"{batch['dataset'][i]}_{batch['singer'][i]}"
                    if split == "train":
                        mel_stats[dataset].update(batch["mel"][i])
                    f0 = np.asarray(batch["f0"][i], np.float64)
                    f0s[key].append(f0[f0 > 0])
                    seconds[key] += float(batch["end"][i] - batch["start"][i]) / sr
                bar.update(len(batch["dataset"]))
    f0_stats = {}
    for key, parts in sorted(f0s.items()):
        voiced = np.concatenate(parts) if parts else np.zeros(0)
        if voiced.size:
            p5, median, p95 = np.percentile(voiced, [5, 50, 95])
            f0_stats[key] = {"median": float(median), "p5": float(p5), "p95": float(p95)}
        else:  # no voiced frame at all: autoshift cannot use this singer
            f0_stats[key] = {"median": None, "p5": None, "p95": None}
    return {
        "mel": {name: stats.to_dict() for name, stats in sorted(mel_stats.items())},
        "f0": f0_stats,
        "durations": {key: round(sec, 3) for key, sec in sorted(seconds.items())},
    }


def extend_stats(base: dict, new: dict) -> dict:
    """A trained model's stats.json with those of new data added; nothing of ``base`` changes.

    New datasets bring their mel min/max, new singers their F0 stats and durations; a dataset
    or singer ``base`` already has keeps its stats (the model was trained on them), so
    extending twice by the same data changes nothing.
    """
    out = {section: dict(base.get(section, {})) for section in ("mel", "f0", "durations")}
    for section in out:
        for key, value in new.get(section, {}).items():
            out[section].setdefault(key, value)
    return {**base, **out}


def _write_report(path: Path, skipped: list[Skipped]) -> None:
    lines = ["dataset\tsinger\tutterance\tpath\treason"]
    for s in skipped:
        reason = s.reason.replace("\t", " ").replace("\n", " ")
        lines.append(f"{s.dataset}\t{s.singer}\t{s.utterance}\t{s.path}\t{reason}")
    path.write_text("\n".join(lines) + "\n")


def _prune_cache(cache: Path, names: Iterable[str], keep: set[Path]) -> None:
    """Delete Arrow files of this run's datasets that no longer match any input (stale)."""
    for sub in ("slices", "features"):
        folder = cache / sub
        if not folder.is_dir():
            continue
        for name in names:
            for f in folder.glob(f"{name}-*.arrow"):
                if f.resolve() not in keep:
                    f.unlink(missing_ok=True)


# --------------------------------------------------------------------------- entry points


def preprocess(
    config: ComoSVCConfig,
    datasets_: Sequence[DatasetSpec | str],
    out_dir: str | Path,
    device: str | None = None,
    base: tuple[dict[str, int], dict] | None = None,
) -> PreprocessResult:
    """Build (or update) the processed data in ``out_dir``; see the module docstring.

    ``datasets_``: :class:`DatasetSpec` objects or ``"CORPUS[:NAME]=PATH"`` strings.
    ``device``: where features are extracted (default: CUDA if available, else CPU).
    ``base``: a trained model's ``(singers, stats)`` to extend (fine-tuning): its singers keep
    their ids and new ones take the next free ids; stats.json holds its stats, with those of
    new datasets and singers added (:func:`extend_stats`).
    Bad corpus names, missing or empty folders, layouts without audio and duplicate
    dataset names raise :class:`CorpusError` before anything is read or written.
    """
    import datasets as hf

    # 1. reading: every dataset named once and listed before anything is written
    specs = _dataset_specs(datasets_)
    names = [s.name for s in specs]
    device = _resolve_device(device)
    out_dir = Path(out_dir)
    files = _read(specs)  # fails on a layout without audio before anything is written
    singers = SingerTable.load(out_dir / SINGERS_FILE, max_speakers=config.model.n_speakers, missing_ok=True)
    if base is not None:
        singers = singers.extending(base[0])
    cache = _cache_folder(out_dir)

    with _quiet_datasets():
        # 2. slicing: the usable utterances, and every file left out with its reason
        slice_sets, sliced = _slice(files, config, cache)
        segments, skipped = _usable_segments(slice_sets, out_dir)
        # every singer with usable audio gets a stable global id (fails before extraction if too many)
        singers.update(f"{s['dataset']}_{s['singer']}" for s in segments)
        # 3. split and 4. extracting
        split_of = _assign_splits(segments, config)
        parts, extracted = _extract(segments, split_of, config, cache, device)
        skipped += _failed_extractions(parts)
        dataset_dict = hf.DatasetDict({split: _usable(_concat(parts[split], config)) for split in SPLITS})
    skipped.sort(key=lambda s: (s.dataset, s.singer, s.utterance))

    # the output folder: stats, the manifest, stale cache files pruned
    stats = compute_stats(dataset_dict, config)
    if base is not None:
        stats = extend_stats(base[1], stats)
    manifest = _manifest(names, parts, out_dir)
    _prune_cache(cache, names, _cache_files_in_use(manifest, slice_sets, out_dir))
    _write_outputs(out_dir, config, singers, stats, manifest, skipped)
    seconds = _seconds_per_split(dataset_dict, config.audio.sample_rate)
    return PreprocessResult(dataset_dict, out_dir, singers, stats, skipped, extracted, sliced, seconds)


def _dataset_specs(datasets_: Sequence[DatasetSpec | str]) -> list[DatasetSpec]:
    """``datasets_`` as :class:`DatasetSpec` objects; :class:`CorpusError` when there is none or a name is twice."""
    specs = [s if isinstance(s, DatasetSpec) else DatasetSpec.parse(s) for s in datasets_]
    if not specs:
        raise CorpusError("Give at least one --dataset CORPUS=PATH.")
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CorpusError(
            f"Dataset name(s) {', '.join(dupes)} given twice. Rename one: CORPUS:NAME=PATH, "
            "e.g. generic:alice=/data/alice."
        )
    return specs


def _resolve_device(device: str | None) -> str:
    """``device``, or "cuda" when available else "cpu": resolved here, as a GPU must also switch off forked workers."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _cache_folder(out_dir: Path) -> Path:
    """``OUT/cache`` with its ``slices/`` and ``features/`` folders made."""
    cache = out_dir / "cache"
    (cache / "slices").mkdir(parents=True, exist_ok=True)
    (cache / "features").mkdir(parents=True, exist_ok=True)
    return cache


def _usable_segments(slice_sets: list, out_dir: Path) -> tuple[list[dict], list[Skipped]]:
    """The rows of the slice datasets: ``(usable utterances, files left out)``.

    When no utterance is usable, writes ``skipped.tsv`` and raises :class:`CorpusError`.
    """
    skipped: list[Skipped] = []
    segments: list[dict] = []
    for ds in slice_sets:
        for row in ds:
            if row["error"]:
                skipped.append(Skipped(row["dataset"], row["singer"], row["utterance"], row["audio"]["path"], row["error"]))
            else:
                segments.append(row)
    if not segments:
        _write_report(out_dir / REPORT_FILE, skipped)
        raise CorpusError(
            "No usable audio in any dataset: every file was skipped. "
            f"See the reasons in {out_dir / REPORT_FILE}."
        )
    return segments, skipped


def _failed_extractions(parts: dict[str, list]) -> list[Skipped]:
    """The utterances whose extraction failed (rare): reported, and left out by :func:`_usable`."""
    skipped: list[Skipped] = []
    for split in SPLITS:
        for ds in parts[split]:
            for i, error in enumerate(ds["error"]):
                if error:
                    row = ds[i]
                    skipped.append(Skipped(row["dataset"], row["singer"], row["utterance"], row["audio"]["path"], error))
    return skipped


def _manifest(names: list[str], parts: dict[str, list], out_dir: Path) -> dict:
    """``dataset.json``: the datasets and, per split, its feature cache files relative to ``out_dir``."""
    return {
        "format": "comosvc-features",
        "version": FEATURE_VERSION,
        "datasets": names,
        "splits": {
            split: [os.path.relpath(f["filename"], out_dir) for ds in parts[split] for f in ds.cache_files]
            for split in SPLITS
        },
    }


def _cache_files_in_use(manifest: dict, slice_sets: list, out_dir: Path) -> set[Path]:
    """The resolved paths of the feature files the manifest names and of this run's slice files."""
    keep = {(out_dir / f).resolve() for files_ in manifest["splits"].values() for f in files_}
    keep |= {Path(f["filename"]).resolve() for ds in slice_sets for f in ds.cache_files}
    return keep


def _write_outputs(
    out_dir: Path, config: ComoSVCConfig, singers: SingerTable, stats: dict, manifest: dict, skipped: list[Skipped]
) -> None:
    """``singers.json``, ``stats.json``, ``dataset.json``, ``config.yaml`` and ``skipped.tsv`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    singers.save(out_dir / SINGERS_FILE)
    (out_dir / STATS_FILE).write_text(json.dumps(stats, indent=1) + "\n")
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    config.save(out_dir / RUN_CONFIG_FILE)
    _write_report(out_dir / REPORT_FILE, skipped)


def _seconds_per_split(dataset_dict, sample_rate: int) -> dict[str, float]:
    """Seconds of audio in each split (``end - start`` samples at ``sample_rate`` Hz)."""
    return {
        split: float(sum(e - s for s, e in zip(dataset_dict[split]["start"], dataset_dict[split]["end"])))
        / sample_rate
        for split in SPLITS
    }


def _concat(sets: list, config: ComoSVCConfig):
    from datasets import Dataset, concatenate_datasets

    if not sets:
        empty = {name: [] for name in _output_features(config)}
        return Dataset.from_dict(empty, features=_output_features(config))
    return concatenate_datasets(sets) if len(sets) > 1 else sets[0]


def load_processed(out_dir: str | Path, splits: Sequence[str] = SPLITS):
    """The processed :class:`datasets.DatasetDict` of ``out_dir`` (memory-mapped Arrow files)."""
    from datasets import Dataset, DatasetDict

    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{out_dir} holds no processed data ({MANIFEST_FILE} is missing). Run "
            f"`python train/preprocess.py --config CONFIG --dataset CORPUS=PATH --out {out_dir}` first."
        )
    manifest = json.loads(path.read_text())
    result = {}
    for split in splits:
        files = manifest["splits"].get(split, [])
        missing = [f for f in files if not (out_dir / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{out_dir}: {len(missing)} cache file(s) of the {split} split are missing "
                f"(e.g. {missing[0]}). Rerun train/preprocess.py with the same --out to rebuild them."
            )
        sets = [Dataset.from_file(str(out_dir / f)) for f in files]
        if not sets:
            config = load_config(out_dir / RUN_CONFIG_FILE) if (out_dir / RUN_CONFIG_FILE).is_file() else ComoSVCConfig()
            result[split] = _concat([], config)
        else:
            from datasets import concatenate_datasets

            result[split] = _usable(concatenate_datasets(sets) if len(sets) > 1 else sets[0])
    return DatasetDict(result)


def load_stats(out_dir: str | Path) -> dict:
    """``stats.json`` of a processed folder (or a model folder)."""
    path = Path(out_dir) / STATS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {STATS_FILE} in {out_dir}. Run train/preprocess.py first.")
    return json.loads(path.read_text())


def summary(result: PreprocessResult) -> str:
    """Human-readable end-of-run report."""
    dd = result.dataset
    lines = [
        f"Processed data in {result.out_dir}:",
        f"  train: {len(dd['train'])} utterances, {result.seconds.get('train', 0) / 60:.1f} min; "
        f"validation: {len(dd['validation'])} utterances, {result.seconds.get('validation', 0) / 60:.1f} min",
        f"  singers: {len(result.singers)} in {SINGERS_FILE}; this run sliced {result.sliced_files} file(s) "
        f"and extracted {result.extracted} utterance(s) (the rest came from the cache)",
    ]
    if result.skipped:
        lines.append(f"  skipped {len(result.skipped)} input(s) (all listed in {result.out_dir / REPORT_FILE}):")
        for s in result.skipped[:20]:
            lines.append(f"    {s.dataset}/{s.singer}/{s.utterance}: {s.reason}")
        if len(result.skipped) > 20:
            lines.append(f"    ... and {len(result.skipped) - 20} more")
    else:
        lines.append("  skipped: none")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from comosvc.data.corpora import LAYOUTS

    layouts = "\n".join(f"  {name:<11} {layout}" for name, layout in LAYOUTS.items())
    parser = argparse.ArgumentParser(
        prog="python train/preprocess.py",
        description="Turn singing corpora into cached training features (a datasets.DatasetDict).",
        epilog=f"corpora and their layouts:\n{layouts}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="config file, e.g. configs/comosvc.yaml")
    parser.add_argument(
        "--dataset",
        action="append",
        required=True,
        metavar="CORPUS[:NAME]=PATH",
        help="a corpus to include (repeatable), e.g. m4singer=/data/m4singer or generic:alice=/data/alice",
    )
    parser.add_argument("--out", required=True, help="output folder (reruns reuse its cache)")
    parser.add_argument("--device", default=None, help="device for feature extraction, e.g. cuda (default: auto)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from comosvc.config import ConfigError
    from comosvc.data.singers import TooManySingersError

    try:
        config = load_config(args.config, overrides=args.overrides)
        specs = [DatasetSpec.parse(text) for text in args.dataset]  # every name and folder, before any work
        result = preprocess(config, specs, args.out, device=args.device)
    except (CorpusError, ConfigError, TooManySingersError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(result))
    return 0


__all__ = [
    "FEATURE_VERSION",
    "PreprocessResult",
    "SLICE_VERSION",
    "Skipped",
    "build_parser",
    "compute_stats",
    "extend_stats",
    "feature_settings",
    "load_processed",
    "load_stats",
    "main",
    "preprocess",
    "slicing_settings",
    "summary",
]
