"""comosvc.measure: the timer and its repeat helpers, the table writer, the synthetic song, the stand-ins.

Timings are never asserted beyond signs and sums (shared CPUs).
"""

from __future__ import annotations

import math
import time

import pytest

from comosvc.data.songs import synthetic_song
from comosvc.measure.stand_ins import copy_model, random_stats
from comosvc.measure.tables import markdown_table
from comosvc.measure.timer import (
    CPU,
    Seconds,
    Timer,
    best_of,
    interleave,
    median_of,
    medians,
    repeat,
    speedup,
    time_call,
    timed,
)


def test_timer_sums_blocks_and_reads_while_running():
    calls = []
    timer = Timer(sync=lambda: calls.append("sync"))
    with timer:
        time.sleep(0.01)
    first = timer.wall
    assert first >= 0.01 and timer.cpu >= 0 and calls == ["sync", "sync"]
    timer.start()
    running = timer.elapsed()
    assert running.wall >= first and timer.stop().wall >= 0 and timer.wall >= running.wall
    timer.reset()
    assert (timer.wall, timer.cpu) == (0.0, 0.0)
    with pytest.raises(RuntimeError, match="start"):
        timer.stop()


def test_time_call_and_timed_jobs():
    assert time_call(lambda: time.sleep(0.01)).wall >= 0.01
    result = timed(lambda: None, key="whisper")()
    assert set(result) == {"whisper", CPU + "whisper"} and min(result.values()) >= 0


def test_repeat_and_median_of():
    calls = []
    times = repeat(lambda: calls.append(1), runs=3)
    assert len(calls) == 3 and len(times) == 3 and all(t.wall >= 0 for t in times)
    assert median_of([Seconds(1.0, 9.0), Seconds(3.0, 7.0), Seconds(2.0, 8.0)]) == Seconds(2.0, 8.0)


def test_best_of_warms_up_then_repeats():
    calls = []
    seconds = best_of(lambda: calls.append(1), repeats=3)
    assert len(calls) == 4 and seconds.wall >= 0 and seconds.cpu >= 0
    calls.clear()
    best_of(lambda: calls.append(1) or time.sleep(0.02), repeats=3, slow=0.01)  # a slow warm-up is the answer
    assert len(calls) == 1


def test_interleave_round_robin_rotates_the_first_job():
    order = []
    jobs = {name: (lambda name=name: order.append(name) or {"total": 1.0}) for name in "abc"}
    runs = interleave(jobs, repeats=3, warmups={})
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: len(r) for name, r in runs.items()} == {"a": 3, "b": 3, "c": 3}


def test_interleave_warms_up_untimed():
    calls = []
    jobs = {"a": lambda: calls.append("a") or {"t": 2.0}}
    runs = interleave(jobs, repeats=2)  # warm-ups default to the jobs themselves
    assert calls == ["a", "a", "a"] and runs == {"a": [{"t": 2.0}, {"t": 2.0}]}


def test_medians_and_speedup():
    runs = [{"acoustic": 3.0, "total": 10.0}, {"acoustic": 1.0, "total": 30.0}, {"acoustic": 2.0, "total": 20.0}]
    assert medians(runs) == {"acoustic": 2.0, "total": 20.0}
    assert speedup(8.0, 2.0) == 4.0 and speedup(1.0, 0.0) == math.inf


def test_markdown_table():
    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n| --- | --- |\n| 1 | 2 |"
    assert markdown_table(["a", "b", "c"], [], align="lrc").splitlines()[1] == "| --- | ---: | :---: |"
    with pytest.raises(ValueError, match="one of l/r/c per column"):
        markdown_table(["a", "b"], [], align="l")
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        markdown_table(["a", "b"], [["1"]])


def test_synthetic_song_has_the_exact_length():
    wav = synthetic_song(2.5, sample_rate=24000)
    assert wav.shape == (60000,) and wav.dtype.name == "float32" and abs(wav).max() > 0.05
    assert synthetic_song(0.2, 1, seed=5).shape == (4800,)
    assert (synthetic_song(1.3, 2, seed=4) == synthetic_song(1.3, 2, seed=4)).all()
    assert not (synthetic_song(1.3, 2, seed=4) == synthetic_song(1.3, 3, seed=4)).all()  # another singer


def test_copy_model_keeps_the_weights_and_flips_the_role(tiny_config):
    import torch

    from comosvc.models import ComoSVC

    singers = {"random_a": 0}
    student = ComoSVC(tiny_config, singers=singers, stats=random_stats(tiny_config, singers), distilled=True)
    teacher = copy_model(student, distilled=False)
    assert not teacher.distilled and teacher.singers == student.singers and teacher.stats == student.stats
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), student.state_dict().values()))
    again = copy_model(teacher, distilled=True, distilled_from="some/teacher")
    assert again.distilled and again.distilled_from == "some/teacher" and not again.training
    assert random_stats(tiny_config, singers)["f0"] == {"random_a": {"median": 220.0, "p5": 150.0, "p95": 400.0}}
