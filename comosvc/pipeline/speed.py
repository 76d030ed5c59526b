"""Where conversion time goes: per-stage split with random weights, ``python -m comosvc.pipeline.speed``.

Speed does not depend on the weights, so everything is built in memory at the
sizes of a config (:meth:`ConversionPipeline.from_config`): the acoustic model,
the content encoders and a BigVGAN of a known configuration. The teacher and the
student are the same network run with their samplers (the student is a copy of
the teacher's weights marked distilled), sharing the feature extractor and the
vocoder. Each system converts the same synthetic song after a short warm-up.

    python -m comosvc.pipeline.speed --config configs/comosvc.yaml --seconds 30 \\
        --vocoder nvidia/bigvgan_v2_24khz_100band_256x --vocoder nvidia/bigvgan_base_24khz_100band
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch

from comosvc.config import ComoSVCConfig, load_config
from comosvc.pipeline.conversion import ConversionPipeline
from comosvc.measure.songs import singer_voice, sung_phrase

STAGES = ("content", "f0", "acoustic", "vocoder", "total")


def song(seconds: float, sample_rate: int = 24000, seed: int = 0) -> np.ndarray:
    """Exactly ``seconds`` of synthetic singing: notes of 0.6 s with 0.15 s gaps over two octaves."""
    n_notes = max(1, int(np.ceil(seconds / 0.75)))
    notes = list(220.0 * 2 ** (np.random.default_rng(seed).integers(-7, 8, n_notes) / 12))
    wav, _ = sung_phrase(notes, note_seconds=0.6, gap_seconds=0.15, sr=sample_rate, voice=singer_voice(1), seed=seed)
    return np.resize(wav, int(round(seconds * sample_rate))).astype(np.float32)


def stage_split(
    config: ComoSVCConfig,
    seconds: float = 30.0,
    systems: tuple[tuple[str, int], ...] = (("student", 1), ("teacher", 40)),
    vocoders: tuple[str, ...] = ("nvidia/bigvgan_v2_24khz_100band_256x",),
    device: str = "cpu",
    seed: int = 0,
    warmup_seconds: float = 2.0,
) -> list[dict[str, Any]]:
    """Time each (vocoder, sampler, steps) conversion of ``seconds`` of singing, once, after a warm-up.

    Returns one row per run: ``vocoder_name``, ``sampler``, ``steps``, ``nfe``, ``chunks``,
    ``seconds`` (of audio), ``wall`` and ``cpu``: the stage times of
    :attr:`ConversionResult.timings` and ``cpu_timings`` (s), and the load average.
    """
    from comosvc.models import ComoSVC

    wav = song(seconds, config.audio.sample_rate, seed)
    warm = song(warmup_seconds, config.audio.sample_rate, seed + 1)
    rows = []
    student_pipe = None
    for vocoder in vocoders:
        base = ConversionPipeline.from_config(config, vocoder=vocoder, device=device, distilled=True, seed=seed)
        if student_pipe is None:  # one acoustic model and one feature extractor for every vocoder
            student = base.model
            teacher = ComoSVC(config, singers=student.singers, stats=student.stats)
            teacher.load_state_dict(student.state_dict())
            teacher = teacher.to(device).eval()
            student_pipe = base
            teacher_pipe = ConversionPipeline(teacher, base.features, base.vocoder, config=config, device=device)
        else:
            student_pipe.vocoder = teacher_pipe.vocoder = base.vocoder
        del base
        for sampler, steps in systems:
            pipe = student_pipe if sampler == "student" else teacher_pipe
            singer = next(iter(pipe.singers))
            pipe(warm, singer, sampler=sampler, steps=steps, seed=seed)
            result = pipe(wav, singer, sampler=sampler, steps=steps, seed=seed)
            rows.append(
                {
                    "vocoder_name": vocoder,
                    "sampler": sampler,
                    "steps": steps,
                    "nfe": result.nfe,
                    "chunks": result.n_chunks,
                    "seconds": len(wav) / config.audio.sample_rate,
                    "wall": {stage: round(result.timings[stage], 3) for stage in STAGES},
                    "cpu": {stage: round(result.cpu_timings[stage], 3) for stage in STAGES},
                    "load_average": round(os.getloadavg()[0], 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def format_rows(rows: list[dict[str, Any]], clock: str = "wall") -> str:
    """Markdown table of :func:`stage_split` rows (``clock``: ``"wall"`` or ``"cpu"`` seconds), with shares of the total."""
    lines = [
        f"| vocoder | sampler | NFE | content | F0 | acoustic | vocoder | total ({clock} s) | RTF |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        t = r[clock]
        share = lambda stage: f"{t[stage]:.1f} ({100 * t[stage] / t['total']:.0f}%)"  # noqa: E731
        lines.append(
            f"| {r['vocoder_name'].split('/')[-1]} | {r['sampler']} {r['steps']} | {r['nfe']} | {share('content')} | "
            f"{share('f0')} | {share('acoustic')} | {share('vocoder')} | {t['total']:.1f} | {t['total'] / r['seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comosvc.pipeline.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/comosvc.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--teacher-steps", type=int, default=40)
    parser.add_argument("--student-steps", type=int, default=1)
    parser.add_argument("--vocoder", action="append", help="BigVGAN config name (repeatable); default inference.vocoder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 gives steady CPU times on a busy machine)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    config = load_config(args.config, overrides=args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}, "
        f"load average {os.getloadavg()[0]:.1f}, {args.seconds:g} s of audio, random weights at {args.config}"
    )
    started = time.perf_counter()
    rows = stage_split(
        config,
        args.seconds,
        systems=(("student", args.student_steps), ("teacher", args.teacher_steps)),
        vocoders=tuple(args.vocoder or [config.inference.vocoder]),
        device=args.device,
    )
    print(format_rows(rows, "wall"))
    print(format_rows(rows, "cpu"))
    print(f"(measured in {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
