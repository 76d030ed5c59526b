"""The training loop shared by teacher training and consistency distillation.

Set up a run with :func:`comosvc.training.setup.prepare_training` and call its
``fit()``, which runs :func:`train_loop`.

The loop knows nothing about ComoSVC: it optimises any module whose ``forward(batch)``
returns a dict of scalar tensors with a ``"loss"`` entry (wrap a model method with
:class:`Objective`). Per optimiser step it does, in order:

1. forward on ``gradient_accumulation_steps`` micro-batches, backward each finite loss;
2. if any loss (on any process) was non-finite: skip the update with a warning;
   ``max_nonfinite_steps`` skips in a row save a checkpoint and stop with
   :class:`NonFiniteLossError`;
3. otherwise clip the gradient norms (``grad_clip``; per clip group of the model with
   ``grad_clip_mode: per_module``, see :func:`clip_groups`), AdamW step, the weight
   EMA (``ema_halflife_steps``), ``after_update(step)`` (the target EMA of
   distillation: training steps only);
4. every ``log_every`` steps log losses, learning rate and steps/s to the trackers;
   every ``validate_every`` steps compute the validation loss (``model.eval()``, no
   gradients, a fixed seed, no EMA update; with the EMA weights swapped in), step
   ``ReduceLROnPlateau`` with it and call ``on_validate`` (mel images, audio); every
   ``checkpoint_every`` steps save a crash-safe checkpoint
   (:mod:`comosvc.training.checkpoint`).
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from comosvc.config import TrainConfig
from comosvc.training.checkpoint import TrainerState, save_checkpoint

logger = logging.getLogger(__name__)

LOGS = "logs"  # tracker folder under OUT: `tensorboard --logdir OUT/logs`


class NonFiniteLossError(RuntimeError):
    """Training stopped after ``max_nonfinite_steps`` non-finite losses in a row."""


class Objective(nn.Module):
    """Expose one loss method of a model as ``forward`` so DDP synchronises its gradients.

    ``Objective(model, "teacher_loss")(batch)`` is ``model.teacher_loss(batch)``;
    the wrapped model is ``objective.model``.
    """

    def __init__(self, model: nn.Module, method: str):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return getattr(self.model, self.method)(batch)


@dataclass
class TrainSummary:
    """What a call of :func:`train_loop` did."""

    state: TrainerState
    steps_run: int  # optimiser updates in this call (after a resume: the remaining ones)
    train_seconds: float  # wall time in training steps, without validation and checkpoints
    checkpoint: Path | None  # the last checkpoint written

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.train_seconds if self.train_seconds > 0 else float("nan")


# --------------------------------------------------------------------------- loop


def train_loop(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    plateau,
    train_loader,
    val_loader,
    tc: TrainConfig,
    out: str | Path,
    state: TrainerState,
    *,
    after_update: Callable[[int], None] | None = None,
    on_validate: Callable[[int], None] | None = None,
    desc: str = "train",
    ema=None,
) -> TrainSummary:
    """Optimise ``model`` (prepared; ``forward(batch) -> {"loss": ..., ...}``) up to ``tc.max_steps``.

    Called by :meth:`comosvc.training.setup.TrainingRun.fit`, which passes what
    :func:`~comosvc.training.setup.prepare_training` built; ``state`` is updated in place.
    ``after_update(step)`` runs after each optimiser update, ``on_validate(step)``
    on the main process after each validation (it must not use collectives);
    ``ema`` (a :class:`~comosvc.training.ema.WeightEMA`) moves after each update and is
    swapped in for validation.
    Raises :class:`NonFiniteLossError` after ``tc.max_nonfinite_steps`` skipped
    steps in a row, having saved a checkpoint first.
    """
    out = Path(out)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    clipping = clip_groups(accelerator.unwrap_model(model), params, tc.grad_clip_mode)
    batches = _forever(train_loader, start_epoch=_epoch_of(state.step, tc, train_loader))
    bar = tqdm(
        total=tc.max_steps, initial=state.step, desc=desc, unit="step",
        disable=not accelerator.is_main_process, dynamic_ncols=True,
    )
    window, losses = _Window(), _LossLog()
    train_seconds, steps_run, last_checkpoint = 0.0, 0, None
    step_start = time.perf_counter()
    model.train()
    while state.step < tc.max_steps:
        # 1. one micro-batch; at the end of an accumulation window, the clipped optimiser step
        update = _micro_batch(accelerator, model, optimizer, next(batches), window, clipping, tc)
        if update is None:
            continue  # more micro-batches in this accumulation window
        loss, grad_norm = update
        if not window.ok:  # skip this update (raises after too many in a row)
            _skip_update(accelerator, out, state, tc, loss, bar)
            window = _Window()
            continue
        # 2. the update counts: step, EMA, the caller's hook
        state.step += 1
        state.nonfinite_in_a_row = 0
        steps_run += 1
        losses.add(window.terms)
        window = _Window()
        if ema is not None:
            ema.update(state.step)
        if after_update is not None:
            after_update(state.step)
        train_seconds += time.perf_counter() - step_start
        bar.update(1)
        # 3. log, validate, checkpoint when due
        last_step = state.step == tc.max_steps
        if state.step % tc.log_every == 0 or last_step:
            losses.write(accelerator, optimizer, state.step, train_seconds, grad_norm, bar)
        if state.step % tc.validate_every == 0 or last_step:
            _validate(accelerator, model, val_loader, plateau, state, tc.seed, ema, on_validate, bar)
        if state.step % tc.checkpoint_every == 0 or last_step:
            last_checkpoint = save_checkpoint(accelerator, out, state, tc.keep_checkpoints)
        step_start = time.perf_counter()  # validation and checkpoints do not count as training time

    bar.close()
    return TrainSummary(state, steps_run, train_seconds, last_checkpoint)


@dataclass
class _Window:
    """The loss terms of the current accumulation window (each over the window's micro-batches), and
    whether every loss and gradient in it was finite."""

    terms: dict[str, float] = field(default_factory=dict)
    ok: bool = True


def _micro_batch(accelerator: Accelerator, model: nn.Module, optimizer, batch, window: _Window, clipping, tc: TrainConfig):
    """Forward and backward of one micro-batch into ``window``; at the end of the accumulation window
    the gradients clipped (``clipping`` = :func:`clip_groups`) and the optimiser step when all was finite.

    Returns ``(loss, grad_norm)`` at the end of a window (``grad_norm`` None when the window was not
    finite), ``None`` while the window has more micro-batches.
    """
    clipped, unclipped = clipping
    with accelerator.accumulate(model):
        terms = model(batch)
        loss = terms["loss"]
        if _all_finite(accelerator, loss):
            accelerator.backward(loss)
            for name, value in terms.items():
                window.terms[name] = window.terms.get(name, 0.0) + _scalar(value) / tc.gradient_accumulation_steps
        else:
            window.ok = False
        if not accelerator.sync_gradients:
            return None
        grad_norm = None
        if window.ok:
            grad_norm = clip_gradients(accelerator, clipped, unclipped, tc.grad_clip)
            if accelerator.mixed_precision != "fp16" and not torch.isfinite(grad_norm).all():
                window.ok = False  # (fp16: the grad scaler skips inf gradients itself)
        if window.ok:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm


def _skip_update(accelerator: Accelerator, out: Path, state: TrainerState, tc: TrainConfig, loss, bar) -> None:
    """Count a skipped (non-finite) update; after ``tc.max_nonfinite_steps`` in a row, save a checkpoint
    and raise :class:`NonFiniteLossError`."""
    state.nonfinite_in_a_row += 1
    state.nonfinite_total += 1
    logger.warning(
        "Step %d: non-finite loss or gradient (loss %s); skipped the update (%d in a row, stop at %d).",
        state.step + 1, _scalar(loss), state.nonfinite_in_a_row, tc.max_nonfinite_steps,
    )
    if state.nonfinite_in_a_row >= tc.max_nonfinite_steps:
        checkpoint = save_checkpoint(accelerator, out, state, tc.keep_checkpoints)
        bar.close()
        accelerator.end_training()
        raise NonFiniteLossError(
            f"Stopped: {state.nonfinite_in_a_row} non-finite losses in a row at step {state.step}. "
            f"The last good state is saved in {checkpoint}. Lower the learning rate (--lr), "
            "use --mixed_precision bf16 or no instead of fp16, or check the data for NaN/inf "
            "features; then continue with --resume."
        )


@dataclass
class _LossLog:
    """The loss terms summed over the updates since the last log line, and the training seconds then."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds_at_log: float = 0.0

    def add(self, terms: dict[str, float]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1

    def write(self, accelerator: Accelerator, optimizer, step: int, train_seconds: float, grad_norm, bar) -> None:
        """Log the mean terms (over processes), the learning rate, steps per second and the last gradient norm."""
        means = _reduce_means(accelerator, {k: v / self.steps for k, v in self.sums.items()})
        seconds = train_seconds - self.seconds_at_log
        steps_per_second = self.steps / seconds if seconds > 0 else float("nan")
        values = {f"train/{name}": value for name, value in means.items()}
        values["train/lr"] = optimizer.param_groups[0]["lr"]
        values["train/steps_per_second"] = steps_per_second
        if grad_norm is not None:
            values["train/grad_norm"] = float(grad_norm)
        accelerator.log(values, step=step)
        bar.set_postfix(loss=f"{means.get('loss', float('nan')):.4g}", steps_s=f"{steps_per_second:.2f}")
        self.sums, self.steps, self.seconds_at_log = {}, 0, train_seconds


def _validate(accelerator: Accelerator, model: nn.Module, val_loader, plateau, state: TrainerState, seed: int,
              ema, on_validate: Callable[[int], None] | None, bar) -> None:
    """Validate (with the EMA weights swapped in), step the plateau schedule, keep the best loss, log."""
    with ema.swapped_in() if ema is not None else nullcontext():
        val = evaluate(accelerator, model, val_loader, seed=seed)
        if on_validate is not None and accelerator.is_main_process:
            on_validate(state.step)
    if val:
        plateau.step(val["loss"])
        if state.best_val_loss is None or val["loss"] < state.best_val_loss:
            state.best_val_loss = val["loss"]
        accelerator.log({f"val/{name}": value for name, value in val.items()}, step=state.step)
        if accelerator.is_main_process:
            bar.write(f"step {state.step}: validation loss {val['loss']:.4g}")
    model.train()
    accelerator.wait_for_everyone()


def clip_groups(model: nn.Module, params: list[nn.Parameter], mode: str) -> tuple[list[list[nn.Parameter]], list[nn.Parameter]]:
    """``(groups, rest)``: the parameter groups whose gradient norms are clipped one by one, and
    the trainable parameters that are never clipped.

    ``mode="joint"``: one group of everything. ``mode="per_module"``: the groups of the
    trained model's ``clip_groups()`` (the teacher: prior, denoiser; the condition encoder
    is left unclipped, as in the reference), or one group when the model has none.
    """
    inner = model.model if isinstance(model, Objective) else model
    if mode == "joint" or not hasattr(inner, "clip_groups"):
        return [params], []
    if mode != "per_module":
        raise ValueError(f"train.grad_clip_mode must be 'per_module' or 'joint', got {mode!r}")
    trainable = {id(p) for p in params}
    groups = [[p for p in group if id(p) in trainable] for group in inner.clip_groups().values()]
    grouped = {id(p) for group in groups for p in group}
    return [group for group in groups if group], [p for p in params if id(p) not in grouped]


def clip_gradients(
    accelerator: Accelerator, groups: list[list[nn.Parameter]], rest: list[nn.Parameter], max_norm: float
) -> torch.Tensor:
    """Clip each group's gradient norm at ``max_norm``; returns the norm of all the gradients
    (``groups`` and ``rest``) before clipping."""
    if len(groups) == 1 and not rest:
        return accelerator.clip_grad_norm_(groups[0], max_norm)
    accelerator.unscale_gradients()  # once, before any norm (fp16)
    norms = [torch.nn.utils.clip_grad_norm_(group, max_norm) for group in groups]
    grads = [p.grad for p in rest if p.grad is not None]
    if grads:
        norms.append(torch.nn.utils.get_total_norm(grads))
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


@torch.no_grad()
def evaluate(
    accelerator: Accelerator, model: nn.Module, loader, seed: int, max_batches: int | None = None
) -> dict[str, float]:
    """Mean of each loss term over the validation loader, averaged over processes.

    Runs in ``eval()`` mode without gradients and under a fixed seed (the noise levels
    drawn by the loss are then the same at every validation, so the curve is
    comparable), restoring the training RNG afterwards. Empty loader: ``{}``.
    """
    if loader is None:
        return {}
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            terms = model(batch)
            for name, value in terms.items():
                value = torch.as_tensor(value, device=accelerator.device, dtype=torch.float32).detach()
                sums[name] = sums.get(name, 0.0) + value
            count += 1
    if count == 0:
        return {}
    return _reduce_means(accelerator, {name: value / count for name, value in sums.items()})


# --------------------------------------------------------------------------- helpers


def _epoch_of(step: int, tc: TrainConfig, loader) -> int:
    """The epoch a run is in after ``step`` updates (a resumed run gets a fresh data order, not epoch 0's)."""
    try:
        return step * tc.gradient_accumulation_steps // max(1, len(loader))
    except TypeError:  # a loader without a length
        return 0


def _forever(loader, start_epoch: int = 0) -> Iterator[Any]:
    """Iterate a data loader endlessly, one epoch after another (reseeding the sampler per epoch)."""
    epoch = start_epoch
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("The training data loader is empty: is the train split of --data empty?")
        epoch += 1


def _scalar(value) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def _all_finite(accelerator: Accelerator, loss: torch.Tensor) -> bool:
    """True when the loss is finite on every process (so all processes skip or step together)."""
    flag = torch.isfinite(loss.detach()).all().float().reshape(1).to(accelerator.device)
    if accelerator.num_processes > 1:
        flag = accelerator.gather(flag).min()
    return bool(flag.item() > 0)


def _reduce_means(accelerator: Accelerator, values: dict[str, Any]) -> dict[str, float]:
    """Average scalar values over processes; returns Python floats."""
    if not values:
        return {}
    names = sorted(values)
    stacked = torch.stack(
        [torch.as_tensor(values[name], dtype=torch.float32, device=accelerator.device) for name in names]
    )
    if accelerator.num_processes > 1:
        stacked = accelerator.reduce(stacked, reduction="mean")
    return {name: float(value) for name, value in zip(names, stacked.tolist())}


__all__ = [
    "LOGS",
    "NonFiniteLossError",
    "Objective",
    "TrainSummary",
    "clip_gradients",
    "clip_groups",
    "evaluate",
    "train_loop",
]
