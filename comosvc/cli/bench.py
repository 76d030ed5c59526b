"""``python -m comosvc bench``: teacher against student speed, interleaved runs, medians; table + JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comosvc.config import PRECISIONS
from comosvc.vocoders import GRIFFINLIM


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="time the teacher (N steps) against the student (1, 2, 4 steps): acoustic model, stages, end to end",
        description=(
            "Convert the same synthetic singing with the diffusion teacher and the consistency student, "
            "interleaving the runs, and report medians: acoustic-model time, end-to-end time, real-time "
            "factor and speed-up over the teacher, the per-stage split (content, F0, acoustic, vocoder), "
            "each stage's FLOPs and fraction of this machine's GEMM peak, and Whisper padded vs unpadded. --config needs no trained weights (random weights at the config's "
            "sizes: configs/comosvc.yaml is the default model size). Several --vocoder names repeat the "
            "measurement with each vocoder."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="ID_OR_DIR", help="a trained ComoSVC model (Hub id or folder)")
    source.add_argument("--config", metavar="FILE", help="a config file: every network gets random weights at its sizes")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0], help="input durations (default: 10 30)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--teacher-steps", type=int, default=None,
                        help="teacher sampling steps (default: the model's inference.teacher_steps)")
    parser.add_argument("--student-steps", type=int, nargs="+", default=[1, 2, 4], help="student steps (default: 1 2 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each system, interleaved (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs on a short clip (default: 1)")
    parser.add_argument(
        "--vocoder", dest="vocoders", nargs="+", default=[], metavar="NAME",
        help=f"vocoder(s): Hub id, folder or '{GRIFFINLIM}' (with --config: a known BigVGAN name built with random "
        "weights, e.g. nvidia/bigvgan_base_24khz_100band); several are measured one after the other "
        "(default: inference.vocoder)",
    )
    parser.add_argument(
        "--acoustic-only", action="store_true",
        help="time only the acoustic model (stand-in features, no vocoder): quick teacher/student ratios",
    )
    parser.add_argument("--no-whisper", action="store_true", help="skip the Whisper padded vs unpadded comparison")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads during the run (default: torch's choice; on a busy machine 1 avoids "
        "threads spin-waiting for each other)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="config override, e.g. --set content.whisper_mode=unpadded (repeatable)",
    )
    parser.add_argument(
        "--runtime", dest="runtimes", nargs="+", choices=["torch", "onnx"], default=["torch"],
        help="onnx adds the one-step student exported to ONNX and run in onnxruntime (student-1-onnx; needs "
        "onnx, onnxscript, onnxruntime) next to the torch systems (default: torch)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the input and the noise (default: 0)")
    parser.add_argument(
        "--dtype", choices=PRECISIONS, default=None,
        help="precision of every network (= --set inference.dtype=...; default auto: float16 on CUDA, float32 on CPU)",
    )
    parser.add_argument(
        "--no-flops", action="store_true",
        help="skip counting each stage's FLOPs (one extra untimed conversion) and the GEMM-peak measurement",
    )
    parser.add_argument("--out", type=Path, metavar="FILE.json", help="write the JSON report here (and the table as .md)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from comosvc.measure.bench import BenchSettings, markdown_report, run_bench, write_report
    from comosvc.config import ConfigError

    settings = BenchSettings(
        model=args.model,
        config=args.config,
        seconds=list(args.seconds),
        device=args.device,
        teacher_steps=args.teacher_steps,
        student_steps=list(args.student_steps),
        repeats=args.repeats,
        warmup=args.warmup,
        vocoders=list(args.vocoders),
        acoustic_only=args.acoustic_only,
        whisper=not args.no_whisper,
        overrides=list(args.overrides),
        seed=args.seed,
        dtype=args.dtype,
        runtimes=list(args.runtimes),
        flops=not args.no_flops,
    )
    try:
        settings.check()
        report = run_bench(settings)
    except (ValueError, ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown_report(report))
    if args.out is not None:
        json_path, md_path = write_report(report, args.out)
        print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0
