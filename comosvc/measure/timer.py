"""Repeats, interleaving and medians of the conversion's clocks (:mod:`comosvc.pipeline.clock`).

Every speed number of the project (``python -m comosvc bench``, the conversion
pipeline's per-stage timings, ``python -m comosvc.measure.feature_timing``, the vocoder
benchmark) is measured with :class:`Timer`. Two clocks, because on a shared
machine they disagree: wall seconds (``time.perf_counter``) are what a user waits,
process CPU seconds (``time.process_time``, summed over torch's threads) hardly
depend on what else the machine runs.

    >>> timer = Timer()
    >>> with timer:
    ...     pass
    >>> timer.wall >= 0 and timer.cpu >= 0
    True
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from comosvc.pipeline.clock import Seconds, Timer, now, sync_device  # noqa: F401 (the measuring toolkit's own names too)

CPU = "cpu:"  # prefix of the CPU-seconds twin of a timing key ("cpu:acoustic")


def time_call(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> Seconds:
    """Seconds of one call of ``fn()``."""
    timer = Timer(sync)
    with timer:
        fn()
    return timer.elapsed()


# --------------------------------------------------------------------------- repeats

# A job runs once and returns its timings in seconds, e.g. {"acoustic": 0.8, "cpu:acoustic": 0.9}.
Job = Callable[[], dict[str, float]]


def timed(fn: Callable[[], Any], key: str = "total") -> Job:
    """A job that times ``fn()`` as ``{key: wall seconds, "cpu:" + key: process CPU seconds}``."""

    def job() -> dict[str, float]:
        wall, cpu = time_call(fn)
        return {key: wall, CPU + key: cpu}

    return job


def interleave(
    jobs: dict[str, Job], repeats: int, warmups: dict[str, Job] | None = None, desc: str = "bench"
) -> dict[str, list[dict[str, float]]]:
    """Run every job ``repeats`` times, round-robin; returns ``{name: [timings of each repeat]}``.

    Repeat ``r`` starts with job ``r mod n`` and goes round, so no job always runs
    first (or right after the most expensive one), and a slow patch of a shared
    machine hits all jobs alike. ``warmups`` (default: the jobs themselves) each run
    once, untimed, before the first repeat.
    """
    names = list(jobs)
    for job in (warmups if warmups is not None else jobs).values():
        job()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tqdm(total=repeats * len(names), desc=desc, unit="run", leave=False) as bar:
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                bar.set_postfix_str(name)
                runs[name].append({k: float(v) for k, v in jobs[name]().items()})
                bar.update()
    return runs


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over the runs (keys missing from a run are skipped)."""
    keys = list(dict.fromkeys(k for run in runs for k in run))
    return {k: float(statistics.median(run[k] for run in runs if k in run)) for k in keys}


def repeat(fn: Callable[[], Any], runs: int, sync: Callable[[], None] | None = None) -> list[Seconds]:
    """Seconds of each of ``runs`` calls of ``fn()`` (no warm-up: do it first if one-time costs matter)."""
    return [time_call(fn, sync) for _ in range(runs)]


def median_of(times: list[Seconds]) -> Seconds:
    """The median wall and the median CPU seconds of several runs (each clock on its own)."""
    return Seconds(statistics.median(t.wall for t in times), statistics.median(t.cpu for t in times))


def best_of(fn: Callable[[], Any], repeats: int, slow: float = 20.0) -> Seconds:
    """One warm-up call, then ``repeats`` calls: the fastest wall time and the median CPU time.

    On a shared machine the fastest run is the least disturbed one, and CPU time
    (summed over torch's threads) hardly depends on what else is running. When the
    warm-up alone takes over ``slow`` seconds (CREPE "full" on a CPU) it is the answer.
    """
    warmup = time_call(fn)  # model loading, caches
    if warmup.wall > slow:
        return warmup
    times = repeat(fn, repeats)
    return Seconds(min(t.wall for t in times), statistics.median(t.cpu for t in times))


def speedup(reference: float, other: float) -> float:
    """How many times cheaper ``other`` is than ``reference`` (``inf`` if ``other`` is 0)."""
    return reference / other if other > 0 else float("inf")


__all__ = [
    "CPU",
    "Job",
    "Seconds",
    "Timer",
    "best_of",
    "interleave",
    "median_of",
    "medians",
    "now",
    "repeat",
    "speedup",
    "sync_device",
    "time_call",
    "timed",
]
