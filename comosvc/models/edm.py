"""EDM (Karras et al. 2022) for the teacher: preconditioning, training loss, ODE steps, scheduler.

Preconditioning with the *shifted* skip and output scalings of consistency models
(docs/design.md; ``s`` is the noise level sigma, ``sd`` = sigma_data)::

    c_skip  = sd^2 / ((s - s_min)^2 + sd^2)        c_out   = (s - s_min) sd / sqrt(s^2 + sd^2)
    c_in    = 1 / sqrt(s^2 + sd^2)                  c_noise = ln(s) / 4
    D(x, s) = c_skip x + c_out F(c_in x, c_noise, mu)

Names: the *denoiser* is the network ``F`` (:class:`~comosvc.models.denoiser.BiDilConv`,
``ComoSVC.denoiser``); ``D(x, s)`` is the *denoised estimate* built from it by the
preconditioning above (:meth:`EDM.denoised`). ``D(x, s_min) = x`` exactly (the
consistency boundary condition). The same ``D`` serves the teacher and the
consistency student.

Noise: with ``noise_prior_mean`` (the reference, after Grad-TTS) a "noise draw" is
``n = eps + mu`` with ``eps ~ N(0, I)``; otherwise ``n = eps``. A clean mel ``y`` at
level ``s`` is ``y + s n``; sampling starts at ``s_max n``. Along ``x_s = y + s n`` the
probability-flow ODE is ``dx/ds = (x - D(x, s)) / s`` in both cases.

Teacher sampler (:class:`~comosvc.models.samplers.TeacherSampler`, which runs on the
parts here): ``steps + 1`` Karras sigmas from ``s_max`` to ``s_min`` (rho 7) and a
final 0, i.e. ``steps + 1`` Euler updates (the reference's "40 steps" are 41 network
evaluations); Heun adds a corrector on every update except the last (to 0). The
sigmas, the input scaling ``c_in`` and the Euler update come from diffusers'
``EDMEulerScheduler``; its output scaling is the unshifted EDM one, so the
scheduler receives our ``D`` (the denoised estimate) as ``pred_original_sample``. diffusers' Heun scheduler
derives its sigmas from a discrete beta schedule, so the Heun corrector is written
out here on the same sigmas. Tests compare both solvers with the formulas above.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import EDMEulerScheduler

from comosvc.config import ModelConfig
from comosvc.models.masking import masked_mean

# F(x_in, c_noise, mu, mask) -> (B, T, n_mels): the denoiser network (BiDilConv).
Network = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# D(x, sigma) -> (B, T, n_mels): the preconditioned denoised estimate, network, mu and mask bound.
DenoisedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """``n`` noise levels from ``sigma_max`` down to ``sigma_min`` (float64), Karras et al. eq. 5."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def _per_example(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A scalar or ``(B,)`` sigma as ``(B, 1, 1)`` in ``like``'s dtype/device."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return sigma.reshape(-1, 1, 1).expand(like.shape[0], 1, 1)


class EDM:
    """The EDM constants of a :class:`~comosvc.config.ModelConfig` and what is computed from them.

    Tensors: ``x``, ``y``, ``mu`` ``(B, T, n_mels)`` normalised mel; ``mask`` ``(B, T)`` bool;
    ``sigma`` a float or ``(B,)``.
    """

    def __init__(self, config: ModelConfig):
        self.sigma_data = config.sigma_data
        self.sigma_min = config.sigma_min
        self.sigma_max = config.sigma_max
        self.rho = config.rho
        self.p_mean = config.p_mean
        self.p_std = config.p_std
        self.noise_prior_mean = config.noise_prior_mean

    # ------------------------------------------------------------------ preconditioning

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c_skip, c_out, c_in, c_noise)`` for noise levels ``sigma`` (any shape)."""
        sd, shifted = self.sigma_data, sigma - self.sigma_min
        c_skip = sd**2 / (shifted**2 + sd**2)
        c_out = shifted * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def precondition_outputs(self, x: torch.Tensor, network_out: torch.Tensor, sigma) -> torch.Tensor:
        """``c_skip x + c_out F``: the denoised estimate from the network's output ``F``."""
        c_skip, c_out, _, _ = self.scalings(_per_example(sigma, x))
        return c_skip * x + c_out * network_out

    def denoised(self, network: Network, x: torch.Tensor, sigma, mu: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The denoised estimate ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise, mu)`` of the denoiser network ``F``."""
        sigma = _per_example(sigma, x)
        _, _, c_in, c_noise = self.scalings(sigma)
        return self.precondition_outputs(x, network(c_in * x, c_noise.flatten(), mu, mask), sigma)

    # ------------------------------------------------------------------ noise and loss

    def draw_noise(self, mu: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        """One noise draw ``eps (+ mu)``; ``eps`` is drawn from ``generator`` unless given."""
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return eps + mu if self.noise_prior_mean else eps

    def training_loss(
        self,
        network: Network,
        y: torch.Tensor,
        mu: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Denoising score matching: ``ln s ~ N(P_mean, P_std^2)`` per example,
        weight ``(s^2 + sd^2) / (s sd)^2``, masked mean of ``weight * (D(y + s n, s) - y)^2``.
        """
        return self.loss_at(network, y, mu, mask, self.draw_training_sigma(y, generator), generator)

    def draw_training_sigma(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise levels of training, one per example of ``y``: ``ln s ~ N(P_mean, P_std^2)``, ``(B, 1, 1)``."""
        log_sigma = torch.randn(y.shape[0], generator=generator, device=y.device, dtype=y.dtype)
        return (log_sigma * self.p_std + self.p_mean).exp().reshape(-1, 1, 1)

    def loss_at(
        self,
        network: Network,
        y: torch.Tensor,
        mu: torch.Tensor,
        mask: torch.Tensor,
        sigma,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The weighted loss of :meth:`training_loss` at given noise levels (a float or ``(B,)``).

        A network that outputs 0 scores about 1 at low sigma; low values there mean the
        denoiser network has learned to remove small noise, which the multi-step sampler needs
        at the end of every trajectory.
        """
        sigma = _per_example(sigma, y)
        noisy = y + sigma * self.draw_noise(mu, generator)
        return self.weighted_distance(self.denoised(network, noisy, sigma, mu, mask), y, sigma, mask)

    def weighted_distance(self, denoised: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of ``weight * (denoised - target)^2``, the EDM weight ``(s^2 + sd^2) / (s sd)^2``
        of ``sigma`` ``(B, 1, 1)``: the loss of :meth:`loss_at`, against any target."""
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        return masked_mean(weight * (denoised - target) ** 2, mask)

    # ------------------------------------------------------------------ ODE steps

    @staticmethod
    def heun_step(denoised_fn: DenoisedFn, x: torch.Tensor, t_cur, t_next) -> torch.Tensor:
        """Heun's 2nd-order step from ``t_cur`` to ``t_next > 0`` (EDM Algorithm 1, no churn); ``denoised_fn`` is ``D``."""
        t_cur, t_next = _per_example(t_cur, x), _per_example(t_next, x)
        denoised = denoised_fn(x, t_cur)
        x_euler = x + (t_next - t_cur) * (x - denoised) / t_cur
        return EDM.heun_correction(denoised_fn, x, denoised, x_euler, t_cur, t_next)

    @staticmethod
    def heun_correction(
        denoised_fn: DenoisedFn, x: torch.Tensor, denoised: torch.Tensor, x_euler: torch.Tensor, t_cur, t_next
    ) -> torch.Tensor:
        """Heun's corrector for the Euler prediction ``x_euler`` of ``x`` (``denoised = D(x, t_cur)``):
        ``x + (t_next - t_cur) (slope(x, t_cur) + slope(x_euler, t_next)) / 2``, ``slope(x, t) = (x - D(x, t)) / t``.
        """
        t_cur, t_next = _per_example(t_cur, x), _per_example(t_next, x)
        slope = (x - denoised) / t_cur
        slope_next = (x_euler - denoised_fn(x_euler, t_next)) / t_next
        return x + (t_next - t_cur) * 0.5 * (slope + slope_next)

    # ------------------------------------------------------------------ teacher sampler (samplers.TeacherSampler)

    def scheduler(self) -> EDMEulerScheduler:
        """diffusers' EDM Euler scheduler with our constants (Karras sigmas, final sigma 0)."""
        return EDMEulerScheduler(
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
            sigma_data=self.sigma_data,
            sigma_schedule="karras",
            rho=self.rho,
            prediction_type="epsilon",
            final_sigmas_type="zero",
        )


__all__ = ["EDM", "karras_sigmas"]
