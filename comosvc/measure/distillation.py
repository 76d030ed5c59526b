"""Where a consistency student is trained well, and what its multistep sampler feeds it.

:func:`student_error_by_sigma` takes a teacher, a distilled student and held-out clips and,
at noise levels ``t`` of the distillation grid, compares three inputs and what each model
makes of them (log-mel L1, the units of :mod:`comosvc.measure.quality`):

- ``x = y + t n`` (the data noised as distillation noises it; ``n = eps (+ mu)``): the student's
  one evaluation ``D_theta(x, t)`` against the teacher's ODE solution from ``x`` on the grid
  (Heun from ``t`` down to ``s_min``, the fixed point consistency distillation aims at) and
  against the ground truth ``y``;
- ``x' = y1 + sqrt(t^2 - s_min^2) n'`` with ``y1`` the one-step student's estimate (what the
  multistep sampler feeds the student at ``t``): ``D_theta(x', t)`` and the teacher's solution
  from ``x'``, both against ``y``.

If the student is good on ``x`` and poor on ``x'`` at the sampler's second sigma, the loss of
quality from more steps is the re-noised estimate, not the student's training at that sigma.
"""

from __future__ import annotations

from typing import Callable

import torch

from comosvc.models.edm import karras_sigmas
from comosvc.models.samplers import consistency_scheduler


def sampler_sigmas(edm, cd_steps: int, steps: int, stock: bool = False) -> list[float]:
    """The sigmas a ``steps``-step student samples at (:class:`~comosvc.models.samplers.StudentSampler`),
    or with ``stock`` those diffusers' ``CMStochasticIterativeScheduler.set_timesteps(steps)`` picks
    by itself (even steps of the grid)."""
    from comosvc.models.samplers import StudentSampler

    scheduler = consistency_scheduler(edm, cd_steps)
    if stock:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=StudentSampler(steps, cd_steps).timesteps())
    return [float(s) for s in scheduler.sigmas[:steps]]


@torch.no_grad()
def grid_solution(edm, denoised_fn, x: torch.Tensor, grid: torch.Tensor, n: int) -> torch.Tensor:
    """The teacher's ODE solution from ``x`` at ``grid[n]`` (``grid`` ascending, ``grid[0] = s_min``):
    Heun steps down the grid to ``s_min``, where ``D(x, s_min) = x``."""
    for k in range(n, 0, -1):
        x = edm.heun_step(denoised_fn, x, float(grid[k]), float(grid[k - 1]))
    return x


@torch.no_grad()
def student_error_by_sigma(
    teacher,
    student,
    batch: dict[str, torch.Tensor],
    denormalize: Callable[[torch.Tensor], torch.Tensor] = lambda mel: mel,
    seed: int = 0,
    indices: list[int] | None = None,
) -> list[dict[str, float]]:
    """One row per grid index ``n`` (``indices``; default: the sigmas the 1-, 2- and 4-step samplers
    use, those diffusers would pick, and the grid's quarter and middle): ``sigma``, ``student_to_teacher`` (``D_theta(x, t)`` against the teacher's
    grid solution from ``x``), ``student_to_truth``, ``teacher_to_truth`` (that solution against ``y``),
    ``renoised_student_to_truth`` and ``renoised_teacher_to_truth`` (the same from ``x'``), each the
    masked mean absolute difference after ``denormalize``.

    ``teacher``, ``student``: a teacher and its distilled :class:`~comosvc.models.comosvc.ComoSVC`;
    ``batch``: collated held-out examples with ``mel``.
    """
    batch = teacher.prepare_batch(batch, need_mel=True)
    y, mask = batch["mel"], batch["mask"]
    edm, cd_steps = teacher.edm, student.config.model.cd_steps
    grid = karras_sigmas(cd_steps, edm.sigma_min, edm.sigma_max, edm.rho).flip(0)  # ascending
    mu = teacher.encode(batch)
    generator = torch.Generator(device=y.device).manual_seed(seed)
    teacher_fn = lambda x, s: edm.denoised(teacher.denoiser, x, s, mu, mask)  # noqa: E731
    student_fn = lambda x, s: edm.denoised(student.denoiser, x, s, mu, mask)  # noqa: E731
    valid = mask[..., None].expand_as(y)

    def l1(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((denormalize(a) - denormalize(b)).abs()[valid].mean())

    one_step = student_fn(edm.sigma_max * edm.draw_noise(mu, generator), edm.sigma_max)
    if indices is None:
        used = {
            min(range(cd_steps), key=lambda i: abs(float(grid[i]) - s))
            for k in (1, 2, 4) for stock in (False, True) for s in sampler_sigmas(edm, cd_steps, k, stock)
        }
        indices = sorted(used | {cd_steps // 2, cd_steps // 4} - {0})
    rows = []
    for n in indices:
        sigma = float(grid[n])
        x = y + sigma * edm.draw_noise(mu, generator)
        x_renoised = one_step + (sigma**2 - edm.sigma_min**2) ** 0.5 * edm.draw_noise(mu, generator)
        solution = grid_solution(edm, teacher_fn, x, grid, n)
        prediction = student_fn(x, sigma)
        rows.append({
            "n": n,
            "sigma": round(sigma, 4),
            "student_to_teacher": l1(prediction, solution),
            "student_to_truth": l1(prediction, y),
            "teacher_to_truth": l1(solution, y),
            "renoised_student_to_truth": l1(student_fn(x_renoised, sigma), y),
            "renoised_teacher_to_truth": l1(grid_solution(edm, teacher_fn, x_renoised, grid, n), y),
        })
    return rows


__all__ = ["grid_solution", "sampler_sigmas", "student_error_by_sigma"]
