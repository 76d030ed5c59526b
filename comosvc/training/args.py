"""Command-line arguments and start-up shared by ``train/train.py`` and ``train/distill.py``.

Both scripts read one config file plus ``section.key=value`` overrides; the common
flags (``--max_steps``, ``--batch_size``, ``--lr``, ``--mixed_precision``) are
shorthands for overrides of the script's own section (``train`` or ``distill``).
:func:`start_script` is the prologue of both: arguments, logging, user errors as one
line, the run's config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from accelerate.utils import set_seed

from comosvc.config import ComoSVCConfig, ConfigError, TrainConfig, load_config
from comosvc.files import RUN_CONFIG_FILE


def start_script(
    doc: str, section: str, teacher_arg: bool = False, index_arg: bool = False
) -> tuple[argparse.Namespace, ComoSVCConfig]:
    """The prologue of a training script (``section``: "train" or "distill"); returns ``(args, cfg)``.

    Parses the command line (``doc``'s first line is the description), logs comosvc's
    INFO messages, shows user errors as one line, loads the config with the overrides,
    resolves ``cfg.<section>.mixed_precision`` and seeds every process alike (the same
    initial weights everywhere).
    """
    args = build_parser(doc.splitlines()[0], teacher_arg=teacher_arg, index_arg=index_arg).parse_args()
    setup_logging()
    show_user_errors_briefly()
    cfg = load_run_config(args, section)
    tc = getattr(cfg, section)
    tc.mixed_precision = resolve_mixed_precision(args.mixed_precision, tc)
    set_seed(tc.seed)
    return args, cfg


def build_parser(description: str, teacher_arg: bool = False, index_arg: bool = False) -> argparse.ArgumentParser:
    """The parser of a training script; ``teacher_arg`` adds distillation's ``--teacher``, ``index_arg``
    training's ``--no_index``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="config file, e.g. configs/comosvc.yaml or configs/tiny.yaml")
    if teacher_arg:
        parser.add_argument("--teacher", required=True, help="trained teacher: a folder (OUT/model) or a Hub id")
    parser.add_argument("--data", required=True, help="folder written by train/preprocess.py")
    parser.add_argument("--out", required=True, help="run folder: checkpoints/, logs/, model/")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --out")
    parser.add_argument("--max_steps", type=int, help="optimiser steps in total (a resumed run stops there too)")
    parser.add_argument("--batch_size", type=int, help="examples per step and process")
    parser.add_argument("--lr", type=float, help="AdamW learning rate")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], help="default: accelerate launch's setting, else the config's")
    parser.add_argument("--push_to_hub", metavar="REPO_ID", help="upload the final model to this Hub repository")
    if index_arg:
        parser.add_argument("--no_index", action="store_true", help="do not build the singers' timbre index at the end")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, e.g. train.log_every=10")
    return parser


def load_run_config(args: argparse.Namespace, section: str) -> ComoSVCConfig:
    """The config of ``args.config`` with the overrides and the shorthand flags applied to ``section``."""
    overrides = list(args.overrides)
    for flag in ("max_steps", "batch_size", "lr", "mixed_precision"):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{section}.{flag}={value}")
    return load_config(args.config, overrides=overrides)


def resolve_mixed_precision(cli_value: str | None, tc: TrainConfig) -> str:
    """``--mixed_precision`` of the script, else ``accelerate launch --mixed_precision``, else the config."""
    return cli_value or os.environ.get("ACCELERATE_MIXED_PRECISION") or tc.mixed_precision


def setup_logging() -> None:
    """INFO messages of comosvc (resume, checkpoints, warnings) on stderr, one line each."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("comosvc").setLevel(logging.INFO)


def show_user_errors_briefly() -> None:
    """Print mistakes a user can fix (bad config, existing run folder, missing data, diverged run)
    as one ``error: ...`` line with exit code 2 instead of a traceback; anything else keeps its traceback."""
    from comosvc.training.data import TeacherMismatchError
    from comosvc.training.finetune_checks import FinetuneError
    from comosvc.training.loop import NonFiniteLossError

    user_errors = (ConfigError, FileExistsError, FileNotFoundError, TeacherMismatchError, NonFiniteLossError, FinetuneError)
    default_hook = sys.excepthook

    def hook(kind, error, traceback):
        if issubclass(kind, user_errors):
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        default_hook(kind, error, traceback)

    sys.excepthook = hook


def tracker_config(cfg: ComoSVCConfig) -> dict[str, int | float | str | bool]:
    """The config flattened to ``{"train.lr": 4e-4, ...}`` scalars, as trackers store hyperparameters."""
    flat: dict[str, int | float | str | bool] = {}
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def save_run_config(cfg: ComoSVCConfig, out: str | Path) -> Path:
    """Write the effective config to ``OUT/config.yaml`` (what this run actually used)."""
    path = Path(out) / RUN_CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.save(path)
    return path


__all__ = [
    "build_parser",
    "load_run_config",
    "resolve_mixed_precision",
    "save_run_config",
    "setup_logging",
    "show_user_errors_briefly",
    "start_script",
    "tracker_config",
]
