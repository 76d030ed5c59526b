"""The pipeline the app serves: loaded once, its teacher too, and what a visitor should know about it.

    served = load_served_model(settings)      # a ServingSettings with a model
    served.pipe, served.samplers, served.notes, served.vocoder_fallback
    warm_up(served.pipe, served.samplers)

A vocoder that cannot be reached falls back to Griffin-Lim: the pipeline says so and why
(:attr:`ConversionPipeline.vocoder_fallback`), and :func:`load_served_model` reports it
(``vocoder_fallback`` and a note for the page).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from comosvc.serving.inputs import singer_names

if TYPE_CHECKING:
    from comosvc.pipeline import ConversionPipeline
    from comosvc.serving.settings import ServingSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """A loaded pipeline and how it will serve."""

    pipe: "ConversionPipeline"
    samplers: tuple[str, ...]  # what the Convert button runs: "teacher", "student" or both
    notes: tuple[str, ...] = ()  # Markdown sentences for the page: a teacher that failed, no student, a vocoder fallback
    vocoder_fallback: str | None = None  # why Griffin-Lim makes the audio instead of the vocoder asked for


def default_device(zero_gpu: bool = False) -> str:
    """``cuda`` when there is one (on ZeroGPU, ``zero_gpu=True``, there is one per call), else ``cpu``."""
    import torch

    return "cuda" if zero_gpu or torch.cuda.is_available() else "cpu"


def load_served_model(settings: "ServingSettings", zero_gpu: bool = False) -> ServedModel:
    """Load ``settings.model`` with its vocoder, and a distilled model's teacher now (not inside the
    first visitor's timings). A teacher that fails to load leaves the student alone, with a note;
    anything else that fails (the model, its content encoders) raises."""
    if not settings.model:
        raise ValueError("No model to load: pass --model MODEL or set COMOSVC_MODEL.")
    started = time.perf_counter()
    pipe, fallback = _load_pipeline(settings, settings.device or default_device(zero_gpu))
    logger.info("loaded %s in %.1f s", settings.model, time.perf_counter() - started)
    notes, samplers = [], list(pipe.samplers)
    if "teacher" in samplers and "student" in samplers:
        try:
            pipe.teacher()
        except Exception as err:
            logger.exception("could not load the teacher")
            samplers.remove("teacher")
            notes.append(f"The teacher could not be loaded, so only the student runs: {err}")
    if "student" not in samplers:
        notes.append("This model is a diffusion teacher without a distilled student: only the teacher runs.")
    if fallback is not None:
        notes.append(
            f"The vocoder `{settings.vocoder or pipe.config.inference.vocoder}` could not be reached, so Griffin-Lim "
            "(low quality) makes the audio. Pass `--vocoder` (or `COMOSVC_VOCODER`) with a Hub id or a local BigVGAN folder."
        )
    return ServedModel(pipe, tuple(samplers), tuple(notes), fallback)


def _load_pipeline(settings: "ServingSettings", device: str) -> tuple["ConversionPipeline", str | None]:
    """The pipeline, and why its vocoder is Griffin-Lim instead of the one asked for (None when it is not)."""
    from comosvc.pipeline import ConversionPipeline

    pipe = ConversionPipeline.from_pretrained(
        settings.model,
        vocoder=settings.vocoder,
        teacher=settings.teacher,
        device=device,
        overrides=[f"inference.dtype={settings.dtype}"] if settings.dtype else None,
        vocoder_fallback=True,
    )
    return pipe, pipe.vocoder_fallback


def warm_up(pipe, samplers: Sequence[str]) -> None:
    """Convert one second of synthetic singing with each sampler (one step), so one-time costs
    (lazy initialisation, first-call allocations) do not land in the first visitor's timings.
    A failure is logged, not raised: the real request will report it."""
    from comosvc.data.songs import sung_tone

    wav, _ = sung_tone(220.0, 1.0, sr=pipe.sample_rate)
    singer = singer_names(pipe)[0]
    for sampler in samplers:
        started = time.perf_counter()
        try:
            pipe(wav, singer, sampler=sampler, steps=1, seed=0)
        except Exception:
            logger.exception("warm-up with the %s failed", sampler)
        logger.info("warm-up with the %s: %.1f s", sampler, time.perf_counter() - started)
