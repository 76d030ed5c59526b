"""The app's "Add a singer" tab: a visitor's recordings -> the served teacher and student fine-tuned on them.

    why = finetune_unavailable(settings, zero_gpu=False)       # Markdown, or None where it can run
    added = add_singer(["take1.wav", "takes.zip"], "alice", pipe, progress=lambda f, what: ...)
    added.student, added.teacher, added.singer                  # OUT/student/model, OUT/teacher/model, "added_alice"

The uploads (audio files, zips of them) are gathered into a temporary ``generic`` dataset,
``<tmp>/<name>/*.wav``: zip members that would land outside their folder are refused, files
that are not audio (by their suffix) are left out. The fine-tune is
:func:`comosvc.training.finetune.finetune` from the served model's teacher and student,
with the budgets of the served config's ``finetune`` section unless others are given; the
new singer is ``added_<name>``. A fine-tune needs minutes of a GPU of its own: on ZeroGPU
(a GPU lent per call for seconds) and, unless ``--allow-cpu-finetune``, on a host without
CUDA, the tab says so instead (:func:`finetune_unavailable`).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from comosvc.data.corpora import AUDIO_SUFFIXES

ADDED_DATASET = "added"  # the new singer is "added_<name>"
SINGER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
DEFAULT_OUT_ROOT = Path("runs") / "app-singers"  # OUT = <root>/<name>, relative to where the app runs
MAX_UNZIPPED_BYTES = 4 << 30  # the audio of the zips, unpacked

COMMAND_LINE = (
    "`accelerate launch train/finetune.py --teacher TEACHER --student STUDENT "
    "--dataset generic:added=recordings/ --out runs/NAME` (one folder per singer: `recordings/<name>/*.wav`), "
    "then `python app.py --model runs/NAME/student/model`"
)


class AddSingerError(ValueError):
    """A one-line message saying what to do (bad name, no audio, an unsafe zip, ...)."""


@dataclass(frozen=True)
class AddedSinger:
    """What :func:`add_singer` made."""

    singer: str  # "added_<name>"
    out: Path  # the fine-tune's run folder
    teacher: Path  # OUT/teacher/model
    student: Path  # OUT/student/model
    clips: int  # audio files fine-tuned on
    minutes: float  # of usable audio
    summary: str  # Markdown for the page


def finetune_unavailable(allow_cpu: bool = False, zero_gpu: bool = False, cuda: bool | None = None) -> str | None:
    """Why this host cannot add a singer (Markdown), or None when it can: a fine-tune needs minutes of
    a GPU of its own. ``cuda``: default whether torch sees one; ``allow_cpu`` (``--allow-cpu-finetune``)
    lets a CPU-only host try (small tests and demos)."""
    needs = ("Adding a singer fine-tunes the model for minutes on a GPU, so it needs the app running on a "
             "local machine or a dedicated GPU")
    if zero_gpu:
        return f"{needs}; this Space lends its GPU for seconds per call (ZeroGPU). On your own machine: {COMMAND_LINE}."
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if not cuda and not allow_cpu:
        return (f"{needs}; this machine has no CUDA GPU (start the app with `--allow-cpu-finetune` to try it on the "
                f"CPU anyway, for small demos). Or on a GPU: {COMMAND_LINE}.")
    return None


def singer_key(name: str | None, singers: Sequence[str] = ()) -> str:
    """The new singer's key ``added_<name>``; a name that cannot be one, or a singer the model has, is refused."""
    name = (name or "").strip()
    if not SINGER_NAME.match(name):
        raise AddSingerError(
            f"{name!r} cannot name a singer: use 1-32 letters, digits or '-', starting with a letter or digit."
            if name else "Give the new singer a name (letters, digits or '-')."
        )
    key = f"{ADDED_DATASET}_{name}"
    if key in singers:
        raise AddSingerError(f"The model already has a singer {key!r}: choose another name.")
    return key


def gather_clips(uploads: Sequence[str | Path], name: str, root: str | Path) -> int:
    """Copy the audio of ``uploads`` (audio files, zips of them) into ``root/<name>/`` (a ``generic``
    dataset); returns how many. Other files are left out; a zip member that would land outside its
    folder, an unreadable zip, or no audio at all is refused."""
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for upload in uploads:
        path = Path(upload)
        if path.suffix.lower() == ".zip":
            count = _unzip(path, folder, count)
        elif path.suffix.lower() in AUDIO_SUFFIXES:
            shutil.copyfile(path, folder / _numbered(count, path.name))
            count += 1
    if not count:
        raise AddSingerError(f"No audio among the uploads: upload {', '.join(AUDIO_SUFFIXES)} files, or a zip of them.")
    return count


def _numbered(index: int, name: str) -> str:
    """A file name of its own in the flat singer folder (two uploads may share a name)."""
    return f"{index:04d}-{name}"


def _unzip(path: Path, folder: Path, count: int) -> int:
    """The audio members of the zip ``path`` into ``folder``, flat; returns the new count."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [member for member in archive.infolist() if not member.is_dir()]
            for member in members:
                inner = PurePosixPath(member.filename.replace("\\", "/"))
                if inner.is_absolute() or ".." in inner.parts or ":" in inner.parts[0]:
                    raise AddSingerError(
                        f"The zip {path.name} holds {member.filename!r}, a path outside the archive: zip the recordings themselves."
                    )
            audio = [member for member in members if _is_audio(PurePosixPath(member.filename.replace("\\", "/")))]
            if sum(member.file_size for member in audio) > MAX_UNZIPPED_BYTES:
                raise AddSingerError(f"The zip {path.name} unpacks to more than {MAX_UNZIPPED_BYTES >> 30} GB of audio: "
                                     "upload fewer or shorter recordings.")
            for member in audio:
                target = folder / _numbered(count, PurePosixPath(member.filename.replace("\\", "/")).name)
                with archive.open(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                count += 1
    except zipfile.BadZipFile as err:
        raise AddSingerError(f"{path.name} is not a readable zip ({err}): upload the audio files themselves.") from None
    return count


def _is_audio(inner: PurePosixPath) -> bool:
    """An audio file by its suffix, not macOS's metadata beside it (``__MACOSX/``, ``._name.wav``)."""
    hidden = inner.name.startswith(".") or "__MACOSX" in inner.parts
    return inner.suffix.lower() in AUDIO_SUFFIXES and not hidden


def base_models(pipe) -> tuple[str, str | None]:
    """The served model's ``(teacher, student)`` (folders or Hub ids; no student for a teacher)."""
    source = getattr(pipe.model, "name_or_path", None)
    if not pipe.model.distilled:
        student, teacher = None, source
    else:
        student, teacher = source, pipe.teacher_source
    if not teacher or (pipe.model.distilled and not student):
        raise AddSingerError("The served model does not say where its teacher is: start the app with --teacher TEACHER.")
    return str(teacher), student and str(student)


def out_folder(name: str, root: str | Path = DEFAULT_OUT_ROOT) -> Path:
    """``root/<name>``, or ``root/<name>-2``, ... when that is taken (a fine-tune needs a new folder)."""
    root = Path(root)
    out, n = root / name, 1
    while out.exists() and any(out.iterdir()):
        n += 1
        out = root / f"{name}-{n}"
    return out


def add_singer(
    uploads: Sequence[str | Path],
    name: str | None,
    pipe,
    *,
    out_root: str | Path = DEFAULT_OUT_ROOT,
    teacher_steps: int | None = None,
    distill_steps: int | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> AddedSinger:
    """Fine-tune the served ``pipe``'s teacher and student on ``uploads`` as the new singer ``added_<name>``.

    Steps: ``teacher_steps`` and ``distill_steps``, default the served config's ``finetune`` section;
    ``overrides``: more ``section.key=value`` (:func:`~comosvc.training.finetune.finetune`).
    ``progress(fraction, description)`` hears of each phase and step. Raises :class:`AddSingerError`
    (or the fine-tune's :class:`~comosvc.training.finetune_checks.FinetuneError`) with one line on bad input.
    """
    from comosvc.training.finetune import finetune

    report = progress or (lambda fraction, description: None)
    key = singer_key(name, list(pipe.singers))
    name = key.removeprefix(f"{ADDED_DATASET}_")
    teacher, student = base_models(pipe)
    out = out_folder(name, out_root)
    report(0.0, "gathering the recordings")
    with tempfile.TemporaryDirectory(prefix="comosvc-add-singer-") as work:
        clips = gather_clips(uploads, name, work)
        result = finetune(
            teacher, out, datasets=[f"generic:{ADDED_DATASET}={work}"], student=student,
            teacher_steps=teacher_steps, distill_steps=distill_steps, overrides=list(overrides), device=device,
            progress=report,
        )
    summary = (
        f"Added **{key}**: {clips} recording(s), {result.minutes:.1f} min of usable audio. The app now serves "
        f"`{result.student}` (teacher `{result.teacher}`); to serve it again later: "
        f"`python app.py --model {result.student}`."
    ) + "".join(f"\n\n⚠️ {warning}" for warning in result.warnings)
    return AddedSinger(key, out, Path(result.teacher), Path(result.student), clips, result.minutes, summary)


__all__ = [
    "ADDED_DATASET", "AddSingerError", "AddedSinger", "add_singer", "base_models", "finetune_unavailable", "gather_clips",
    "out_folder", "singer_key",
]
