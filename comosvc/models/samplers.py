"""The two samplers as objects, as diffusers' schedulers are: built and checked once, then run.

    >>> teacher = TeacherSampler.from_config(config)              # inference.teacher_steps, model.teacher_solver
    >>> student = StudentSampler.from_config(config, steps=2)     # 1 .. model.cd_steps
    >>> mel, nfe = student.sample(model.edm, model.denoiser, mu, mask, noise=noise)

:class:`TeacherSampler` integrates the EDM probability-flow ODE (:mod:`comosvc.models.edm`:
``steps + 1`` Karras sigmas and a final 0, Euler or Heun); :class:`StudentSampler` runs
multistep consistency sampling (:mod:`comosvc.models.consistency`: ``steps`` sigmas of the
``model.cd_steps``-point distillation grid). Both are frozen dataclasses that check their
own settings when built (a :class:`ValueError` naming the valid range), so nothing down the
line checks them again. Each has a ``name`` (``"teacher"``/``"student"``), ``steps``,
``noise_draws`` (how many ``(B, T, n_mels)`` standard-normal draws :meth:`sample` consumes),
``nfe`` (denoiser network evaluations) and ``sample(edm, network, mu, mask, generator=None,
noise=None, progress=False) -> (mel, nfe)``.

:func:`resolve_sampler` turns what a caller gives (a name, ``None``, or an object) into an
object a model can run: a teacher model runs the teacher; a distilled model runs the student
and, only through something that can load its teacher (the conversion pipeline), the teacher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, Sequence, Union

import torch
from diffusers import CMStochasticIterativeScheduler
from tqdm.auto import tqdm

from comosvc.config import ComoSVCConfig, ModelConfig
from comosvc.models.edm import EDM, Network, karras_sigmas

SamplerName = Literal["teacher", "student"]
# The student re-noises steps 2..k at the centres of k - 1 equal parts of this sigma band on a log
# scale, each moved to the nearest sigma of the distillation grid. Measured (docs/benchmarks.md
# "Distillation quality"): below about 0.5 neither teacher nor student removes the re-noising, and
# later steps above 10 scored worse than steps inside the band.
RENOISE_BAND = (1.0, 10.0)
SAMPLERS = ("teacher", "student")
SOLVERS = ("euler", "heun")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_noise(noise: Sequence[torch.Tensor] | None, draws: int, who: str) -> None:
    if noise is not None and len(noise) < draws:
        raise ValueError(f"{who} needs {draws} noise draws (sampler.noise_draws), got {len(noise)}")



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

@dataclass(frozen=True)
class TeacherSampler:
    """The diffusion teacher: the probability-flow ODE from ``s_max n`` to 0 in ``steps + 1`` updates.

    ``steps + 1`` Karras sigmas from ``s_max`` to ``s_min`` and a final 0 (diffusers'
    ``EDMEulerScheduler``: sigmas, input scaling, Euler update); ``solver="heun"`` adds a
    corrector on every update except the last (to 0), so ``nfe`` is ``steps + 1`` (Euler) or
    ``2 steps + 1`` (Heun). One noise draw: the start.
    """

    steps: int
    solver: Literal["euler", "heun"] = "euler"

    name: ClassVar[SamplerName] = "teacher"

    def __post_init__(self) -> None:
        if not _is_count(self.steps) or self.steps < 1:
            raise ValueError(f"the teacher samples in 1 or more steps, got steps={self.steps!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"the teacher's solver is 'euler' or 'heun', got solver={self.solver!r}")

    @classmethod
    def from_config(cls, config: ComoSVCConfig, steps: int | None = None, solver: str | None = None) -> "TeacherSampler":
        """Defaults: ``inference.teacher_steps`` and ``model.teacher_solver``."""
        return cls(
            config.inference.teacher_steps if steps is None else steps,
            config.model.teacher_solver if solver is None else solver,
        )

    @property
    def noise_draws(self) -> int:
        return 1

    @property
    def nfe(self) -> int:
        """Denoiser network evaluations of one :meth:`sample`."""
        return self.steps + 1 if self.solver == "euler" else 2 * self.steps + 1

    @torch.no_grad()
    def sample(
        self,
        edm: EDM,
        network: Network,
        mu: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        progress: bool = False,
    ) -> tuple[torch.Tensor, int]:
        """``mu`` ``(B, T, n_mels)``, ``mask`` ``(B, T)`` -> ``(mel (B, T, n_mels), nfe)``.

        ``noise``: optional standard-normal draws; ``noise[0]`` ``(B, T, n_mels)`` is the
        starting ``eps`` (otherwise drawn from ``generator``).
        """
        _check_noise(noise, self.noise_draws, "teacher sampling")
        scheduler = edm.scheduler()
        scheduler.set_timesteps(self.steps + 1, device=mu.device)
        x = edm.sigma_max * edm.draw_noise(mu, generator, eps=noise[0].to(mu) if noise else None)
        denoised_fn = lambda x_, sigma_: edm.denoised(network, x_, sigma_, mu, mask)  # noqa: E731
        nfe = 0
        for i, timestep in enumerate(tqdm(scheduler.timesteps, desc="teacher", disable=not progress, leave=False)):
            sigma, sigma_next = scheduler.sigmas[i], scheduler.sigmas[i + 1]
            x_in = scheduler.scale_model_input(x, timestep)  # c_in x; timestep = c_noise = ln(sigma) / 4
            c_noise = timestep.reshape(1).expand(x.shape[0]).to(x)
            denoised = edm.precondition_outputs(x, network(x_in, c_noise, mu, mask), sigma)
            nfe += 1
            x_next = scheduler.step(denoised, timestep, x, pred_original_sample=denoised).prev_sample
            if self.solver == "heun" and sigma_next > 0:
                x_next = edm.heun_correction(denoised_fn, x, denoised, x_next, sigma, sigma_next)
                nfe += 1
            x = x_next
        return x, nfe


@dataclass(frozen=True)
class StudentSampler:
    """The consistency student: ``steps`` denoisings, re-noised between them (CM paper Algorithm 1).

    ``x = s_max n_0; x = D(x, s_1)``, then for each further sigma ``s_k``:
    ``x = D(x + sqrt(s_k^2 - s_min^2) n_k, s_k)``. ``s_1 = s_max``; ``s_2 > ... > s_k`` are the
    distillation-grid sigmas nearest the centres of ``k - 1`` equal log-parts of :data:`RENOISE_BAND`
    (:meth:`timesteps`), run by diffusers' ``CMStochasticIterativeScheduler(num_train_timesteps=cd_steps)``
    with those timesteps. ``steps`` is 1 .. ``cd_steps`` (``model.cd_steps``; 1-4 typical; past the band's
    grid sigmas the further ones go below it). ``noise_draws`` and ``nfe`` are both ``steps``.
    """

    steps: int
    cd_steps: int  # model.cd_steps: the points of the distillation grid

    name: ClassVar[SamplerName] = "student"

    def __post_init__(self) -> None:
        if not _is_count(self.cd_steps) or self.cd_steps < 1:
            raise ValueError(f"model.cd_steps must be a whole number >= 1, got {self.cd_steps!r}")
        if not _is_count(self.steps) or not 1 <= self.steps <= self.cd_steps:
            raise ValueError(
                f"the student samples in 1..{self.cd_steps} steps (model.cd_steps; 1-4 typical), got steps={self.steps!r}"
            )

    @classmethod
    def from_config(cls, config: ComoSVCConfig, steps: int | None = None) -> "StudentSampler":
        """Default ``inference.student_steps``, on the ``model.cd_steps`` grid."""
        return cls(config.inference.student_steps if steps is None else steps, config.model.cd_steps)

    @property
    def noise_draws(self) -> int:
        return self.steps

    @property
    def nfe(self) -> int:
        """Denoiser network evaluations of one :meth:`sample`."""
        return self.steps

    def timesteps(self) -> list[int]:
        """The grid positions of the sampling sigmas, counted from ``s_max`` (0), as diffusers'
        ``set_timesteps(timesteps=...)`` takes them (descending): each the nearest free position below
        the last to its band centre (on the grid of the default ``sigma_min``, ``sigma_max``, ``rho``)."""
        grid = _grid(self.cd_steps)
        lo, hi = math.log(RENOISE_BAND[0]), math.log(RENOISE_BAND[1])
        picks = [0]
        for i in range(self.steps - 1):
            centre = math.exp(hi - (i + 0.5) * (hi - lo) / (self.steps - 1))
            room = self.cd_steps - 1 - (self.steps - 2 - i)  # leave a position for each later step
            picks.append(min(range(picks[-1] + 1, room + 1), key=lambda j: abs(grid[j] - centre)))
        return sorted(picks, reverse=True)

    @torch.no_grad()
    def sample(
        self,
        edm: EDM,
        network: Network,
        mu: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        progress: bool = False,
    ) -> tuple[torch.Tensor, int]:
        """``mu`` ``(B, T, n_mels)``, ``mask`` ``(B, T)`` -> ``(mel (B, T, n_mels), nfe)``.

        ``noise``: optional standard-normal draws ``(B, T, n_mels)``; ``noise[k]`` is used
        for the start (``k = 0``) and the ``k``-th re-noising; otherwise drawn from ``generator``.
        """
        _check_noise(noise, self.noise_draws, f"{self.steps}-step student sampling")
        scheduler = consistency_scheduler(edm, self.cd_steps)
        scheduler.set_timesteps(timesteps=self.timesteps())
        sigmas = scheduler.sigmas[: self.steps].tolist()  # s_max first; the trailing s_min is not a sampling step

        def draw(k: int) -> torch.Tensor:
            return edm.draw_noise(mu, generator, eps=None if noise is None else noise[k].to(mu))

        x = edm.sigma_max * draw(0)
        for k, sigma in enumerate(tqdm(sigmas, desc="student", disable=not progress, leave=False)):
            if k > 0:
                x = x + (sigma**2 - edm.sigma_min**2) ** 0.5 * draw(k)
            x = edm.denoised(network, x, sigma, mu, mask)
        return x, self.steps


def _grid(cd_steps: int) -> list[float]:
    """The distillation grid's sigmas from ``s_max`` (position 0) down, with the default EDM constants."""
    c = ModelConfig()
    return karras_sigmas(cd_steps, c.sigma_min, c.sigma_max, c.rho).tolist()


Sampler = Union[TeacherSampler, StudentSampler]


def default_sampler(distilled: bool) -> SamplerName:
    """The student of a distilled model, else the teacher."""
    return "student" if distilled else "teacher"


def resolve_sampler(
    sampler: Sampler | str | None,
    steps: int | None,
    config: ComoSVCConfig,
    distilled: bool,
    *,
    solver: str | None = None,
    teacher_source: str | None = None,
    loads_teacher: bool = False,
) -> Sampler:
    """What a caller asked for -> a sampler object the model can run; the one place names are checked.

    Args:
        sampler: a :class:`TeacherSampler` / :class:`StudentSampler` (used as it is), a name
            (``"teacher"``, ``"student"``), or ``None`` for :func:`default_sampler`.
        steps, solver: for a name; ``None`` takes the config's default (``inference.teacher_steps``
            or ``inference.student_steps``; ``model.teacher_solver``). An object carries its own.
        config: the model's config (defaults, ``model.cd_steps``).
        distilled: the model is a consistency-distilled student.
        teacher_source: Hub id or folder of a distilled model's teacher (``distilled_from``).
        loads_teacher: the caller loads the teacher from ``teacher_source`` for the teacher
            sampler (the pipeline); a bare model cannot.

    Raises :class:`ValueError` saying which sampler (or settings) to use instead.
    """
    if isinstance(sampler, (TeacherSampler, StudentSampler)):
        if steps is not None or solver is not None:
            raise ValueError(
                f"steps/solver come with the sampler object ({sampler}); pass either the object or a name with steps, not both"
            )
        name = sampler.name
    elif sampler is None or sampler in SAMPLERS:
        name = sampler or default_sampler(distilled)
    else:
        raise ValueError(f"sampler must be 'teacher', 'student' or a sampler object, got {sampler!r}")
    if name == "student" and not distilled:
        raise ValueError(
            "This model is a diffusion teacher: it has no consistency student. Use sampler='teacher', or "
            "distil it first (train/distill.py) and load the distilled model."
        )
    if name == "teacher" and distilled:
        _check_teacher_reachable(teacher_source, loads_teacher)
    if isinstance(sampler, StudentSampler) and sampler.cd_steps != config.model.cd_steps:
        raise ValueError(
            f"this student sampler was built for model.cd_steps={sampler.cd_steps}, the model has "
            f"{config.model.cd_steps}: build it with StudentSampler.from_config(model.config)"
        )
    if isinstance(sampler, (TeacherSampler, StudentSampler)):
        return sampler
    if name == "teacher":
        return TeacherSampler.from_config(config, steps, solver)
    if solver is not None:
        raise ValueError(f"solver={solver!r} is a teacher setting; the student has none")
    return StudentSampler.from_config(config, steps)


def _check_teacher_reachable(teacher_source: str | None, loads_teacher: bool) -> None:
    if not loads_teacher:
        raise ValueError(
            "This is a distilled student: sample it with sampler='student'. For the teacher, load "
            f"ComoSVC.from_pretrained({teacher_source!r}) (model.distilled_from)."
        )
    if not teacher_source:
        raise ValueError(
            "This distilled model does not record its teacher (distilled_from is empty): pass "
            "teacher=<Hub id or folder of the teacher> to ConversionPipeline.from_pretrained (--teacher on the CLI)."
        )


__all__ = [
    "consistency_scheduler",
    "SAMPLERS",
    "Sampler",
    "SamplerName",
    "StudentSampler",
    "TeacherSampler",
    "default_sampler",
    "resolve_sampler",
]
