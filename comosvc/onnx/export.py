"""Export a distilled student (and its BigVGAN vocoder) to ONNX: ``python -m comosvc export-onnx``.

Two graphs, both with a dynamic batch and length (``torch.onnx.export(dynamo=True)``;
the TorchScript exporter cannot take ``unfold`` at a dynamic length, which the
prior's relative attention uses):

``student.onnx`` (:class:`OneStepStudent`), one student step exactly as
``ComoSVC.sample(batch, steps=1, sampler="student", noise=[noise])``:

    inputs   whisper (B, T, whisper_dim) f32, contentvec (B, T, contentvec_dim) f32,
             f0 (B, T) f32 Hz (0 = unvoiced), energy (B, T) f32, speaker (B,) int64,
             mask (B, T) bool, noise (B, T, n_mels) f32 standard normal
    outputs  mel (B, T, n_mels) normalised mel (0 on padding), mu (B, T, n_mels) the prior's mel

The noise is an input so the pipeline keeps its position-keyed noise (a song frame
gets the same noise whichever chunk it is in).

``vocoder.onnx`` (:class:`VocoderGraph`): ``log_mel (B, T, n_mels)`` unnormalised
natural-log mel -> ``wav (B, T * hop)``. Only BigVGAN is exported; Griffin-Lim is
not (its iterative phase search is a loop of STFTs; it stays in torch, and a runtime
without ``vocoder.onnx`` uses the torch vocoder named by ``inference.vocoder``).

The folder also holds the model's ``config.json``, ``singers.json``, ``stats.json``
and model card (written by ``ComoSVC.save_pretrained``) and ``onnx.json``, the
manifest (:func:`read_manifest`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from comosvc import __version__
from comosvc.files import CARD_FILE, MODEL_CONFIG_FILE, SINGERS_FILE, STATS_FILE
from comosvc.models.masking import apply_mask
from comosvc.onnx.files import (
    FORMAT,
    MANIFEST_FILE,
    STUDENT_GRAPH,
    STUDENT_INPUTS,
    STUDENT_OUTPUTS,
    VOCODER_GRAPH,
    VOCODER_INPUTS,
    VOCODER_OUTPUTS,
)

logger = logging.getLogger(__name__)

OPSET = 18
EXPORT_FRAMES = 64  # the example length the graphs are traced at (any length runs)


class OneStepStudent(nn.Module):
    """One consistency step of a distilled :class:`~comosvc.models.ComoSVC` as a plain ``forward``.

    ``x = s_max * (noise (+ mu))``, ``mel = D(x, s_1)`` (:class:`comosvc.models.samplers.StudentSampler`
    with ``steps=1``); ``s_1`` is taken from the same scheduler once, here, so the graph holds it as a constant.
    """

    def __init__(self, model):
        super().__init__()
        from comosvc.models.samplers import consistency_scheduler

        self.model = model.eval()
        scheduler = consistency_scheduler(model.edm, model.config.model.cd_steps)
        scheduler.set_timesteps(1)
        self.sigma = float(scheduler.sigmas[0])

    def forward(self, whisper, contentvec, f0, energy, speaker, mask, noise):
        batch = {"whisper": whisper, "contentvec": contentvec, "f0": f0, "energy": energy, "speaker": speaker, "mask": mask}
        edm = self.model.edm
        mu = self.model.encode(batch)
        x = edm.sigma_max * edm.draw_noise(mu, eps=noise)
        mel = edm.denoised(self.model.denoiser, x, self.sigma, mu, mask)
        return apply_mask(mel, mask), mu


class VocoderGraph(nn.Module):
    """A torch :class:`~comosvc.vocoders.Vocoder`'s ``vocode``: ``(B, T, n_mels)`` -> ``(B, T * hop)``."""

    def __init__(self, vocoder):
        super().__init__()
        self.vocoder = vocoder.eval()

    def forward(self, log_mel):
        return self.vocoder.vocode(log_mel)


def example_batch(model, batch: int = 2, frames: int = EXPORT_FRAMES) -> tuple[torch.Tensor, ...]:
    """Random inputs of :class:`OneStepStudent` (the second row half padded), in :data:`STUDENT_INPUTS` order."""
    config = model.config
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[-1, frames // 2 :] = False
    return (
        torch.randn(batch, frames, config.content.whisper_dim, generator=g),
        torch.randn(batch, frames, config.content.contentvec_dim, generator=g),
        200.0 + 100.0 * torch.rand(batch, frames, generator=g),
        torch.rand(batch, frames, generator=g),
        torch.zeros(batch, dtype=torch.long),
        mask,
        torch.randn(batch, frames, config.audio.n_mels, generator=g),
    )


def _export(module: nn.Module, args: tuple, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...], opset: int) -> None:
    """``torch.onnx.export(dynamo=True)`` with every input's batch and frame axes dynamic; checks they stayed so."""
    import onnx  # noqa: F401 - fail early with ImportError if the exporter's dependencies are missing

    dims = {name: {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO} if arg.ndim > 1 else {0: torch.export.Dim.AUTO}
            for name, arg in zip(inputs, args)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(), args, input_names=list(inputs), output_names=list(outputs), opset_version=opset,
            dynamo=True, dynamic_shapes=dims, verbose=False, external_data=False,
        )
    program.save(str(path))
    _check_dynamic(path, inputs)


def _check_dynamic(path: Path, inputs: tuple[str, ...]) -> None:
    """Raise if the exporter fixed the batch or length axis of an input (the graph would take one length only)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for value in graph.input:
        if value.name not in inputs:
            continue
        fixed = [i for i, dim in enumerate(value.type.tensor_type.shape.dim[:2]) if dim.HasField("dim_value")]
        if fixed:
            raise RuntimeError(f"{path.name}: the exporter fixed axis {fixed} of input {value.name!r}; it must stay dynamic")


def export_onnx(model, out: str | Path, vocoder=None, opset: int = OPSET) -> Path:
    """Write the ONNX export of a distilled student into ``out``; returns ``out``.

    Args:
        model: a distilled :class:`~comosvc.models.ComoSVC` (or its Hub id / folder). A teacher is refused.
        vocoder: a BigVGAN :class:`~comosvc.vocoders.Vocoder`, a name :func:`~comosvc.vocoders.load_vocoder`
            takes, or ``None`` for the model's ``inference.vocoder``; Griffin-Lim is not exported
            (the folder then has no ``vocoder.onnx``; the runtime uses Griffin-Lim in torch).
        opset: ONNX opset of both graphs.
    """
    from comosvc.models import ComoSVC
    from comosvc.vocoders import BigVGANVocoder, load_vocoder

    if not isinstance(model, nn.Module):
        model = ComoSVC.from_pretrained(str(model), map_location="cpu")
    if not model.distilled:
        raise ValueError(
            "Only a distilled one-step student can be exported to ONNX; this model is a diffusion teacher "
            "(its ~40-step sampler is not one graph). Distil it first (train/distill.py) and export the student."
        )
    model = model.float().cpu().eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if vocoder is None or isinstance(vocoder, str):
        vocoder = load_vocoder(vocoder or model.config.inference.vocoder, device="cpu", audio=model.config.audio)
    vocoder = vocoder.float().cpu().eval()

    logger.info("exporting the student to %s", out / STUDENT_GRAPH)
    student = OneStepStudent(model)
    _export(student, example_batch(model), out / STUDENT_GRAPH, STUDENT_INPUTS, STUDENT_OUTPUTS, opset)
    graphs = {
        "student": {
            "file": STUDENT_GRAPH,
            "inputs": list(STUDENT_INPUTS),
            "outputs": list(STUDENT_OUTPUTS),
            "steps": 1,
            "sigma": student.sigma,
        }
    }
    if isinstance(vocoder, BigVGANVocoder):
        logger.info("exporting the vocoder to %s", out / VOCODER_GRAPH)
        mel = torch.randn(1, EXPORT_FRAMES, vocoder.n_mels, generator=torch.Generator().manual_seed(0)) - 5.0
        _export(VocoderGraph(vocoder), (mel,), out / VOCODER_GRAPH, VOCODER_INPUTS, VOCODER_OUTPUTS, opset)
        graphs["vocoder"] = {
            "file": VOCODER_GRAPH,
            "inputs": list(VOCODER_INPUTS),
            "outputs": list(VOCODER_OUTPUTS),
            "name": vocoder.name,
            "sample_rate": vocoder.sample_rate,
            "hop_length": vocoder.hop_length,
            "n_mels": vocoder.n_mels,
        }
    else:
        logger.warning(
            "The vocoder %s is not exported (only BigVGAN is); the ONNX runtime will vocode with it in torch.", vocoder.name
        )
        (out / VOCODER_GRAPH).unlink(missing_ok=True)
    _copy_model_files(model, out)
    manifest = {
        "format": FORMAT,
        "comosvc_version": __version__,
        "torch": torch.__version__,
        "opset": opset,
        "graphs": graphs,
        "distilled_from": model.distilled_from,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _copy_model_files(model, out: Path) -> None:
    """config.json, singers.json, stats.json and the model card, as ``save_pretrained`` writes them (no weights)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for name in (MODEL_CONFIG_FILE, SINGERS_FILE, STATS_FILE, CARD_FILE):
            shutil.copyfile(Path(tmp) / name, out / name)


def read_manifest(folder: str | Path) -> dict:
    """The manifest of an export folder; a clear error when ``folder`` is not one."""
    from comosvc.models.folder import read_model_json

    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not an ONNX export (no {MANIFEST_FILE}). Export a distilled student first: "
            f"python -m comosvc export-onnx --model MODEL --out {folder}"
        )
    manifest = read_model_json(path)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ComoSVC ONNX manifest (format {manifest.get('format')!r}, expected {FORMAT!r})")
    return manifest


__all__ = ["EXPORT_FRAMES", "OPSET", "OneStepStudent", "VocoderGraph", "example_batch", "export_onnx", "read_manifest"]
