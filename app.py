"""ComoSVC web app (and Hugging Face Space): convert a sung clip, teacher against student.

    python app.py --model <Hub id or folder> [--vocoder <Hub id, folder or griffinlim>]
    COMOSVC_MODEL=<...> COMOSVC_VOCODER=<...> python app.py

One button converts the clip twice, with the many-step diffusion teacher and the
one-step consistency student (in one pass: content features and F0 once), and shows both side by side: audio, mel
spectrograms and what each cost. All the work is in the library
(:class:`comosvc.pipeline.ConversionPipeline`, :mod:`comosvc.compare`); this file
only wires the UI and the limits a public Space needs (maximum clip length,
bounded uploads, a queue with a concurrency limit).

Without a reachable model the app still starts and says what is missing.

One file for every host. On a CPU or CUDA machine it runs as it is. On a ZeroGPU
Space (the ``spaces`` package, a no-op elsewhere) the model is loaded and moved to
CUDA once at start-up, before the server starts, as ZeroGPU expects; each conversion
then runs inside ``spaces.GPU`` and asks for as many GPU seconds as
:class:`GpuBudget` estimates from the clip's length and both samplers' steps.
"""

from __future__ import annotations

# `spaces` first: on ZeroGPU it patches torch before anything touches CUDA. Off a Space it
# only reads its environment variables (SPACES_ZERO_GPU, ...) and `spaces.GPU` returns the
# function unchanged. The app also runs without it installed.
try:
    import spaces
except ImportError:
    spaces = None

import argparse
import html
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from comosvc.audio import AudioError, TooLongError, load_audio, save_audio
from comosvc.compare import compare, mel_image, mel_range, timing_rows, timing_table
from comosvc.config import PRECISIONS, InferenceConfig
from comosvc.vocoders import GRIFFINLIM

log = logging.getLogger("comosvc.app")

HOW_TO_PROVIDE = (
    "Start the app with `python app.py --model MODEL`, where MODEL is a Hub id or a local "
    "folder written by `save_pretrained` (add `--vocoder VOCODER` for another vocoder: a Hub id, "
    f"a folder or `{GRIFFINLIM}`), or set the environment variables `COMOSVC_MODEL` and "
    "`COMOSVC_VOCODER`. On a Hugging Face Space, add them under Settings → Variables and "
    "restart the Space."
)

# The model a Space serves when COMOSVC_MODEL is not set, and the teacher it was distilled
# from. README's front matter preloads exactly these (and the vocoder and content encoders
# of the config defaults) at build time: see space_weights() and docs/space.md.
# Placeholders: replace them with the Hub ids the project publishes before building a Space.
SPACE_MODEL = "comosvc/comosvc-student"
SPACE_TEACHER = "comosvc/comosvc-teacher"


def on_space() -> bool:
    """True on a Hugging Face Space (it sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space: CUDA is lent per call of a ``spaces.GPU`` function."""
    config = getattr(getattr(spaces, "config", None), "Config", None)
    return bool(getattr(config, "zero_gpu", False))


def space_weights() -> list[tuple[str, list[str]]]:
    """``(Hub id, files)`` the Space downloads at build time (README's ``preload_from_hub``).

    The model and its teacher (a ``save_pretrained`` folder each), the default vocoder
    (NVIDIA's BigVGAN layout) and the default content encoders, all read from the code's
    defaults, and only the files the loaders read.
    """
    from comosvc.config import ComoSVCConfig

    config = ComoSVCConfig()
    comosvc_files = ["config.json", "model.safetensors", "singers.json", "stats.json"]
    return [
        (SPACE_MODEL, comosvc_files),
        (SPACE_TEACHER, comosvc_files),
        (config.inference.vocoder, ["config.json", "bigvgan_generator.pt"]),
        (config.content.whisper, ["config.json", "preprocessor_config.json", "model.safetensors"]),
        (config.content.contentvec, ["config.json", "pytorch_model.bin"]),  # the repo has no safetensors
    ]


# --------------------------------------------------------------------------- GPU budget


@dataclass(frozen=True)
class GpuBudget:
    """How many GPU seconds one conversion asks ZeroGPU for (``spaces.GPU(duration=...)``).

    ``seconds = min(cap, overhead + margin * clip_s * (shared_per_second + runs * per_second +
    evaluations * per_step))``: the teacher and the student convert the clip in one pass
    (:func:`comosvc.compare.compare`), so ``shared_per_second``, what the content features and
    F0 cost per second of audio, is paid once; ``per_second`` is the rest of one run (the
    vocoder, joining) per second of audio, ``per_step`` one denoiser evaluation per second of
    audio, ``evaluations`` the samplers' network evaluations (``sampler.nfe``: the teacher's
    ``steps + 1`` with Euler, the student's ``steps``). ZeroGPU stops
    a call that outlives its request and queues long requests behind short ones, so the
    estimate is generous (``margin``) but bounded: ``cap`` stays within what a visitor
    may ask for (an unauthenticated visitor has 2 minutes of ZeroGPU a day).
    """

    # Defaults, until start-up measures them on CUDA (measure_budget): README's one-CPU-thread
    # stage split of 30 s (content 66.3 + F0 0.1 s shared; BigVGAN v2 139.1 s per run; (108.1 - 4.0) / 40 s
    # per teacher step) divided by 50, a deliberately low GPU-over-one-thread speed-up.
    shared_per_second: float = 0.045  # s of GPU per s of audio, once per conversion: content + F0
    per_second: float = 0.093  # s of GPU per s of audio per run: vocoder
    per_step: float = 0.002  # s of GPU per s of audio per denoiser evaluation
    overhead: float = 10.0  # s: lending the GPU, moving weights, the mel pictures
    margin: float = 1.5
    cap: float = 120.0
    source: str = "defaults"  # "defaults", "configured" or "measured on <device>"

    def seconds(self, clip_seconds: float, evaluations: int, runs: int = 2) -> int:
        """Whole GPU seconds for a clip of ``clip_seconds`` converted ``runs`` times in one pass, with
        ``evaluations`` denoiser evaluations in all (the sum of the samplers' ``nfe``)."""
        per_clip_second = (self.shared_per_second if runs else 0.0) + runs * self.per_second + evaluations * self.per_step
        work = max(float(clip_seconds), 0.0) * per_clip_second
        return int(math.ceil(min(self.cap, self.overhead + self.margin * work)))


# --------------------------------------------------------------------------- settings


@dataclass
class AppSettings:
    """Where the model comes from and the limits of a public deployment."""

    model: str | None = None  # Hub id or folder of a ComoSVC export (teacher or distilled student)
    vocoder: str | None = None  # Hub id, folder or GRIFFINLIM; None = the model's default
    teacher: str | None = None  # teacher export, when the student does not point to one itself
    device: str | None = None
    dtype: str | None = None  # inference.dtype of every network; None = the model's config ("auto": float16 on CUDA)
    max_seconds: float = 60.0  # longest source clip accepted, seconds
    max_file_size: str = "25mb"  # largest upload
    queue_size: int = 16  # requests waiting at most; more are turned away
    concurrency: int = 1  # conversions running at once
    examples_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "comosvc-examples")
    budget: GpuBudget = field(default_factory=GpuBudget)  # GPU seconds asked per conversion on ZeroGPU


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _env_optional_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


def parse_args(argv: list[str] | None = None) -> tuple[AppSettings, argparse.Namespace]:
    """Command line (and environment) -> :class:`AppSettings` plus the server options.

    On a Space without COMOSVC_MODEL the model is :data:`SPACE_MODEL` (and its teacher
    :data:`SPACE_TEACHER`), the weights README's front matter preloads.
    """
    defaults = AppSettings()
    budget = defaults.budget
    space_default = on_space() and not os.environ.get("COMOSVC_MODEL")
    parser = argparse.ArgumentParser(description="ComoSVC conversion app: teacher and student side by side.")
    parser.add_argument("--model", default=os.environ.get("COMOSVC_MODEL") or (SPACE_MODEL if space_default else None),
                        help="Hub id or local folder of a ComoSVC model (env COMOSVC_MODEL)")
    parser.add_argument("--vocoder", default=os.environ.get("COMOSVC_VOCODER"),
                        help=f"Hub id, local folder or '{GRIFFINLIM}' (env COMOSVC_VOCODER; default: the model's)")
    parser.add_argument("--teacher", default=os.environ.get("COMOSVC_TEACHER") or (SPACE_TEACHER if space_default else None),
                        help="teacher model, if the student export does not name one (env COMOSVC_TEACHER)")
    parser.add_argument("--device", default=os.environ.get("COMOSVC_DEVICE"), help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--dtype", default=os.environ.get("COMOSVC_DTYPE"), choices=PRECISIONS,
                        help="precision of every network (env COMOSVC_DTYPE; default auto: float16 on CUDA, float32 on CPU)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860, or GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--max-seconds", type=float, default=_env_float("COMOSVC_MAX_SECONDS", defaults.max_seconds),
                        help="longest source clip accepted, seconds (env COMOSVC_MAX_SECONDS)")
    parser.add_argument("--max-file-size", default=os.environ.get("COMOSVC_MAX_FILE_SIZE", defaults.max_file_size),
                        help="largest upload, e.g. 25mb (env COMOSVC_MAX_FILE_SIZE)")
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size, help="most requests waiting")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="conversions at once")
    parser.add_argument("--examples-dir", type=Path, default=Path(os.environ.get("COMOSVC_EXAMPLES_DIR", defaults.examples_dir)),
                        help="where the example clips are written")
    parser.add_argument("--gpu-cost-shared", type=float, default=_env_optional_float("COMOSVC_GPU_COST_SHARED"),
                        help="ZeroGPU budget: GPU seconds per second of audio for content features and F0, computed once "
                             "for both systems (env COMOSVC_GPU_COST_SHARED; default: measured at start-up on CUDA, "
                             f"else {budget.shared_per_second})")
    parser.add_argument("--gpu-cost-per-second", type=float, default=_env_optional_float("COMOSVC_GPU_COST_PER_SECOND"),
                        help="ZeroGPU budget: GPU seconds per second of audio per run for the vocoder "
                             f"(env COMOSVC_GPU_COST_PER_SECOND; default: measured at start-up on CUDA, else {budget.per_second})")
    parser.add_argument("--gpu-cost-per-step", type=float, default=_env_optional_float("COMOSVC_GPU_COST_PER_STEP"),
                        help="ZeroGPU budget: GPU seconds per second of audio per denoiser evaluation "
                             f"(env COMOSVC_GPU_COST_PER_STEP; default: measured at start-up on CUDA, else {budget.per_step})")
    parser.add_argument("--gpu-max-duration", type=float, default=_env_float("COMOSVC_GPU_MAX_DURATION", budget.cap),
                        help="most GPU seconds one conversion asks ZeroGPU for (env COMOSVC_GPU_MAX_DURATION)")
    args = parser.parse_args(argv)
    if args.dtype and args.dtype not in PRECISIONS:  # argparse does not check a default from the environment
        parser.error(f"COMOSVC_DTYPE must be one of {', '.join(PRECISIONS)}, not {args.dtype!r}")
    costs = {"--gpu-cost-shared": args.gpu_cost_shared, "--gpu-cost-per-second": args.gpu_cost_per_second,
             "--gpu-cost-per-step": args.gpu_cost_per_step}
    for flag, value in (*costs.items(), ("--gpu-max-duration", args.gpu_max_duration)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be a positive number of seconds, not {value}")
    configured = any(value is not None for value in costs.values())
    budget = GpuBudget(
        shared_per_second=budget.shared_per_second if args.gpu_cost_shared is None else args.gpu_cost_shared,
        per_second=budget.per_second if args.gpu_cost_per_second is None else args.gpu_cost_per_second,
        per_step=budget.per_step if args.gpu_cost_per_step is None else args.gpu_cost_per_step,
        cap=args.gpu_max_duration,
        source="configured" if configured else budget.source,
    )
    settings = AppSettings(
        model=args.model or None,
        vocoder=args.vocoder or None,
        teacher=args.teacher or None,
        device=args.device or None,
        dtype=args.dtype or None,
        max_seconds=args.max_seconds,
        max_file_size=args.max_file_size,
        queue_size=args.queue_size,
        concurrency=args.concurrency,
        examples_dir=args.examples_dir,
        budget=budget,
    )
    return settings, args


# --------------------------------------------------------------------------- model


@dataclass
class ModelState:
    """The loaded pipeline, or why there is none (Markdown for the banner and the error)."""

    pipe: object | None
    status: str  # Markdown shown at the top of the page
    problem: str | None = None  # plain sentence raised as gr.Error when converting without a model
    samplers: tuple[str, ...] = ()  # what the model can run: "teacher", "student"
    budget: GpuBudget = field(default_factory=GpuBudget)  # GPU seconds per conversion (ZeroGPU)


def load_model(settings: AppSettings) -> ModelState:
    """Load the conversion pipeline (and a distilled model's teacher); never raises: failures become a banner."""
    if not settings.model:
        problem = "No model is loaded, so there is nothing to convert with."
        status = f"### ⚠️ No model loaded\n\n{problem} {HOW_TO_PROVIDE}"
        return ModelState(None, status, f"{problem} {_plain(HOW_TO_PROVIDE)}")
    started = time.perf_counter()
    try:
        from comosvc.pipeline import ConversionPipeline

        pipe = ConversionPipeline.from_pretrained(
            settings.model,
            vocoder=settings.vocoder,
            teacher=settings.teacher,
            device=settings.device or default_device(),
            overrides=[f"inference.dtype={settings.dtype}"] if settings.dtype else None,
        )
    except Exception as err:  # any failure (missing files, offline Hub, bad config) becomes the banner
        log.exception("could not load model %s", settings.model)
        problem = f"The model `{settings.model}` could not be loaded: {err}"
        status = f"### ⚠️ Model not loaded\n\n{_escape(problem)}\n\n{HOW_TO_PROVIDE}"
        return ModelState(None, status, f"{_plain(problem)} {_plain(HOW_TO_PROVIDE)}")

    log.info("loaded %s in %.1f s", settings.model, time.perf_counter() - started)
    notes = []
    samplers = list(pipe.samplers)
    if "teacher" in samplers and "student" in samplers:
        try:  # load a student's teacher now, not inside the first user's timings
            pipe.teacher()
        except Exception as err:
            log.exception("could not load the teacher")
            samplers.remove("teacher")
            notes.append(f"⚠️ The teacher could not be loaded, so only the student runs: {_escape(str(err))}")
    if "student" not in samplers:
        notes.append("⚠️ This model is a diffusion teacher without a distilled student: only the teacher runs.")
    requested = settings.vocoder or pipe.config.inference.vocoder
    if _is_griffinlim(pipe.vocoder) and requested.strip().lower() != GRIFFINLIM:
        notes.append(
            f"⚠️ The vocoder `{requested}` could not be reached, so Griffin-Lim (low quality) makes the audio. "
            "Pass `--vocoder` (or `COMOSVC_VOCODER`) with a Hub id or a local BigVGAN folder."
        )
    measure = settings.budget.source == "defaults" and _device_type(pipe) == "cuda"

    def start_up():  # runs on the GPU on ZeroGPU (a forked worker: only the result comes back)
        warm_up(pipe, samplers)
        return measure_budget(pipe, samplers, settings.budget) if measure else settings.budget

    try:
        budget = on_gpu(start_up, WARM_UP_GPU_SECONDS)()
    except Exception:  # no GPU lent at start-up, quota...: convert anyway, with the default budget
        log.exception("warm-up on the GPU failed")
        budget = settings.budget
    log.info("GPU budget per conversion (%s): %.3f s/s shared + %.3f s/s per run + %.4f s/s per step, at most %.0f s",
             budget.source, budget.shared_per_second, budget.per_second, budget.per_step, budget.cap)
    status = (
        f"**Model** `{settings.model}` · **vocoder** `{pipe.vocoder_name}` · "
        f"**{len(singer_names(pipe))} singer(s)** · samplers: {', '.join(samplers)} · "
        f"clips up to {settings.max_seconds:.0f} s"
    )
    status = "\n\n".join([status, *notes])
    return ModelState(pipe, status, samplers=tuple(samplers), budget=budget)


# GPU seconds asked for the start-up warm-up (and measurement) on ZeroGPU.
WARM_UP_GPU_SECONDS = 60


def on_gpu(function, duration):
    """``function`` inside ``spaces.GPU(duration=duration)`` when ``spaces`` is installed, else itself.

    Off ZeroGPU ``spaces.GPU`` returns the function unchanged. On ZeroGPU each call runs in a
    worker forked from this process, holding a lent GPU for at most ``duration`` seconds (a
    number, or a function of the call's arguments); the arguments and the result are pickled.
    """
    if spaces is None:
        return function
    return spaces.GPU(duration=duration)(function)


def default_device() -> str:
    """``cuda`` when there is one (on ZeroGPU there is one per call), else ``cpu``."""
    import torch

    return "cuda" if on_zero_gpu() or torch.cuda.is_available() else "cpu"


def _device_type(pipe) -> str:
    return getattr(getattr(pipe, "device", None), "type", str(getattr(pipe, "device", "cpu")))


def warm_up(pipe, samplers) -> None:
    """Convert one second of synthetic singing with each sampler (one step), so one-time costs
    (lazy initialisation, first-call allocations) do not land in the first user's timings."""
    from comosvc.measure.songs import sung_tone

    wav, _ = sung_tone(220.0, 1.0, sr=pipe.sample_rate)
    singer = singer_names(pipe)[0]
    for sampler in samplers:
        started = time.perf_counter()
        try:
            pipe(wav, singer, sampler=sampler, steps=1, seed=0)
        except Exception:  # a warm-up failure is not fatal; the real request will report it
            log.exception("warm-up with the %s failed", sampler)
        log.info("warm-up with the %s: %.1f s", sampler, time.perf_counter() - started)


def measure_budget(pipe, samplers, budget: GpuBudget) -> GpuBudget:
    """``budget`` with its three costs measured on one chunk of synthetic singing.

    One run at one step on ``inference.max_chunk_seconds`` of audio (a full chunk, so the
    padded Whisper window costs what it costs a real request), after :func:`warm_up`:
    ``shared_per_second`` = (content + F0) / clip seconds, ``per_second`` = (end to end -
    content - F0 - acoustic model) / clip seconds, ``per_step`` = acoustic model / evaluations
    / clip seconds (the condition encoder and prior counted in, so it errs high). Keeps
    ``budget`` when the run fails.
    """
    from comosvc.measure.songs import sung_tone

    seconds = float(pipe.config.inference.max_chunk_seconds)
    wav, _ = sung_tone(220.0, seconds, sr=pipe.sample_rate)
    sampler = "student" if "student" in samplers else samplers[0]
    try:
        result = pipe(wav, singer_names(pipe)[0], sampler=sampler, steps=1, seed=0)
    except Exception:
        log.exception("measuring the GPU cost failed; keeping the default budget")
        return budget
    timings = result.timings
    acoustic, total, shared = timings["acoustic"], timings["total"], timings["content"] + timings["f0"]
    return replace(
        budget,
        shared_per_second=shared / seconds,
        per_second=max(total - shared - acoustic, 0.0) / seconds,
        per_step=acoustic / max(int(result.nfe), 1) / seconds,
        source=f"measured on {_device_type(pipe)}",
    )


def _is_griffinlim(vocoder) -> bool:
    from comosvc.vocoders import GriffinLimVocoder

    return isinstance(vocoder, GriffinLimVocoder)


def singer_names(pipe) -> list[str]:
    """Target singers the model knows (``"<dataset>_<singer>"``), in id order."""
    return sorted(pipe.singers, key=pipe.singers.get)


def _escape(text: str) -> str:
    """gr.Error/gr.Warning render HTML: keep a message's < and > literal."""
    return html.escape(text, quote=False)


def _plain(markdown: str) -> str:
    return markdown.replace("`", "'")


# --------------------------------------------------------------------------- examples


EXAMPLES = (
    # file name, notes (Hz), synthetic voice index, label
    ("phrase_low.wav", [146.8, 164.8, 174.6, 196.0, 220.0], 1, "low phrase (D3-A3)"),
    ("phrase_high.wav", [392.0, 440.0, 523.3, 440.0, 392.0], 2, "high phrase (G4-C5)"),
)


def write_examples(folder: Path) -> list[tuple[Path, str]]:
    """Synthesise the example clips (a few seconds each) into ``folder`` once; returns (path, label)."""
    from comosvc.measure.songs import singer_voice, sung_phrase

    out = []
    for name, notes, voice, label in EXAMPLES:
        path = folder / name
        if not path.exists():
            wav, _ = sung_phrase(notes, note_seconds=0.5, gap_seconds=0.12, voice=singer_voice(voice), seed=voice)
            save_audio(path, wav)
        out.append((path, label))
    return out


# --------------------------------------------------------------------------- conversion


def _file_error(err: Exception, path: str) -> str:
    """The loader's message with the server's temporary path replaced by the file's name."""
    return str(err).replace(str(path), Path(path).name)


def make_convert(state: ModelState, settings: AppSettings):
    """The button's handler: inputs of the form -> (teacher audio, student audio, 3 mel images, table).

    With ``spaces`` installed it runs inside ``spaces.GPU``, asking for ``gpu_seconds(...)``
    of the same arguments (the handler's ``.gpu_seconds``).
    """

    def convert(audio_path, singer, key, auto_key, teacher_steps, student_steps, seed, mix_singer=None, mix_share=0.5,
                index_ratio=0.0, progress=gr.Progress()):
        if state.pipe is None:
            raise gr.Error(_escape(state.problem or "No model is loaded."), print_exception=False)
        if not audio_path:
            raise gr.Error("No source audio: upload a file or record with the microphone first.", print_exception=False)
        pipe = state.pipe
        sample_rate = pipe.config.audio.sample_rate
        try:
            wav = load_audio(audio_path, sample_rate, max_seconds=settings.max_seconds)
        except TooLongError:
            seconds = _duration(audio_path)
            raise gr.Error(
                f"The clip lasts {seconds:.1f} s; this app converts at most {settings.max_seconds:.0f} s. "
                "Trim it, or run the app yourself with a larger --max-seconds.",
                print_exception=False,
            ) from None
        except AudioError as err:
            raise gr.Error(_escape(_file_error(err, audio_path)), print_exception=False) from None
        if not singer:
            raise gr.Error("Choose a target singer.", print_exception=False)

        def report(fraction: float, desc: str) -> None:
            progress(fraction, desc=desc)

        try:
            result = compare(
                pipe,
                wav,
                target_singer(singer, mix_singer, mix_share),
                teacher_steps=int(teacher_steps),
                student_steps=int(student_steps),
                key="auto" if auto_key else float(key),
                seed=int(seed or 0),
                progress=report,
                samplers=state.samplers,
                index_ratio=float(index_ratio or 0.0),
            )
        except (AudioError, ValueError, KeyError) as err:  # user-fixable: bad singer, silent clip, ...
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise gr.Error(_escape(str(message)), print_exception=False) from None
        except Exception as err:  # a bug: keep the trace in the server log, not in the page
            log.exception("conversion failed")
            raise gr.Error(
                _escape(f"Conversion failed ({type(err).__name__}: {err}). The details are in the server log."),
                print_exception=False,
            ) from None
        for message in result.warnings:
            gr.Warning(_escape(message))

        audio_cfg = pipe.config.audio
        runs = {"teacher": result.teacher, "student": result.student}
        labels = {
            "teacher": f"teacher, {result.teacher_steps} steps",
            "student": f"student, {result.student_steps} step{'s' if result.student_steps > 1 else ''}",
        }
        vmin, vmax = mel_range(result.source_mel, *(r.mel for r in runs.values() if r is not None))

        def picture(mel, title):
            return mel_image(mel, title, audio_cfg.sample_rate, audio_cfg.hop_length, vmin=vmin, vmax=vmax)

        headers, cells = timing_table(
            timing_rows(result), teacher_label=labels["teacher"], student_label=labels["student"]
        )
        return (
            *(_playable(r) if r is not None else None for r in runs.values()),
            picture(result.source_mel, "source"),
            *(picture(r.mel, labels[name]) if r is not None else None for name, r in runs.items()),
            pd.DataFrame(cells, columns=headers),
        )

    def gpu_seconds(audio_path, singer=None, key=0, auto_key=False, teacher_steps=None, student_steps=None, seed=0,
                    mix_singer=None, mix_share=0.5, index_ratio=0.0, progress=None) -> int:
        """ZeroGPU's duration for this request (same arguments as ``convert``): the budget of the
        clip's length (at most --max-seconds: longer clips are refused at once) and both samplers."""
        seconds = _duration(audio_path) if audio_path else 0.0
        seconds = min(seconds, settings.max_seconds) if math.isfinite(seconds) else 0.0
        samplers = conversion_samplers(state, teacher_steps, student_steps)
        return state.budget.seconds(seconds, sum(sampler.nfe for sampler in samplers), len(samplers))

    handler = on_gpu(convert, gpu_seconds)
    handler.gpu_seconds = gpu_seconds  # the estimate, for logs and tests
    return handler


def conversion_samplers(state: ModelState, teacher_steps: int | None = None, student_steps: int | None = None) -> list:
    """The sampler objects the Convert button runs (``None`` steps: the model's ``inference`` defaults);
    none without a model, or for steps the model refuses (the conversion then says why at once)."""
    if state.pipe is None:
        return []
    asked = {"teacher": teacher_steps, "student": student_steps}
    try:
        return [state.pipe.resolve_sampler(name, None if asked[name] is None else int(asked[name])) for name in state.samplers]
    except ValueError:
        return []


def target_singer(singer: str, mix_singer: str | None = None, mix_share: float = 0.5) -> str:
    """The Convert tab's singer inputs -> the pipeline's singer: ``singer`` alone, or with a second
    singer the mix ``"singer:(1 - share),second:share"`` (:mod:`comosvc.pipeline.mix`)."""
    if not mix_singer:
        return singer
    share = float(mix_share)
    return f"{singer}:{1.0 - share!r},{mix_singer}:{share!r}"


def _duration(path: str) -> float:
    import soundfile as sf

    try:
        return float(sf.info(path).duration)
    except Exception:
        return float("nan")


def _playable(result) -> tuple[int, np.ndarray]:
    """A conversion's audio as (rate, int16 samples) for gr.Audio (no peak normalisation by Gradio)."""
    pcm = np.round(np.clip(np.asarray(result.audio, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
    return int(result.sample_rate), pcm


# --------------------------------------------------------------------------- live


# The Live tab streams with the library's defaults: blocks of half a second, 1 s of past
# context and 0.1 s of lookahead (comosvc.streaming); latency = block + lookahead.
LIVE_BLOCK_SECONDS = 0.5
LIVE_CONTEXT_SECONDS = 1.0
LIVE_LOOKAHEAD_SECONDS = 0.1


@dataclass
class LiveSession:
    """One visitor's live stream (held in ``gr.State``): the converter, the microphone-rate resampler
    and the options it was made with (changing them starts a new stream)."""

    converter: object  # comosvc.streaming.StreamingConverter
    resampler: object  # comosvc.streaming.StreamResampler
    options: tuple


def live_latency_text(block: float = LIVE_BLOCK_SECONDS, lookahead: float = LIVE_LOOKAHEAD_SECONDS) -> str:
    return (f"**Latency** {1000 * (block + lookahead):.0f} ms (block {1000 * block:.0f} ms + lookahead "
            f"{1000 * lookahead:.0f} ms), plus the time each block takes to convert and the network.")


def make_live(state: ModelState):
    """The Live tab's stream handler: (microphone piece, singer, key, auto key, session) ->
    (converted piece or None, session, latency text). Student only."""

    def live(chunk, singer, key, auto_key, session):
        from comosvc.streaming import StreamingConverter, StreamResampler

        if state.pipe is None:
            raise gr.Error(_escape(state.problem or "No model is loaded."), print_exception=False)
        if "student" not in state.samplers:
            raise gr.Error("Live conversion needs a distilled student (one network evaluation per block); "
                           "this model is a diffusion teacher. Distil it first (train/distill.py).",
                           print_exception=False)
        if not singer:
            raise gr.Error("Choose a target singer.", print_exception=False)
        if chunk is None:
            return None, session, gr.skip()
        rate, samples = chunk
        samples = np.asarray(samples)
        if np.issubdtype(samples.dtype, np.integer):
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
        samples = samples.astype(np.float32).reshape(len(samples), -1).mean(axis=1)
        options = (singer, "auto" if auto_key else float(key), int(rate))
        if session is None or session.options != options:
            try:
                converter = StreamingConverter(
                    state.pipe, singer, block_seconds=LIVE_BLOCK_SECONDS, context_seconds=LIVE_CONTEXT_SECONDS,
                    lookahead_seconds=LIVE_LOOKAHEAD_SECONDS, key=options[1], seed=0,
                )
            except (ValueError, KeyError) as err:
                raise gr.Error(_escape(str(err)), print_exception=False) from None
            session = LiveSession(converter, StreamResampler(int(rate), state.pipe.sample_rate), options)
        out = session.converter.push(session.resampler(samples))
        converter = session.converter
        timings = converter.timings[-3:]
        text = live_latency_text(converter.block_seconds, converter.lookahead_seconds)
        if timings:
            compute = max(t.seconds for t in timings)
            text += f" Last blocks took up to {1000 * compute:.0f} ms to convert"
            text += " (keeping up)." if compute < converter.block_seconds else " (**slower than real time**)."
        if not len(out):
            return None, session, text
        pcm = np.round(np.clip(out, -1.0, 1.0) * 32767.0).astype(np.int16)
        return (int(converter.sample_rate), pcm), session, text

    return live


def build_live_tab(state: ModelState, settings: AppSettings, singers: list[str]) -> None:
    """The "Live" tab: microphone in, the student's conversion out as it comes (inside a gr.Blocks)."""
    student = "student" in state.samplers
    with gr.Tab("Live", elem_id="live-tab"):
        gr.Markdown("Sing into the microphone: the one-step student converts it block by block and plays it back."
                    + ("" if student or state.pipe is None else
                       " ⚠️ This model has no distilled student, so live conversion is not available."))
        with gr.Row():
            with gr.Column():
                mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                               elem_id="live-input")
                singer = gr.Dropdown(choices=singers, value=singers[0] if singers else None, label="Target singer",
                                     interactive=bool(singers), elem_id="live-singer")
                with gr.Row():
                    key = gr.Slider(-12, 12, value=0, step=1, label="Key shift (semitones)", elem_id="live-key")
                    auto_key = gr.Checkbox(value=False, label="Auto key",
                                           info="running median of your pitch so far", elem_id="live-auto-key")
            with gr.Column():
                out = gr.Audio(streaming=True, autoplay=True, interactive=False, label="Converted (live)",
                               elem_id="live-output")
                latency = gr.Markdown(live_latency_text(), elem_id="live-latency")
        session = gr.State(None)
        mic.stream(
            make_live(state),
            inputs=[mic, singer, key, auto_key, session],
            outputs=[out, session, latency],
            stream_every=LIVE_BLOCK_SECONDS,
            time_limit=settings.max_seconds,
            concurrency_limit=settings.concurrency,
            api_name="live",
        )
        mic.stop_recording(lambda: None, outputs=session, queue=False, api_visibility="private")  # next take: new stream


# --------------------------------------------------------------------------- UI


INTRO = """# ComoSVC: singing voice conversion, teacher vs. one-step student

Give it a sung clip and pick a target singer. One click converts it twice: with the diffusion
**teacher** (many network evaluations) and with the consistency-distilled **student** (1-4), so
you can hear the difference and see what each costs."""


def build_demo(state: ModelState, settings: AppSettings) -> gr.Blocks:
    """The page. ``state`` may hold no model: the page then explains what is missing."""
    singers = singer_names(state.pipe) if state.pipe is not None else []
    inference = state.pipe.config.inference if state.pipe is not None else InferenceConfig()
    teacher_default = inference.teacher_steps
    student_default = min(max(inference.student_steps, 1), 4)

    with gr.Blocks(title="ComoSVC", delete_cache=(3600, 3600), analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(state.status, elem_id="status")
        with gr.Tab("Convert", elem_id="convert-tab"):
            with gr.Row():
                with gr.Column(scale=2):
                    source = gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label=f"Source singing (up to {settings.max_seconds:.0f} s)",
                        elem_id="source-audio",
                    )
                    singer = gr.Dropdown(
                        choices=singers,
                        value=singers[0] if singers else None,
                        label="Target singer",
                        interactive=bool(singers),
                        elem_id="singer",
                    )
                    with gr.Row():
                        key = gr.Slider(-12, 12, value=0, step=1, label="Key shift (semitones)", elem_id="key")
                        auto_key = gr.Checkbox(
                            value=False, label="Auto key", info="move the melody into the singer's range", elem_id="auto-key"
                        )
                    with gr.Row():
                        teacher_steps = gr.Slider(
                            1, 100, value=teacher_default, step=1, label="Teacher steps", elem_id="teacher-steps"
                        )
                        student_steps = gr.Slider(
                            1, 4, value=student_default, step=1, label="Student steps", elem_id="student-steps"
                        )
                    with gr.Accordion("Advanced", open=False):
                        seed = gr.Number(value=0, precision=0, label="Seed (same noise for both runs)")
                        mix_singer = gr.Dropdown(
                            choices=singers, value=None, label="Mix with a second singer (optional)",
                            interactive=bool(singers), elem_id="mix-singer",
                        )
                        mix_share = gr.Slider(0, 1, value=0.5, step=0.05, label="Share of the second singer", elem_id="mix-share")
                        has_index = state.pipe is not None and getattr(state.pipe.model, "index", None) is not None
                        index_ratio = gr.Slider(
                            0, 1, value=0, step=0.05, label="Timbre index ratio", elem_id="index-ratio", interactive=has_index,
                            info="more of the singer's timbre, less of the source's articulation" if has_index else
                            "this model has no timbre index (python -m comosvc index --model ... --data ...)",
                        )
                    button = gr.Button("Convert with teacher and student", variant="primary", elem_id="convert")
                    examples = write_examples(settings.examples_dir)
                    gr.Examples(
                        examples=[[str(path), 0, label.startswith("low")] for path, label in examples],
                        inputs=[source, key, auto_key],
                        example_labels=[label for _, label in examples],
                        cache_examples=False,
                        label="Examples (synthetic singing)",
                    )
                with gr.Column(scale=3):
                    with gr.Row():
                        teacher_audio = gr.Audio(label="Teacher", interactive=False, elem_id="teacher-audio")
                        student_audio = gr.Audio(label="Student", interactive=False, elem_id="student-audio")
                    table = gr.Dataframe(
                        headers=["", "teacher", "student", "student speed-up"],
                        column_widths=["34%", "22%", "22%", "22%"],
                        wrap=True,
                        label="Cost (real-time factor = compute seconds per second of audio)",
                        interactive=False,
                        elem_id="timings",
                    )
            with gr.Row():
                source_mel = gr.Image(label="Source mel", type="numpy", interactive=False, elem_id="mel-source")
                teacher_mel = gr.Image(label="Teacher mel", type="numpy", interactive=False, elem_id="mel-teacher")
                student_mel = gr.Image(label="Student mel", type="numpy", interactive=False, elem_id="mel-student")
        build_live_tab(state, settings, singers)

        auto_key.change(lambda auto: gr.Slider(interactive=not auto), inputs=auto_key, outputs=key, queue=False, api_visibility="private")
        button.click(
            make_convert(state, settings),
            inputs=[source, singer, key, auto_key, teacher_steps, student_steps, seed, mix_singer, mix_share, index_ratio],
            outputs=[teacher_audio, student_audio, source_mel, teacher_mel, student_mel, table],
            api_name="convert",
            concurrency_limit=settings.concurrency,
        )
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency)
    return demo


def main(argv: list[str] | None = None, block: bool = True) -> gr.Blocks:
    """``python app.py ...``: load the model, build the page, serve it.

    ``block=False`` returns once the server is up (tests); stop it with ``demo.close()``.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    settings, args = parse_args(argv)
    state = load_model(settings)
    demo = build_demo(state, settings)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=settings.max_file_size,
        allowed_paths=[str(settings.examples_dir)],
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo


if __name__ == "__main__":
    main()
