"""One training setup for teacher training, distillation, the quality check and the tests.

    >>> run = prepare_training(Objective(model, "teacher_loss"), cfg.train, "runs/teacher",
    ...                        data.train_loader, data.val_loader, resume=False,
    ...                        project="teacher", run_config=cfg)
    >>> summary = run.fit(on_validate=lambda step: ..., desc="teacher")
    >>> if run.is_main_process:
    ...     run.save_model(run.final_model())   # OUT/model, with the EMA weights
    >>> run.end()

:func:`prepare_training` does, in order:

1. the resume/start check: starting fresh in a folder that already holds checkpoints
   is refused (so a run is never overwritten by accident), before anything is built;
2. an Accelerator with gradient accumulation and trackers writing to ``OUT/logs``;
3. AdamW over the trainable parameters and a ReduceLROnPlateau on the validation loss;
4. ``accelerator.prepare`` of the objective, the optimiser and the loaders: not of the
   plateau scheduler (that would step it once per process), which is registered for
   checkpointing instead, as is the weight EMA (``tc.ema_halflife_steps`` > 0,
   :mod:`comosvc.training.ema`);
5. resume from the newest complete checkpoint, or seed each process differently and
   start at step 0;
6. ``run_config`` written to ``OUT/config.yaml`` (main process); the trackers of
   ``project``, with that config flattened as hyperparameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration, set_seed
from torch import nn

from comosvc.config import ComoSVCConfig, TrainConfig
from comosvc.training.args import save_run_config, tracker_config
from comosvc.training.checkpoint import TrainerState, find_latest_complete, load_checkpoint
from comosvc.training.ema import WeightEMA
from comosvc.training.loop import LOGS, Objective, TrainSummary, train_loop

logger = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """A prepared training run: what :func:`prepare_training` built, and the loop over it."""

    accelerator: Accelerator
    objective: nn.Module  # prepared (DDP-wrapped on several processes): forward(batch) -> {"loss": ...}
    optimizer: torch.optim.Optimizer  # prepared AdamW
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau  # not prepared; registered for checkpointing
    train_loader: object
    val_loader: object | None
    tc: TrainConfig
    out: Path
    state: TrainerState  # the loop's counters, resumed or fresh; updated in place by fit()
    ema: WeightEMA | None = None  # the EMA of the trained weights (registered for checkpointing)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def model(self) -> nn.Module:
        """The model being trained, unwrapped (the model of an :class:`Objective`)."""
        unwrapped = self.accelerator.unwrap_model(self.objective)
        return unwrapped.model if isinstance(unwrapped, Objective) else unwrapped

    def describe(self) -> str:
        """``"2 process(es), cuda:0, mixed precision bf16, step 0 -> 100000"``, for the scripts' first line."""
        return (
            f"{self.accelerator.num_processes} process(es), {self.accelerator.device}, "
            f"mixed precision {self.accelerator.mixed_precision}, step {self.state.step} -> {self.tc.max_steps}"
        )

    def fit(
        self,
        *,
        after_update: Callable[[int], None] | None = None,
        on_validate: Callable[[int], None] | None = None,
        desc: str = "train",
    ) -> TrainSummary:
        """Train up to ``tc.max_steps`` (see :func:`~comosvc.training.loop.train_loop` for the hooks)."""
        return train_loop(
            self.accelerator, self.objective, self.optimizer, self.plateau, self.train_loader, self.val_loader,
            self.tc, self.out, self.state, after_update=after_update, on_validate=on_validate, desc=desc,
            ema=self.ema,
        )

    def final_model(self) -> nn.Module:
        """The trained model as it is exported: with the EMA weights put in for good, when there is an
        EMA (call once, after :meth:`fit`)."""
        return self.ema.copy_to_model() if self.ema is not None else self.model

    def save_model(self, model, push_to_hub: str | None = None) -> Path:
        """``model.save_pretrained(OUT/model)``, then upload it to the Hub repository ``push_to_hub``
        (if given); returns the folder. Call on the main process only."""
        folder = self.out / "model"
        model.save_pretrained(folder)
        if push_to_hub:
            url = model.push_to_hub(push_to_hub)
            print(f"pushed to {url}")
        return folder

    def end(self) -> None:
        """Close the trackers (every process)."""
        self.accelerator.end_training()


def prepare_training(
    objective: nn.Module,
    tc: TrainConfig,
    out: str | Path,
    train_loader,
    val_loader=None,
    *,
    parameters: Iterable[nn.Parameter | dict] | None = None,
    resume: bool = False,
    project: str | None = None,
    run_config: ComoSVCConfig | None = None,
) -> TrainingRun:
    """Build everything a training run needs, resumed from ``OUT/checkpoints`` with ``resume``.

    ``objective`` is a module whose ``forward(batch)`` returns a dict of scalar tensors
    with a ``"loss"`` entry (e.g. ``Objective(model, "teacher_loss")``); ``parameters``
    are the ones to optimise (default: all of ``objective``; those with
    ``requires_grad=False`` are dropped), or parameter groups (``_build_optimizer``).
    ``val_loader=None``: no validation.
    ``project`` names the tracker run (``OUT/logs/<project>``); ``run_config`` is
    written to ``OUT/config.yaml`` and given to the trackers. See the module docstring
    for the order of the steps. Raises FileExistsError when ``OUT`` holds checkpoints
    and ``resume`` is False.
    """
    out = Path(out)
    checkpoint = checkpoint_to_resume(out, resume)
    accelerator = _make_accelerator(tc, out)
    optimizer = _build_optimizer(objective.parameters() if parameters is None else parameters, tc)
    plateau = _build_plateau(optimizer, tc)
    loaders = [train_loader] if val_loader is None else [train_loader, val_loader]
    objective, optimizer, *loaders = accelerator.prepare(objective, optimizer, *loaders)
    train_loader, val_loader = loaders[0], (loaders[1] if val_loader is not None else None)
    accelerator.register_for_checkpointing(plateau)  # saved and restored with the model and optimiser
    ema = None
    if tc.ema_halflife_steps > 0:
        unwrapped = accelerator.unwrap_model(objective)
        ema = WeightEMA(unwrapped.model if isinstance(unwrapped, Objective) else unwrapped, tc.ema_halflife_steps, tc.ema_rampup)
        accelerator.register_for_checkpointing(ema)
    if checkpoint is None:
        set_seed(tc.seed, device_specific=True)  # processes draw different noise; weights were seeded alike
        state = TrainerState()
    else:
        state = load_checkpoint(accelerator, checkpoint)
        if accelerator.is_main_process:
            logger.info("Resumed from %s at step %d", checkpoint, state.step)
    if run_config is not None and accelerator.is_main_process:
        save_run_config(run_config, out)
    if project is not None:
        accelerator.init_trackers(project, config=tracker_config(run_config) if run_config is not None else None)
    return TrainingRun(accelerator, objective, optimizer, plateau, train_loader, val_loader, tc, out, state, ema)


def checkpoint_to_resume(out: str | Path, resume: bool) -> Path | None:
    """The checkpoint a run in ``OUT`` continues from: the newest complete one with
    ``resume``, None to start at step 0.

    Refuses (FileExistsError) to start fresh in a folder that holds checkpoints;
    ``resume`` without any checkpoint starts at step 0 with a warning.
    """
    latest = find_latest_complete(out)
    if not resume and latest is not None:
        raise FileExistsError(
            f"{out} already holds checkpoints (newest: {latest.name}). Pass --resume to "
            "continue that run, or choose another --out for a new one."
        )
    if resume and latest is None:
        logger.warning("--resume: no complete checkpoint in %s; starting from step 0.", Path(out) / "checkpoints")
    return latest if resume else None


def _make_accelerator(tc: TrainConfig, out: Path) -> Accelerator:
    """An Accelerator with trackers writing to ``OUT/logs`` (``tc.log_with``; "none" disables)."""
    trackers = [name.strip() for name in tc.log_with.split(",") if name.strip()]
    trackers = [name for name in trackers if name.lower() != "none"]
    # sync_with_dataloader=False: the loop runs across epochs, so every window has exactly
    # gradient_accumulation_steps micro-batches (not a short one at each epoch end)
    accumulation = GradientAccumulationPlugin(num_steps=tc.gradient_accumulation_steps, sync_with_dataloader=False)
    return Accelerator(
        mixed_precision=tc.mixed_precision,
        gradient_accumulation_plugin=accumulation,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / LOGS)),
    )


def _build_optimizer(parameters: Iterable[nn.Parameter | dict], tc: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the learning rate, betas and weight decay of the config; ``parameters`` are
    parameters or parameter groups (dicts with ``"params"``, and optionally ``"lr_scale"``: the
    group's lr is ``tc.lr`` times it, and ``"weight_decay"``)."""
    items = list(parameters)
    groups = items if items and all(isinstance(item, dict) for item in items) else [{"params": items}]
    groups = [
        {**{k: v for k, v in group.items() if k != "lr_scale"}, "lr": tc.lr * group.get("lr_scale", 1.0),
         "params": [p for p in group["params"] if p.requires_grad]}
        for group in groups
    ]
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise ValueError("Nothing to train: every parameter has requires_grad=False.")
    return torch.optim.AdamW(groups, lr=tc.lr, betas=tuple(tc.adam_betas), weight_decay=tc.weight_decay)


def _build_plateau(optimizer: torch.optim.Optimizer, tc: TrainConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """ReduceLROnPlateau on the validation loss (factor, patience in validations, min lr)."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=tc.plateau_factor, patience=tc.plateau_patience, min_lr=tc.min_lr
    )


def reset_accelerate_state() -> None:
    """Forget the accelerate state (process and gradient) an earlier run left in this process, so that
    the next :func:`prepare_training` starts as in a fresh one (measurements and tests run several)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


__all__ = ["TrainingRun", "checkpoint_to_resume", "prepare_training", "reset_accelerate_state"]
