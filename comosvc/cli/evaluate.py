"""``python -m comosvc evaluate``: SVC metrics of converted files against references, as JSON and markdown."""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from comosvc.config import ConfigError, F0Config

F0_METHODS = typing.get_args(typing.get_type_hints(F0Config)["method"])


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score converted singing against references (F0, V/UV, MCD, STFT, speaker similarity)",
        description=(
            "Match files by name between --reference and --converted, compute FPC, F0 RMSE in cents "
            "(after median subtraction), V/UV F1, MCD (DTW-aligned), multi-resolution STFT distance "
            "and, with --target-singer-dir, Resemblyzer speaker similarity; write JSON and a markdown table."
        ),
    )
    parser.add_argument("--reference", required=True, type=Path, metavar="DIR", help="reference (ground-truth or source) audio files")
    parser.add_argument("--converted", required=True, type=Path, metavar="DIR", help="converted audio files, named like their references")
    parser.add_argument(
        "--target-singer-dir", type=Path, metavar="DIR", help="the target singer's own clips (for speaker similarity)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE.json", help="report path (default: DIR/evaluation.json in --converted); "
        "the markdown table is written next to it as .md"
    )
    parser.add_argument("--f0-method", choices=F0_METHODS, help="F0 extractor for the pitch metrics (default: the config's)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file for audio and F0 settings (default: built-in defaults)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the markdown table, write the report. Exit code 0 if any file was scored, else 1 (2 on bad input)."""
    from comosvc.config import load_config
    from comosvc.evaluate import EvaluationError, evaluate_dirs, f0_config_with_method, markdown_table, write_report

    try:
        cfg = load_config(args.config)
        f0_cfg = f0_config_with_method(cfg.f0, args.f0_method)
        report = evaluate_dirs(args.reference, args.converted, args.target_singer_dir, f0_cfg, cfg.audio)
    except (EvaluationError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else Path(args.converted) / "evaluation.json"
    json_path, md_path = write_report(report, out)
    print(markdown_table(report))
    print(f"wrote {json_path} and {md_path}")
    if report["n_evaluated"] == 0:
        print("error: no file could be evaluated (see the reasons above)", file=sys.stderr)
        return 1
    return 0
