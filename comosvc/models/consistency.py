"""Consistency distillation (Song et al. 2023, CD with a Heun teacher step) and the student sampler.

Distillation: the condition encoder, the prior and the teacher's denoiser network
``phi`` are frozen; the student network ``theta`` and its EMA target ``theta-`` both
start as copies of ``phi``. ``D_phi`` is the denoised estimate of network ``phi``
(:meth:`~comosvc.models.edm.EDM.denoised`). On a grid of ``N = cd_steps`` Karras sigmas ``t_1 < ... < t_N``
(``t_1 = s_min``, ``t_N = s_max``), one training step::

    n ~ U{1 .. N-1},  n' = eps (+ mu)                       (the teacher's noise, edm.py)
    x_{n+1} = y + t_{n+1} n'
    x_n     = one Heun step of D_phi from t_{n+1} to t_n
    loss    = masked mean (D_theta(x_{n+1}, t_{n+1}) - stopgrad D_theta-(x_n, t_n))^2

then, after the optimiser step, :meth:`ConsistencyDistiller.update_ema`:
``theta- <- mu theta- + (1 - mu) theta`` (``mu = ema_decay`` = 0.95). The EMA moves
only when the training loop calls ``update_ema`` (the reference also moved it inside
validation). ``D`` uses the shifted ``c_skip``/``c_out`` so ``D(x, s_min) = x``.

The export keeps the EMA target ``theta-``: the consistency-models paper samples
with it and so does the reference (``denoise_fn_ema``).

Student sampling (multistep consistency sampling, CM paper Algorithm 1;
:class:`~comosvc.models.samplers.StudentSampler`)::

    x = s_max n_0;  x = D(x, s_1)                           (one step: done)
    for each further sigma s_k:  x = D(x + sqrt(s_k^2 - s_min^2) n_k, s_k)

The sigmas ``s_1 = s_max > s_2 > ...`` are those diffusers'
``CMStochasticIterativeScheduler(num_train_timesteps=N)`` picks from the
distillation grid. Its ``step`` re-noises with zero-mean noise it draws itself; with
the prior mean, or the pipeline's position-keyed noise, the re-noising is written
out in the sampler (same formula). Tests check both against the formulas and the stock scheduler.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Literal

import torch
from diffusers import CMStochasticIterativeScheduler
from torch import nn

from comosvc.models.edm import EDM, karras_sigmas
from comosvc.models.masking import masked_mean

if TYPE_CHECKING:
    from comosvc.models.comosvc import ComoSVC


def consistency_scheduler(edm: EDM, train_steps: int) -> CMStochasticIterativeScheduler:
    """diffusers' consistency-model scheduler on our ``train_steps``-point Karras grid (no clipping)."""
    return CMStochasticIterativeScheduler(
        num_train_timesteps=train_steps,
        sigma_min=edm.sigma_min,
        sigma_max=edm.sigma_max,
        sigma_data=edm.sigma_data,
        s_noise=1.0,
        rho=edm.rho,
        clip_denoised=False,
    )


class ConsistencyDistiller(nn.Module):
    """Distils a teacher :class:`~comosvc.models.comosvc.ComoSVC` into a one-step student.

    Takes the teacher's modules (frozen in place, kept in eval mode). ``state_dict`` /
    ``load_state_dict`` hold the teacher, student and target for resuming. Only
    :meth:`trainable_parameters` (the student) go to the optimiser.
    """

    def __init__(self, teacher: "ComoSVC"):
        super().__init__()
        if teacher.distilled:
            raise ValueError("This model is already a distilled student; distil from its teacher (model.distilled_from).")
        self.teacher = teacher.requires_grad_(False).eval()
        self.student = copy.deepcopy(teacher.denoiser).requires_grad_(True)
        self.target = copy.deepcopy(teacher.denoiser).requires_grad_(False).eval()
        self.edm = teacher.edm
        self.ema_decay = teacher.config.model.ema_decay
        self.cd_steps = teacher.config.model.cd_steps
        if self.cd_steps < 2:
            raise ValueError(f"model.cd_steps must be >= 2, got {self.cd_steps}")
        grid = karras_sigmas(self.cd_steps, self.edm.sigma_min, self.edm.sigma_max, self.edm.rho).flip(0)
        self.register_buffer("sigmas", grid.float(), persistent=False)  # ascending: t_1 = s_min .. t_N = s_max

    def train(self, mode: bool = True) -> "ConsistencyDistiller":
        super().train(mode)
        self.teacher.eval()  # frozen parts never use dropout
        self.target.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The student's parameters (what the optimiser updates)."""
        return list(self.student.parameters())

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The consistency-distillation loss of one batch (needs ``mel``). Returns ``{"loss": scalar}``."""
        batch = self.teacher.prepare_batch(batch, need_mel=True)
        y, mask = batch["mel"], batch["mask"]
        edm = self.edm
        with torch.no_grad():
            mu = self.teacher.encode(batch)
            n = torch.randint(0, self.cd_steps - 1, (y.shape[0],), generator=generator, device=y.device)
            t_cur, t_next = self.sigmas[n], self.sigmas[n + 1]
            x_next = y + t_next[:, None, None] * edm.draw_noise(mu, generator)

            def teacher_denoised(x: torch.Tensor, sigma) -> torch.Tensor:
                return edm.denoised(self.teacher.denoiser, x, sigma, mu, mask)

            x_cur = edm.heun_step(teacher_denoised, x_next, t_next, t_cur)
            target = edm.denoised(self.target, x_cur, t_cur, mu, mask)
        prediction = edm.denoised(self.student, x_next, t_next, mu, mask)
        return {"loss": masked_mean((prediction - target) ** 2, mask)}

    @torch.no_grad()
    def update_ema(self) -> None:
        """``theta- <- mu theta- + (1 - mu) theta``. Call once after each optimiser step, never in validation."""
        for target, student in zip(self.target.parameters(), self.student.parameters()):
            target.lerp_(student, 1.0 - self.ema_decay)

    def export(
        self,
        distilled_from: str | None = None,
        distillation_steps: int | None = None,
        denoiser: Literal["target", "student"] = "target",
    ) -> "ComoSVC":
        """An inference model: condition encoder + prior + ONE denoiser network (the EMA target by default).

        ``distilled_from`` (Hub id or folder of the teacher) defaults to where the teacher was loaded from.
        """
        teacher = self.teacher
        source = {"target": self.target, "student": self.student}[denoiser]
        model = type(teacher)(
            config=copy.deepcopy(teacher.config),
            singers=dict(teacher.singers),
            stats=copy.deepcopy(teacher.stats),
            distilled=True,
            distilled_from=distilled_from if distilled_from is not None else teacher.name_or_path,
            training_steps=teacher.training_steps,
            distillation_steps=distillation_steps,
        )
        model.condition_encoder.load_state_dict(teacher.condition_encoder.state_dict())
        model.prior.load_state_dict(teacher.prior.state_dict())
        model.denoiser.load_state_dict(source.state_dict())
        return model.to(self.sigmas.device).eval()


__all__ = ["ConsistencyDistiller", "consistency_scheduler"]
