"""Consistency distillation (Song et al. 2023, with a regression onto the teacher) and the student sampler.

Distillation: the condition encoder, the prior and the teacher's denoiser network
``phi`` are frozen; the student network ``theta`` and its EMA target ``theta-`` both
start as copies of ``phi``. ``D_phi`` is the denoised estimate of network ``phi``
(:meth:`~comosvc.models.edm.EDM.denoised`). On a grid of ``N = cd_steps`` Karras sigmas ``t_1 < ... < t_N``
(``t_1 = s_min``, ``t_N = s_max``), one training step::

    n ~ P(n) on {1 .. N-1},  n' = eps (+ mu)                (the teacher's noise, edm.py)
    x_{n+1} = y + t_{n+1} n'
    x_n     = one teacher step of D_phi from t_{n+1} to t_n (Heun or Euler)
    loss    = lambda(n) d(D_theta(x_{n+1}, t_{n+1}), stopgrad D_theta-(x_n, t_n))
              + w d(D_theta(x_{n+1}, t_{n+1}), teacher's k-step Euler solution from x_{n+1})

then, after the optimiser step, :meth:`ConsistencyDistiller.update_ema`:
``theta- <- mu theta- + (1 - mu) theta`` (``mu = model.ema_decay``; 0: the target is the
student itself, Song & Dhariwal 2023). The switches (``distill`` section,
:class:`~comosvc.config.DistillConfig`; the reference's choice first):

- ``loss``: ``d`` = masked mean square (``l2``) or pseudo-Huber (``pseudo_huber``, :func:`consistency_distance`);
- ``weighting``: ``lambda(n)`` = 1 (``uniform``) or ``1 / (t_{n+1} - t_n)`` (``inverse_gap``);
- ``sigma_sampling``: ``P(n)`` uniform or the mass of ``ln s ~ N(-1.1, 2^2)`` on ``[t_n, t_{n+1}]`` (``lognormal``);
- ``teacher_solver``: ``heun`` or ``euler``;
- ``teacher_regression``: ``w`` (0: off); the solution is what the ``k``-step teacher sampler
  (``k = teacher_regression_steps``, Euler) computes, started from ``x_{n+1}`` at ``t_{n+1}`` instead of
  ``s_max``: ``k`` more network evaluations (its first is the teacher step's).

The EMA moves only when the training loop calls ``update_ema`` (the reference also moved it
inside validation). ``D`` uses the shifted ``c_skip``/``c_out`` so ``D(x, s_min) = x``.

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
from torch import nn

from comosvc.models.edm import karras_sigmas

if TYPE_CHECKING:
    from comosvc.config import DistillConfig
    from comosvc.models.comosvc import ComoSVC


# sigma_sampling="lognormal": ln s ~ N(LOGNORMAL_MEAN, LOGNORMAL_STD^2) (Song & Dhariwal 2023)
LOGNORMAL_MEAN, LOGNORMAL_STD = -1.1, 2.0
PSEUDO_HUBER_C = 0.00054  # c = PSEUDO_HUBER_C sqrt(dim) (Song & Dhariwal 2023)
CHOICES = {  # the distill settings with a fixed set of values
    "loss": ("l2", "pseudo_huber"),
    "weighting": ("uniform", "inverse_gap"),
    "sigma_sampling": ("uniform", "lognormal"),
    "teacher_solver": ("heun", "euler"),
}


def check_distill_settings(settings: "DistillConfig") -> None:
    """One line naming the valid values for a distill setting out of range."""
    for key, valid in CHOICES.items():
        if getattr(settings, key) not in valid:
            raise ValueError(f"distill.{key} must be one of {', '.join(valid)}, got {getattr(settings, key)!r}")
    if not settings.teacher_regression >= 0:
        raise ValueError(f"distill.teacher_regression must be >= 0, got {settings.teacher_regression!r}")
    if settings.teacher_regression_steps < 1:
        raise ValueError(f"distill.teacher_regression_steps must be >= 1, got {settings.teacher_regression_steps!r}")


def consistency_distance(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The batch's distance, clip ``i`` weighted by ``weights[i]`` (default 1). ``"l2"``: the sum of
    ``weights[i]`` x the squares over clip ``i``'s valid frames and bins, over the number of valid
    elements (with unit weights, the masked mean square of the reference). ``"pseudo_huber"``: the mean
    over clips of ``weights[i] (sqrt(|d_i|^2 + c_i^2) - c_i) / sqrt(dim_i)``, ``c_i = 0.00054 sqrt(dim_i)``,
    ``dim_i`` the clip's valid elements (Song & Dhariwal 2023, over ``sqrt(dim_i)`` so that clips of any
    length weigh alike)."""
    valid = mask[..., None].to(prediction.dtype).expand_as(prediction)
    squares = ((prediction - target) ** 2 * valid).flatten(1).sum(1)
    dim = valid.flatten(1).sum(1).clamp(min=1)
    weights = torch.ones_like(squares) if weights is None else weights.to(squares)
    if kind == "l2":
        return (weights * squares).sum() / dim.sum()
    c = PSEUDO_HUBER_C * dim.sqrt()
    return (weights * ((squares + c**2).sqrt() - c) / dim.sqrt()).mean()


class ConsistencyDistiller(nn.Module):
    """Distils a teacher :class:`~comosvc.models.comosvc.ComoSVC` into a one-step student.

    Takes the teacher's modules (frozen in place, kept in eval mode). ``state_dict`` /
    ``load_state_dict`` hold the teacher, student and target for resuming. Only
    :meth:`trainable_parameters` (the student) go to the optimiser.
    """

    def __init__(self, teacher: "ComoSVC", settings: "DistillConfig | None" = None):
        super().__init__()
        self.settings = settings if settings is not None else teacher.config.distill
        check_distill_settings(self.settings)
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

    def interval_probabilities(self) -> torch.Tensor:
        """``P(n)`` for the grid intervals ``[t_n, t_{n+1}]``, ``(cd_steps - 1,)``: uniform, or
        (``sigma_sampling="lognormal"``) the mass of ``ln s ~ N(-1.1, 2^2)`` between their ends."""
        if self.settings.sigma_sampling == "uniform":
            return torch.full((self.cd_steps - 1,), 1.0 / (self.cd_steps - 1), device=self.sigmas.device)
        cdf = torch.special.erf((self.sigmas.double().log() - LOGNORMAL_MEAN) / (LOGNORMAL_STD * 2**0.5))
        mass = cdf[1:] - cdf[:-1]
        return (mass / mass.sum()).float()

    def draw_intervals(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` of each clip, ``(batch,)`` in ``0 .. cd_steps - 2`` (the interval ``[t_n, t_{n+1}]``)."""
        if self.settings.sigma_sampling == "uniform":
            return torch.randint(0, self.cd_steps - 1, (batch,), generator=generator, device=self.sigmas.device)
        return torch.multinomial(self.interval_probabilities(), batch, replacement=True, generator=generator)

    def interval_weights(self) -> torch.Tensor:
        """``lambda(n)``, ``(cd_steps - 1,)``: 1, or (``weighting="inverse_gap"``) ``1 / (t_{n+1} - t_n)``."""
        if self.settings.weighting == "uniform":
            return torch.ones(self.cd_steps - 1, device=self.sigmas.device)
        return 1.0 / (self.sigmas[1:] - self.sigmas[:-1])

    def teacher_step(
        self, denoised_fn, x: torch.Tensor, t_next: torch.Tensor, t_cur: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One step of the teacher's ODE from ``t_next`` down to ``t_cur`` (``settings.teacher_solver``);
        ``denoised``: ``D(x, t_next)`` if already computed."""
        t_next_, t_cur_ = t_next.reshape(-1, 1, 1), t_cur.reshape(-1, 1, 1)
        denoised = denoised_fn(x, t_next) if denoised is None else denoised
        x_euler = x + (t_cur_ - t_next_) * (x - denoised) / t_next_
        if self.settings.teacher_solver == "euler":
            return x_euler
        return self.edm.heun_correction(denoised_fn, x, denoised, x_euler, t_next, t_cur)

    def teacher_solution(
        self, denoised_fn, x: torch.Tensor, sigma: torch.Tensor, steps: int, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The teacher's ODE solution from ``x`` at ``sigma`` ``(B,)`` as the ``steps``-step teacher sampler
        computes it from ``s_max``: Euler on ``steps + 1`` Karras sigmas from ``sigma`` to ``s_min`` and a
        last update to 0, ``steps + 1`` network evaluations (``steps`` if ``denoised = D(x, sigma)`` is given)."""
        ramp = torch.linspace(0, 1, steps + 1, device=x.device, dtype=torch.float64)[None]
        lo, hi = self.edm.sigma_min ** (1 / self.edm.rho), sigma.double()[:, None] ** (1 / self.edm.rho)
        sigmas = torch.cat([(hi + ramp * (lo - hi)) ** self.edm.rho, torch.zeros_like(sigma.double())[:, None]], 1).to(x)
        for k in range(steps + 1):
            s, s_next = sigmas[:, k].reshape(-1, 1, 1), sigmas[:, k + 1].reshape(-1, 1, 1)
            denoised = denoised_fn(x, sigmas[:, k]) if k > 0 or denoised is None else denoised
            x = denoised if k == steps else x + (s_next - s) * (x - denoised) / s
        return x

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The consistency-distillation loss of one batch (needs ``mel``). Returns ``{"loss": scalar, ...}``
        (``consistency`` and ``regression`` when ``teacher_regression`` is on)."""
        batch = self.teacher.prepare_batch(batch, need_mel=True)
        y, mask = batch["mel"], batch["mask"]
        edm, settings = self.edm, self.settings
        with torch.no_grad():
            mu = self.teacher.encode(batch)
            n = self.draw_intervals(y.shape[0], generator)
            t_cur, t_next = self.sigmas[n], self.sigmas[n + 1]
            x_next = y + t_next[:, None, None] * edm.draw_noise(mu, generator)

            def teacher_denoised(x: torch.Tensor, sigma) -> torch.Tensor:
                return edm.denoised(self.teacher.denoiser, x, sigma, mu, mask)

            first = teacher_denoised(x_next, t_next)  # shared by the step and the regression's solution
            x_cur = self.teacher_step(teacher_denoised, x_next, t_next, t_cur, first)
            target = edm.denoised(self.target, x_cur, t_cur, mu, mask)
        prediction = edm.denoised(self.student, x_next, t_next, mu, mask)
        consistency = consistency_distance(prediction, target, mask, settings.loss, self.interval_weights()[n])
        if settings.teacher_regression <= 0:
            return {"loss": consistency}
        with torch.no_grad():
            solution = self.teacher_solution(teacher_denoised, x_next, t_next, settings.teacher_regression_steps, first)
        regression = consistency_distance(prediction, solution, mask, settings.loss)
        loss = consistency + settings.teacher_regression * regression
        return {"loss": loss, "consistency": consistency, "regression": regression}

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


__all__ = ["ConsistencyDistiller", "check_distill_settings", "consistency_distance"]
