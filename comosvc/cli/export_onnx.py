"""``python -m comosvc export-onnx --model ID_OR_DIR --out DIR``: the one-step student (and BigVGAN) as ONNX graphs.

The folder it writes is what ``convert --runtime onnx`` (``ConversionPipeline.from_pretrained(DIR,
runtime="onnx")``) runs with onnxruntime; see :mod:`comosvc.onnx.export` for the graphs.
"""

from __future__ import annotations

import argparse
import sys

from comosvc.vocoders import GRIFFINLIM


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-onnx",
        help="export a distilled student and its BigVGAN vocoder to ONNX (for --runtime onnx)",
        description=(
            "Export the one-step student (condition encoder + prior + one denoiser step) and the BigVGAN "
            "vocoder as ONNX graphs with dynamic batch and length, plus the model's config, singers and stats. "
            f"Only a distilled student can be exported (not a teacher); {GRIFFINLIM} is not exported "
            "(the ONNX runtime then vocodes with it in torch)."
        ),
    )
    parser.add_argument("--model", required=True, help="Hugging Face Hub id or local folder of a distilled ComoSVC student")
    parser.add_argument("--out", required=True, help="output folder for the export")
    parser.add_argument("--vocoder", default=None, help="BigVGAN Hub id or folder (default: the model's inference.vocoder)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from comosvc.onnx.export import OPSET, export_onnx
    except ImportError as err:  # pragma: no cover - a missing optional dependency
        print(f"error: {err}. Install the exporter's dependencies: pip install onnx onnxscript onnxruntime", file=sys.stderr)
        return 2
    try:
        out = export_onnx(args.model, args.out, vocoder=args.vocoder, opset=args.opset or OPSET)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported to {out}/ (run it with: python -m comosvc convert INPUT --model {out} --runtime onnx --singer NAME)")
    return 0
