"""Exponential moving average of a model's weights, as EDM trains its networks.

After each optimiser step ``k`` the average moves towards the weights by ``1 - beta``::

    halflife = min(train.ema_halflife_steps, train.ema_rampup * k)     # steps
    beta     = 0.5 ** (1 / halflife)

so a weight's contribution halves every ``halflife`` steps, and early in training (or in
a short run) the average follows the weights closely instead of remembering the random
initialisation. Validation and the exported model use the averaged weights; the
average is part of every training checkpoint.

    >>> ema = WeightEMA(model, halflife_steps=2000, rampup=0.05)
    >>> ema.update(step)              # after each optimiser step
    >>> with ema.swapped_in():        # validate / sample with the averaged weights
    ...     ...
    >>> ema.copy_to_model()           # the final model carries the averaged weights
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class WeightEMA:
    """The EMA of ``model``'s trainable floating-point parameters (buffers are not averaged)."""

    def __init__(self, model: nn.Module, halflife_steps: float, rampup: float = 0.05):
        if halflife_steps <= 0:
            raise ValueError(f"halflife_steps must be positive (0 turns the EMA off upstream), got {halflife_steps}")
        self.model = model
        self.halflife_steps = float(halflife_steps)
        self.rampup = float(rampup)
        self.average = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad and p.is_floating_point()
        }

    def beta(self, step: int) -> float:
        """The decay after optimiser step ``step`` (1-based)."""
        halflife = self.halflife_steps
        if self.rampup > 0:
            halflife = min(halflife, self.rampup * step)
        return 0.5 ** (1.0 / max(halflife, 1e-8))

    @torch.no_grad()
    def update(self, step: int) -> None:
        beta = self.beta(step)
        for name, p in self.model.named_parameters():
            if name in self.average:
                self.average[name].lerp_(p.detach().to(self.average[name].dtype), 1.0 - beta)

    @contextmanager
    def swapped_in(self):
        """The model holds the averaged weights inside the block, its own weights again after it."""
        own = self._swap()
        try:
            yield self.model
        finally:
            self._load(own)

    def copy_to_model(self) -> nn.Module:
        """Put the averaged weights into the model for good (the end of training); returns the model."""
        self._swap()
        return self.model

    @torch.no_grad()
    def _swap(self) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        own = {name: params[name].detach().clone() for name in self.average}
        self._load(self.average)
        return own

    @torch.no_grad()
    def _load(self, weights: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        for name, value in weights.items():
            params[name].copy_(value)

    # accelerate's register_for_checkpointing: saved with the model and optimiser
    def state_dict(self) -> dict:
        return {"halflife_steps": self.halflife_steps, "rampup": self.rampup, "average": dict(self.average)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.average) - set(state["average"])
        if missing:
            raise KeyError(f"the checkpoint's EMA lacks {len(missing)} parameters, e.g. {sorted(missing)[:3]}")
        for name in self.average:
            self.average[name].copy_(state["average"][name])


__all__ = ["WeightEMA"]
