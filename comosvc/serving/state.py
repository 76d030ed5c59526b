"""What the app serves: the loaded, warmed-up pipeline and its banner, or why there is none.

    state = load_model_state(settings)                     # never raises: a failure becomes the banner
    state.pipe, state.status, state.problem, state.samplers, state.budget

The app passes ``zero_gpu`` and its ``on_gpu`` (``spaces.GPU`` on a Space), so that on
ZeroGPU the warm-up and the budget's measurement run on a lent GPU.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from comosvc.serving.gpu_budget import START_UP_GPU_SECONDS, GpuBudget, calibrated
from comosvc.serving.inputs import singer_names
from comosvc.serving.loading import load_served_model, warm_up
from comosvc.serving.settings import HOW_TO_PROVIDE

if TYPE_CHECKING:
    from comosvc.serving.settings import ServingSettings

logger = logging.getLogger(__name__)


@dataclass
class ModelState:
    """The served pipeline, or why there is none (Markdown for the banner and the error)."""

    pipe: object | None
    status: str  # Markdown shown at the top of the page
    problem: str | None = None  # plain sentence raised as gr.Error when converting without a model
    samplers: tuple[str, ...] = ()  # what the model can run: "teacher", "student"
    budget: GpuBudget = field(default_factory=GpuBudget)  # GPU seconds per conversion (ZeroGPU)


def load_model_state(settings: "ServingSettings", zero_gpu: bool = False,
                     on_gpu: Callable[[Callable, float], Callable] | None = None) -> ModelState:
    """Load the model (:func:`~comosvc.serving.loading.load_served_model`), then warm it up and measure
    its GPU budget, inside ``on_gpu(function, seconds)`` when given; never raises: failures become a banner."""
    if not settings.model:
        problem = "No model is loaded, so there is nothing to convert with."
        status = f"### ⚠️ No model loaded\n\n{problem} {HOW_TO_PROVIDE}"
        return ModelState(None, status, f"{problem} {_plain(HOW_TO_PROVIDE)}")
    try:
        served = load_served_model(settings, zero_gpu=zero_gpu)
    except Exception as err:  # any failure (missing files, offline Hub, bad config) becomes the banner
        logger.exception("could not load model %s", settings.model)
        problem = f"The model `{settings.model}` could not be loaded: {err}"
        status = f"### ⚠️ Model not loaded\n\n{_escape(problem)}\n\n{HOW_TO_PROVIDE}"
        return ModelState(None, status, f"{_plain(problem)} {_plain(HOW_TO_PROVIDE)}")
    pipe, samplers = served.pipe, served.samplers

    def start_up():  # runs on the GPU on ZeroGPU (a forked worker: only the result comes back)
        warm_up(pipe, samplers)
        return calibrated(pipe, samplers, settings.budget)

    try:
        budget = (on_gpu(start_up, START_UP_GPU_SECONDS) if on_gpu is not None else start_up)()
    except Exception:  # no GPU lent at start-up, quota...: convert anyway, with the configured budget
        logger.exception("warm-up on the GPU failed")
        budget = settings.budget
    logger.info("%s", budget)
    status = (
        f"**Model** `{settings.model}` · **vocoder** `{pipe.vocoder_name}` · "
        f"**{len(singer_names(pipe))} singer(s)** · samplers: {', '.join(samplers)} · "
        f"clips up to {settings.max_seconds:.0f} s"
    )
    status = "\n\n".join([status, *(f"⚠️ {_escape(note)}" for note in served.notes)])
    return ModelState(pipe, status, samplers=samplers, budget=budget)


def _escape(text: str) -> str:
    """The page renders HTML: keep a message's < and > literal."""
    return html.escape(text, quote=False)


def _plain(markdown: str) -> str:
    """Markdown -> a plain sentence for gr.Error (no code quotes)."""
    return markdown.replace("`", "'")


__all__ = ["ModelState", "load_model_state"]
