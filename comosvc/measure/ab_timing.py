"""The A/B (teacher-N and student-1 on one clip): two separate conversions against one ``convert_many``.

    python -m comosvc.measure.ab_timing --config configs/cpu.yaml --seconds 10 --teacher-steps 40 --rounds 2

Random weights at the config's sizes (speed does not depend on them); the teacher is a copy of the
student's weights saved to a temporary folder, so the pipeline loads it as it loads a real one.
Both ways run in the same process, interleaved, on the same clip and seed.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from comosvc.config import load_config
from comosvc.data.songs import synthetic_song
from comosvc.measure.stand_ins import copy_model
from comosvc.measure.timer import Timer
from comosvc.pipeline import ConversionPipeline


def ab_pipeline(config) -> ConversionPipeline:
    """A random-weight student pipeline whose teacher (the same weights) loads from a folder."""
    base = ConversionPipeline.from_config(config, distilled=True, seed=0)
    folder = tempfile.mkdtemp(prefix="comosvc-ab-")
    copy_model(base.model, distilled=False).save_pretrained(folder)
    return ConversionPipeline(base.model, base.features, base.vocoder, config=config, teacher=folder, plan=base.plan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comosvc.measure.ab_timing", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/comosvc.yaml")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--teacher-steps", type=int, default=None, help="default: the config's inference.teacher_steps")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # fixed at start-up, for the whole run
    pipe = ab_pipeline(load_config(args.config))
    wav = synthetic_song(args.seconds, seed=1)
    singer = next(iter(pipe.singers))
    requests = [pipe.request(singer, sampler="teacher", steps=args.teacher_steps, seed=0),
                pipe.request(singer, sampler="student", steps=1, seed=0)]
    pipe.convert_many(wav[: pipe.sample_rate], requests)  # warm-up
    print(pipe)
    for round_ in range(args.rounds):
        for how in ("two calls", "convert_many"):
            timer = Timer().start()
            out = [pipe.convert_many(wav, [r])[0] for r in requests] if how == "two calls" else pipe.convert_many(wav, requests)
            took = timer.stop()
            shared = out[0].timings["content"] + out[0].timings["f0"]
            print(f"round {round_} {how:12s} wall {took.wall:6.2f} s  cpu {took.cpu:6.2f} s  "
                  f"(content + F0 of one run {shared:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
