"""ONNX export of the one-step student and the BigVGAN vocoder, and an onnxruntime back end for them.

    python -m comosvc export-onnx --model user/comosvc-student --out student-onnx
    python -m comosvc convert song.wav --model student-onnx --runtime onnx --singer NAME

:func:`~comosvc.onnx.export.export_onnx` writes the export folder (graphs, the model's
config/singers/stats files and a manifest); :func:`~comosvc.onnx.runtime.load_onnx`
reads it back as an :class:`~comosvc.onnx.runtime.OnnxStudent` (the acoustic model the
conversion pipeline samples) and an :class:`~comosvc.onnx.runtime.OnnxVocoder`. The
feature extractors (Whisper, ContentVec, F0, the mel for the energy) stay in torch.

Nothing here is imported by ``import comosvc``: onnx, onnxscript and onnxruntime are
only needed by the code that exports or runs the graphs.
"""

from comosvc.onnx.files import MANIFEST_FILE, STUDENT_GRAPH, VOCODER_GRAPH, is_onnx_export

__all__ = ["MANIFEST_FILE", "STUDENT_GRAPH", "VOCODER_GRAPH", "is_onnx_export"]
