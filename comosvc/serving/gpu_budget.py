"""How many GPU seconds one conversion asks ZeroGPU for, and how start-up measures what a GPU costs.

On a ZeroGPU Space each conversion runs inside ``spaces.GPU(duration=...)``: ZeroGPU stops a
call that outlives its request and queues long requests behind short ones. :class:`GpuBudget`
turns a clip's length and the samplers' network evaluations into that duration;
:func:`calibrated` replaces its default costs by ones measured on the model's own CUDA device.

    >>> budget = GpuBudget()
    >>> budget.seconds(clip_seconds=10.0, evaluations=41 + 1)      # teacher 40 steps (Euler) + student 1 step
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from comosvc.audio import AudioError, audio_duration

logger = logging.getLogger(__name__)

# GPU seconds asked on ZeroGPU for the start-up warm-up and measurement (loading.warm_up, calibrated)
START_UP_GPU_SECONDS = 60


@dataclass(frozen=True)
class GpuBudget:
    """GPU seconds for one conversion of a clip by the teacher and the student in one pass.

    ``seconds = min(cap, overhead + margin * clip_s * (shared_per_second + runs * per_second +
    evaluations * per_step))``: the teacher and the student convert the clip in one pass
    (:func:`comosvc.compare.compare`), so ``shared_per_second``, what the content features and
    F0 cost per second of audio, is paid once; ``per_second`` is the rest of one run (the
    vocoder, joining) per second of audio, ``per_step`` one denoiser evaluation per second of
    audio, ``evaluations`` the samplers' network evaluations (``sampler.nfe``: the teacher's
    ``steps + 1`` with Euler, the student's ``steps``). The estimate is generous (``margin``)
    but bounded: ``cap`` stays within what a visitor may ask for (an unauthenticated visitor
    has 2 minutes of ZeroGPU a day).
    """

    # Defaults until start-up measures them on CUDA (calibrated): the one-CPU-thread stage split of
    # docs/benchmarks.md divided by 50, a deliberately low GPU-over-one-thread speed-up (docs/space.md).
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

    def for_samplers(self, clip_seconds: float, samplers: Sequence) -> int:
        """:meth:`seconds` for a clip converted once by each of ``samplers`` (objects with ``nfe``)."""
        return self.seconds(clip_seconds, sum(sampler.nfe for sampler in samplers), len(samplers))

    def __str__(self) -> str:
        return (
            f"GPU budget per conversion ({self.source}): {self.shared_per_second:.3f} s/s shared + "
            f"{self.per_second:.3f} s/s per run + {self.per_step:.4f} s/s per step, at most {self.cap:.0f} s"
        )


def clip_seconds(path: str | Path | None, max_seconds: float) -> float:
    """The length the budget counts for an uploaded file: its duration, at most ``max_seconds``
    (longer clips are refused at once); 0 without a file or for one soundfile cannot read."""
    if not path:
        return 0.0
    try:
        seconds = audio_duration(path)
    except AudioError:
        return 0.0
    return min(seconds, max_seconds) if math.isfinite(seconds) else 0.0


def measure_budget(pipe, samplers: Sequence[str], budget: GpuBudget) -> GpuBudget:
    """``budget`` with its three costs measured on one chunk of synthetic singing.

    One run at one step on ``inference.max_chunk_seconds`` of audio (a full chunk, so the
    padded Whisper window costs what it costs a real request), best after
    :func:`comosvc.serving.loading.warm_up`: ``shared_per_second`` = (content + F0) / clip
    seconds, ``per_second`` = (end to end - content - F0 - acoustic model) / clip seconds,
    ``per_step`` = acoustic model / evaluations / clip seconds (the condition encoder and
    prior counted in, so it errs high). Keeps ``budget`` (and logs why) when the run fails.
    """
    from comosvc.data.songs import sung_tone
    from comosvc.serving.inputs import singer_names

    seconds = float(pipe.config.inference.max_chunk_seconds)
    wav, _ = sung_tone(220.0, seconds, sr=pipe.sample_rate)
    sampler = "student" if "student" in samplers else samplers[0]
    try:
        result = pipe(wav, singer_names(pipe)[0], sampler=sampler, steps=1, seed=0)
    except Exception:
        logger.exception("measuring the GPU cost failed; keeping the budget %s", budget)
        return budget
    timings = result.timings
    acoustic, total, shared = timings["acoustic"], timings["total"], timings["content"] + timings["f0"]
    return replace(
        budget,
        shared_per_second=shared / seconds,
        per_second=max(total - shared - acoustic, 0.0) / seconds,
        per_step=acoustic / max(int(result.nfe), 1) / seconds,
        source=f"measured on {device_type(pipe)}",
    )


def calibrated(pipe, samplers: Sequence[str], budget: GpuBudget) -> GpuBudget:
    """``budget`` measured on ``pipe`` (:func:`measure_budget`) when it still holds the defaults and the
    pipeline runs on CUDA; else ``budget`` as it is (costs configured, or a CPU, where ZeroGPU is not)."""
    if budget.source == "defaults" and device_type(pipe) == "cuda":
        return measure_budget(pipe, samplers, budget)
    return budget


def device_type(pipe) -> str:
    """``"cuda"``, ``"cpu"``, ... of the device ``pipe`` runs on."""
    device = getattr(pipe, "device", "cpu")
    return getattr(device, "type", str(device))
