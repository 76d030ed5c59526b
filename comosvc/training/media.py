"""Mel pictures and audio samples for the experiment trackers (TensorBoard by default).

At each validation the training scripts synthesise a few validation clips with the
model being trained, denormalise the mels with the dataset's stats, vocode them
(the configured vocoder, Griffin-Lim when none is reachable) and log, per clip:

    samples/<i>/mel     target (top) vs prediction (bottom), one shared colour range
    samples/<i>/audio   the prediction vocoded
    samples/<i>/target  the target mel vocoded with the same vocoder (logged once)

Accelerate's trackers log scalars only; pictures and audio go to each tracker's own
writer here (TensorBoard's ``SummaryWriter``; ``log_images`` of other trackers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator

from comosvc.compare import mel_image, mel_range
from comosvc.config import ComoSVCConfig
from comosvc.features.mel import MelStats

logger = logging.getLogger(__name__)

# (model, batch) -> predicted mel (B, T, n_mels) in the model's [-1, 1] space
SampleFn = Callable[[torch.nn.Module, dict], torch.Tensor]


def mel_comparison_image(target: np.ndarray, prediction: np.ndarray, cfg: ComoSVCConfig, title: str = "") -> np.ndarray:
    """Target above prediction, log mels ``(T, n_mels)`` -> one RGB picture ``(H, W, 3)`` uint8."""
    vmin, vmax = mel_range(target, prediction)
    kwargs = dict(sample_rate=cfg.audio.sample_rate, hop_length=cfg.audio.hop_length, vmin=vmin, vmax=vmax)
    top = mel_image(target, title=f"{title} target".strip(), **kwargs)
    bottom = mel_image(prediction, title=f"{title} prediction".strip(), **kwargs)
    return np.concatenate([top, bottom], axis=0)


def log_images(accelerator: Accelerator, images: dict[str, np.ndarray], step: int) -> None:
    """Log ``(H, W, 3)`` uint8 pictures to every tracker that takes pictures (main process)."""
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for name, image in images.items():
                tracker.tracker.add_image(name, image, global_step=step, dataformats="HWC")
        elif hasattr(tracker, "log_images"):
            try:
                tracker.log_images(images, step=step)
            except Exception as err:  # pragma: no cover - third-party trackers
                logger.warning("Could not log images to %s: %s", tracker.name, err)


def log_audio(accelerator: Accelerator, clips: dict[str, np.ndarray], sample_rate: int, step: int) -> None:
    """Log mono waveforms in [-1, 1] to TensorBoard (and Weights & Biases); other trackers skip them."""
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for name, wav in clips.items():
                tensor = torch.as_tensor(np.clip(wav, -1.0, 1.0), dtype=torch.float32)[None]
                tracker.tracker.add_audio(name, tensor, global_step=step, sample_rate=sample_rate)
        elif tracker.name == "wandb":  # pragma: no cover - optional tracker
            import wandb

            tracker.log({name: wandb.Audio(wav, sample_rate=sample_rate) for name, wav in clips.items()}, step=step)


class SampleLogger:
    """Synthesise fixed validation clips at each validation and log mels and audio.

    ``examples`` is a collated batch (the model batch dict of the conventions, on the
    CPU) of the clips to synthesise, ``datasets`` the dataset name of each clip (to
    pick its mel stats), ``sample_fn(model, batch)`` the sampler (teacher N steps or
    student 1 step). The vocoder is loaded on first use.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        cfg: ComoSVCConfig,
        stats: dict,
        examples: dict[str, torch.Tensor],
        datasets: list[str],
        sample_fn: SampleFn,
        vocoder_name: str | None = None,
    ):
        self.accelerator = accelerator
        self.cfg = cfg
        self.mel_stats = {name: MelStats.from_dict(stats["mel"][name]) for name in set(datasets)}
        self.examples = examples
        self.datasets = datasets
        self.sample_fn = sample_fn
        self.vocoder_name = vocoder_name or cfg.inference.vocoder
        self._vocoder = None
        self._logged_targets = False

    @classmethod
    def of_data(cls, accelerator: Accelerator, cfg: ComoSVCConfig, data, sample_fn: SampleFn) -> "SampleLogger":
        """The logger of the example clips of ``data`` (a :class:`~comosvc.training.data.TrainingData`)."""
        return cls(accelerator, cfg, data.stats, data.examples, data.example_datasets, sample_fn=sample_fn)

    @property
    def vocoder(self):
        if self._vocoder is None:
            from comosvc.vocoders import load_vocoder

            self._vocoder = load_vocoder(
                self.vocoder_name, device=self.accelerator.device, audio=self.cfg.audio, fallback=True
            )
        return self._vocoder

    @torch.no_grad()
    def __call__(self, step: int, model: torch.nn.Module) -> None:
        """Log the samples of ``model`` (unwrapped, any mode; left in eval mode) at ``step``."""
        model.eval()
        device = self.accelerator.device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.examples.items()}
        with self.accelerator.autocast():
            prediction = self.sample_fn(model, batch).float()
        lengths = batch["mask"].sum(dim=1).tolist()
        images, clips, targets = {}, {}, {}
        for i, (length, dataset) in enumerate(zip(lengths, self.datasets)):
            stats = self.mel_stats[dataset]
            target = stats.denormalize(batch["mel"][i, :length].float())
            predicted = stats.denormalize(prediction[i, :length])
            images[f"samples/{i}/mel"] = mel_comparison_image(
                target.cpu().numpy(), predicted.cpu().numpy(), self.cfg, title=dataset
            )
            clips[f"samples/{i}/audio"] = self.vocoder(predicted).cpu().numpy()
            if not self._logged_targets:
                targets[f"samples/{i}/target"] = self.vocoder(target).cpu().numpy()
        log_images(self.accelerator, images, step)
        log_audio(self.accelerator, {**clips, **targets}, self.cfg.audio.sample_rate, step)
        self._logged_targets = True


__all__ = ["SampleLogger", "log_audio", "log_images", "mel_comparison_image"]
