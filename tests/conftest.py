"""Shared fixtures: the tiny config, tiny content encoders built locally, synthetic singing.

Nothing here touches the network: the content encoders are random tiny
transformers models saved with ``save_pretrained`` into a temporary folder and
loaded back by path, exactly as a Hub id or a downloaded folder would be.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "configs" / "tiny.yaml"


# What CI exists to check: skipped locally when missing, a failure under CI=true -----------------

TEST_INSTALL = "pip install -r requirements-dev.txt && pip install --no-deps bigvgan==2.4.1"  # README's test command


def under_ci() -> bool:
    """Whether the environment variable ``CI`` is ``"true"`` (as CI services and ``.ci/run``'s callers set it)."""
    return os.environ.get("CI") == "true"


def missing(what: str, install: str = TEST_INSTALL) -> NoReturn:
    """Skip the test (or the module, at import time) because ``what`` is missing; fail it instead under CI=true."""
    message = f"{what}; install it: {install}"
    if under_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require(module: str, install: str = TEST_INSTALL) -> ModuleType:
    """``module`` imported; when it cannot be, :func:`missing` skips locally and fails under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        problem = f"{module} cannot be imported ({err})"
    missing(problem, install)  # outside the except: the report is the message, not the ImportError's traceback


# Tiny saved models for the pipeline, CLI and app tests ----------------------------------------

SINGERS = {"synth_alto": 0, "synth_bass": 1, "other_alto": 2}
F0_MEDIANS = {"synth_alto": 330.0, "synth_bass": 110.0, "other_alto": 300.0}


def tiny_stats(n_mels: int = 100) -> dict:
    """stats.json for SINGERS: mel bounds per dataset (as a trained model carries), F0 per singer."""
    return {
        "mel": {
            "synth": {"min": [-11.5] * n_mels, "max": [1.5] * n_mels},
            "other": {"min": [-10.0] * n_mels, "max": [1.0] * n_mels},
        },
        "f0": {name: {"median": hz, "p5": hz * 0.7, "p95": hz * 1.4} for name, hz in F0_MEDIANS.items()},
        "durations": {name: 600.0 for name in SINGERS},
    }


def save_tiny_models(folder: Path, config) -> tuple[Path, Path]:
    """A random tiny teacher and a "distilled" student of it, saved with save_pretrained.

    The denoisers' zero-initialised output layers get random weights so the network
    output matters (a fresh model's denoiser returns exactly 0). The student shares
    the teacher's condition encoder and prior, as distillation leaves them frozen.
    """
    from comosvc.measure.stand_ins import copy_model
    from comosvc.models import ComoSVC

    teacher_dir, student_dir = folder / "teacher", folder / "student"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher = ComoSVC(config, singers=SINGERS, stats=tiny_stats())
        torch.nn.init.normal_(teacher.denoiser.output[-1].weight, std=0.1)
        student = copy_model(teacher, distilled=True, distilled_from=str(teacher_dir))
        torch.nn.init.normal_(student.denoiser.output[-1].weight, std=0.1)
    teacher.save_pretrained(teacher_dir)
    student.save_pretrained(student_dir)
    return teacher_dir, student_dir


@pytest.fixture()
def fresh_accelerate():
    """Each training run builds its own Accelerators: start and leave the test without accelerate state."""
    from comosvc.training.setup import reset_accelerate_state

    reset_accelerate_state()
    yield
    reset_accelerate_state()


@pytest.fixture()
def one_thread():
    """Tiny tensors: one thread avoids OpenMP oversubscription on a shared 2-core box.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dominant_frequency(wav: np.ndarray, sample_rate: int = 24000) -> float:
    """The frequency (Hz) of the strongest bin of the Hann-windowed spectrum of ``wav``."""
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sample_rate)[np.argmax(spectrum)])


def fast_vocoder():
    """Griffin-Lim with 2 iterations: the tests check lengths and plumbing, not sound quality."""
    from comosvc.config import AudioConfig
    from comosvc.vocoders import GriffinLimVocoder

    return GriffinLimVocoder(AudioConfig(), n_iter=2, nnls_iters=2)


@pytest.fixture(scope="session")
def tiny_encoder_dirs(tmp_path_factory) -> dict:
    """Folders holding a tiny random Whisper and ContentVec (HF format), built once per session."""
    from comosvc.features.content import build_tiny_encoders

    return build_tiny_encoders(tmp_path_factory.mktemp("encoders"))


@pytest.fixture(scope="session")
def tiny_overrides(tiny_encoder_dirs) -> list[str]:
    """Config overrides that point configs/tiny.yaml at the tiny local encoders."""
    return [f"content.{key}={value}" for key, value in tiny_encoder_dirs.items()]


@pytest.fixture()
def tiny_config(tiny_overrides):
    """configs/tiny.yaml with the tiny local encoders; a fresh object per test."""
    from comosvc.config import load_config

    return load_config(TINY_CONFIG, overrides=tiny_overrides)


@pytest.fixture(scope="session")
def sung_clip() -> tuple[np.ndarray, np.ndarray]:
    """2 s of a synthetic sung phrase at 24 kHz: ``(wav, f0_per_sample)``."""
    from comosvc.data.songs import sung_phrase

    return sung_phrase([220.0, 330.0, 262.0], note_seconds=0.55, gap_seconds=0.1, seed=3)


def sigkill_after_checkpoint(process, out, step: int, timeout: float = 240.0) -> bool:
    """SIGKILL a training ``process`` once ``out`` holds a complete checkpoint of at least ``step``.

    Returns whether the process had already finished before it could be killed (the caller asserts
    it had not). Whatever happens, the process is gone when this returns.
    """
    import os
    import signal
    import time

    from comosvc.training.checkpoint import find_latest_complete, read_trainer_state

    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            latest = find_latest_complete(out)
            if latest is not None and read_trainer_state(latest).step >= step:
                break
            time.sleep(0.01)
        finished_early = process.poll() is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return finished_early


def preprocessed_corpus(root: Path, overrides) -> Path:
    """``root/data``: a synthetic corpus of 2 singers x 3 clips of 1-2 s through train/preprocess.py's main
    (configs/tiny.yaml with ``overrides``)."""
    from comosvc.data.preprocess import main as preprocess_main
    from comosvc.data.synthetic import write_corpus

    write_corpus("generic", root / "corpus", n_singers=2, files_per_singer=3, seconds=(1.0, 2.0), seed=0)
    argv = ["--config", str(TINY_CONFIG), "--dataset", f"generic={root / 'corpus'}", "--out", str(root / "data")]
    assert preprocess_main(argv + list(overrides)) == 0
    return root / "data"
