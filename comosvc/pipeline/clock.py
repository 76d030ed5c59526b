"""The clocks of a conversion: wall and process-CPU seconds, per stage.

Two clocks, because on a shared machine they disagree: wall seconds
(``time.perf_counter``) are what a user waits, process CPU seconds
(``time.process_time``, summed over torch's threads) hardly depend on what else the
machine runs. :class:`StageClock` is what the pipeline times its stages with; its
``around`` hook lets a measurement (e.g. the bench's FLOP count,
:mod:`comosvc.measure.bench`) run code around each stage without touching the pipeline.

    >>> timer = Timer()
    >>> with timer:
    ...     pass
    >>> timer.wall >= 0 and timer.cpu >= 0
    True
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Callable, ContextManager, NamedTuple

# around(stage) -> a context manager entered inside each stage's timing (see StageClock)
StageHook = Callable[[str], ContextManager]


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


def sync_device(device) -> Callable[[], None]:
    """A ``sync`` for :class:`Timer` that waits for queued work on ``device`` (no-op on a CPU)."""
    import torch

    def sync() -> None:
        if str(device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    return sync



class StageClock:
    """Accumulates wall-clock and process CPU seconds per stage; ``total`` runs from creation.

    ``sync`` runs before every reading of the clocks: the pipeline passes
    :func:`sync_device` of its device, so on CUDA a stage's queued
    kernels are counted in that stage (not in whichever later stage first waits for them).

    >>> clock = StageClock()
    >>> with clock("vocoder"):
    ...     pass
    >>> clock.wall()["vocoder"] >= 0
    True

    With ``requests > 1`` (one input converted for several requests) the ``SHARED`` stages
    are counted once for all, the others per request: ``with clock.serving(i):`` picks the
    request they count for, and ``wall(i)`` / ``cpu(i)`` give request ``i`` the shared
    seconds, its own, and as ``total`` the call's total less the other requests' own
    stages (what it would have cost alone).

    ``around(stage)``: a context manager entered inside the timing of every stage block
    (``stage`` one of :data:`STAGES`), for a measurement that needs to see each stage,
    e.g. a FLOP counter reading its total before and after.
    """

    STAGES = ("content", "f0", "acoustic", "vocoder")
    SHARED = ("content", "f0")

    def __init__(self, sync: Callable[[], None] | None = None, requests: int = 1, around: StageHook | None = None):
        self._stages = [{stage: Timer(sync) for stage in self.STAGES} for _ in range(requests)]
        self._around = around
        self._serving = 0
        self._total = Timer(sync).start()

    @contextmanager
    def __call__(self, stage: str):
        timer = self._stages[0 if stage in self.SHARED else self._serving][stage]
        with timer, (self._around(stage) if self._around is not None else nullcontext()):
            yield

    @contextmanager
    def serving(self, request: int):
        """Count the stages inside for request ``request``."""
        previous, self._serving = self._serving, request
        try:
            yield
        finally:
            self._serving = previous

    def wall(self, request: int = 0) -> dict[str, float]:
        return self._read("wall", request)

    def cpu(self, request: int = 0) -> dict[str, float]:
        return self._read("cpu", request)

    def _read(self, clock: str, request: int) -> dict[str, float]:
        def own(i: int) -> dict[str, float]:
            return {stage: getattr(timer, clock) for stage, timer in self._stages[i].items() if stage not in self.SHARED}

        shared = {stage: getattr(self._stages[0][stage], clock) for stage in self.SHARED}
        others = sum(sum(own(i).values()) for i in range(len(self._stages)) if i != request)
        return {**shared, **own(request), "total": getattr(self._total.elapsed(), clock) - others}


__all__ = ["Seconds", "StageClock", "StageHook", "Timer", "now", "sync_device"]
