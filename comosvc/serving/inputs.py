"""From the Convert tab's inputs to the library's arguments: the singer (or a mix) and the samplers."""

from __future__ import annotations

from typing import Sequence


def singer_names(pipe) -> list[str]:
    """Target singers the model knows (``"<dataset>_<singer>"``), in id order."""
    return sorted(pipe.singers, key=pipe.singers.get)


def target_singer(singer: str, mix_singer: str | None = None, mix_share: float = 0.5) -> str:
    """The singer inputs -> the pipeline's singer: ``singer`` alone, or with a second singer
    the mix ``"singer:(1 - share),second:share"`` (:mod:`comosvc.pipeline.mix` checks it)."""
    if not mix_singer:
        return singer
    share = float(mix_share)
    return f"{singer}:{1.0 - share!r},{mix_singer}:{share!r}"


def key_shift(key: float, auto_key: bool = False) -> float | str:
    """The key inputs -> the pipeline's ``key``: semitones, or ``"auto"``."""
    return "auto" if auto_key else float(key)


def conversion_samplers(pipe, samplers: Sequence[str], teacher_steps: int | None = None,
                        student_steps: int | None = None) -> list:
    """The sampler objects one conversion runs: each of ``samplers`` ("teacher", "student") at its steps
    (``None``: the model's ``inference`` defaults). None without a pipeline, or for steps the model
    refuses (the conversion itself then says why)."""
    if pipe is None:
        return []
    asked = {"teacher": teacher_steps, "student": student_steps}
    try:
        return [pipe.resolve_sampler(name, None if asked[name] is None else int(asked[name])) for name in samplers]
    except ValueError:
        return []
