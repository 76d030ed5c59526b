"""comosvc.compare without a model: the timing table and the mel pictures from known numbers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from comosvc.compare import (
    compare,
    ROW_NAMES,
    Comparison,
    format_timing_table,
    mel_image,
    mel_range,
    timing_rows,
    timing_table,
)


def _result(nfe, content, f0, acoustic, vocoder, warnings=()):
    timings = {"content": content, "f0": f0, "acoustic": acoustic, "vocoder": vocoder}
    timings["total"] = sum(timings.values())
    return SimpleNamespace(nfe=nfe, timings=timings, warnings=list(warnings), mel=np.zeros((10, 100)))


@pytest.fixture()
def comparison():
    return Comparison(
        source=np.zeros(48000, dtype=np.float32),  # 2 s at 24 kHz
        sample_rate=24000,
        source_mel=np.zeros((187, 100), dtype=np.float32),
        teacher=_result(41, 0.5, 0.1, 8.2, 1.2, warnings=["quiet input"]),
        student=_result(1, 0.5, 0.1, 0.2, 1.2, warnings=["quiet input", "no voiced frame"]),
        teacher_steps=40,
        student_steps=1,
    )


def test_timing_rows_numbers(comparison):
    rows = {row.name: row for row in timing_rows(comparison)}
    assert tuple(rows) == ROW_NAMES
    assert rows["network evaluations"].teacher == 41 and rows["network evaluations"].student == 1
    assert rows["network evaluations"].speedup == pytest.approx(41.0)
    assert rows["acoustic model (s)"].speedup == pytest.approx(8.2 / 0.2)
    assert rows["real-time factor, acoustic model"].teacher == pytest.approx(8.2 / 2.0)
    assert rows["real-time factor, end to end"].student == pytest.approx((0.5 + 0.1 + 0.2 + 1.2) / 2.0)
    assert rows["content + F0 features (s)"].teacher == pytest.approx(0.6)
    assert not rows["vocoder (s)"].compared


def test_timing_table_strings(comparison):
    headers, cells = timing_table(timing_rows(comparison), "teacher (40 steps)", "student (1 step)")
    assert headers == ["", "teacher (40 steps)", "student (1 step)", "student speed-up"]
    assert [line[0] for line in cells] == list(ROW_NAMES)
    assert cells[0][1:] == ["41", "1", "41.0x"]
    assert cells[ROW_NAMES.index("vocoder (s)")][3] == ""  # no speed-up for a shared cost
    markdown = format_timing_table(timing_rows(comparison))
    assert markdown.count("\n") == len(ROW_NAMES) + 1 and "| acoustic model (s) | 8.200 | 0.200 | 41.0x |" in markdown


def test_warnings_are_merged_once(comparison):
    assert comparison.warnings == ["quiet input", "no voiced frame"]
    assert comparison.seconds == pytest.approx(2.0)


def test_mel_image_is_rgb():
    mel = np.random.default_rng(0).normal(-5, 2, size=(120, 100)).astype(np.float32)
    vmin, vmax = mel_range(mel, mel + 1)
    assert vmin < vmax
    image = mel_image(mel, "source", vmin=vmin, vmax=vmax, size=(3, 2), dpi=50)
    assert image.dtype == np.uint8 and image.shape == (100, 150, 3)
    assert image.std() > 0  # something was drawn


class _TeacherOnlyPipe:
    """Stands in for a ConversionPipeline whose model is a teacher without a student."""

    samplers = ["teacher"]

    def __init__(self):
        from comosvc.config import ComoSVCConfig

        self.config = ComoSVCConfig()
        self.calls = []

    def request(self, singer, sampler, steps, **options):
        from comosvc.models.samplers import resolve_sampler

        return SimpleNamespace(sampler=resolve_sampler(sampler, steps, self.config, distilled=False))

    def convert_many(self, audio, requests, progress):
        self.calls.append([r.sampler for r in requests])
        if progress is not None:
            progress(1.0, "1/1 chunks")
        return [_result(r.sampler.nfe, 0.1, 0.0, 0.5, 0.2) for r in requests]


def test_compare_skips_a_missing_sampler():
    pipe, seen = _TeacherOnlyPipe(), []
    result = compare(pipe, np.zeros(24000, dtype=np.float32), "a_b", teacher_steps=8, progress=lambda f, d: seen.append((f, d)))
    assert [[(s.name, s.steps) for s in call] for call in pipe.calls] == [[("teacher", 8)]] and result.student is None
    assert "only the teacher ran" in result.warnings[0]
    assert seen[-1][0] == 1.0 and all(0.0 <= f <= 1.0 for f, _ in seen)
    headers, cells = timing_table(timing_rows(result))
    assert cells[0] == ["network evaluations", "9", "-", ""]


def test_compare_takes_the_models_step_counts_by_default():
    pipe = _TeacherOnlyPipe()
    pipe.config.inference.teacher_steps = 7
    result = compare(pipe, np.zeros(24000, dtype=np.float32), "a_b")
    (call,) = pipe.calls
    assert [(s.name, s.steps) for s in call] == [("teacher", 7)]
    assert result.teacher_steps == 7 and result.teacher.nfe == 8
    assert result.student_steps == pipe.config.inference.student_steps
