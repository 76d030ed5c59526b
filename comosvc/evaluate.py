"""Score converted singing against references, file by file, with the standard SVC metrics.

Files are matched by name (the stem: ``song1.wav`` matches ``song1.flac``) between a
folder of references and a folder of conversions. For every pair
:func:`evaluate_pair` computes the metrics of :mod:`comosvc.metrics`; the report
holds the per-file values, their means, the names that had no partner and the
files that could not be read (each with its reason; the others still count).

What the reference is decides what the numbers mean: against the *source*
singing, the F0 metrics measure how well the melody is kept (a key shift is
forgiven by the median subtraction); MCD and the STFT distance only make sense
against singing *by the target singer* (reconstruction or parallel data).
Speaker similarity compares each conversion with the target singer's own clips.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from comosvc import metrics
from comosvc.audio import AudioError, load_audio
from comosvc.config import AudioConfig, F0Config
from comosvc.measure import tables

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")

# key in the report -> (column title, format); the order of the table
METRICS = {
    "fpc": ("FPC ↑", "{:.3f}"),
    "f0_rmse_cents": ("F0 RMSE (cents) ↓", "{:.1f}"),
    "vuv_f1": ("V/UV F1 ↑", "{:.3f}"),
    "mcd_db": ("MCD (dB) ↓", "{:.2f}"),
    "mrstft": ("MR-STFT ↓", "{:.3f}"),
    "speaker_similarity": ("Speaker sim. ↑", "{:.3f}"),
}


class EvaluationError(ValueError):
    """The folders cannot be evaluated (empty, nothing matches, ...); the message says what to do."""


def audio_files(folder: str | Path) -> dict[str, Path]:
    """The audio files directly inside ``folder``, by stem. Raises :class:`EvaluationError`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder} is not a folder. Pass a folder of audio files.")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES):
            continue
        if path.stem in files:
            raise EvaluationError(
                f"{folder} holds two files named {path.stem!r} ({files[path.stem].name}, {path.name}); "
                "files are matched by name, so keep one of them."
            )
        files[path.stem] = path
    if not files:
        raise EvaluationError(
            f"{folder} holds no audio files (looked for {', '.join(AUDIO_SUFFIXES)}). Check the path."
        )
    return files


def match_files(
    reference_dir: str | Path, converted_dir: str | Path
) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pair files by stem. Returns ``(pairs, reference_only, converted_only)``; pairs are ``(name, ref, conv)``.

    Raises :class:`EvaluationError` when no name is shared, listing a few names of each side.
    """
    references, converted = audio_files(reference_dir), audio_files(converted_dir)
    shared = sorted(set(references) & set(converted))
    if not shared:
        raise EvaluationError(
            f"No file names match between {reference_dir} and {converted_dir}. Files are paired by name "
            f"without the extension; the references include {_few(references)} and the conversions "
            f"{_few(converted)}. Rename the conversions after their references."
        )
    pairs = [(name, references[name], converted[name]) for name in shared]
    return pairs, sorted(set(references) - set(converted)), sorted(set(converted) - set(references))


def _few(names, n: int = 5) -> str:
    names = sorted(names)
    listed = ", ".join(repr(name) for name in names[:n])
    return listed + (f" and {len(names) - n} more" if len(names) > n else "")


def target_embedding(folder: str | Path, sample_rate: int = 24000) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Mean Resemblyzer embedding ``(256,)`` of the target singer's clips in ``folder``.

    Returns ``(embedding, names used, {name: error})`` for the clips that could not be read.
    Raises :class:`EvaluationError` when no clip is usable.
    """
    embeddings, used, errors = [], [], {}
    for name, path in tqdm(audio_files(folder).items(), desc="target singer", unit="clip"):
        try:
            embeddings.append(metrics.speaker_embedding(load_audio(path, sample_rate), sample_rate))
            used.append(name)
        except AudioError as err:
            errors[name] = str(err)
    if not embeddings:
        raise EvaluationError(f"None of the target singer's clips in {folder} could be read: {errors}")
    return metrics.mean_speaker_embedding(embeddings), used, errors


def evaluate_pair(
    wav_ref: np.ndarray,
    wav_conv: np.ndarray,
    f0_cfg: F0Config = F0Config(),
    audio_cfg: AudioConfig = AudioConfig(),
    target: np.ndarray | None = None,
) -> dict[str, float | None]:
    """All metrics for one reference/conversion pair of ``(N,)`` waveforms at ``audio_cfg.sample_rate``.

    F0 comes from :func:`comosvc.features.f0.extract_f0` with ``f0_cfg`` (the same
    method for both). ``target`` is the target singer's mean embedding;
    without it ``speaker_similarity`` is ``None``. Keys are those of :data:`METRICS`;
    an undefined value (``nan``, e.g. FPC with no frame voiced in both) is ``None``.
    """
    from comosvc.features.f0 import extract_f0

    rate = audio_cfg.sample_rate
    f0_ref, f0_conv = extract_f0(wav_ref, f0_cfg, audio_cfg), extract_f0(wav_conv, f0_cfg, audio_cfg)
    values = {
        "fpc": metrics.f0_pearson_correlation(f0_ref, f0_conv),
        "f0_rmse_cents": metrics.f0_rmse_cents(f0_ref, f0_conv, subtract_median=True),
        "vuv_f1": metrics.vuv_f1(f0_ref, f0_conv),
        "mcd_db": metrics.mel_cepstral_distortion(
            metrics.mel_cepstrum(wav_ref, rate, hop_length=audio_cfg.hop_length),
            metrics.mel_cepstrum(wav_conv, rate, hop_length=audio_cfg.hop_length),
        ),
        "mrstft": metrics.multi_resolution_stft_distance(wav_ref, wav_conv),
        "speaker_similarity": None if target is None else metrics.speaker_similarity(wav_conv, target, rate),
    }
    return {key: None if value is None or math.isnan(value) else float(value) for key, value in values.items()}


def evaluate_dirs(
    reference_dir: str | Path,
    converted_dir: str | Path,
    target_singer_dir: str | Path | None = None,
    f0_cfg: F0Config = F0Config(),
    audio_cfg: AudioConfig = AudioConfig(),
) -> dict:
    """Evaluate every pair of files with the same name; returns the report (a JSON-ready dict).

    Report keys: ``files`` ({name: metrics, or {"error": message}}), ``mean``
    (each metric averaged over the files where it is defined), ``n_evaluated``,
    ``failed`` ({name: message}), ``reference_only`` / ``converted_only`` (names
    without a partner), ``target_singer_clips``, ``settings``.
    """
    pairs, reference_only, converted_only = match_files(reference_dir, converted_dir)
    target, target_clips, target_errors = None, [], {}
    if target_singer_dir is not None:
        target, target_clips, target_errors = target_embedding(target_singer_dir, audio_cfg.sample_rate)

    files: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for name, ref_path, conv_path in tqdm(pairs, desc="evaluate", unit="file"):
        try:
            wav_ref = load_audio(ref_path, audio_cfg.sample_rate)
            wav_conv = load_audio(conv_path, audio_cfg.sample_rate)
            files[name] = evaluate_pair(wav_ref, wav_conv, f0_cfg, audio_cfg, target)
        except AudioError as err:  # unreadable file: report it, keep going
            failed[name] = str(err)
        except Exception as err:  # a metric failed on odd audio: report it, keep going
            failed[name] = f"metrics failed on {conv_path.name} / {ref_path.name}: {type(err).__name__}: {err}"
        if name in failed:
            files[name] = {"error": failed[name]}

    scored = [values for values in files.values() if "error" not in values]
    mean = {key: _nanmean([values[key] for values in scored]) for key in METRICS}
    return {
        "reference_dir": str(reference_dir),
        "converted_dir": str(converted_dir),
        "target_singer_dir": None if target_singer_dir is None else str(target_singer_dir),
        "target_singer_clips": target_clips,
        "target_singer_errors": target_errors,
        "n_evaluated": len(scored),
        "mean": mean,
        "files": files,
        "failed": failed,
        "reference_only": reference_only,
        "converted_only": converted_only,
        "settings": {
            "sample_rate": audio_cfg.sample_rate,
            "hop_length": audio_cfg.hop_length,
            "f0_method": f0_cfg.method,
            "mcep_order": 24,
            "mcep_alpha": metrics.ALL_PASS_ALPHA.get(audio_cfg.sample_rate),
            "stft_resolutions": [list(r) for r in metrics.STFT_RESOLUTIONS],
        },
    }


def _nanmean(values: list) -> float | None:
    numbers = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(numbers)) if numbers else None


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def markdown_table(report: dict) -> str:
    """The report as a markdown table: one row per file, then the mean; notes on failures and unmatched names."""
    header = ["file"] + [title for title, _ in METRICS.values()]
    rows = []
    for name, values in report["files"].items():
        if "error" in values:
            cells = ["could not be read"] + [""] * (len(METRICS) - 1)
        else:
            cells = [_cell(values[key], fmt) for key, (_, fmt) in METRICS.items()]
        rows.append([name] + cells)
    means = [_cell(report["mean"][key], fmt) for key, (_, fmt) in METRICS.items()]
    rows.append([f"**mean of {report['n_evaluated']}**"] + [f"**{m}**" for m in means])
    lines = [tables.markdown_table(header, rows)]
    notes = []
    for name, message in report["failed"].items():
        notes.append(f"- {name}: {message}")
    if report["reference_only"]:
        notes.append(f"- no conversion for: {', '.join(report['reference_only'])}")
    if report["converted_only"]:
        notes.append(f"- no reference for: {', '.join(report['converted_only'])}")
    if report["target_singer_dir"] is None:
        notes.append("- speaker similarity needs --target-singer-dir (the target singer's own clips)")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def write_report(report: dict, out_json: str | Path) -> tuple[Path, Path]:
    """Write the report as JSON to ``out_json`` and its markdown table next to it (same stem, ``.md``)."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False, default=_json_number))
    out_md = out_json.with_suffix(".md")
    out_md.write_text(markdown_table(report))
    return out_json, out_md


def _json_number(value):  # pragma: no cover - numpy scalars sneaking in
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def f0_config_with_method(cfg: F0Config, method: str | None) -> F0Config:
    """``cfg`` with ``method`` replaced when given; raises :class:`EvaluationError` for an unknown method."""
    if method is None:
        return cfg
    import typing

    allowed = typing.get_args(typing.get_type_hints(F0Config)["method"])
    if method not in allowed:
        raise EvaluationError(f"Unknown F0 method {method!r}; choose one of {', '.join(allowed)}.")
    return replace(cfg, method=method)


__all__ = [
    "AUDIO_SUFFIXES",
    "METRICS",
    "EvaluationError",
    "audio_files",
    "evaluate_dirs",
    "evaluate_pair",
    "f0_config_with_method",
    "markdown_table",
    "match_files",
    "target_embedding",
    "write_report",
]
