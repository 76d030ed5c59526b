"""``python -m comosvc convert INPUT... --model ID_OR_DIR --singer NAME``: convert songs to a trained singer.

Each input is converted independently: a file that cannot be read (or fails for
any other reason) is reported and skipped, the others are still converted, and
the exit code is 1 if any input failed (2 if nothing could start: bad model,
unknown singer, bad options).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm.auto import tqdm

from comosvc.config import PRECISIONS
from comosvc.vocoders import GRIFFINLIM


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert singing to a trained singer's voice",
        description="Convert one or more recordings of singing to the voice of a singer the model was trained on.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files (wav, flac, ogg, mp3)")
    parser.add_argument("--model", required=True, help="Hugging Face Hub id or local folder of a ComoSVC model")
    parser.add_argument(
        "--singer",
        required=True,
        help='target singer: "<dataset>_<singer>" or a bare singer name; or a mix of singers, '
        '"alice:0.7,opencpop_female1:0.3" (weights are normalised to sum 1)',
    )
    parser.add_argument(
        "--sampler",
        choices=["teacher", "student"],
        default=None,
        help="teacher (diffusion, many steps) or student (consistency, 1-4 steps); default: the student "
        "if the model is distilled, else the teacher",
    )
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: inference.teacher_steps / student_steps)")
    parser.add_argument("--key", default="0", help="key shift in semitones (e.g. -3, +12) or 'auto' (default: 0)")
    parser.add_argument("--out", default="converted", help="output folder (default: ./converted)")
    parser.add_argument("--vocoder", default=None, help=f"vocoder Hub id or folder, or '{GRIFFINLIM}' (default: inference.vocoder)")
    parser.add_argument("--teacher", default=None, help="teacher model for --sampler teacher with a distilled model")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        choices=PRECISIONS,
        default=None,
        help="precision of every network (= --set inference.dtype=...; default auto: float16 on CUDA, "
        "float32 on CPU, where half ones are refused)",
    )
    parser.add_argument(
        "--runtime",
        choices=["torch", "onnx"],
        default="torch",
        help="torch, or onnx: --model is a folder written by `python -m comosvc export-onnx` and the one-step "
        "student and its vocoder run in onnxruntime (default: torch)",
    )
    parser.add_argument("--loudness-match", action="store_true", help="give the output the loudness envelope of the input")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument(
        "--index-ratio",
        type=float,
        default=0.0,
        metavar="R",
        help="0-1: pull the content towards the singer's timbre index (built by `python -m comosvc index`); "
        "more of the singer's timbre, less of the source's articulation (default: 0, no index)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override, e.g. --set inference.max_chunk_seconds=5 (repeatable)",
    )
    parser.set_defaults(func=run)


def output_paths(inputs: list[str], out_dir: Path, singer: str) -> list[Path]:
    """``<out>/<stem>_<singer>.wav`` per input (``singer``: a key, or a mix's :attr:`~comosvc.pipeline.SingerMix.label`);
    inputs with the same stem get ``_2``, ``_3``, ..."""
    seen: dict[str, int] = {}
    paths = []
    for name in inputs:
        stem = Path(name).stem
        seen[stem] = seen.get(stem, 0) + 1
        suffix = "" if seen[stem] == 1 else f"_{seen[stem]}"
        paths.append(out_dir / f"{stem}{suffix}_{singer}.wav")
    return paths


def check_out_dir(out_dir: Path) -> None:
    """Raise an OSError saying what to do when ``out_dir`` cannot be used as --out; create nothing.

    The folder itself is created later, when the first file is saved.
    """
    existing = out_dir
    while not existing.exists() and existing != existing.parent:  # the deepest part that exists
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(
            f"--out {out_dir} cannot be a folder: {existing} is a file. Give --out a folder that is neither a file "
            "nor inside one (e.g. --out converted)."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"--out {out_dir} cannot be written: no write permission in {existing}. Give --out a folder you can "
            "write to (e.g. one in your home folder)."
        )


def _load_pipeline(args: argparse.Namespace):
    """The pipeline of ``--model`` with the target singer (a mix) and sampler resolved: ``(pipe, singer, sampler)``.

    Everything a file does not decide is checked here, once (unknown singer, bad steps, a bad
    ``--index-ratio`` or a missing index): raises ``UnknownSingerError``, ``ValueError`` or ``OSError``.
    """
    from comosvc.pipeline import ConversionPipeline

    pipe = ConversionPipeline.from_pretrained(
        args.model,
        vocoder=args.vocoder,
        teacher=args.teacher,
        device=args.device,
        overrides=[*args.overrides, *([f"inference.dtype={args.dtype}"] if args.dtype else [])],
        runtime=args.runtime,
    )
    singer = pipe.resolve_mix(args.singer)
    sampler = pipe.resolve_sampler(args.sampler, args.steps)  # checked once, here
    pipe.timbre_index(singer, args.index_ratio)  # a bad ratio or a missing index stops here, before any file
    return pipe, singer, sampler


def _convert_file(args: argparse.Namespace, pipe, source: str, target: Path, singer, sampler, key) -> str | None:
    """Convert ``source`` and save it as ``target``, with a progress bar of its chunks.

    Returns None once saved (its timings logged), or what went wrong (also logged): one bad
    file must not stop the batch.
    """
    from comosvc.audio import AudioError, save_audio

    chunks = tqdm(
        total=1.0,
        desc=Path(source).name,
        bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}]",
        leave=False,
        position=1 if len(args.inputs) > 1 else 0,
    )

    def progress(fraction: float, what: str, bar=chunks, name=Path(source).name) -> None:  # what: "3/10 chunks"
        bar.n = fraction
        bar.set_description_str(f"{name} ({what})", refresh=True)

    try:
        result = pipe(
            source,
            singer=singer,
            sampler=sampler,
            key=key,
            loudness_match=True if args.loudness_match else None,
            seed=args.seed,
            progress=progress,
            index_ratio=args.index_ratio,
        )
        save_audio(target, result.audio, result.sample_rate)
    except AudioError as err:  # the loader's own message says what is wrong and what to do
        tqdm.write(f"FAILED {source}: {err}", file=sys.stderr)
        return str(err)
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
        tqdm.write(f"FAILED {source}: {type(err).__name__}: {err}", file=sys.stderr)
        return f"{type(err).__name__}: {err}"
    finally:
        chunks.close()
    _log_result(source, target, result)
    return None


def _log_result(source: str, target: Path, result) -> None:
    """The warnings of one converted file, then a line with its sampler, NFE, key and per-stage seconds."""
    for warning in result.warnings:
        tqdm.write(f"warning: {source}: {warning}", file=sys.stderr)
    t = result.timings
    tqdm.write(
        f"{source} -> {target}  ({result.sampler}, {result.nfe} NFE, key {result.key:+.2f}; "
        f"content {t['content']:.2f}s, f0 {t['f0']:.2f}s, acoustic {t['acoustic']:.2f}s, "
        f"vocoder {t['vocoder']:.2f}s, total {t['total']:.2f}s)"
    )


def _finish(inputs: list[str], failed: list[tuple[str, str]], out_dir: Path) -> int:
    """Say how many inputs were converted and which failed (why); the exit code: 1 if any failed."""
    done = len(inputs) - len(failed)
    print(f"converted {done} of {len(inputs)} file(s) to {out_dir}/", file=sys.stderr)
    if failed:
        for source, message in failed:
            print(f"  failed: {source}: {message}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """1. the options (key, --out), 2. the pipeline, singer and sampler, 3. each input in turn,
    4. the summary. Exit code 2 if 1 or 2 fails (nothing converted), 1 if any input failed."""
    from comosvc.pipeline import UnknownSingerError, parse_key

    try:
        key = parse_key(args.key)
        check_out_dir(Path(args.out))
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        pipe, singer, sampler = _load_pipeline(args)
    except (UnknownSingerError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    out_dir = Path(args.out)
    failed: list[tuple[str, str]] = []
    targets = output_paths(args.inputs, out_dir, singer.label)
    files = tqdm(list(zip(args.inputs, targets)), desc="files", unit="file", disable=len(args.inputs) < 2)
    for source, target in files:
        error = _convert_file(args, pipe, source, target, singer, sampler, key)
        if error is not None:
            failed.append((source, error))
    files.close()
    return _finish(args.inputs, failed, out_dir)
