"""The app on a Hugging Face Space: ZeroGPU's ``spaces.GPU``, its duration, and the weights preloaded at build time.

A stub ``spaces`` package (written to a temporary folder put first on ``sys.path``)
stands in for ZeroGPU: its ``GPU`` records every decoration with its duration and
every call of the wrapped function. The app is imported fresh on top of it, served
in-process with the tiny model, and converts a clip through ``gradio_client``.
Neither the stub nor that copy of ``app`` outlives its test module.
"""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
import yaml

from comosvc.serving.gpu_budget import GpuBudget
from comosvc.serving.settings import parse_settings
from comosvc.serving.space import SPACE_MODEL, SPACE_TEACHER, space_weights
from test_app import REPO, SINGERS, build_tiny_model, free_port, wait_until_up, write_clip

STUB_SPACES = '''
"""Stand-in for Hugging Face's `spaces` package: records what the app asks ZeroGPU for."""
import functools

DECORATIONS = []  # one dict per spaces.GPU(...)(fn): fn, duration
CALLS = []  # one dict per call of a wrapped function: name, duration asked, whether it finished


def GPU(task=None, *, duration=None, size=None):
    def decorate(fn):
        DECORATIONS.append({"fn": fn, "duration": duration})

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            asked = duration(*args, **kwargs) if callable(duration) else duration
            call = {"name": fn.__name__, "duration": asked, "finished": False}
            CALLS.append(call)
            result = fn(*args, **kwargs)
            call["finished"] = True
            return result

        return wrapper

    return decorate(task) if callable(task) else decorate
'''


def _forget(*names: str) -> None:
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def stub_spaces(tmp_path_factory):
    """The stub ``spaces`` module and ``app`` freshly imported on top of it; both removed afterwards."""
    folder = tmp_path_factory.mktemp("stub_spaces")
    (folder / "spaces").mkdir()
    (folder / "spaces" / "__init__.py").write_text(textwrap.dedent(STUB_SPACES))
    _forget("spaces", "app")
    sys.path.insert(0, str(folder))
    try:
        spaces = importlib.import_module("spaces")
        assert spaces.__file__.startswith(str(folder))
        app = importlib.import_module("app")
        assert app.spaces is spaces
        yield spaces, app
    finally:
        sys.path.remove(str(folder))
        _forget("spaces", "app")  # later tests import the real (or no) spaces and a fresh app


@pytest.fixture(scope="module")
def space_server(stub_spaces, tmp_path_factory, tiny_overrides):
    """``app.main([... --max-seconds 6 ...], block=False)`` with the stub ``spaces``; yields (url, demo, spaces, app)."""
    import torch

    spaces, app = stub_spaces
    model = build_tiny_model(tmp_path_factory.mktemp("tiny_model"), tiny_overrides)
    port = free_port()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    demo = app.main(
        ["--model", str(model), "--vocoder", "griffinlim", "--max-seconds", "6",
         "--gpu-cost-per-second", "0.2", "--gpu-cost-per-step", "0.01",  # what a GPU costs does not matter here
         "--examples-dir", str(tmp_path_factory.mktemp("app") / "examples"), "--host", "127.0.0.1", "--port", str(port)],
        block=False,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url)
        yield url, demo, spaces, app
    finally:
        demo.close()
        torch.set_num_threads(threads)


def _convert_decoration(spaces):
    found = [d for d in spaces.DECORATIONS if d["fn"].__name__ == "convert"]
    assert len(found) == 1, [d["fn"].__name__ for d in spaces.DECORATIONS]
    return found[0]


def test_conversion_runs_inside_spaces_gpu(space_server, tmp_path):
    from gradio_client import Client, handle_file

    url, _, spaces, _ = space_server
    decoration = _convert_decoration(spaces)
    assert callable(decoration["duration"])  # a duration per request, not one number
    assert any(c["name"] == "start_up" and c["finished"] for c in spaces.CALLS)  # the warm-up ran on the GPU too

    clip = write_clip(tmp_path / "clip.wav", seconds=2.0)
    before = len(spaces.CALLS)
    outputs = Client(url, verbose=False).predict(handle_file(str(clip)), SINGERS[0], 0, False, 4, 1, 0, api_name="/convert")
    calls = spaces.CALLS[before:]
    assert [c["name"] for c in calls] == ["convert"] and calls[0]["finished"]
    assert isinstance(calls[0]["duration"], int) and calls[0]["duration"] > 0
    table = outputs[-1]
    device = dict((row[0], row[1:3]) for row in table["data"])["device"]
    assert device == ["cpu", "cpu"]  # the cost table says what ran each system


def test_duration_grows_with_clip_and_steps_and_stays_under_the_cap(space_server, tmp_path):
    _, _, spaces, app = space_server
    duration = _convert_decoration(spaces)["duration"]
    budget = GpuBudget()  # the defaults; the server runs with 0.2 s/s per run and 0.01 s/s per step
    clips = {seconds: str(write_clip(tmp_path / f"clip{seconds}.wav", seconds=seconds)) for seconds in (1.0, 3.0, 6.0)}

    def asked(seconds, teacher_steps=40, student_steps=1):
        return duration(clips[seconds], SINGERS[0], 0, False, teacher_steps, student_steps, 0)

    assert asked(1.0) < asked(3.0) < asked(6.0)
    assert asked(3.0, teacher_steps=10) < asked(3.0, teacher_steps=40) < asked(3.0, teacher_steps=100)
    assert asked(3.0, student_steps=1) <= asked(3.0, student_steps=4)
    assert asked(6.0, teacher_steps=100, student_steps=4) <= budget.cap  # the longest clip accepted (6 s), most steps

    # and with the default costs at the app's default limit (60 s), the longest clip stays under the cap too
    long_clip = budget.seconds(60.0, evaluations=101 + 4)
    assert long_clip <= budget.cap and budget.seconds(60.0, 41 + 1) > budget.seconds(10.0, 41 + 1)
    assert duration(None, SINGERS[0], 0, False, 40, 1, 0) == budget.overhead  # no clip: the fixed overhead only


def test_app_runs_without_spaces(tmp_path, monkeypatch):
    """``spaces`` not installed (``import spaces`` fails): the handler is the plain function."""
    monkeypatch.setitem(sys.modules, "spaces", None)
    _forget("app")
    try:
        app = importlib.import_module("app")
        assert app.spaces is None and not app.on_zero_gpu()
        settings = parse_settings(["--examples-dir", str(tmp_path / "examples")], environ={})
        state = app.ModelState(None, "no model", "No model is loaded.")
        handler = app.make_convert(state, settings)
        assert handler.__name__ == "convert" and handler.gpu_seconds(None) > 0
        assert app.on_gpu(len, 10) is len
    finally:
        _forget("app")


def _front_matter() -> dict:
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("\n---\n", 1)[0][len("---\n"):])


def test_readme_front_matter_preloads_the_apps_defaults():
    meta = _front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["suggested_hardware"] == "zero-a10g"  # huggingface_hub's SpaceHardware.ZERO_A10G: ZeroGPU
    expected = [f"{repo} {','.join(files)}" for repo, files in space_weights()]
    assert meta["preload_from_hub"] == expected

    from comosvc.config import ComoSVCConfig

    config = ComoSVCConfig()
    repos = [entry.split()[0] for entry in meta["preload_from_hub"]]
    assert repos == [SPACE_MODEL, SPACE_TEACHER, config.inference.vocoder, config.content.whisper, config.content.contentvec]

    # on a Space with no model named the app serves exactly the preloaded model and teacher
    settings = parse_settings([], environ={"SPACE_ID": "someone/comosvc"})
    assert (settings.model, settings.teacher) == (SPACE_MODEL, SPACE_TEACHER)
