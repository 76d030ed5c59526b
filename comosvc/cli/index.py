"""``python -m comosvc index --model MODEL_DIR --data DATA_DIR``: build the timbre index of a model's singers.

Writes ``index.safetensors`` (:data:`comosvc.files.INDEX_FILE`) into the model
folder: per singer, a k-means summary of their training content vectors
(:mod:`comosvc.index`). With ``--singer`` only those singers are (re)built and the
others of an existing index are kept. The file is written to a temporary name and
renamed once complete, so a failure never destroys a good index.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from comosvc.index.sizes import FRAMES_PER_VECTOR, MAX_SIZE

    parser = subparsers.add_parser(
        "index",
        help="build the timbre index of a model's singers (for --index-ratio)",
        description="Build the per-singer timbre index of a model from its preprocessed training data and write "
        "it into the model folder; conversions then take --index-ratio.",
    )
    parser.add_argument("--model", required=True, help="local folder of a ComoSVC model (the index is written into it)")
    parser.add_argument("--data", required=True, help="the folder train/preprocess.py wrote for this model's training")
    parser.add_argument(
        "--singer", action="append", default=None, metavar="NAME",
        help="build only this singer (repeatable; full key or bare name); default: every singer of the model in --data",
    )
    parser.add_argument(
        "--size", type=int, default=MAX_SIZE,
        help=f"index vectors per singer at most (default {MAX_SIZE}; fewer for singers with under "
        f"{MAX_SIZE * FRAMES_PER_VECTOR} training frames: one per {FRAMES_PER_VECTOR} frames)",
    )
    parser.add_argument("--device", default=None, help="where the k-means runs: cpu or cuda (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed (default: 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from comosvc.files import INDEX_FILE
    from comosvc.index import IndexFileError, TimbreIndex, build_index
    from comosvc.models.folder import read_singer_tables
    from comosvc.pipeline.singers import UnknownSingerError, resolve_singer

    folder = Path(args.model)
    target = folder / INDEX_FILE
    try:
        if not folder.is_dir():
            raise FileNotFoundError(f"--model {folder} is not a local model folder; download it first (the index is written into it).")
        if args.size < 1:
            raise ValueError(f"--size must be at least 1, got {args.size}")
        singers, _ = read_singer_tables(folder)
        wanted = [resolve_singer(name, singers) for name in args.singer] if args.singer else None
        if wanted is None:
            from comosvc.data.preprocess import load_processed
            from comosvc.index.build import data_singers

            in_data = data_singers(load_processed(args.data, splits=["train"])["train"])
            wanted = [key for key in singers if key in in_data]
            if not wanted:
                raise ValueError(
                    f"The train split of {args.data} has none of the model's singers; pass the data the model was trained on."
                )
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        index = build_index(args.data, singers=wanted, max_size=args.size, seed=args.seed, device=device)
        if args.singer and target.is_file():  # keep the other singers of the index already there
            try:
                index = TimbreIndex.load(target).merged(index)
            except IndexFileError as err:
                print(f"warning: {err} Writing only the singers built now.", file=sys.stderr)
        index.save(target)
    except (UnknownSingerError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{key} {index.size(key)}" for key in wanted)
    print(f"wrote {target}: {len(index)} singer(s); vectors per singer built now: {sizes}", file=sys.stderr)
    return 0
