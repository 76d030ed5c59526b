"""The files of an ONNX export folder (no onnx import: the pipeline checks folders with this)."""

from __future__ import annotations

from pathlib import Path

STUDENT_GRAPH = "student.onnx"  # condition encoder + prior + one denoiser evaluation
VOCODER_GRAPH = "vocoder.onnx"  # BigVGAN: (B, T, n_mels) log mel -> (B, T * hop)
MANIFEST_FILE = "onnx.json"  # which graphs, opset, input/output names
FORMAT = "comosvc-onnx"

# Graph inputs and outputs, in order (shapes in comosvc.onnx.export).
STUDENT_INPUTS = ("whisper", "contentvec", "f0", "energy", "speaker", "mask", "noise")
STUDENT_OUTPUTS = ("mel", "mu")
VOCODER_INPUTS = ("log_mel",)
VOCODER_OUTPUTS = ("wav",)


def is_onnx_export(folder: str | Path) -> bool:
    """True when ``folder`` is a folder written by :func:`comosvc.onnx.export.export_onnx`."""
    return (Path(folder) / MANIFEST_FILE).is_file()


__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "STUDENT_GRAPH",
    "STUDENT_INPUTS",
    "STUDENT_OUTPUTS",
    "VOCODER_GRAPH",
    "VOCODER_INPUTS",
    "VOCODER_OUTPUTS",
    "is_onnx_export",
]
