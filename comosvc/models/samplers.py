"""Which sampler a model can run and with how many steps: the one rule :meth:`ComoSVC.sample` and the pipeline share.

A teacher model runs ``"teacher"`` (EDM, ``steps + 1`` network evaluations); a
distilled model runs ``"student"`` (consistency, ``1 .. model.cd_steps`` steps) and,
only through something that can load its teacher (the conversion pipeline),
``"teacher"``.
"""

from __future__ import annotations

from typing import Literal

Sampler = Literal["teacher", "student"]
SAMPLERS = ("teacher", "student")


def default_sampler(distilled: bool) -> Sampler:
    """The student of a distilled model, else the teacher."""
    return "student" if distilled else "teacher"


def check_sampler(
    distilled: bool,
    sampler: str | None,
    steps: int | None = None,
    cd_steps: int | None = None,
    teacher_source: str | None = None,
    loads_teacher: bool = False,
) -> Sampler:
    """Validate ``sampler`` and ``steps`` for a model; ``None`` picks :func:`default_sampler`.

    Args:
        distilled: the model is a consistency-distilled student.
        steps: sampling steps, or ``None`` for the config default (not checked).
        cd_steps: ``model.cd_steps``, the most steps a student samples in.
        teacher_source: Hub id or folder of a distilled model's teacher (``distilled_from``).
        loads_teacher: the caller loads the teacher from ``teacher_source`` for
            ``sampler="teacher"`` (the pipeline); a bare model cannot.

    Raises :class:`ValueError` saying which sampler to use instead.
    """
    sampler = sampler or default_sampler(distilled)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be 'teacher' or 'student', got {sampler!r}")
    if sampler == "student" and not distilled:
        raise ValueError(
            "This model is a diffusion teacher: it has no consistency student. Use sampler='teacher', or "
            "distil it first (train/distill.py) and load the distilled model."
        )
    if sampler == "teacher" and distilled:
        _check_teacher_reachable(teacher_source, loads_teacher)
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if sampler == "student" and cd_steps is not None and steps > cd_steps:
            raise ValueError(f"the student samples in 1..{cd_steps} steps (1-4 typical), got {steps}")
    return sampler


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


__all__ = ["SAMPLERS", "Sampler", "check_sampler", "default_sampler"]
