"""The CPU plan: how a pipeline's networks run on this machine, decided once when the pipeline is built.

Three levers (``inference`` settings, docs/design.md "Running on a CPU"):

- **matrix precision** (``inference.cpu_matmul_precision``): ``float32``, or ``bfloat16``
  products in every network's large linear layers and convolutions
  (:mod:`comosvc.bf16_matmuls`). ``auto`` picks bfloat16 where the CPU has bfloat16
  matrix instructions, AMX or AVX512-BF16 (read from ``/proc/cpuinfo``; elsewhere
  ``auto`` stays float32 and ``bfloat16`` is taken as asked);
- **vocoder workers** (``inference.vocoder_workers``): BigVGAN in overlapping time
  segments on that many threads, each with one torch intra-op thread
  (:mod:`comosvc.vocoders.parallel`); ``0`` resolves here, once, to torch's thread count;
- **compile** (``inference.compile``): the vocoder through ``torch.compile``.

:meth:`CpuPlan.resolve` turns the settings into a plan (errors for what cannot work
come here, before anything loads); :meth:`CpuPlan.apply` builds the planned network
from one (new modules, the network passed in unchanged). A pipeline shows its plan in
its ``repr`` and the bench in its facts line. Nothing here or in the networks changes
torch's thread settings during a call: the vocoder's workers set their own thread count
in their initialiser (:func:`single_thread_workers`).

    >>> plan = CpuPlan.resolve(config.inference, "cpu", torch.float32)
    >>> print(plan)
    cpu: bfloat16 matrix products (AMX), vocoder on 2 worker threads
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from comosvc.bf16_matmuls import MIN_BF16_REDUCTION, with_bf16_matmuls
from comosvc.config import CPU_MATMUL_PRECISIONS

AUTO = "auto"
# Mel frames of context on each side of a vocoder segment: enough for BigVGAN v2 (the largest
# receptive field of the known generators) to give the one-piece output to float rounding
# (tests/test_vocoders_parallel.py measures it).
VOCODER_OVERLAP_FRAMES = 32
# /proc/cpuinfo flags of bfloat16 matrix instructions, best first, with the names the plan shows
BF16_INSTRUCTIONS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}


READ_CPUINFO = "read /proc/cpuinfo"  # CpuPlan.resolve's default: read the flags of this machine


class CpuPlanError(ValueError):
    """A CPU setting that cannot work on this machine; the message says what to set instead."""


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The instruction-set flags of this CPU (Linux), or ``None`` where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return None


def bf16_instructions(flags: frozenset[str] | None) -> str | None:
    """``"AMX"``, ``"AVX512-BF16"`` or ``None``: the best bfloat16 matrix instructions among ``flags``."""
    return next((name for flag, name in BF16_INSTRUCTIONS.items() if flags and flag in flags), None)


@dataclass(frozen=True)
class CpuPlan:
    """How the networks of one pipeline run, resolved from ``inference`` for a device.

    ``matmul``: ``"float32"`` or ``"bfloat16"`` (the products of float32 networks on a CPU;
    on CUDA always the networks' own dtype); ``instructions``: what runs bfloat16 products
    (``"AMX"``, ``"AVX512-BF16"``, ``None`` when unknown or unused); ``vocoder_workers``:
    threads the vocoder runs on (1: one piece); ``compile``: the vocoder is compiled;
    ``min_bf16_reduction``: the smallest layer (products summed per output) that multiplies in
    bfloat16 (:data:`~comosvc.bf16_matmuls.MIN_BF16_REDUCTION`; tests lower it for tiny networks).
    """

    device: str
    matmul: str = "float32"
    instructions: str | None = None
    vocoder_workers: int = 1
    vocoder_overlap_frames: int = VOCODER_OVERLAP_FRAMES
    compile: bool = False
    min_bf16_reduction: int = MIN_BF16_REDUCTION

    @classmethod
    def resolve(
        cls,
        inference,
        device: str | torch.device,
        dtype: torch.dtype = torch.float32,
        flags: frozenset[str] | None | str = READ_CPUINFO,
    ) -> "CpuPlan":
        """The plan for ``inference`` (an :class:`~comosvc.config.InferenceConfig`) on ``device`` with networks in ``dtype``.

        ``flags``: the CPU's instruction flags (default :data:`READ_CPUINFO`: this machine's, from
        ``/proc/cpuinfo``; ``None``: unknown, then ``auto`` stays float32 and ``bfloat16`` is taken as asked).
        Raises :class:`CpuPlanError` for ``bfloat16`` on a CPU known to lack bfloat16 matrix
        instructions, and for a negative worker count.
        """
        kind = torch.device(device).type
        precision, workers = inference.cpu_matmul_precision, int(inference.vocoder_workers)
        if precision not in CPU_MATMUL_PRECISIONS:
            raise CpuPlanError(f"inference.cpu_matmul_precision must be one of {list(CPU_MATMUL_PRECISIONS)}, got {precision!r}")
        if workers < 0:
            raise CpuPlanError(f"inference.vocoder_workers must be 0 (one per CPU thread), 1 (one piece) or more, got {workers}")
        if kind != "cpu":
            return cls(kind, str(dtype).removeprefix("torch."), compile=bool(inference.compile))
        flags = cpu_flags() if flags == READ_CPUINFO else flags
        instructions = bf16_instructions(flags)
        matmul = "float32"
        if dtype == torch.float32 and precision == AUTO and instructions:
            matmul = "bfloat16"
        elif dtype == torch.float32 and precision == "bfloat16":
            if flags is not None and instructions is None:
                raise CpuPlanError(
                    "inference.cpu_matmul_precision=bfloat16: this CPU has no bfloat16 matrix instructions (AMX or "
                    "AVX512-BF16), so bfloat16 products would be slower than float32. Use float32 (or auto)."
                )
            matmul = "bfloat16"
        return cls(
            "cpu",
            matmul,
            instructions if matmul == "bfloat16" else None,
            vocoder_workers=workers or torch.get_num_threads(),
            compile=bool(inference.compile),
        )

    @property
    def bf16_matmuls(self) -> bool:
        """Whether float32 networks get bfloat16 matrix products."""
        return self.device == "cpu" and self.matmul == "bfloat16"

    def apply(self, network):
        """``network`` as this plan runs it: a new module tree with bfloat16 products, or ``network`` itself."""
        return with_bf16_matmuls(network, self.min_bf16_reduction) if self.bf16_matmuls else network

    def __str__(self) -> str:
        if self.device != "cpu":
            parts = [f"{self.matmul} networks"]
        elif self.bf16_matmuls:
            parts = [f"bfloat16 matrix products ({self.instructions or 'as asked'})"]
        else:
            parts = ["float32 matrix products"]
        if self.vocoder_workers > 1:
            parts.append(f"vocoder on {self.vocoder_workers} worker threads")
        if self.compile:
            parts.append("vocoder compiled")
        return f"{self.device}: " + ", ".join(parts)


def single_thread_workers(workers: int, name: str = "worker") -> ThreadPoolExecutor:
    """A pool of ``workers`` threads, started now, each running torch ops on ONE intra-op thread.

    Each worker sets its own thread count in its initialiser. torch also takes a count set
    that way as the default for threads started later, so once every worker has started,
    the calling thread sets its own count again, which puts that default back. Build the
    pool when a pipeline is built (as :class:`~comosvc.vocoders.parallel.ParallelVocoder`
    does), not during a call: the rest of the process keeps its thread count.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    own = torch.get_num_threads()
    started = threading.Barrier(workers + 1)

    def one_thread() -> None:
        torch.get_num_threads()  # torch sets up a thread's count on first use, from the default: do that first
        torch.set_num_threads(1)
        started.wait(timeout=60)

    pool = ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=one_thread)
    for _ in range(workers):  # workers start on demand: ask for all of them while each waits for the others
        pool.submit(int)
    started.wait(timeout=60)
    torch.set_num_threads(own)
    return pool


__all__ = ["AUTO", "READ_CPUINFO", "CpuPlan", "CpuPlanError", "bf16_instructions", "cpu_flags", "single_thread_workers"]
