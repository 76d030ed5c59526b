"""The refusals of a fine-tune (``train/finetune.py``), each checked before any training.

Every check raises :class:`FinetuneError` with one line that says what to do instead:
a base teacher that is a student, overrides or a student or data that contradict the
base teacher's settings, a student distilled from another teacher, an output folder
that holds something (or holds the base model), a resume that would train on a teacher
its student was distilled from, singers already in the table, a full table, and a
singer with no or too little usable audio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from comosvc.config import ComoSVCConfig

# The settings the weights and the features depend on: a fine-tune keeps the base model's.
FIXED_SECTIONS = ("audio", "model", "f0", "energy")
FIXED_CONTENT = ("whisper_dim", "whisper_mode", "contentvec_dim", "contentvec_layer")
IGNORED = {"audio.max_duration"}  # a loader limit, not a feature setting


class FinetuneError(ValueError):
    """A fine-tuning input that cannot work; the message says what to do instead."""


def differences(a: ComoSVCConfig, b: ComoSVCConfig) -> list[str]:
    """The settings of :data:`FIXED_SECTIONS` and :data:`FIXED_CONTENT` that differ, as ``"key a != b"``."""
    keys = [(section, key) for section in FIXED_SECTIONS for key in vars(getattr(a, section))]
    keys += [("content", key) for key in FIXED_CONTENT]
    found = []
    for section, key in keys:
        mine, theirs = getattr(getattr(a, section), key), getattr(getattr(b, section), key)
        if mine != theirs and f"{section}.{key}" not in IGNORED:
            found.append(f"{section}.{key} {mine!r} != {theirs!r}")
    return found


def check_teacher(teacher, name: str) -> None:
    """The base teacher must be a teacher."""
    if teacher.distilled:
        raise FinetuneError(
            f"--teacher {name} is a distilled student: pass its teacher ({teacher.distilled_from}) as --teacher "
            "and this model as --student."
        )


def check_overrides(base: ComoSVCConfig, cfg: ComoSVCConfig, name: str) -> None:
    """The overrides may not change what the base teacher's weights and features depend on."""
    found = differences(base, cfg)
    if found:
        raise FinetuneError(
            f"The overrides change a setting the base model {name} was trained with ({found[0]}): leave them out, "
            "a fine-tune keeps the base model's audio, mel, content, F0, energy and model settings."
        )


def check_student(student, teacher, student_name: str, teacher_name: str) -> None:
    """The base student must be a student distilled from the base teacher, with its settings."""
    if not student.distilled:
        raise FinetuneError(
            f"--student {student_name} is not a distilled student: pass the one-step model distilled from "
            f"--teacher {teacher_name}, or leave out --student."
        )
    found = differences(teacher.config, student.config)
    if found:
        raise FinetuneError(
            f"--student {student_name} has other settings than --teacher {teacher_name} ({found[0]}): pass the "
            "student distilled from this teacher, or leave out --student."
        )
    if not (_same_source(student.distilled_from, teacher_name) or _frozen_parts_equal(student, teacher)):
        raise FinetuneError(
            f"--student {student_name} was distilled from {student.distilled_from}, not from --teacher "
            f"{teacher_name}: pass its own teacher as --teacher, or leave out --student to start the student "
            "from the teacher."
        )


def _same_source(a: str | None, b: str) -> bool:
    """Whether two model names are one model: equal, or the same folder."""
    if a is None:
        return False
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def _frozen_parts_equal(student, teacher) -> bool:
    """Distillation copies the teacher's condition encoder and prior: equal weights, the same teacher
    (moved or renamed since)."""
    for part in ("condition_encoder", "prior"):
        mine, theirs = getattr(student, part).state_dict(), getattr(teacher, part).state_dict()
        if mine.keys() != theirs.keys() or not all(torch.equal(mine[k], theirs[k]) for k in mine):
            return False
    return True


def check_out(out: Path, resume: bool, bases: Iterable[str | None]) -> None:
    """``out`` must not hold a base model, and must be new or empty unless resuming."""
    out = Path(out).expanduser()
    for base in bases:
        if base is not None and Path(base).expanduser().is_dir():
            folder = Path(base).expanduser().resolve()
            if folder == out.resolve() or folder.is_relative_to(out.resolve()):
                raise FinetuneError(
                    f"--out {out} holds the base model {base}: choose an --out outside it, so nothing of the base "
                    "model is overwritten."
                )
    if out.exists() and not resume and (not out.is_dir() or any(out.iterdir())):
        raise FinetuneError(
            f"--out {out} is not empty: choose a new folder, or pass --resume to continue the fine-tune in it."
        )


def check_resume(out: Path, teacher_steps: int) -> None:
    """A resumed fine-tune must not train on a teacher that its student was already distilled from."""
    from comosvc.training.checkpoint import find_latest_complete, read_trainer_state

    student = find_latest_complete(Path(out) / "student")
    if student is None:
        return
    teacher = find_latest_complete(Path(out) / "teacher")
    teacher_step = read_trainer_state(teacher).step if teacher is not None else 0
    if teacher_step < teacher_steps:
        raise FinetuneError(
            f"{Path(out) / 'student'} was distilled from the teacher at step {teacher_step}, which would now train on to "
            f"step {teacher_steps}: move {Path(out) / 'student'} away to distil the student again, or keep "
            f"--teacher_steps {teacher_step}."
        )


def check_singers(keys: Iterable[str], base: dict[str, int], n_speakers: int, continue_singer: bool) -> list[str]:
    """The new singers among ``keys`` (sorted); refuses known ones without ``continue_singer`` and a full table."""
    keys = sorted(set(keys))
    known = [key for key in keys if key in base]
    if known and not continue_singer:
        raise FinetuneError(
            f"Singer {known[0]} is already in the base model's singer table (id {base[known[0]]}): name the "
            "dataset differently (generic:NAME=PATH), or pass --continue_singer to fine-tune that singer further."
        )
    new = [key for key in keys if key not in base]
    needed = max(base.values(), default=-1) + 1 + len(new)
    if needed > n_speakers:
        raise FinetuneError(
            f"The base model's singer table is full: {len(new)} new singer(s) need ids up to {needed - 1}, but "
            f"model.n_speakers is {n_speakers}: fine-tune fewer singers, or train a teacher with a larger "
            "model.n_speakers."
        )
    return new


def check_amount(seconds: dict[str, float], keys: Iterable[str], min_seconds: float, report: Path) -> None:
    """Each singer of ``keys`` needs ``min_seconds`` of usable audio (``seconds``: per singer key)."""
    for key in sorted(set(keys)):
        found = seconds.get(key, 0.0)
        if found <= 0:
            raise FinetuneError(
                f"No usable audio for singer {key} (every file was skipped; the reasons are in {report}): bring "
                f"at least {min_seconds:g} s of dry vocals as wav, flac, mp3 or ogg."
            )
        if found < min_seconds:
            raise FinetuneError(
                f"Too little audio for singer {key}: {found:.1f} s usable, at least {min_seconds:g} s needed "
                "(finetune.min_seconds): bring more recordings."
            )


def check_data(data_config: ComoSVCConfig, data_singers: dict[str, int], data_stats: dict, teacher, folder: Path) -> None:
    """A processed ``--data`` folder must have the base teacher's feature settings, extend its singer
    table and normalise the base's datasets as it does."""
    found = differences(teacher.config, data_config)
    found = [item for item in found if not item.startswith("model.")]  # preprocessing ignores the model sizes
    if found:
        raise FinetuneError(
            f"--data {folder} was prepared with other settings than the base model ({found[0]}): pass the audio "
            "with --dataset instead, so it is prepared with the base model's settings."
        )
    from comosvc.data.singers import SingerTable

    try:
        SingerTable(data_singers).extending(teacher.singers)
    except ValueError as err:
        raise FinetuneError(
            f"--data {folder} gives singers other ids than the base model's table ({err}): pass the audio with "
            "--dataset instead, so the base's table is extended."
        ) from err
    for dataset, stats in data_stats.get("mel", {}).items():
        theirs = teacher.stats.get("mel", {}).get(dataset)
        if theirs is not None and theirs != stats:
            raise FinetuneError(
                f"--data {folder} normalises the mels of dataset {dataset} otherwise than the base model: pass the "
                "audio with --dataset instead, or name the dataset differently (generic:NAME=PATH)."
            )


__all__ = [
    "FinetuneError",
    "check_amount",
    "check_data",
    "check_out",
    "check_overrides",
    "check_resume",
    "check_singers",
    "check_student",
    "check_teacher",
    "differences",
]
