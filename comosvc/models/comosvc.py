"""ComoSVC: the acoustic model (condition encoder, prior, one denoiser) as a Hugging Face Hub model.

A model folder (or Hub repo) holds everything a conversion needs::

    config.json        {"config": ComoSVCConfig.to_dict(), "distilled": ..., "distilled_from": ..., ...}
    model.safetensors  condition encoder, prior and ONE denoiser (teacher or distilled student)
    singers.json       {"<dataset>_<singer>": id}
    stats.json         mel min/max per dataset, F0 stats and durations per singer
    README.md          model card: teacher or student, training data, steps, singers

    >>> model = ComoSVC(config, singers=singers, stats=stats)
    >>> model.teacher_loss(batch)["loss"].backward()
    >>> model.save_pretrained("out/teacher")                    # or push_to_hub("user/name")
    >>> model = ComoSVC.from_pretrained("out/teacher")          # a folder or a Hub id
    >>> out = model.sample(batch)                               # out.mel (B, T, n_mels), out.nfe
    >>> out = model.sample(batch, sampler=TeacherSampler(steps=8, solver="heun"))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from safetensors.torch import save_model
from torch import nn

from comosvc import __version__
from comosvc.config import ComoSVCConfig, ConfigError
from comosvc.files import CARD_FILE, INDEX_FILE, MODEL_CONFIG_FILE, SINGERS_FILE, STATS_FILE, WEIGHTS_FILE
from comosvc.models.condition import ConditionEncoder
from comosvc.models.denoiser import BiDilConv
from comosvc.models.edm import EDM
from comosvc.models.folder import load_weights, read_model_json
from comosvc.models.masking import apply_mask
from comosvc.models.prior import Prior, prior_loss
from comosvc.models.samplers import Sampler, SamplerName, resolve_sampler
from comosvc.models.ssim import ssim_loss
from comosvc.precision import float32_io

# Keys of the model batch (docs/design.md contract); "mel" only for training, "mask" optional (all valid),
# "speaker_weights" only for a mix of singers.
CONDITION_KEYS = ("whisper", "contentvec", "f0", "energy", "speaker")


def _check_speakers(batch: dict[str, torch.Tensor], batch_size: int) -> None:
    """``speaker`` ``(B,)``, or a mix: ``speaker`` ``(B, K)`` ids with ``speaker_weights`` ``(B, K)``."""
    speaker, weights = batch["speaker"], batch.get("speaker_weights")
    if weights is None:
        if tuple(speaker.shape) != (batch_size,):
            raise ValueError(
                f"batch['speaker'] must have shape ({batch_size},) (or ({batch_size}, K) with batch['speaker_weights'] "
                f"for a mix of singers), got {tuple(speaker.shape)}"
            )
    elif speaker.ndim != 2 or speaker.shape[0] != batch_size or weights.shape != speaker.shape:
        raise ValueError(
            f"a mix of singers needs batch['speaker'] and batch['speaker_weights'] of one shape ({batch_size}, K), "
            f"got {tuple(speaker.shape)} and {tuple(weights.shape)}"
        )


# Noise levels at which an eval-mode teacher loss also reports the diffusion loss
# ("diffusion_sigma_<s>"): the validation curves that show whether low-noise denoising is learned.
VALIDATION_SIGMAS = (0.03, 0.1, 0.3, 1.0, 10.0)


@dataclass
class SampleOutput:
    """What :meth:`ComoSVC.sample` returns."""

    mel: torch.Tensor  # (B, T, n_mels) normalised mel in [-1, 1] (roughly), 0 on padded frames
    mu: torch.Tensor  # (B, T, n_mels) the prior's coarse mel
    nfe: int  # evaluations of the denoiser network
    sampler: str  # "teacher" or "student"
    steps: int


class ComoSVC(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="comosvc",
    license="mit",
    tags=["singing-voice-conversion", "comosvc", "audio", "diffusion", "consistency-model"],
    pipeline_tag="audio-to-audio",
):
    """The acoustic model: batch of features -> normalised mel.

    ``denoiser`` is the network ``F`` (:class:`~comosvc.models.denoiser.BiDilConv`);
    ``edm`` wraps it into the preconditioned denoised estimate ``D(x, sigma)``
    (:meth:`~comosvc.models.edm.EDM.denoised`) that both samplers step with.

    Args:
        config: the whole :class:`~comosvc.config.ComoSVCConfig` (sizes in ``config.model``).
        singers: the global singer table ``{"<dataset>_<singer>": id}`` (ids < ``model.n_speakers``).
        stats: feature statistics (``stats.json``, see docs/design.md), used to denormalise mels.
        distilled: True for a consistency-distilled student (sampled with ``sampler="student"``).
        distilled_from: the teacher's Hub id or folder, for side-by-side comparison.
        training_steps / distillation_steps: optimiser steps of the teacher / of the distillation.
        base_model / finetune_minutes: a fine-tuned model's base model (Hub id or folder) and the
            minutes of new audio it was fine-tuned on (train/finetune.py).
    """

    def __init__(
        self,
        config: ComoSVCConfig,
        singers: dict[str, int] | None = None,
        stats: dict | None = None,
        distilled: bool = False,
        distilled_from: str | None = None,
        training_steps: int | None = None,
        distillation_steps: int | None = None,
        base_model: str | None = None,
        finetune_minutes: float | None = None,
    ):
        super().__init__()
        if not isinstance(config, ComoSVCConfig):
            raise TypeError(f"config must be a ComoSVCConfig (see comosvc.config.load_config), got {type(config).__name__}")
        self.config = config
        self.singers = dict(singers or {})
        self.stats = dict(stats or {})
        bad = {name: i for name, i in self.singers.items() if not 0 <= int(i) < config.model.n_speakers}
        if bad:
            raise ValueError(f"singer ids {bad} are outside [0, model.n_speakers={config.model.n_speakers}); raise model.n_speakers")
        self.distilled = distilled
        self.distilled_from = distilled_from
        self.training_steps = training_steps
        self.distillation_steps = distillation_steps
        self.base_model = base_model
        self.finetune_minutes = finetune_minutes
        self.name_or_path: str | None = None  # set by from_pretrained
        self.index = None  # a comosvc.index.TimbreIndex: loaded from the folder's INDEX_FILE, saved with the model

        n_mels = config.audio.n_mels
        self.condition_encoder = ConditionEncoder(config)
        self.prior = Prior(config.model, n_mels)
        self.denoiser = BiDilConv(config.model, n_mels)
        self.edm = EDM(config.model)

    # ------------------------------------------------------------------ inputs

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prepare_batch(self, batch: dict[str, Any], need_mel: bool = False) -> dict[str, torch.Tensor]:
        """Check the batch keys and shapes, move tensors to the model's device, add an all-valid ``mask`` if absent."""
        needed = CONDITION_KEYS + (("mel",) if need_mel else ())
        missing = [key for key in needed if key not in batch]
        if missing:
            raise KeyError(
                f"model batch is missing {missing}; expected {list(needed)} (+ optional 'mask'), "
                "see comosvc.models.comosvc for shapes"
            )
        device = self.device
        optional = ("mask", "speaker_weights")
        out = {key: torch.as_tensor(value).to(device) for key, value in batch.items() if key in needed + optional}
        batch_size, frames = out["f0"].shape
        if "mask" not in out:
            out["mask"] = torch.ones(batch_size, frames, dtype=torch.bool, device=device)
        out["mask"] = out["mask"].bool()
        for key in ("whisper", "contentvec", "energy", "mask") + (("mel",) if need_mel else ()):
            if tuple(out[key].shape[:2]) != (batch_size, frames):
                raise ValueError(
                    f"batch[{key!r}] has shape {tuple(out[key].shape)}, expected ({batch_size}, {frames}, ...) like 'f0': "
                    "every per-frame feature must be at the mel frame rate"
                )
        _check_speakers(out, batch_size)
        if need_mel and out["mel"].shape[-1] != self.config.audio.n_mels:
            raise ValueError(f"batch['mel'] has {out['mel'].shape[-1]} bins, the model uses {self.config.audio.n_mels}")
        return out

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Condition encoder + prior: the coarse mel ``mu`` ``(B, T, n_mels)`` (batch from :meth:`prepare_batch`)."""
        return self.prior(self.condition_encoder(batch), batch["mask"])

    # ------------------------------------------------------------------ training

    def teacher_loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Teacher training losses. Returns ``{"loss", "diffusion", "prior", "ssim"}`` (loss = sum of the others).

        prior: :func:`~comosvc.models.prior.prior_loss` of ``mu`` against the mel (the
        reference's NLL / n_mels); ssim: :func:`~comosvc.models.ssim.ssim_loss` (0 when
        ``model.ssim_loss`` is off); diffusion: the EDM loss of :meth:`EDM.training_loss`.

        In eval mode (validation) also ``diffusion_sigma_<s>`` for ``s`` in
        :data:`VALIDATION_SIGMAS`: the same loss at fixed noise levels, not part of ``loss``.
        It stays near 1 at low sigma until the denoiser learns to remove small noise, and
        until then the multi-step teacher's samples end noisy.
        """
        if self.distilled:
            raise ValueError("teacher_loss trains a teacher; this model is a distilled student")
        batch = self.prepare_batch(batch, need_mel=True)
        mel, mask = batch["mel"], batch["mask"]
        mu = self.encode(batch)
        prior = prior_loss(mu, mel, mask)
        ssim = ssim_loss(mu, mel, mask) if self.config.model.ssim_loss else torch.zeros_like(prior)
        diffusion = self.edm.training_loss(self.denoiser, mel, mu, mask, generator)
        losses = {"loss": diffusion + prior + ssim, "diffusion": diffusion, "prior": prior, "ssim": ssim}
        if not self.training:
            for sigma in VALIDATION_SIGMAS:
                losses[f"diffusion_sigma_{sigma:g}"] = self.edm.loss_at(self.denoiser, mel, mu, mask, sigma, generator)
        return losses

    # ------------------------------------------------------------------ inference

    def noise_draws(self, sampler: Sampler | SamplerName | None = None, steps: int | None = None) -> int:
        """How many standard-normal ``(B, T, n_mels)`` draws :meth:`sample` uses (length of its ``noise``):
        ``sampler.noise_draws`` (a name and ``steps`` are resolved as :meth:`sample` resolves them)."""
        return resolve_sampler(sampler, steps, self.config, self.distilled, teacher_source=self.distilled_from).noise_draws

    @torch.no_grad()
    def sample(
        self,
        batch: dict[str, Any],
        steps: int | None = None,
        sampler: Sampler | SamplerName | None = None,
        solver: Literal["euler", "heun"] | None = None,
        generator: torch.Generator | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        progress: bool = False,
    ) -> SampleOutput:
        """Features -> normalised mel ``(B, T, n_mels)``.

        ``sampler``: a :class:`~comosvc.models.samplers.TeacherSampler` or
        :class:`~comosvc.models.samplers.StudentSampler` (it carries its steps), or a name with
        ``steps`` and ``solver``, resolved once here (:func:`~comosvc.models.samplers.resolve_sampler`):
        default ``"student"`` for a distilled model, else ``"teacher"``; ``steps`` default
        ``inference.teacher_steps`` or ``inference.student_steps``, ``solver`` (teacher only)
        ``model.teacher_solver``. Noise comes from ``generator``, or from ``noise``
        (``sampler.noise_draws`` standard-normal tensors, :meth:`noise_draws`).
        """
        sampler = resolve_sampler(
            sampler, steps, self.config, self.distilled, solver=solver, teacher_source=self.distilled_from
        )
        batch = self.prepare_batch(batch)
        mask = batch["mask"]
        # a half-precision model: the sampler's arithmetic stays float32, only the networks run in half
        mu = self.encode(batch).float()
        mel, nfe = sampler.sample(self.edm, float32_io(self.denoiser), mu, mask, generator, noise, progress)
        return SampleOutput(mel=apply_mask(mel, mask), mu=mu, nfe=nfe, sampler=sampler.name, steps=sampler.steps)

    # ------------------------------------------------------------------ sizes and card

    def clip_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameter groups whose gradient norms are clipped separately (``train.grad_clip_mode:
        per_module``): the prior and the denoiser, as the reference does; the condition encoder is
        never clipped."""
        return {"prior": list(self.prior.parameters()), "denoiser": list(self.denoiser.parameters())}

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts per part and in total."""
        parts = {name: sum(p.numel() for p in getattr(self, name).parameters()) for name in ("condition_encoder", "prior", "denoiser")}
        return {**parts, "total": sum(parts.values())}

    def datasets(self) -> list[str]:
        """Training datasets, from the mel statistics."""
        return sorted(self.stats.get("mel", {}))

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        kind = "consistency-distilled student (1-step)" if self.distilled else "diffusion teacher (EDM, multi-step)"
        durations = self.stats.get("durations", {})
        hours = {
            dataset: sum(s for key, s in durations.items() if key.startswith(f"{dataset}_")) / 3600 for dataset in self.datasets()
        }
        data_lines = "\n".join(f"- {d}: {hours[d]:.2f} h" for d in self.datasets()) or "- (not recorded)"
        singer_lines = "\n".join(f"- `{name}` (id {i})" for name, i in sorted(self.singers.items(), key=lambda kv: kv[1]))
        counts = {part: _millions(n) for part, n in self.num_parameters().items()}
        facts = [
            f"- Kind: **{kind}**",
            f"- Distilled from: `{self.distilled_from}`" if self.distilled else None,
            f"- Teacher training steps: {self.training_steps if self.training_steps is not None else 'not recorded'}",
            f"- Distillation steps: {self.distillation_steps if self.distillation_steps is not None else 'not recorded'}"
            if self.distilled
            else None,
            f"- Fine-tuned from `{self.base_model}` on {self.finetune_minutes:.1f} min of new audio"
            if self.base_model is not None and self.finetune_minutes is not None
            else None,
            f"- Parameters: {counts['total']} (condition encoder {counts['condition_encoder']}, "
            f"prior {counts['prior']}, denoiser {counts['denoiser']})",
            f"- Mel: {self.config.audio.sample_rate} Hz, {self.config.audio.n_mels} bins, hop {self.config.audio.hop_length} "
            f"(default vocoder `inference.vocoder`: `{self.config.inference.vocoder}`)",
            f"- comosvc version: {__version__}",
        ]
        usage_sampler = "student" if self.distilled else "teacher"
        body = "\n".join(
            [
                f"# ComoSVC {kind}",
                "",
                "Singing voice conversion acoustic model (CoMoSVC, arXiv 2401.01792): content, F0, energy and a "
                "singer embedding in, a log mel spectrogram out (vocode it with a vocoder trained on these mel settings).",
                "",
                *[line for line in facts if line],
                "",
                "## Training data",
                "",
                data_lines,
                "",
                f"## Singers ({len(self.singers)})",
                "",
                singer_lines or "- (none)",
                "",
                "## Usage",
                "",
                "```python",
                "from comosvc.models import ComoSVC",
                f'model = ComoSVC.from_pretrained("{self.name_or_path or "<this repo>"}")',
                f'mel = model.sample(batch, sampler="{usage_sampler}").mel  # (B, T, n_mels), normalised',
                "```",
                "",
            ]
        )
        card_data = ModelCardData(
            library_name="comosvc",
            license="mit",
            tags=sorted(set(self._hub_mixin_info.model_card_data.tags or []) | {"teacher" if not self.distilled else "distilled"}),
            pipeline_tag="audio-to-audio",
        )
        return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")

    # ------------------------------------------------------------------ Hub save / load

    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        meta = {
            "model_type": "comosvc",
            "comosvc_version": __version__,
            "distilled": self.distilled,
            "distilled_from": self.distilled_from,
            "training_steps": self.training_steps,
            "distillation_steps": self.distillation_steps,
            **({"base_model": self.base_model, "finetune_minutes": self.finetune_minutes} if self.base_model else {}),
            "config": self.config.to_dict(),
        }
        (save_directory / MODEL_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        (save_directory / SINGERS_FILE).write_text(json.dumps(self.singers, indent=2, ensure_ascii=False))
        (save_directory / STATS_FILE).write_text(json.dumps(self.stats, indent=2, ensure_ascii=False))
        save_model(self, str(save_directory / WEIGHTS_FILE))
        self.generate_model_card().save(save_directory / CARD_FILE)  # refreshed on every save
        if self.index is not None:
            self.index.save(save_directory / INDEX_FILE)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "ComoSVC":
        """Load a model from a folder written by :meth:`save_pretrained` or a Hub model id.

        Keyword arguments: ``revision``, ``cache_dir``, ``force_download``, ``local_files_only``,
        ``token`` (Hub), ``map_location`` (default "cpu"), ``strict`` (default True).
        """
        folder = Path(pretrained_model_name_or_path)
        if (folder / MODEL_CONFIG_FILE).is_file():  # the Hub mixin parses it first, with json's bare message
            read_model_json(folder / MODEL_CONFIG_FILE)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except json.JSONDecodeError as err:  # a downloaded config.json
            raise ConfigError(
                f"{pretrained_model_name_or_path}/{MODEL_CONFIG_FILE} is not valid JSON ({err}). The model is damaged: "
                "re-save it with ComoSVC.save_pretrained, or download it again (force_download=True)."
            ) from err
        except (HFValidationError, HfHubHTTPError, LocalEntryNotFoundError) as err:
            raise FileNotFoundError(
                f"{pretrained_model_name_or_path} is not a model folder and could not be fetched from the Hugging "
                f"Face Hub ({err}). Pass a folder written by ComoSVC.save_pretrained or a Hub model id; check the "
                "spelling, your login (huggingface-cli login) for private repos, and the network / HF_HUB_OFFLINE."
            ) from err

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str = "cpu",
        strict: bool = True,
        **_config_kwargs,
    ) -> "ComoSVC":
        # The mixin also passes config.json's top-level values; they are re-read here so the
        # nested config is rebuilt (and validated) by ComoSVCConfig.from_dict.
        folder = Path(model_id)
        if not folder.is_dir():
            folder = Path(
                snapshot_download(
                    repo_id=model_id,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    local_files_only=local_files_only,
                    token=token,
                    allow_patterns=[MODEL_CONFIG_FILE, WEIGHTS_FILE, SINGERS_FILE, STATS_FILE, CARD_FILE, INDEX_FILE],
                )
            )
        missing = [name for name in (MODEL_CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{model_id} is not a ComoSVC model: {', '.join(missing)} missing. "
                "Model folders are written by ComoSVC.save_pretrained (or train/train.py, train/distill.py)."
            )
        meta = read_model_json(folder / MODEL_CONFIG_FILE)
        if not isinstance(meta, dict) or "config" not in meta:
            raise ConfigError(f"{folder / MODEL_CONFIG_FILE} has no 'config' section; it was not written by ComoSVC.save_pretrained")
        read_json = lambda name: read_model_json(folder / name) if (folder / name).is_file() else {}  # noqa: E731
        model = cls(
            config=ComoSVCConfig.from_dict(_with_architecture_of_its_time(meta["config"]), source=str(folder / MODEL_CONFIG_FILE)),
            singers=read_json(SINGERS_FILE),
            stats=read_json(STATS_FILE),
            distilled=bool(meta.get("distilled", False)),
            distilled_from=meta.get("distilled_from"),
            training_steps=meta.get("training_steps"),
            distillation_steps=meta.get("distillation_steps"),
            base_model=meta.get("base_model"),
            finetune_minutes=meta.get("finetune_minutes"),
        )
        load_weights(model, folder / WEIGHTS_FILE, strict=strict, device=map_location)
        if (folder / INDEX_FILE).is_file():
            from comosvc.index import TimbreIndex

            content = model.config.content
            model.index = TimbreIndex.load(folder / INDEX_FILE, dims={"whisper": content.whisper_dim, "contentvec": content.contentvec_dim})
        model.name_or_path = str(model_id)
        return model.to(map_location).eval()


# Architecture keys added after models were first saved, with the values that rebuild those older
# models. A saved config.json holds every key of its version, so a missing key means an older model,
# whatever today's default is.
ARCHITECTURE_OF_OLDER_MODELS = {"denoiser_linear_paths": False}


def _with_architecture_of_its_time(config: dict) -> dict:
    """A saved config with the :data:`ARCHITECTURE_OF_OLDER_MODELS` keys it lacks filled in."""
    if not isinstance(config.get("model"), dict):
        return config
    return {**config, "model": {**ARCHITECTURE_OF_OLDER_MODELS, **config["model"]}}


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


__all__ = ["CONDITION_KEYS", "ComoSVC", "SampleOutput"]
