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

from comosvc.models.consistency import consistency_scheduler
from comosvc.models.edm import karras_sigmas


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


def step_seconds(variants: dict[str, list[str]], repeats: int = 20, steps: int = 5, settings=None) -> dict[str, float]:
    """Median seconds of one distillation step (loss, backward, AdamW, EMA) per variant, interleaved
    round-robin so that a busy machine slows all alike. ``variants``: ``{name: overrides}`` on the
    quality check's config (:func:`comosvc.measure.quality.quality_config`), a random teacher, a random
    batch of the quality check's size (``batch_size`` x ``crop_frames``)."""
    import dataclasses

    from comosvc.measure.quality import QualitySettings, quality_config
    from comosvc.measure.timer import interleave, medians, timed
    from comosvc.models.comosvc import ComoSVC
    from comosvc.models.consistency import ConsistencyDistiller

    settings = settings or QualitySettings()
    jobs = {}
    for name, overrides in variants.items():
        config = quality_config(dataclasses.replace(settings, overrides=list(settings.overrides) + list(overrides)))
        torch.manual_seed(settings.seed)
        distiller = ConsistencyDistiller(ComoSVC(config), config.distill).train()
        optimizer = torch.optim.AdamW(distiller.trainable_parameters(), lr=1e-4)
        batch = _random_batch(config, settings.batch_size, settings.crop_frames)

        def run(distiller=distiller, optimizer=optimizer, batch=batch) -> None:
            for _ in range(steps):
                distiller.loss(batch)["loss"].backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                distiller.update_ema()

        jobs[name] = timed(run)
    runs = interleave(jobs, repeats, desc="distillation step")
    return {name: medians(timings)["total"] / steps for name, timings in runs.items()}


def _random_batch(config, batch: int, frames: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "whisper": torch.randn(batch, frames, config.content.whisper_dim, generator=g),
        "contentvec": torch.randn(batch, frames, config.content.contentvec_dim, generator=g),
        "f0": 150 + 150 * torch.rand(batch, frames, generator=g),
        "energy": torch.rand(batch, frames, generator=g),
        "speaker": torch.zeros(batch, dtype=torch.long),
        "mel": torch.rand(batch, frames, config.audio.n_mels, generator=g) * 2 - 1,
        "mask": torch.ones(batch, frames, dtype=torch.bool),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m comosvc.measure.distillation --variant NAME SETTINGS... [--threads 1]``: seconds per
    distillation step of each variant (and the config's default), side by side."""
    import argparse

    from comosvc.measure import tables
    from comosvc.measure.quality import parse_variants

    parser = argparse.ArgumentParser(prog="python -m comosvc.measure.distillation", description=main.__doc__)
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME_OR_SETTING")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = parse_variants(args.variant)
    seconds = step_seconds(variants, repeats=args.repeats)
    base = seconds["default"]
    rows = [[name, " ".join(variants[name]) or "(defaults)", f"{s:.4f}", f"{s / base:.2f}"] for name, s in seconds.items()]
    print(tables.markdown_table(["variant", "settings", "s / step", "x default"], rows))
    return 0


__all__ = ["grid_solution", "main", "sampler_sigmas", "step_seconds", "student_error_by_sigma"]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
