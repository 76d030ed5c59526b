"""Teacher against student on the same clip: one call, a timing table, mel pictures.

The app's "convert" button and the ``bench`` command both need the same thing:
convert one clip with the diffusion teacher and with the consistency student
(same singer, key and seed), then report what each cost. This module does that
without any UI, in one pass of the pipeline
(:meth:`~comosvc.pipeline.ConversionPipeline.convert_many`): the content features and
the F0 are computed once and shared, the acoustic model and the vocoder run per system.

    >>> result = compare(pipe, wav, "opensinger_0")      # steps: the model's inference.teacher_steps / student_steps
    >>> print(format_timing_table(timing_rows(result)))

:func:`mel_image` renders a log mel as an RGB picture (matplotlib, Agg backend),
used by the app and handy in notebooks and reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from comosvc.measure import tables

# progress(fraction of the whole comparison in [0, 1], what is happening)
ProgressFn = Callable[[float, str], None]


@dataclass
class Comparison:
    """The same clip converted by the teacher and the student.

    ``source`` is the input at ``sample_rate`` Hz, ``(N,)`` float32; ``source_mel``
    its log mel ``(N // hop, n_mels)``; ``teacher`` and ``student`` are the
    pipeline's ``ConversionResult`` objects (``.audio``, ``.mel``, ``.nfe``,
    ``.timings``), or ``None`` for a sampler the model cannot run (see ``notes``).
    """

    source: np.ndarray
    sample_rate: int
    source_mel: np.ndarray
    teacher: Any  # None when the pipeline has no teacher
    student: Any  # None when the model has no student
    teacher_steps: int
    student_steps: int
    notes: list[str] = field(default_factory=list)  # why a sampler did not run
    device: str | None = None  # what ran both systems, e.g. "cpu" or "cuda (NVIDIA H200)"

    @property
    def seconds(self) -> float:
        """Duration of the source clip in seconds."""
        return len(self.source) / self.sample_rate

    @property
    def warnings(self) -> list[str]:
        """Why a sampler did not run, then the warnings of both runs, each once, in order."""
        seen: list[str] = list(self.notes)
        for result in (self.teacher, self.student):
            for message in getattr(result, "warnings", None) or []:
                if message not in seen:
                    seen.append(message)
        return seen


MISSING_SAMPLER = {
    "student": "This model is a diffusion teacher without a distilled student, so only the teacher ran. "
    "Distil it (train/distill.py) and load the student to compare.",
    "teacher": "The teacher of this student is not available, so only the student ran. Pass the teacher "
    "(--teacher / teacher=...) or keep it where the student's distilled_from points.",
}


def compare(
    pipe,
    audio: np.ndarray,
    singer: str,
    *,
    teacher_steps: int | None = None,
    student_steps: int | None = None,
    key: float | str = 0,
    seed: int = 0,
    progress: ProgressFn | None = None,
    samplers: Sequence[str] | None = None,
    index_ratio: float = 0.0,
) -> Comparison:
    """Convert ``audio`` ((N,) float32 at the pipeline's rate) with the teacher and the student.

    Both use the same singer, key and seed, in one :meth:`~comosvc.pipeline.ConversionPipeline.convert_many`
    call: content features and F0 run once; each result's ``timings`` report those shared
    seconds and its own acoustic model and vocoder, its ``total`` the cost it would have alone.
    ``teacher_steps`` / ``student_steps`` default to the model's ``inference.teacher_steps`` /
    ``inference.student_steps``. A sampler the pipeline cannot run (``samplers``, default
    ``pipe.samplers``: a teacher-only model has no student) is skipped with a warning in
    :attr:`Comparison.warnings`. ``progress(fraction, desc)`` is called as the work advances.
    ``index_ratio``: the pull towards the singer's timbre index, for both (:mod:`comosvc.index`).
    """
    from comosvc.features.mel import log_mel

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    available = list(samplers if samplers is not None else getattr(pipe, "samplers", ("teacher", "student")))
    runs = [name for name in ("teacher", "student") if name in available]
    if not runs:
        raise ValueError("This model can run neither the teacher nor the student sampler.")
    asked = {"teacher": teacher_steps, "student": student_steps}
    requests = [
        pipe.request(singer, sampler=name, steps=asked[name], key=key, seed=seed, index_ratio=index_ratio) for name in runs
    ]
    inference = pipe.config.inference
    steps = {
        "teacher": inference.teacher_steps if teacher_steps is None else int(teacher_steps),
        "student": inference.student_steps if student_steps is None else int(student_steps),
        **{request.sampler.name: request.sampler.steps for request in requests},
    }
    label = " and ".join(f"{name}, {steps[name]} step{'s' if steps[name] > 1 else ''}" for name in runs)
    report = None if progress is None else (lambda fraction, desc: progress(fraction, f"{label}: {desc}"))
    results = dict(zip(runs, pipe.convert_many(audio, requests, progress=report)))
    if progress is not None:
        progress(1.0, "done")
    return Comparison(
        source=audio,
        sample_rate=int(pipe.config.audio.sample_rate),
        source_mel=log_mel(audio, pipe.config.audio),
        teacher=results.get("teacher"),
        student=results.get("student"),
        teacher_steps=steps["teacher"],
        student_steps=steps["student"],
        notes=[MISSING_SAMPLER[name] for name in ("teacher", "student") if name not in results],
        device=device_name(getattr(pipe, "device", None)),
    )


def device_name(device) -> str | None:
    """``"cpu"``, ``"cuda (NVIDIA H200)"``...: the device a pipeline runs on, for the cost table."""
    if device is None:
        return None
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            return f"cuda ({torch.cuda.get_device_name(device)})"
        except Exception:  # no name (e.g. a device lent by ZeroGPU not yet attached)
            return "cuda"
    return device.type


# --------------------------------------------------------------------------- timing table


@dataclass(frozen=True)
class TimingRow:
    """One line of the comparison table: a cost for the teacher and for the student.

    ``unit`` is ``""`` (a count), ``"s"`` (seconds), ``"rtf"`` (seconds of compute
    per second of audio) or ``"text"`` (a string, e.g. the device). A value is ``None``
    when that sampler did not run.
    ``compared`` is False for costs that do not depend on the sampler (content
    features, vocoder): no speed-up is reported for them.
    """

    name: str
    teacher: float | str | None
    student: float | str | None
    unit: str = "s"
    compared: bool = True

    @property
    def speedup(self) -> float | None:
        """Teacher cost over student cost (how many times cheaper the student is); None if one is missing."""
        if self.teacher is None or self.student is None or self.unit == "text":
            return None
        return self.teacher / self.student if self.student > 0 else float("inf")


# Row names, in table order (the app's test checks these).
ROW_NFE = "network evaluations"
ROW_FEATURES = "content + F0 features (s)"
ROW_ACOUSTIC = "acoustic model (s)"
ROW_VOCODER = "vocoder (s)"
ROW_TOTAL = "end to end (s)"
ROW_RTF_ACOUSTIC = "real-time factor, acoustic model"
ROW_RTF_TOTAL = "real-time factor, end to end"
ROW_DEVICE = "device"
ROW_NAMES = (ROW_NFE, ROW_FEATURES, ROW_ACOUSTIC, ROW_VOCODER, ROW_TOTAL, ROW_RTF_ACOUSTIC, ROW_RTF_TOTAL, ROW_DEVICE)


def timing_rows(comparison: Comparison) -> list[TimingRow]:
    """The costs of both runs: NFE, stage times (s), real-time factors and the device that ran
    them, in :data:`ROW_NAMES` order.

    NFE is the denoiser's network evaluations per chunk (``result.nfe``).
    """
    seconds = max(comparison.seconds, 1e-9)

    def values(measure):
        return tuple(None if r is None else float(measure(r)) for r in (comparison.teacher, comparison.student))

    def stage(*names: str):
        return lambda r: sum(r.timings.get(name, 0.0) for name in names)

    return [
        TimingRow(ROW_NFE, *values(lambda r: r.nfe), unit=""),
        TimingRow(ROW_FEATURES, *values(stage("content", "f0")), compared=False),
        TimingRow(ROW_ACOUSTIC, *values(stage("acoustic"))),
        TimingRow(ROW_VOCODER, *values(stage("vocoder")), compared=False),
        TimingRow(ROW_TOTAL, *values(stage("total"))),
        TimingRow(ROW_RTF_ACOUSTIC, *values(lambda r: r.timings.get("acoustic", 0.0) / seconds), unit="rtf"),
        TimingRow(ROW_RTF_TOTAL, *values(lambda r: r.timings.get("total", 0.0) / seconds), unit="rtf"),
        TimingRow(ROW_DEVICE, *(None if r is None else comparison.device or "-" for r in (comparison.teacher, comparison.student)),
                  unit="text", compared=False),
    ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "text":
        return str(value)
    if unit == "":
        return f"{value:.0f}"
    if unit == "rtf":
        return f"{value:.4f}" if value < 0.01 else f"{value:.3f}"
    return f"{value:.3f}"


def timing_table(rows: list[TimingRow], teacher_label: str = "teacher", student_label: str = "student"):
    """``(headers, cells)``: the rows as strings, with a "student speed-up" column."""
    headers = ["", teacher_label, student_label, "student speed-up"]
    cells = [
        [
            row.name,
            _fmt(row.teacher, row.unit),
            _fmt(row.student, row.unit),
            f"{row.speedup:.1f}x" if row.compared and row.speedup is not None else "",
        ]
        for row in rows
    ]
    return headers, cells


def format_timing_table(rows: list[TimingRow], teacher_label: str = "teacher", student_label: str = "student") -> str:
    """The timing table as Markdown (for the terminal, logs and reports)."""
    return tables.markdown_table(*timing_table(rows, teacher_label, student_label))


# --------------------------------------------------------------------------- pictures


def mel_range(*mels: np.ndarray) -> tuple[float, float]:
    """A shared colour range (vmin, vmax) for several log mels, so their pictures compare."""
    values = np.concatenate([np.asarray(m, dtype=np.float32).reshape(-1) for m in mels if np.size(m)])
    if values.size == 0:
        return -11.5, 2.0
    return float(np.percentile(values, 1)), float(values.max())


def mel_image(
    mel: np.ndarray,
    title: str = "",
    sample_rate: int = 24000,
    hop_length: int = 256,
    vmin: float | None = None,
    vmax: float | None = None,
    size: tuple[float, float] = (4.2, 2.4),
    dpi: int = 100,
) -> np.ndarray:
    """Render a log mel ``(T, n_mels)`` as an RGB picture ``(H, W, 3)`` uint8 (time in seconds on x)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    mel = np.asarray(mel, dtype=np.float32)
    fig = Figure(figsize=size, dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    seconds = mel.shape[0] * hop_length / sample_rate
    ax.imshow(
        mel.T,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        cmap="magma",
        vmin=vmin,
        vmax=vmax,
        extent=(0.0, seconds, 0, mel.shape[1]),
    )
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("mel bin", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.4)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return image


__all__ = [
    "Comparison",
    "ROW_NAMES",
    "TimingRow",
    "compare",
    "device_name",
    "format_timing_table",
    "mel_image",
    "mel_range",
    "timing_rows",
    "timing_table",
]
