"""Wall-clock and process-CPU seconds: one timer, and the repeat/median helpers built on it.

Every speed number of the project (``python -m comosvc bench``, the conversion
pipeline's per-stage timings, ``python -m comosvc.features.timing``, the vocoder
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
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from tqdm.auto import tqdm

CPU = "cpu:"  # prefix of the CPU-seconds twin of a timing key ("cpu:acoustic")


class Seconds(NamedTuple):
    """A duration on both clocks, in seconds."""

    wall: float
    cpu: float


def now() -> Seconds:
    """The current reading of both clocks (only differences between readings mean anything)."""
    return Seconds(time.perf_counter(), time.process_time())


class Timer:
    """Wall and process-CPU seconds, summed over every ``with timer:`` block (or ``start()``/``stop()``).

    ``sync`` (e.g. :func:`sync_device`) runs before each reading, so queued GPU work
    is counted. :meth:`elapsed` reads a running timer without stopping it.
    """

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync
        self.wall = self.cpu = 0.0
        self._started: Seconds | None = None

    def _read(self) -> Seconds:
        if self.sync is not None:
            self.sync()
        return now()

    def start(self) -> "Timer":
        self._started = self._read()
        return self

    def stop(self) -> Seconds:
        """Stop, add the block to the totals, and return the block's own seconds."""
        if self._started is None:
            raise RuntimeError("Timer.stop() without start()")
        end, start = self._read(), self._started
        self._started = None
        block = Seconds(end.wall - start.wall, end.cpu - start.cpu)
        self.wall += block.wall
        self.cpu += block.cpu
        return block

    def elapsed(self) -> Seconds:
        """The totals so far, including the running block if there is one."""
        if self._started is None:
            return Seconds(self.wall, self.cpu)
        reading = self._read()
        return Seconds(self.wall + reading.wall - self._started.wall, self.cpu + reading.cpu - self._started.cpu)

    def reset(self) -> None:
        self.wall = self.cpu = 0.0
        self._started = None

    def __enter__(self) -> "Timer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def time_call(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> Seconds:
    """Seconds of one call of ``fn()``."""
    timer = Timer(sync)
    with timer:
        fn()
    return timer.elapsed()


def sync_device(device) -> Callable[[], None]:
    """A ``sync`` for :class:`Timer` that waits for queued work on ``device`` (no-op on a CPU)."""
    import torch

    def sync() -> None:
        if str(device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    return sync


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
