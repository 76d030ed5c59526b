"""How far a stage is from the machine's limit: FLOPs counted, and the machine's GEMM throughput.

- :func:`gemm_gflops`: the float32 matrix-multiply throughput of this machine at a thread
  count (best of a few ``size x size`` products), the practical peak a convolution or a
  linear layer can reach here;
- :class:`FlopCount` / :func:`count_flops`: floating-point operations of a call, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions and attention:
  ``2 * multiply-adds``; element-wise ops such as BigVGAN's Snake activations, resampling
  filters run as convolutions are counted, ``sin``/``exp`` are not).

Counting runs the call once under a dispatch mode (slower than a plain run): do it
apart from the timed runs.

    >>> peak = gemm_gflops(threads=1, size=512, repeats=2)   # e.g. 60.0 GFLOP/s
    >>> flops = count_flops(lambda: torch.ones(64, 64) @ torch.ones(64, 64))
    >>> flops.total
    524288
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@contextmanager
def torch_threads(threads: int | None):
    """``torch.set_num_threads(threads)`` inside the block (None: leave it), restored after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gemm_gflops(threads: int | None = None, size: int = 2048, repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of the best of ``repeats`` ``(size, size) @ (size, size)`` products at ``threads`` torch threads.

    One untimed product first (allocation, MKL's start-up); ``2 * size**3`` FLOPs each.
    The best run is the least disturbed one on a shared machine.
    """
    if size < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be positive, got size={size}, repeats={repeats}")
    with torch_threads(threads), torch.no_grad():
        a = torch.randn(size, size, dtype=dtype)
        b = torch.randn(size, size, dtype=dtype)
        out = torch.empty(size, size, dtype=dtype)
        torch.mm(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


@dataclass
class FlopCount:
    """FLOPs of one call: ``total`` and per aten operator (``"convolution"``, ``"mm"``...)."""

    total: int = 0
    by_op: dict[str, int] = field(default_factory=dict)

    def add(self, other: "FlopCount") -> None:
        self.total += other.total
        for op, flops in other.by_op.items():
            self.by_op[op] = self.by_op.get(op, 0) + flops


def count_flops(fn: Callable[[], Any]) -> FlopCount:
    """The FLOPs :class:`~torch.utils.flop_counter.FlopCounterMode` counts while ``fn()`` runs (its result is dropped)."""
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    with mode:
        fn()
    counts = mode.get_flop_counts().get("Global", {})
    by_op = {str(op).removeprefix("aten.").split(".")[0]: int(n) for op, n in counts.items()}
    return FlopCount(int(mode.get_total_flops()), by_op)


def fraction_of_peak(flops: float, seconds: float, peak_gflops: float) -> float | None:
    """Achieved GFLOP/s (``flops / seconds``) over ``peak_gflops``; None when either is 0."""
    if seconds <= 0 or peak_gflops <= 0:
        return None
    return flops / seconds / 1e9 / peak_gflops


__all__ = ["FlopCount", "count_flops", "fraction_of_peak", "gemm_gflops", "torch_threads"]
