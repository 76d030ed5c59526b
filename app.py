"""ComoSVC web app (and Hugging Face Space): convert a sung clip, teacher against student.

    python app.py --model <Hub id or folder> [--vocoder <Hub id, folder or griffinlim>]
    COMOSVC_MODEL=<...> COMOSVC_VOCODER=<...> python app.py

One button converts the clip twice, with the 40-step diffusion teacher and the
one-step consistency student, and shows both side by side: audio, mel
spectrograms and what each cost. All the work is in the library
(:class:`comosvc.pipeline.ConversionPipeline`, :mod:`comosvc.compare`); this file
only wires the UI and the limits a public Space needs (maximum clip length,
bounded uploads, a queue with a concurrency limit).

Without a reachable model the app still starts and says what is missing.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from comosvc.audio import AudioError, TooLongError, load_audio, save_audio
from comosvc.compare import compare, mel_image, mel_range, timing_rows, timing_table
from comosvc.vocoders import GRIFFINLIM

log = logging.getLogger("comosvc.app")

HOW_TO_PROVIDE = (
    "Start the app with `python app.py --model MODEL`, where MODEL is a Hub id or a local "
    "folder written by `save_pretrained` (add `--vocoder VOCODER` for another vocoder: a Hub id, "
    f"a folder or `{GRIFFINLIM}`), or set the environment variables `COMOSVC_MODEL` and "
    "`COMOSVC_VOCODER`. On a Hugging Face Space, add them under Settings → Variables and "
    "restart the Space."
)


# --------------------------------------------------------------------------- settings


@dataclass
class AppSettings:
    """Where the model comes from and the limits of a public deployment."""

    model: str | None = None  # Hub id or folder of a ComoSVC export (teacher or distilled student)
    vocoder: str | None = None  # Hub id, folder or GRIFFINLIM; None = the model's default
    teacher: str | None = None  # teacher export, when the student does not point to one itself
    device: str | None = None
    max_seconds: float = 60.0  # longest source clip accepted, seconds
    max_file_size: str = "25mb"  # largest upload
    queue_size: int = 16  # requests waiting at most; more are turned away
    concurrency: int = 1  # conversions running at once
    examples_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "comosvc-examples")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def parse_args(argv: list[str] | None = None) -> tuple[AppSettings, argparse.Namespace]:
    """Command line (and environment) -> :class:`AppSettings` plus the server options."""
    defaults = AppSettings()
    parser = argparse.ArgumentParser(description="ComoSVC conversion app: teacher and student side by side.")
    parser.add_argument("--model", default=os.environ.get("COMOSVC_MODEL"),
                        help="Hub id or local folder of a ComoSVC model (env COMOSVC_MODEL)")
    parser.add_argument("--vocoder", default=os.environ.get("COMOSVC_VOCODER"),
                        help=f"Hub id, local folder or '{GRIFFINLIM}' (env COMOSVC_VOCODER; default: the model's)")
    parser.add_argument("--teacher", default=os.environ.get("COMOSVC_TEACHER"),
                        help="teacher model, if the student export does not name one (env COMOSVC_TEACHER)")
    parser.add_argument("--device", default=os.environ.get("COMOSVC_DEVICE"), help="cpu, cuda, ... (default: auto)")
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
    args = parser.parse_args(argv)
    settings = AppSettings(
        model=args.model or None,
        vocoder=args.vocoder or None,
        teacher=args.teacher or None,
        device=args.device or None,
        max_seconds=args.max_seconds,
        max_file_size=args.max_file_size,
        queue_size=args.queue_size,
        concurrency=args.concurrency,
        examples_dir=args.examples_dir,
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
            settings.model, vocoder=settings.vocoder, teacher=settings.teacher, device=settings.device
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
    warm_up(pipe, samplers)
    status = (
        f"**Model** `{settings.model}` · **vocoder** `{pipe.vocoder_name}` · "
        f"**{len(singer_names(pipe))} singer(s)** · samplers: {', '.join(samplers)} · "
        f"clips up to {settings.max_seconds:.0f} s"
    )
    status = "\n\n".join([status, *notes])
    return ModelState(pipe, status, samplers=tuple(samplers))


def warm_up(pipe, samplers) -> None:
    """Convert one second of synthetic singing with each sampler (one step), so one-time costs
    (lazy initialisation, first-call allocations) do not land in the first user's timings."""
    from comosvc.synthetic import sung_tone

    wav, _ = sung_tone(220.0, 1.0, sr=pipe.sample_rate)
    singer = singer_names(pipe)[0]
    for sampler in samplers:
        started = time.perf_counter()
        try:
            pipe(wav, singer, sampler=sampler, steps=1, seed=0)
        except Exception:  # a warm-up failure is not fatal; the real request will report it
            log.exception("warm-up with the %s failed", sampler)
        log.info("warm-up with the %s: %.1f s", sampler, time.perf_counter() - started)


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
    from comosvc.synthetic import singer_voice, sung_phrase

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
    """The button's handler: inputs of the form -> (teacher audio, student audio, 3 mel images, table)."""

    def convert(audio_path, singer, key, auto_key, teacher_steps, student_steps, seed, progress=gr.Progress()):
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
                singer,
                teacher_steps=int(teacher_steps),
                student_steps=int(student_steps),
                key="auto" if auto_key else float(key),
                seed=int(seed or 0),
                progress=report,
                samplers=state.samplers,
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

    return convert


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


# --------------------------------------------------------------------------- UI


INTRO = """# ComoSVC: singing voice conversion, teacher vs. one-step student

Give it a sung clip and pick a target singer. One click converts it twice: with the diffusion
**teacher** (many network evaluations) and with the consistency-distilled **student** (1-4), so
you can hear the difference and see what each costs."""


def build_demo(state: ModelState, settings: AppSettings) -> gr.Blocks:
    """The page. ``state`` may hold no model: the page then explains what is missing."""
    singers = singer_names(state.pipe) if state.pipe is not None else []
    inference = getattr(getattr(state.pipe, "config", None), "inference", None)
    teacher_default = int(getattr(inference, "teacher_steps", 40) or 40)
    student_default = min(max(int(getattr(inference, "student_steps", 1) or 1), 1), 4)

    with gr.Blocks(title="ComoSVC", delete_cache=(3600, 3600), analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(state.status, elem_id="status")
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

        auto_key.change(lambda auto: gr.Slider(interactive=not auto), inputs=auto_key, outputs=key, queue=False, api_visibility="private")
        button.click(
            make_convert(state, settings),
            inputs=[source, singer, key, auto_key, teacher_steps, student_steps, seed],
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
