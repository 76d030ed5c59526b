"""What the Convert tab shows of a teacher-vs-student comparison: audio for the players, mel pictures
on one colour range, and the cost table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comosvc.audio import to_pcm16
from comosvc.compare import Comparison, mel_image, mel_range, timing_rows, timing_table
from comosvc.config import AudioConfig

SYSTEMS = ("teacher", "student")


@dataclass(frozen=True)
class ComparisonView:
    """One comparison, ready to show. A system that did not run has ``None`` for its audio and mel."""

    audio: dict[str, tuple[int, np.ndarray] | None]  # system -> (sample rate, int16 PCM): players do not rescale it
    mels: dict[str, np.ndarray | None]  # "source" and each system -> RGB picture (H, W, 3) uint8
    headers: list[str]  # the cost table's columns; a system's column is its label
    cells: list[list[str]]


def system_labels(result: Comparison) -> dict[str, str]:
    """``{"teacher": "teacher, 40 steps", "student": "student, 1 step"}`` for ``result``'s steps."""
    steps = {"teacher": result.teacher_steps, "student": result.student_steps}
    return {name: f"{name}, {steps[name]} step{'s' if steps[name] > 1 else ''}" for name in SYSTEMS}


def comparison_view(result: Comparison, audio: AudioConfig) -> ComparisonView:
    """The players' audio, the source's and both systems' mel pictures, and the cost table of ``result``."""
    runs = {"teacher": result.teacher, "student": result.student}
    labels = system_labels(result)
    vmin, vmax = mel_range(result.source_mel, *(run.mel for run in runs.values() if run is not None))

    def picture(mel: np.ndarray, title: str) -> np.ndarray:
        return mel_image(mel, title, audio.sample_rate, audio.hop_length, vmin=vmin, vmax=vmax)

    headers, cells = timing_table(timing_rows(result), teacher_label=labels["teacher"], student_label=labels["student"])
    return ComparisonView(
        audio={name: None if run is None else (int(run.sample_rate), to_pcm16(run.audio)) for name, run in runs.items()},
        mels={"source": picture(result.source_mel, "source"),
              **{name: None if run is None else picture(run.mel, labels[name]) for name, run in runs.items()}},
        headers=list(headers),
        cells=[list(row) for row in cells],
    )
