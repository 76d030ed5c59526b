"""The app's settings: one dataclass, each field a command-line flag and most an environment variable.

    settings = parse_settings()                                   # sys.argv and os.environ
    settings = parse_settings(["--model", "runs/student/model"], environ={})

Every field of :class:`ServingSettings` is the flag ``--field-name``; its metadata holds the
help and, where there is one, the environment variable (``python app.py --help`` lists both).
A flag wins over its variable, and an empty variable counts as unset. On a Hugging Face Space
(``SPACE_ID`` set) with no model named, the model and its teacher are the ones the Space
preloads (:mod:`comosvc.serving.space`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Mapping, Sequence

from comosvc.config import PRECISIONS
from comosvc.serving.gpu_budget import GpuBudget
from comosvc.serving.space import SPACE_MODEL, SPACE_TEACHER, on_space
from comosvc.vocoders import GRIFFINLIM

HOW_TO_PROVIDE = (
    "Start the app with `python app.py --model MODEL`, where MODEL is a Hub id or a local "
    "folder written by `save_pretrained` (add `--vocoder VOCODER` for another vocoder: a Hub id, "
    f"a folder or `{GRIFFINLIM}`), or set the environment variables `COMOSVC_MODEL` and "
    "`COMOSVC_VOCODER`. On a Hugging Face Space, add them under Settings → Variables and "
    "restart the Space."
)
_SECONDS = "a positive number of seconds"
_MEASURED = "default: measured at start-up on CUDA, else"


def _option(default=None, help: str = "", env: str | None = None, parse: Callable = str, must_be: str | None = None,
            choices: Sequence[str] | None = None, default_factory: Callable | None = None):
    """A settings field: ``must_be`` (e.g. "a positive number") makes values that are not > 0 an error."""
    metadata = {"help": help, "env": env, "parse": parse, "must_be": must_be, "choices": choices}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _examples_dir() -> Path:
    return Path(tempfile.gettempdir()) / "comosvc-examples"


@dataclass(frozen=True)
class ServingSettings:
    """Where the model comes from, the limits of a public deployment, the ZeroGPU budget, the server's address."""

    model: str | None = _option(help="Hub id or local folder of a ComoSVC model, teacher or distilled student",
                                env="COMOSVC_MODEL")
    vocoder: str | None = _option(help=f"Hub id, local folder or '{GRIFFINLIM}' (default: the model's inference.vocoder)",
                                  env="COMOSVC_VOCODER")
    teacher: str | None = _option(help="teacher model, if the student export does not name one", env="COMOSVC_TEACHER")
    device: str | None = _option(help="cpu, cuda, ... (default: cuda when there is one)", env="COMOSVC_DEVICE")
    dtype: str | None = _option(help="precision of every network (default auto: float16 on CUDA, float32 on CPU)",
                                env="COMOSVC_DTYPE", choices=PRECISIONS)
    max_seconds: float = _option(60.0, "longest source clip accepted, seconds", "COMOSVC_MAX_SECONDS", float, _SECONDS)
    max_file_size: str = _option("25mb", "largest upload, e.g. 25mb", "COMOSVC_MAX_FILE_SIZE")
    queue_size: int = _option(16, "most requests waiting; more are turned away", parse=int, must_be="a positive number")
    concurrency: int = _option(1, "conversions running at once", parse=int, must_be="a positive number")
    examples_dir: Path = _option(help="where the example clips are written", env="COMOSVC_EXAMPLES_DIR", parse=Path,
                                 default_factory=_examples_dir)
    gpu_cost_shared: float | None = _option(
        help=f"ZeroGPU budget: GPU seconds per second of audio for content features and F0, computed once for both "
             f"systems ({_MEASURED} {GpuBudget.shared_per_second})",
        env="COMOSVC_GPU_COST_SHARED", parse=float, must_be=_SECONDS)
    gpu_cost_per_second: float | None = _option(
        help=f"ZeroGPU budget: GPU seconds per second of audio per run for the vocoder ({_MEASURED} {GpuBudget.per_second})",
        env="COMOSVC_GPU_COST_PER_SECOND", parse=float, must_be=_SECONDS)
    gpu_cost_per_step: float | None = _option(
        help=f"ZeroGPU budget: GPU seconds per second of audio per denoiser evaluation ({_MEASURED} {GpuBudget.per_step})",
        env="COMOSVC_GPU_COST_PER_STEP", parse=float, must_be=_SECONDS)
    gpu_max_duration: float = _option(GpuBudget.cap, "most GPU seconds one conversion asks ZeroGPU for",
                                      "COMOSVC_GPU_MAX_DURATION", float, _SECONDS)
    host: str | None = _option(help="address to bind (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    port: int | None = _option(help="port (default 7860, or GRADIO_SERVER_PORT)", parse=int)
    share: bool = _option(False, "also open a public gradio.live link", parse=bool)
    allow_cpu_finetune: bool = _option(False, "show the Add a singer tab without a CUDA GPU (slow: small tests and demos)",
                                       parse=bool)

    @property
    def budget(self) -> GpuBudget:
        """GPU seconds asked per conversion on ZeroGPU: the costs configured here, the others the
        defaults, which start-up replaces by measured ones on CUDA when none is configured."""
        costs = {"shared_per_second": self.gpu_cost_shared, "per_second": self.gpu_cost_per_second,
                 "per_step": self.gpu_cost_per_step}
        configured = {name: value for name, value in costs.items() if value is not None}
        return GpuBudget(**configured, cap=self.gpu_max_duration, source="configured" if configured else "defaults")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def settings_parser() -> argparse.ArgumentParser:
    """The command line of :class:`ServingSettings` (every default ``None``: unset flags fall back to
    the environment, then to the field's default)."""
    parser = argparse.ArgumentParser(description="ComoSVC conversion app: teacher and student side by side.")
    for option in fields(ServingSettings):
        meta = option.metadata
        help = meta["help"] + (f" [env {meta['env']}]" if meta["env"] else "")
        if meta["parse"] is bool:
            parser.add_argument(_flag(option.name), action="store_true", default=None, help=help)
        else:
            parser.add_argument(_flag(option.name), type=meta["parse"], choices=meta["choices"], default=None, help=help,
                                metavar=None if meta["choices"] else option.name.upper())
    return parser


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServingSettings:
    """Command line ``argv`` (default ``sys.argv[1:]``) and environment ``environ`` (default ``os.environ``)
    -> :class:`ServingSettings`. A bad value exits with one line naming the flag or variable."""
    environ = os.environ if environ is None else environ
    parser = settings_parser()
    args = parser.parse_args(argv)
    values = {}
    for option in fields(ServingSettings):
        value, meta = getattr(args, option.name), option.metadata
        name = _flag(option.name)
        if value is None and meta["env"] and environ.get(meta["env"]):
            name, raw = meta["env"], environ[meta["env"]]
            try:
                value = meta["parse"](raw)
            except ValueError:
                parser.error(f"{name} must be {meta['must_be'] or 'a number'}, not {raw!r}")
            if meta["choices"] and value not in meta["choices"]:
                parser.error(f"{name} must be one of {', '.join(meta['choices'])}, not {raw!r}")
        if value is None:
            continue
        if meta["must_be"] and not value > 0:
            parser.error(f"{name} must be {meta['must_be']}, not {value}")
        values[option.name] = value
    if "model" not in values and on_space(environ):  # the weights README's front matter preloads
        values["model"] = SPACE_MODEL
        values.setdefault("teacher", SPACE_TEACHER)
    return ServingSettings(**values)
