"""The Gradio app end to end: ``app.py``'s ``main`` serving 127.0.0.1 with a tiny model.

One server (module scope, same flags as ``python app.py``) serves every test here: ``gradio_client`` converts a
synthetic clip and sends bad files, and headless Chromium (Debian's ``chromium``
driven by Playwright, no browser download) clicks through the real page.
Without a model the app must still start and explain what is missing.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from comosvc.audio import save_audio
from comosvc.compare import ROW_NAMES
from comosvc.data.songs import singer_voice, sung_phrase
from conftest import missing, require

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
if str(REPO) not in sys.path:  # app.py lives at the repository root, outside the package
    sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def write_clip(path: Path, seconds: float, seed: int = 0) -> Path:
    """A synthetic sung phrase of about ``seconds`` at 24 kHz."""
    n_notes = max(1, round(seconds / 0.7))
    notes = [220.0 * 2 ** (k / 12) for k in (0, 4, 7, 5, 2, 9, 7, 4)][:n_notes] * (1 + n_notes // 8)
    wav, _ = sung_phrase(notes[:n_notes], note_seconds=0.55, gap_seconds=0.15, voice=singer_voice(seed), seed=seed)
    return save_audio(path, wav)


# --------------------------------------------------------------------------- tiny model

SINGERS = ["synth_alto", "synth_tenor"]


def build_tiny_model(folder: Path, overrides: list[str]) -> Path:
    """A random tiny teacher and a "distilled" student pointing to it, saved with save_pretrained.

    configs/tiny.yaml with the tiny local encoders; the student shares the teacher's
    condition encoder and prior (as distillation leaves them). Returns the student's folder.
    """
    import torch

    from comosvc.config import load_config
    from comosvc.features.mel import LOG_CLAMP
    from comosvc.measure.stand_ins import copy_model
    from comosvc.models import ComoSVC

    config = load_config(REPO / "configs" / "tiny.yaml", overrides=overrides)
    n_mels = config.audio.n_mels
    singers = {name: i for i, name in enumerate(SINGERS)}
    stats = {
        "mel": {"synth": {"min": [float(np.log(LOG_CLAMP))] * n_mels, "max": [2.0] * n_mels}},
        "f0": {"synth_alto": {"median": 330.0, "p5": 200.0, "p95": 600.0},
               "synth_tenor": {"median": 196.0, "p5": 110.0, "p95": 400.0}},
        "durations": {name: 60.0 for name in SINGERS},
    }
    torch.manual_seed(0)
    teacher = ComoSVC(config, singers=singers, stats=stats)
    teacher.save_pretrained(folder / "teacher")
    student = copy_model(teacher, distilled=True, distilled_from=str(folder / "teacher"))
    student.save_pretrained(folder / "student")
    return folder / "student"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_overrides) -> Path:
    """A tiny random ComoSVC saved with save_pretrained (see build_tiny_model)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), tiny_overrides)


@pytest.fixture(scope="module")
def app_server(tiny_model_dir, tmp_path_factory):
    """``app.py --model <tiny> --vocoder griffinlim --max-seconds 6 --host 127.0.0.1 --port P``.

    Served from this process (``main(argv, block=False)``: the same flags, parsing,
    loading and launch as ``python app.py``, without importing torch and gradio a
    second time). One torch thread meanwhile: on a shared, busy CPU torch's
    thread pool spins and gets slower, not faster.
    """
    import torch

    import app

    folder = tmp_path_factory.mktemp("app")
    port = free_port()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    demo = app.main(
        ["--model", str(tiny_model_dir), "--vocoder", "griffinlim", "--max-seconds", "6",
         "--examples-dir", str(folder / "examples"), "--host", "127.0.0.1", "--port", str(port)],
        block=False,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url)
        assert "samplers: teacher, student" in _status(demo), _status(demo)
        yield url
    finally:
        demo.close()
        torch.set_num_threads(threads)


def _status(demo) -> str:
    """The banner's Markdown."""
    return next(block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "status")


# --------------------------------------------------------------------------- tests


def test_convert_through_gradio_client(app_server, tmp_path):
    from gradio_client import Client, handle_file

    clip = write_clip(tmp_path / "clip.wav", seconds=2.0)
    n_samples = sf.info(str(clip)).frames
    client = Client(app_server, verbose=False)
    singer = SINGERS[0]
    outputs = client.predict(handle_file(str(clip)), singer, 0, False, 4, 1, 0, api_name="/convert")
    teacher_path, student_path, *mel_pictures, table = outputs
    for path in (teacher_path, student_path):
        wav, rate = sf.read(path)
        assert rate == 24000 and wav.ndim == 1 and len(wav) == n_samples
        assert np.isfinite(wav).all()
    assert all(Path(picture).is_file() for picture in mel_pictures) and len(mel_pictures) == 3
    assert table["headers"][1:] == ["teacher, 4 steps", "student, 1 step", "student speed-up"]
    assert [row[0] for row in table["data"]] == list(ROW_NAMES)
    nfe = dict((row[0], row[1:3]) for row in table["data"])["network evaluations"]
    assert int(nfe[0]) > int(nfe[1]) >= 1


def test_bad_inputs_give_messages(app_server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_server, verbose=False)
    singer = SINGERS[0]
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("these are not audio samples\n")
    cases = {
        None: "No source audio",
        str(tmp_path / "empty.wav"): "empty",
        str(tmp_path / "notes.txt"): "not a readable audio file",
    }
    for path, expected in cases.items():
        with pytest.raises(AppError, match=expected) as info:
            client.predict(handle_file(path) if path else None, singer, 0, False, 2, 1, 0, api_name="/convert")
        assert "Traceback" not in str(info.value)


def test_too_long_clip_is_refused(app_server, tmp_path):
    """--max-seconds bounds the input (the server runs with 6 s); the message names the limit."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    clip = write_clip(tmp_path / "long.wav", seconds=7.5)
    client = Client(app_server, verbose=False)
    with pytest.raises(AppError, match="at most 6 s"):
        client.predict(handle_file(str(clip)), SINGERS[0], 0, False, 2, 1, 0, api_name="/convert")


def test_mix_of_two_singers_through_gradio_client(app_server, tmp_path):
    """The Advanced panel's second singer and share: a mix converts; the same singer twice says what to do."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    clip = handle_file(str(write_clip(tmp_path / "clip.wav", seconds=1.0)))
    client = Client(app_server, verbose=False)
    single = client.predict(clip, SINGERS[0], 0, False, 2, 1, 0, api_name="/convert")[1]
    mixed = client.predict(clip, SINGERS[0], 0, False, 2, 1, 0, SINGERS[1], 0.5, api_name="/convert")[1]
    assert not np.allclose(sf.read(single)[0], sf.read(mixed)[0])
    with pytest.raises(AppError, match="named twice"):
        client.predict(clip, SINGERS[0], 0, False, 2, 1, 0, SINGERS[0], 0.5, api_name="/convert")


def test_app_without_model_explains(tmp_path):
    """No --model and no COMOSVC_MODEL: the page says what is missing, converting raises that as gr.Error."""
    import gradio as gr

    import app
    from comosvc.serving.settings import ServingSettings, parse_settings

    settings = parse_settings(["--examples-dir", str(tmp_path / "examples")], environ={})
    state = app.load_model(settings)
    assert state.pipe is None
    assert "No model loaded" in state.status and "COMOSVC_MODEL" in state.status and "--model" in state.status
    demo = app.build_demo(state, settings)  # the page builds without a model
    assert demo is not None
    with pytest.raises(gr.Error, match="--model MODEL"):
        app.make_convert(state, settings)(None, None, 0, False, 40, 1, 0)

    missing = app.load_model(ServingSettings(model=str(tmp_path / "nowhere"), examples_dir=tmp_path / "examples"))
    assert missing.pipe is None and "could not be loaded" in missing.status and "nowhere" in missing.status


def test_live_handler_streams_the_student(tiny_model_dir):
    """The Live tab's handler: microphone pieces (int16 stereo at 48 kHz) in, 16-bit pieces of the student out."""
    import gradio as gr

    import app
    from comosvc.serving.settings import ServingSettings

    state = app.load_model(ServingSettings(model=str(tiny_model_dir), vocoder="griffinlim", device="cpu"))
    live = app.make_live(state)
    with pytest.raises(gr.Error, match="Choose a target singer"):
        live((48000, np.zeros(4800, dtype=np.int16)), None, 0, False, None)
    t = np.arange(48000) / 48000
    stereo = (np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1) * 16000).astype(np.int16)
    session, pieces = None, []
    for piece in np.array_split(stereo, 10):
        out, session, text = live((48000, piece), SINGERS[0], 0, False, session)
        pieces += [] if out is None else [out]
    assert pieces and all(rate == 24000 and samples.dtype == np.int16 for rate, samples in pieces)
    assert text.startswith("**Latency**") and "Last blocks took up to" in text
    first = session
    assert live((48000, stereo[:4800]), SINGERS[0], 2, False, session)[1] is not first  # another key: a new stream


def _block(demo, elem_id: str):
    return next((block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id), None)


@pytest.mark.usefixtures("one_thread")
def test_add_singer_tab_says_what_it_needs_without_a_gpu_of_its_own(tiny_model_dir, tmp_path, monkeypatch):
    """On a CPU-only host (unless --allow-cpu-finetune) and on ZeroGPU the tab explains instead of offering the button."""
    import app
    from comosvc.serving.settings import parse_settings

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    argv = ["--model", str(tiny_model_dir), "--vocoder", "griffinlim", "--device", "cpu",
            "--examples-dir", str(tmp_path / "examples")]
    settings = parse_settings(argv, environ={})
    state = app.load_model(settings)
    demo = app.build_demo(state, settings)
    assert _block(demo, "add-singer") is None
    assert "--allow-cpu-finetune" in _block(demo, "add-singer-unavailable").value
    allowed = parse_settings([*argv, "--allow-cpu-finetune"], environ={})
    assert _block(app.build_demo(state, allowed), "add-singer") is not None
    monkeypatch.setattr(app, "on_zero_gpu", lambda: True)
    demo = app.build_demo(state, allowed)
    assert _block(demo, "add-singer") is None
    text = _block(demo, "add-singer-unavailable").value
    assert "ZeroGPU" in text and "accelerate launch train/finetune.py" in text


@pytest.mark.usefixtures("one_thread")
def test_add_singer_handler_fine_tunes_and_serves_the_new_singer(tiny_model_dir, tmp_path, monkeypatch, fresh_accelerate):
    """The button's handler: recordings and a name in; the banner and the three singer dropdowns name the new
    singer, and the Convert and Live handlers convert to it (the served model was swapped, no restart)."""
    import functools

    import gradio as gr

    import app
    from comosvc.serving.settings import ServingSettings
    from test_serving import FAST_FINETUNE

    settings = ServingSettings(model=str(tiny_model_dir), vocoder="griffinlim", device="cpu", allow_cpu_finetune=True,
                               examples_dir=tmp_path / "examples")
    state = app.load_model(settings)
    monkeypatch.setattr(app, "add_singer", functools.partial(  # a few steps instead of the config's budgets
        app.add_singer, out_root=tmp_path / "runs", teacher_steps=2, distill_steps=2, overrides=FAST_FINETUNE))
    add = app.make_add_singer(state, settings)
    heard = []
    progress = lambda fraction, desc=None: heard.append((fraction, desc))  # noqa: E731 (gr.Progress's call)
    with pytest.raises(gr.Error, match="cannot name a singer"):
        add([], "no name", progress)
    clips = [str(write_clip(tmp_path / f"take{i}.wav", seconds=2.0, seed=i)) for i in range(4)]
    status, singer, mix, live_singer, report = add(clips, "alice", progress)
    assert "**3 singer(s)**" in status and str(tmp_path / "runs" / "alice" / "student" / "model") in status
    assert singer.value == live_singer.value == "added_alice" and mix.value is None
    assert singer.choices == mix.choices == [(name, name) for name in [*SINGERS, "added_alice"]]
    assert "Added **added_alice**" in report
    assert heard[-1] == (0.95, "loading the new model") and any("distilling the student" in d for _, d in heard)

    outputs = app.make_convert(state, settings)(str(write_clip(tmp_path / "clip.wav", seconds=1.0)), "added_alice",
                                                0, False, 2, 1, 0)
    assert outputs[1][1].dtype == np.int16
    _, session, _ = app.make_live(state)((48000, np.zeros(4800, dtype=np.int16)), "added_alice", 0, False, None)
    assert session.serves("added_alice", 0.0, 48000)

@pytest.fixture(scope="module")
def sync_playwright():
    """Playwright's ``sync_playwright``, once Debian's Chromium is found: without either the browser test skips
    locally and fails under CI=true. Listed before ``app_server`` so the check comes before the server starts."""
    if not CHROMIUM.exists():
        missing(f"the browser test needs Debian's chromium at {CHROMIUM}", install="apt-get install chromium")
    return require("playwright.sync_api", install="pip install -r requirements-dev.txt").sync_playwright


@pytest.mark.browser
def test_page_in_headless_chromium(sync_playwright, app_server, tmp_path):
    """Load the page, upload a 5 s clip, click convert, wait for both players; screenshot."""
    clip = write_clip(tmp_path / "clip5s.wav", seconds=5.0)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            page = context.new_page()
            # "load", not "networkidle": the Live tab's streaming player keeps a connection open,
            # so the page never goes network-idle (it did before that tab existed)
            page.goto(app_server, wait_until="load")
            page.wait_for_selector("#convert")
            assert "Model" in page.inner_text("#status")
            page.locator("#source-audio input[type=file]").set_input_files(str(clip))
            page.wait_for_selector("#source-audio [data-testid='download-link']", timeout=30_000)
            start = time.perf_counter()
            page.click("#convert")
            for player in ("#teacher-audio", "#student-audio"):
                page.wait_for_selector(f"{player} [data-testid='download-link']", timeout=90_000)
            page.wait_for_selector("#mel-student img", timeout=30_000)
            seconds = time.perf_counter() - start
            print(f"\nclick to both results for a {sf.info(str(clip)).duration:.1f} s clip: {seconds:.2f} s")
            assert "network evaluations" in page.inner_text("#timings")
            page.wait_for_timeout(500)  # let the waveforms draw
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            target = os.environ.get("COMOSVC_SCREENSHOT")  # e.g. docs/app.png for the README
            if target:
                from PIL import Image

                Path(target).parent.mkdir(parents=True, exist_ok=True)
                Image.open(shot).convert("RGB").quantize(colors=96).save(target, optimize=True)  # small PNG
        finally:
            context.close()
