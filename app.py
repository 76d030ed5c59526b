"""ComoSVC web app (and Hugging Face Space): convert a sung clip, teacher against student.

    python app.py --model <Hub id or folder> [--vocoder <Hub id, folder or griffinlim>]
    COMOSVC_MODEL=<...> COMOSVC_VOCODER=<...> python app.py

One button converts the clip twice, with the many-step diffusion teacher and the
one-step consistency student (in one pass: content features and F0 once), and shows both
side by side: audio, mel spectrograms and what each cost; the Live tab streams the
microphone through the student; on a local machine or a dedicated GPU the "Add a singer" tab
fine-tunes the served models on uploaded recordings and serves the result. This file is the page: its layout, its events and their
handlers, and the limits a public Space needs (maximum clip length, bounded uploads, a
queue with a concurrency limit). The work is in the library: :mod:`comosvc.serving`
(settings and environment variables, loading, the ZeroGPU budget, what the page shows, adding a singer),
:mod:`comosvc.compare` and :class:`comosvc.pipeline.ConversionPipeline`.

Without a reachable model the app still starts and says what is missing.

One file for every host. On a CPU or CUDA machine it runs as it is. On a ZeroGPU
Space (the ``spaces`` package, a no-op elsewhere) the model is loaded and moved to
CUDA once at start-up, before the server starts, as ZeroGPU expects; each conversion
then runs inside ``spaces.GPU`` and asks for as many GPU seconds as
:class:`~comosvc.serving.gpu_budget.GpuBudget` estimates from the clip's length and both samplers' steps.
"""

from __future__ import annotations

# `spaces` first: on ZeroGPU it patches torch before anything touches CUDA. Off a Space it
# only reads its environment variables (SPACES_ZERO_GPU, ...) and `spaces.GPU` returns the
# function unchanged. The app also runs without it installed.
try:
    import spaces
except ImportError:
    spaces = None

import dataclasses
import html
import logging
from pathlib import Path

import gradio as gr
import pandas as pd

from comosvc.audio import AudioError, TooLongError, audio_duration, load_audio, to_pcm16
from comosvc.compare import compare
from comosvc.config import InferenceConfig
from comosvc.serving.add_singer import add_singer, finetune_unavailable
from comosvc.serving.examples import write_examples
from comosvc.serving.gpu_budget import clip_seconds
from comosvc.serving.inputs import conversion_samplers, key_shift, singer_names, target_singer
from comosvc.serving.live import LIVE_BLOCK_SECONDS, LiveSession, live_latency_text, live_status
from comosvc.serving.settings import ServingSettings, parse_settings
from comosvc.serving.state import ModelState, load_model_state
from comosvc.serving.view import comparison_view

log = logging.getLogger("comosvc.app")


# --------------------------------------------------------------------------- ZeroGPU


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space: CUDA is lent per call of a ``spaces.GPU`` function."""
    config = getattr(getattr(spaces, "config", None), "Config", None)
    return bool(getattr(config, "zero_gpu", False))


def on_gpu(function, duration):
    """``function`` inside ``spaces.GPU(duration=duration)`` when ``spaces`` is installed, else itself.

    Off ZeroGPU ``spaces.GPU`` returns the function unchanged. On ZeroGPU each call runs in a
    worker forked from this process, holding a lent GPU for at most ``duration`` seconds (a
    number, or a function of the call's arguments); the arguments and the result are pickled.
    """
    if spaces is None:
        return function
    return spaces.GPU(duration=duration)(function)


# --------------------------------------------------------------------------- model


def load_model(settings: ServingSettings) -> ModelState:
    """Load, warm up and measure the model (:func:`~comosvc.serving.state.load_model_state`), on ZeroGPU
    inside ``spaces.GPU``; never raises: failures become a banner."""
    return load_model_state(settings, zero_gpu=on_zero_gpu(), on_gpu=on_gpu)


def _escape(text: str) -> str:
    """gr.Error/gr.Warning render HTML: keep a message's < and > literal."""
    return html.escape(text, quote=False)


def _file_error(err: Exception, path: str) -> str:
    """The loader's message with the server's temporary path replaced by the file's name."""
    return str(err).replace(str(path), Path(path).name)


# --------------------------------------------------------------------------- handlers


def make_convert(state: ModelState, settings: ServingSettings):
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
        try:
            wav = load_audio(audio_path, pipe.sample_rate, max_seconds=settings.max_seconds)
        except TooLongError:
            raise gr.Error(
                f"The clip lasts {audio_duration(audio_path):.1f} s; this app converts at most "
                f"{settings.max_seconds:.0f} s. Trim it, or run the app yourself with a larger --max-seconds.",
                print_exception=False,
            ) from None
        except AudioError as err:
            raise gr.Error(_escape(_file_error(err, audio_path)), print_exception=False) from None
        if not singer:
            raise gr.Error("Choose a target singer.", print_exception=False)
        try:
            result = compare(
                pipe,
                wav,
                target_singer(singer, mix_singer, mix_share),
                teacher_steps=int(teacher_steps),
                student_steps=int(student_steps),
                key=key_shift(key, auto_key),
                seed=int(seed or 0),
                progress=lambda fraction, desc: progress(fraction, desc=desc),
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
        view = comparison_view(result, pipe.config.audio)
        return (
            view.audio["teacher"], view.audio["student"],
            view.mels["source"], view.mels["teacher"], view.mels["student"],
            pd.DataFrame(view.cells, columns=view.headers),
        )

    def gpu_seconds(audio_path, singer=None, key=0, auto_key=False, teacher_steps=None, student_steps=None, seed=0,
                    mix_singer=None, mix_share=0.5, index_ratio=0.0, progress=None) -> int:
        """ZeroGPU's duration for this request (same arguments as ``convert``): the budget of the
        clip's length (at most --max-seconds: longer clips are refused at once) and both samplers."""
        samplers = conversion_samplers(state.pipe, state.samplers, teacher_steps, student_steps)
        return state.budget.for_samplers(clip_seconds(audio_path, settings.max_seconds), samplers)

    handler = on_gpu(convert, gpu_seconds)
    handler.gpu_seconds = gpu_seconds  # the estimate, for logs and tests
    return handler


def make_live(state: ModelState):
    """The Live tab's stream handler: (microphone piece, singer, key, auto key, session) ->
    (converted piece or None, session, latency text). Student only."""

    def live(chunk, singer, key, auto_key, session):
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
        key = key_shift(key, auto_key)
        if session is None or not session.serves(singer, key, rate):  # other options: a new stream
            try:
                session = LiveSession.start(state.pipe, singer, key, rate)
            except (ValueError, KeyError) as err:
                raise gr.Error(_escape(str(err)), print_exception=False) from None
        out = session.push(samples)
        return ((session.sample_rate, to_pcm16(out)) if len(out) else None), session, live_status(session)

    return live


def make_add_singer(state: ModelState, settings: ServingSettings):
    """The Add a singer button: (uploads, name) -> (banner, Convert, mix and Live singer dropdowns, report).
    Fine-tunes the served teacher and student (:func:`~comosvc.serving.add_singer.add_singer`), then serves the result."""

    def add(uploads, name, progress=gr.Progress()):
        if state.pipe is None:
            raise gr.Error(_escape(state.problem or "No model is loaded."), print_exception=False)
        try:
            added = add_singer(uploads or [], name, state.pipe, device=settings.device,
                               progress=lambda fraction, what: progress(0.95 * fraction, desc=what))
        except ValueError as err:  # a bad name, no audio, an unsafe zip, too little audio: one line each
            raise gr.Error(_escape(str(err)), print_exception=False) from None
        except Exception as err:
            log.exception("adding a singer failed")
            raise gr.Error(_escape(f"The fine-tune failed ({type(err).__name__}: {err}). The details are in the server log."),
                           print_exception=False) from None
        progress(0.95, desc="loading the new model")
        served = load_model(dataclasses.replace(settings, model=str(added.student), teacher=str(added.teacher)))
        if served.pipe is None:
            raise gr.Error(_escape(f"The new model in {added.out} could not be loaded; the app keeps serving the old one."),
                           print_exception=False)
        vars(state).update(vars(served))  # every handler reads the served model from `state`
        singers = singer_names(state.pipe)
        chosen = gr.Dropdown(choices=singers, value=added.singer, interactive=True)
        return state.status, chosen, gr.Dropdown(choices=singers, value=None, interactive=True), chosen, added.summary

    return add


# --------------------------------------------------------------------------- page


def build_live_tab(state: ModelState, settings: ServingSettings, singers: list[str]) -> gr.Dropdown:
    """The "Live" tab: microphone in, the student's conversion out as it comes (inside a gr.Blocks); returns
    its singer dropdown."""
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
                                           info="your pitch so far, moved into the singer's range", elem_id="live-auto-key")
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
    return singer


def build_add_singer_tab(state: ModelState, settings: ServingSettings) -> tuple | None:
    """The "Add a singer" tab: (recordings, name, button, report), or None where it cannot run (it then says why)."""
    why = finetune_unavailable(settings.allow_cpu_finetune, on_zero_gpu()) if state.pipe is not None else state.problem
    with gr.Tab("Add a singer", elem_id="add-singer-tab"):
        gr.Markdown("Upload a few minutes of one voice (dry vocals: wav, flac, mp3, ogg, or a zip of them) and name it: "
                    "the served teacher and student are fine-tuned on it, and the new singer joins the Convert and "
                    "Live tabs.")
        if why:
            gr.Markdown(f"⚠️ {why}", elem_id="add-singer-unavailable")
            return None
        recordings = gr.File(file_count="multiple", file_types=["audio", ".zip"], type="filepath",
                             label="Recordings of the new voice", elem_id="add-singer-files")
        name = gr.Textbox(label="Name (letters, digits or '-')", placeholder="alice", elem_id="add-singer-name")
        button = gr.Button("Add the singer (fine-tune)", variant="primary", elem_id="add-singer")
        report = gr.Markdown(elem_id="add-singer-report")
    return recordings, name, button, report


INTRO = """# ComoSVC: singing voice conversion, teacher vs. one-step student

Give it a sung clip and pick a target singer. One click converts it twice: with the diffusion
**teacher** (many network evaluations) and with the consistency-distilled **student** (1-4), so
you can hear the difference and see what each costs."""


def build_demo(state: ModelState, settings: ServingSettings) -> gr.Blocks:
    """The page. ``state`` may hold no model: the page then explains what is missing."""
    singers = singer_names(state.pipe) if state.pipe is not None else []
    inference = state.pipe.config.inference if state.pipe is not None else InferenceConfig()
    teacher_default = inference.teacher_steps
    student_default = min(max(inference.student_steps, 1), 4)

    with gr.Blocks(title="ComoSVC", delete_cache=(3600, 3600), analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        status = gr.Markdown(state.status, elem_id="status")
        with gr.Tab("Convert", elem_id="convert-tab"):
            with gr.Row():
                with gr.Column(scale=2):
                    source = gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="source-audio",
                                      label=f"Source singing (up to {settings.max_seconds:.0f} s)")
                    singer = gr.Dropdown(choices=singers, value=singers[0] if singers else None, label="Target singer",
                                         interactive=bool(singers), elem_id="singer")
                    with gr.Row():
                        key = gr.Slider(-12, 12, value=0, step=1, label="Key shift (semitones)", elem_id="key")
                        auto_key = gr.Checkbox(value=False, label="Auto key", info="move the melody into the singer's range",
                                               elem_id="auto-key")
                    with gr.Row():
                        teacher_steps = gr.Slider(1, 100, value=teacher_default, step=1, label="Teacher steps",
                                                  elem_id="teacher-steps")
                        student_steps = gr.Slider(1, 4, value=student_default, step=1, label="Student steps",
                                                  elem_id="student-steps")
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
        live_singer = build_live_tab(state, settings, singers)
        add_tab = build_add_singer_tab(state, settings)

        auto_key.change(lambda auto: gr.Slider(interactive=not auto), inputs=auto_key, outputs=key, queue=False, api_visibility="private")
        button.click(
            make_convert(state, settings),
            inputs=[source, singer, key, auto_key, teacher_steps, student_steps, seed, mix_singer, mix_share, index_ratio],
            outputs=[teacher_audio, student_audio, source_mel, teacher_mel, student_mel, table],
            api_name="convert",
            concurrency_limit=settings.concurrency,
        )
        if add_tab is not None:
            recordings, name, add_button, report = add_tab
            add_button.click(make_add_singer(state, settings), inputs=[recordings, name],
                             outputs=[status, singer, mix_singer, live_singer, report], api_name="add_singer",
                             concurrency_limit=1)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency)
    return demo


def main(argv: list[str] | None = None, block: bool = True) -> gr.Blocks:
    """``python app.py ...``: load the model, build the page, serve it.

    ``block=False`` returns once the server is up (tests); stop it with ``demo.close()``.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    settings = parse_settings(argv)
    state = load_model(settings)
    demo = build_demo(state, settings)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        max_file_size=settings.max_file_size,
        allowed_paths=[str(settings.examples_dir)],
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo


if __name__ == "__main__":
    main()
