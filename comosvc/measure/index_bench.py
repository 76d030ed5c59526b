"""``python -m comosvc.measure.index_bench``: what the timbre index costs, on random vectors of the default sizes.

    python -m comosvc.measure.index_bench --seconds 10 --threads 1          # the blend, per second of audio
    python -m comosvc.measure.index_bench --kmeans                           # also one singer's k-means build

The blend is timed as the pipeline runs it (:meth:`~comosvc.index.TimbreIndex.blend_batch`,
Whisper and ContentVec, ``k`` = 8) for one singer and for a mix of two, on
``seconds * 93.75`` frames against full indexes (2048 vectors each); the cost does
not depend on the values. Prints the median of ``--repeats`` runs in milliseconds
per second of audio, wall-clock and process CPU time (the steadier one on a shared machine). ``--kmeans`` times :func:`~comosvc.index.build_index`'s
reduction of one singer at its caps (32768 frames to 2048 vectors per feature).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from comosvc.index.clustering import kmeans
from comosvc.index.sizes import MAX_POINTS, MAX_SIZE
from comosvc.index.store import TimbreIndex

FRAMES_PER_SECOND = 24000 / 256  # the mel frame rate: 93.75 frames/s
DIMS = {"whisper": 1024, "contentvec": 256}  # configs/comosvc.yaml


def _median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median ``(wall, process CPU)`` seconds of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    from comosvc.pipeline.mix import SingerMix

    parser = argparse.ArgumentParser(prog="python -m comosvc.measure.index_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per blend call (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--kmeans", action="store_true", help="also time one singer's k-means at the caps")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    index = TimbreIndex({
        key: {name: torch.randn(MAX_SIZE, dim, generator=g) for name, dim in DIMS.items()} for key in ("a", "b")
    })
    frames = int(round(args.seconds * FRAMES_PER_SECOND))
    batch = {name: torch.randn(1, frames, dim, generator=g).to(device) for name, dim in DIMS.items()}
    batch["mask"] = torch.ones(1, frames, dtype=torch.bool, device=device)
    print(f"device {device}, {torch.get_num_threads()} torch thread(s), {frames} frames ({args.seconds:g} s), "
          f"index {MAX_SIZE} vectors per feature")
    for label, mix in (("one singer", SingerMix(("a",), (1.0,))), ("mix of two", SingerMix(("a", "b"), (0.5, 0.5)))):
        wall, cpu = _median_seconds(lambda: (index.blend_batch(batch, mix, 0.5), sync()), args.repeats)
        print(f"blend, {label}: {wall * 1000 / args.seconds:.2f} ms per second of audio "
              f"({wall * 1000:.1f} ms per call; CPU {cpu * 1000 / args.seconds:.2f} ms per second of audio)")
    if args.kmeans:
        for name, dim in DIMS.items():
            points = torch.randn(MAX_POINTS, dim, generator=g).to(device)
            start = time.perf_counter()
            kmeans(points, MAX_SIZE, seed=0)
            sync()
            print(f"k-means, {name} ({MAX_POINTS} x {dim} -> {MAX_SIZE}): {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
