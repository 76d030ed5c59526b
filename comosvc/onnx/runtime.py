"""Run an ONNX export (:mod:`comosvc.onnx.export`) with onnxruntime, behind the pipeline's interfaces.

:class:`OnnxStudent` answers what the conversion pipeline asks of an acoustic model
(``config``, ``singers``, ``stats``, ``distilled``, :meth:`~OnnxStudent.resolve_sampler`,
:meth:`~OnnxStudent.sample`); :class:`OnnxVocoder` is a :class:`~comosvc.vocoders.Vocoder`.
So ``ConversionPipeline.from_pretrained(folder, runtime="onnx")`` only swaps objects.

    >>> student, vocoder = load_onnx("student-onnx")
    >>> out = student.sample(batch, noise=[noise])              # the one-step student; out.mel (B, T, n_mels)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from comosvc.config import ComoSVCConfig
from comosvc.files import MODEL_CONFIG_FILE, SINGERS_FILE, STATS_FILE
from comosvc.models.folder import read_model_json
from comosvc.onnx.files import STUDENT_INPUTS
from comosvc.vocoders.base import Vocoder

ONNX_ONLY_ONE_STEP = (
    "The ONNX export holds the one-step student only: use sampler='student' with steps=1 "
    "(--sampler student --steps 1), or the torch runtime (runtime='torch', --runtime torch) for the teacher or more steps."
)

ONNX_ONE_SINGER = (
    "The ONNX export converts to one singer (its speaker input is (B,) ids): "
    "for a mix of singers use the torch runtime (runtime='torch', --runtime torch)."
)


def _session(path: Path, device: str | torch.device = "cpu", threads: int | None = None):
    """An onnxruntime session on ``device`` (CUDA when asked for and available), ``threads`` intra-op threads
    (default: torch's current setting, so ``torch.set_num_threads`` governs both runtimes)."""
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - a missing optional dependency
        raise ImportError("The ONNX runtime needs onnxruntime: pip install onnxruntime") from err
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)


class OnnxStudent:
    """The exported one-step student, sampled like :meth:`comosvc.models.ComoSVC.sample` (``steps=1`` only).

    Outputs are CPU torch tensors. ``distilled_from`` is ``None``: the teacher is not part of an export.
    """

    runtime = "onnx"
    distilled = True
    distilled_from = None

    def __init__(self, session, config: ComoSVCConfig, singers: dict[str, int], stats: dict, name_or_path: str | None = None):
        self.session = session
        self.config = config
        self.singers = dict(singers)
        self.stats = dict(stats)
        self.name_or_path = name_or_path

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def eval(self) -> "OnnxStudent":
        return self

    def resolve_sampler(self, sampler=None, steps: int | None = None):
        """The one-step :class:`~comosvc.models.samplers.StudentSampler`, the only sampler an export runs.

        ``sampler``: ``None``, ``"student"`` (``steps`` 1 or ``None``) or a one-step student
        sampler object; anything else raises :data:`ONNX_ONLY_ONE_STEP`.
        """
        from comosvc.models.samplers import StudentSampler

        if isinstance(sampler, StudentSampler) and steps is None:
            one_step = sampler.steps == 1 and sampler.cd_steps == self.config.model.cd_steps
        else:
            one_step = sampler in (None, "student") and steps in (None, 1)
        if not one_step:
            raise ValueError(ONNX_ONLY_ONE_STEP)
        return sampler if isinstance(sampler, StudentSampler) else StudentSampler(1, self.config.model.cd_steps)

    def noise_draws(self, sampler=None, steps: int | None = None) -> int:
        """Standard-normal draws :meth:`sample` uses: one (the export is one step)."""
        return self.resolve_sampler(sampler, steps).noise_draws

    def sample(
        self,
        batch: dict[str, Any],
        steps: int | None = None,
        sampler=None,
        noise: Sequence[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        **_unused,
    ):
        """Features -> normalised mel ``(B, T, n_mels)`` (:class:`~comosvc.models.comosvc.SampleOutput`).

        ``batch`` holds the model batch (``whisper``, ``contentvec``, ``f0`` Hz, ``energy``,
        ``speaker``, optional ``mask``); ``noise`` one ``(B, T, n_mels)`` standard-normal
        draw (default: drawn from ``generator``). ``sampler``/``steps``: the one-step
        student only (:meth:`resolve_sampler`).
        """
        from comosvc.models.comosvc import CONDITION_KEYS, SampleOutput

        self.resolve_sampler(sampler, steps)
        missing = [key for key in CONDITION_KEYS if key not in batch]
        if missing:
            raise KeyError(f"model batch is missing {missing}; expected {list(CONDITION_KEYS)} (+ optional 'mask')")
        f0 = torch.as_tensor(batch["f0"])
        shape = tuple(f0.shape) + (self.config.audio.n_mels,)
        mask = batch.get("mask")
        mask = torch.ones(f0.shape, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
        if batch.get("speaker_weights") is not None:
            raise ValueError(ONNX_ONE_SINGER)
        speaker = torch.as_tensor(batch["speaker"]).long()
        n_speakers = self.config.model.n_speakers
        if speaker.numel() and (speaker.min() < 0 or speaker.max() >= n_speakers):
            raise ValueError(
                f"speaker ids must be in [0, {n_speakers}); got {speaker.tolist()}. "
                "Look singers up in the model's singer table (model.singers)."
            )
        eps = noise[0] if noise is not None else torch.randn(shape, generator=generator)
        feeds = {
            "whisper": batch["whisper"], "contentvec": batch["contentvec"], "f0": f0, "energy": batch["energy"],
            "speaker": speaker, "mask": mask, "noise": eps,
        }
        arrays = {name: _numpy(feeds[name]) for name in STUDENT_INPUTS}
        mel, mu = self.session.run(None, arrays)
        return SampleOutput(mel=torch.from_numpy(mel), mu=torch.from_numpy(mu), nfe=1, sampler="student", steps=1)


def _numpy(value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype == np.float64 or array.dtype == np.float16:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


class OnnxVocoder(Vocoder):
    """An exported BigVGAN: ``vocoder(log_mel (B, T, n_mels)) -> wav (B, T * hop)`` through onnxruntime (CPU tensors)."""

    def __init__(self, session, name: str, sample_rate: int, hop_length: int, n_mels: int):
        super().__init__(f"{name} (onnx)", sample_rate, hop_length, n_mels)
        self.session = session

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        (wav,) = self.session.run(None, {"log_mel": _numpy(log_mel)})
        return torch.from_numpy(wav)


def load_onnx(folder: str | Path, device: str | torch.device = "cpu", threads: int | None = None) -> tuple[OnnxStudent, OnnxVocoder | None]:
    """The student and (when exported) the vocoder of an export folder; ``None`` for a vocoder that was not exported."""
    from comosvc.onnx.export import read_manifest

    folder = Path(folder)
    manifest = read_manifest(folder)
    meta = read_model_json(folder / MODEL_CONFIG_FILE)
    config = ComoSVCConfig.from_dict(meta["config"], source=str(folder / MODEL_CONFIG_FILE))
    graphs = manifest["graphs"]
    student = OnnxStudent(
        _session(folder / graphs["student"]["file"], device, threads),
        config,
        read_model_json(folder / SINGERS_FILE),
        read_model_json(folder / STATS_FILE),
        name_or_path=str(folder),
    )
    vocoder = None
    if "vocoder" in graphs:
        spec = graphs["vocoder"]
        vocoder = OnnxVocoder(
            _session(folder / spec["file"], device, threads), spec["name"], spec["sample_rate"], spec["hop_length"], spec["n_mels"]
        )
    return student, vocoder


__all__ = ["ONNX_ONE_SINGER", "ONNX_ONLY_ONE_STEP", "OnnxStudent", "OnnxVocoder", "load_onnx"]
