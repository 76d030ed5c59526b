"""Fine-tuning a tiny teacher and student on a new synthetic voice (comosvc/training/finetune.py).

The singer table is extended (base ids never move, new singers take the next free id),
every bad input is refused with one line before any training, a few steps of each phase
give a teacher and a student that load and convert to the new singer, and ``resume``
continues both phases from their checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from comosvc.training.finetune_checks import FinetuneError
from tests.conftest import F0_MEDIANS, SINGERS, save_tiny_models

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate")

FAST = [  # few and small steps: the tests check plumbing, not learning
    "finetune.min_seconds=2", "finetune.batch_size=2", "inference.teacher_steps=2", "train.num_workers=0",
    "distill.num_workers=0", "train.log_with=none", "distill.log_with=none",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_overrides) -> dict:
    """A tiny base teacher and student (3 singers, each with a timbre index), and 8 s of a new voice
    (one singer folder)."""
    from comosvc.config import load_config
    from comosvc.data.synthetic import write_corpus
    from comosvc.files import INDEX_FILE
    from comosvc.index.store import TimbreIndex
    from tests.conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("finetune")
    config = load_config(TINY_CONFIG, overrides=list(tiny_overrides))
    teacher, student = save_tiny_models(root / "base", config)
    dims = {"whisper": config.content.whisper_dim, "contentvec": config.content.contentvec_dim}
    generator = torch.Generator().manual_seed(0)
    index = TimbreIndex({key: {name: torch.randn(4, dim, generator=generator) for name, dim in dims.items()} for key in SINGERS})
    for folder in (teacher, student):
        index.save(folder / INDEX_FILE)
    write_corpus("generic", root / "voice", n_singers=1, files_per_singer=4, seconds=2.0, seed=5)
    return {"root": root, "config": config, "teacher": teacher, "student": student, "voice": root / "voice", "index": index}


def run_finetune(base: dict, out: Path, *, datasets=None, overrides=(), **kwargs):
    from comosvc.training.finetune import finetune

    kwargs.setdefault("student", base["student"])
    return finetune(
        base["teacher"], out, datasets=[f"generic:alice={base['voice']}"] if datasets is None else datasets,
        teacher_steps=kwargs.pop("teacher_steps", 4), distill_steps=kwargs.pop("distill_steps", 4),
        overrides=[*FAST, *overrides], device="cpu", **kwargs,
    )


def singer_folder(root: Path, singer: str, files: int, seconds: float) -> Path:
    """``root/<singer>/...``: ``files`` synthetic takes of ``seconds`` each (generic layout)."""
    from comosvc.data.synthetic import write_corpus

    write_corpus("generic", root, n_singers=1, files_per_singer=files, seconds=seconds, seed=7)
    (root / "singer0").rename(root / singer)
    return root


def refused(base: dict, out: Path, match: str, **kwargs) -> str:
    """The one-line message of a refused fine-tune; nothing was trained in ``out``."""
    with pytest.raises(FinetuneError, match=match) as info:
        run_finetune(base, out, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert not (out / "teacher").exists() and not (out / "student").exists()
    return message


# --------------------------------------------------------------------------- the singer table


def test_extending_a_table_keeps_every_id_and_gives_the_next_free_one():
    from comosvc.data.singers import SingerTable

    base = {"a_x": 0, "a_y": 4, "b_z": 2}
    table = SingerTable(max_speakers=8).extending(base)
    assert table.update(["new_p", "new_q", "a_x"]) == ["new_p", "new_q"]
    assert table.to_dict() == {"a_x": 0, "b_z": 2, "a_y": 4, "new_p": 5, "new_q": 6}
    # a table written by an earlier fine-tune extends again to itself
    assert SingerTable(table.to_dict()).extending(base).to_dict() == table.to_dict()
    with pytest.raises(ValueError, match="'new_p' id 2.*another singer's"):
        SingerTable({"new_p": 2}).extending(base)
    with pytest.raises(ValueError, match="'a_y' id 1.*has id 4"):
        SingerTable({"a_y": 1}).extending(base)


def test_extending_stats_keeps_the_base_and_adds_the_new():
    from comosvc.data.preprocess import extend_stats

    base = {"mel": {"a": {"min": [0], "max": [1]}}, "f0": {"a_x": {"median": 200.0}}, "durations": {"a_x": 60.0}}
    new = {"mel": {"a": {"min": [5], "max": [6]}, "n": {"min": [2], "max": [3]}},
           "f0": {"a_x": {"median": 300.0}, "n_y": {"median": 100.0}}, "durations": {"a_x": 9.0, "n_y": 30.0}}
    merged = extend_stats(base, new)
    assert merged["mel"] == {"a": {"min": [0], "max": [1]}, "n": {"min": [2], "max": [3]}}
    assert merged["f0"] == {"a_x": {"median": 200.0}, "n_y": {"median": 100.0}}
    assert merged["durations"] == {"a_x": 60.0, "n_y": 30.0}
    assert extend_stats(base, merged) == merged


def test_a_new_row_starts_from_the_nearest_base_voice_by_f0_or_the_mean():
    from comosvc.training.speaker_rows import nearest_by_f0

    f0 = {key: {"median": hz} for key, hz in F0_MEDIANS.items()}
    assert nearest_by_f0(120.0, f0, SINGERS) == "synth_bass"
    assert nearest_by_f0(310.0, f0, SINGERS) == "other_alto"  # 300 Hz is nearer than 330 Hz
    assert nearest_by_f0(None, f0, SINGERS) is None and nearest_by_f0(200.0, {}, SINGERS) is None


def test_new_rows_start_as_chosen_and_the_other_rows_go_back_to_the_base(tiny_config):
    from comosvc.models import ComoSVC
    from comosvc.training.speaker_rows import MEAN, keep_rows, start_rows
    from tests.conftest import tiny_stats

    model = ComoSVC(tiny_config, singers={**SINGERS, "new_low": 3, "new_unvoiced": 4})
    table = model.condition_encoder.speaker.weight
    base_table = table.detach().clone()
    mean = base_table[:3].mean(0)
    started = start_rows(model, {"new_low": 120.0, "new_unvoiced": None}, SINGERS, tiny_stats(), "nearest_f0")
    assert started == {"new_low": "synth_bass", "new_unvoiced": MEAN}
    torch.testing.assert_close(table[3], base_table[1], rtol=0, atol=0)
    torch.testing.assert_close(table[4], mean)
    assert start_rows(model, {"new_low": 120.0}, SINGERS, tiny_stats(), "mean") == {"new_low": MEAN}
    torch.testing.assert_close(table[3], mean)

    with torch.no_grad():
        table.mul_(0.5)  # as weight decay shrinks every row a little
    keep_rows(model, base_table, trained_ids=[3])
    torch.testing.assert_close(table[3], mean * 0.5)
    torch.testing.assert_close(torch.cat([table[:3], table[4:]]), torch.cat([base_table[:3], base_table[4:]]), rtol=0, atol=0)


def test_a_new_voice_past_every_base_singers_notes_is_warned_of():
    from comosvc.training.finetune import range_warnings

    base = {"f0": {"a_x": {"median": 200.0, "p5": 150.0, "p95": 300.0}, "a_y": {"median": 300.0, "p5": 220.0, "p95": 420.0}}}
    data = {"f0": {"n_hi": {"median": 360.0, "p5": 260.0, "p95": 500.0}, "n_mid": {"median": 250.0, "p5": 180.0, "p95": 430.0},
                   "n_lo": {"median": 110.0, "p5": 80.0, "p95": 160.0}, "n_none": {"median": None, "p5": None, "p95": None}}}
    high, low = range_warnings(data, base, ["n_hi", "n_mid", "n_lo", "n_none"])
    assert high.startswith("n_hi sings up to 500 Hz (its F0 p95), above every base singer (up to 420 Hz)")
    assert "an octave low" in high and "lower key" in high
    assert low.startswith("n_lo sings down to 80 Hz (its F0 p5), below every base singer (down to 150 Hz)")
    assert range_warnings(data, {"f0": {}}, ["n_hi"]) == []


def test_only_the_chosen_parts_train(tiny_config):
    from comosvc.models import ComoSVC
    from comosvc.training.finetune import select_parts

    def trainable() -> set[str]:
        """"prior", "denoiser" or "condition_encoder.<input>" of each trainable parameter."""
        names = [name.split(".") for name, p in model.named_parameters() if p.requires_grad]
        return {".".join(parts[:2]) if parts[0] == "condition_encoder" else parts[0] for parts in names}

    model = ComoSVC(tiny_config, singers=SINGERS)
    select_parts(model, ["speaker", "prior", "denoiser"])
    assert trainable() == {"condition_encoder.speaker", "prior", "denoiser"}
    select_parts(model, ["condition"])
    assert trainable() == {"condition_encoder." + name for name in ("whisper", "contentvec", "f0", "voiced", "energy")}
    select_parts(model, ["speaker", "f0", "prior", "denoiser"])
    assert trainable() == {"condition_encoder.speaker", "condition_encoder.f0", "prior", "denoiser"}


def test_embedding_tables_train_faster_than_the_networks_and_without_weight_decay(tiny_config):
    from comosvc.models import ComoSVC
    from comosvc.training.finetune import EMBEDDING_LR_SCALE, select_parts
    from comosvc.training.setup import _build_optimizer

    model = ComoSVC(tiny_config, singers=SINGERS)
    encoder = model.condition_encoder
    dense, speaker, f0 = select_parts(model, ["speaker", "f0", "prior", "denoiser"], rows=[3])
    assert speaker["params"] == [encoder.speaker.weight] and f0["params"] == [encoder.f0.weight]
    assert all(p is not encoder.speaker.weight and p is not encoder.f0.weight for p in dense["params"])
    tc = dataclasses.replace(tiny_config.train, lr=1e-4, weight_decay=0.01)
    optimizer = _build_optimizer([dense, speaker, f0], tc)
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs == pytest.approx([1e-4, 1e-4 * EMBEDDING_LR_SCALE["speaker"], 1e-4 * EMBEDDING_LR_SCALE["f0"]])
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.01, 0.0, 0.0]
    assert EMBEDDING_LR_SCALE["speaker"] > 1 and EMBEDDING_LR_SCALE["f0"] > 1
    # one step moves the new singer's row and the F0 bins used, and leaves every base row as it was
    base_rows = encoder.speaker.weight[:3].detach().clone()
    before = encoder.f0.weight.detach().clone()
    batch = {"mel": torch.rand(2, 40, tiny_config.audio.n_mels) * 2 - 1, "f0": torch.full((2, 40), 220.0),
             "whisper": torch.randn(2, 40, tiny_config.content.whisper_dim), "energy": torch.rand(2, 40),
             "contentvec": torch.randn(2, 40, tiny_config.content.contentvec_dim), "speaker": torch.tensor([3, 3]),
             "mask": torch.ones(2, 40, dtype=torch.bool)}
    model.teacher_loss(batch)["loss"].backward()
    optimizer.step()
    torch.testing.assert_close(encoder.speaker.weight[:3], base_rows, rtol=0, atol=0)
    moved = (encoder.f0.weight - before).abs().sum(1) > 0
    assert moved.sum() == 1  # the bin of 220 Hz only (unvoiced frames: none here)
    # a plain list of parameters is one group at the config's lr
    assert [g["lr"] for g in _build_optimizer(list(model.prior.parameters()), tc).param_groups] == [1e-4]


# --------------------------------------------------------------------------- refusals, before any training


def test_refuses_a_folder_without_usable_audio(base, tmp_path):
    from comosvc.audio import save_audio

    silent = tmp_path / "silent"
    save_audio(silent / "bob" / "take.wav", np.zeros(24000 * 3, np.float32))
    message = refused(base, tmp_path / "out", "No usable audio", datasets=[f"generic:bob={silent}"])
    assert "skipped" in message
    (tmp_path / "empty" / "bob").mkdir(parents=True)
    (tmp_path / "empty" / "bob" / "notes.txt").write_text("no audio here")
    refused(base, tmp_path / "out2", "No audio found", datasets=[f"generic:bob={tmp_path / 'empty'}"])


def test_refuses_too_little_audio_saying_the_minimum_and_what_was_found(base, tmp_path):
    message = refused(base, tmp_path / "out", "Too little audio", overrides=["finetune.min_seconds=30"])
    assert "alice_singer0: 8.0 s usable, at least 30 s needed" in message


def test_refuses_settings_that_contradict_the_base_model(base, tmp_path):
    from comosvc.data.singers import SingerTable
    from comosvc.models import ComoSVC

    refused(base, tmp_path / "out", r"audio.sample_rate 24000 != 44100", overrides=["audio.sample_rate=44100"])
    refused(base, tmp_path / "out", r"content.whisper_mode 'unpadded' != 'padded'", overrides=["content.whisper_mode=padded"])
    # a student of other mel settings
    other = dataclasses.replace(base["config"], audio=dataclasses.replace(base["config"].audio, n_mels=80))
    ComoSVC(other, singers=SINGERS, distilled=True, distilled_from=str(base["teacher"])).save_pretrained(tmp_path / "s80")
    refused(base, tmp_path / "out", r"other settings than --teacher .*audio.n_mels 100 != 80", student=tmp_path / "s80")
    # processed data of another Whisper mode
    data = tmp_path / "data"
    data.mkdir()
    dataclasses.replace(base["config"], content=dataclasses.replace(base["config"].content, whisper_mode="padded")).save(data / "config.yaml")
    SingerTable(SINGERS).save(data)
    (data / "stats.json").write_text(json.dumps({"mel": {}}))
    refused(base, tmp_path / "out", "prepared with other settings.*whisper_mode", datasets=(), data=data)


def test_refuses_a_student_distilled_from_another_teacher(base, tmp_path):
    from comosvc.models import ComoSVC

    torch.manual_seed(1)
    ComoSVC(base["config"], singers=SINGERS, distilled=True, distilled_from="someone/else").save_pretrained(tmp_path / "s")
    message = refused(base, tmp_path / "out", "was distilled from someone/else, not from --teacher", student=tmp_path / "s")
    assert "leave out --student" in message
    refused(base, tmp_path / "out", "is not a distilled student", student=base["teacher"])
    refused({**base, "teacher": base["student"]}, tmp_path / "out", "is a distilled student: pass its teacher")


def test_refuses_a_known_singer_unless_continued_and_a_full_table(base, tmp_path):
    voice = singer_folder(tmp_path / "synth", "alto", files=1, seconds=1.0)
    refused(base, tmp_path / "out", "synth_alto is already in the base model's singer table.*--continue_singer",
            datasets=[f"generic:synth={voice}"])

    config = dataclasses.replace(base["config"], model=dataclasses.replace(base["config"].model, n_speakers=3))
    teacher, student = save_tiny_models(tmp_path / "full", config)
    full = {**base, "teacher": teacher, "student": student}
    refused(full, tmp_path / "out", "singer table is full: 1 new singer.*model.n_speakers is 3")


def test_refuses_an_output_folder_that_holds_something(base, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    refused(base, tmp_path / "out", "is not empty.*--resume")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
    with pytest.raises(FinetuneError, match="holds the base model"):
        run_finetune(base, base["root"], resume=True)


# --------------------------------------------------------------------------- end to end, then resumed


@pytest.fixture(scope="module")
def finetuned(base, tmp_path_factory) -> dict:
    from comosvc.training.setup import reset_accelerate_state

    reset_accelerate_state()
    out = tmp_path_factory.mktemp("runs") / "alice"
    base_files = {p: p.read_bytes() for folder in (base["teacher"], base["student"]) for p in folder.iterdir()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the one_thread fixture
    try:
        result = run_finetune(base, out)
    finally:
        torch.set_num_threads(threads)
    return {"out": out, "result": result, "base_files": base_files}


def test_finetune_writes_a_teacher_and_a_student_of_the_new_voice(base, finetuned):
    from comosvc.models import ComoSVC
    from comosvc.audio import load_audio
    from comosvc.pipeline import ConversionPipeline
    from comosvc.training.speaker_rows import MEAN
    from comosvc.vocoders import GRIFFINLIM

    result, out = finetuned["result"], finetuned["out"]
    assert result.teacher == out / "teacher" / "model" and result.student == out / "student" / "model"
    assert result.singers == ["alice_singer0"] and result.minutes == pytest.approx(8 / 60, abs=0.01)
    assert result.started_from["alice_singer0"] == MEAN  # finetune.start_embedding: mean
    assert result.warnings == []  # the new voice sings within the base singers' notes
    base_teacher = ComoSVC.from_pretrained(base["teacher"])
    teacher, student = ComoSVC.from_pretrained(result.teacher), ComoSVC.from_pretrained(result.student)
    for model in (teacher, student):
        assert model.singers == {**SINGERS, "alice_singer0": 3}  # base ids kept, the next free id
        assert model.stats["mel"].keys() == {"synth", "other", "alice"}
        assert model.stats["f0"]["synth_alto"] == base_teacher.stats["f0"]["synth_alto"]
        assert model.finetune_minutes == pytest.approx(result.minutes, abs=0.01)
    assert teacher.base_model == str(base["teacher"]) and student.base_model == str(base["student"])
    assert not teacher.distilled and student.distilled and student.distilled_from == str(result.teacher)
    assert student.distillation_steps == 4 and teacher.training_steps is None  # the base's steps are not known
    card = (result.student / "README.md").read_text()
    assert f"Fine-tuned from `{base['student']}` on 0.1 min of new audio" in card and "alice_singer0" in card

    # the base singers' rows are the base's; the new row and the trained parts moved; the rest did not
    rows, base_rows = teacher.condition_encoder.speaker.weight, base_teacher.condition_encoder.speaker.weight
    torch.testing.assert_close(rows[:3], base_rows[:3], rtol=0, atol=0)
    torch.testing.assert_close(rows[4:], base_rows[4:], rtol=0, atol=0)
    assert not torch.equal(rows[3], base_rows[3])
    for part in ("prior", "denoiser"):
        moved = [not torch.equal(v, getattr(base_teacher, part).state_dict()[k]) for k, v in getattr(teacher, part).state_dict().items()]
        assert any(moved), part
    torch.testing.assert_close(teacher.condition_encoder.whisper.weight, base_teacher.condition_encoder.whisper.weight, rtol=0, atol=0)
    # the timbre index: the base singers' as they were, the new singer's built from its 8 s
    for model in (teacher, student):
        assert model.index.singers == [*SINGERS, "alice_singer0"]
        for key in SINGERS:
            assert all(torch.equal(model.index.vectors[key][name], base["index"].vectors[key][name]) for name in ("whisper", "contentvec"))
        assert model.index.size("alice_singer0") > 0
    # the base models are as they were
    assert {p: p.read_bytes() for p in finetuned["base_files"]} == finetuned["base_files"]

    pipe = ConversionPipeline.from_pretrained(result.student, vocoder=GRIFFINLIM, device="cpu")
    clip = load_audio(sorted(base["voice"].rglob("*.wav"))[0])
    converted = pipe(clip, singer="alice_singer0", steps=1, seed=0)
    assert converted.nfe == 1 and converted.audio.shape == clip.shape and np.isfinite(converted.audio).all()


def test_continue_singer_fine_tunes_a_base_singer_in_place(base, tmp_path):
    from comosvc.models import ComoSVC

    voice = singer_folder(tmp_path / "synth", "alto", files=3, seconds=2.0)
    result = run_finetune(base, tmp_path / "out", datasets=[f"generic:synth={voice}"], continue_singer=True,
                          teacher_steps=2, distill_steps=1)
    assert result.singers == ["synth_alto"] and result.started_from == {}
    base_teacher, teacher = ComoSVC.from_pretrained(base["teacher"]), ComoSVC.from_pretrained(result.teacher)
    assert teacher.singers == SINGERS and teacher.stats["f0"] == base_teacher.stats["f0"]
    rows, base_rows = teacher.condition_encoder.speaker.weight, base_teacher.condition_encoder.speaker.weight
    assert not torch.equal(rows[0], base_rows[0])  # its own row trained on
    torch.testing.assert_close(rows[1:], base_rows[1:], rtol=0, atol=0)
    # its index rebuilt from the new recordings, the others' kept
    assert teacher.index.singers == list(SINGERS)
    assert not torch.equal(teacher.index.vectors["synth_alto"]["whisper"], base["index"].vectors["synth_alto"]["whisper"])
    assert torch.equal(teacher.index.vectors["synth_bass"]["whisper"], base["index"].vectors["synth_bass"]["whisper"])


class Interrupted(Exception):
    pass


def test_an_interrupted_finetune_resumes_where_it_stopped(base, finetuned, tmp_path, monkeypatch, caplog):
    """The processed data of the first fine-tune (--data), a run stopped during distillation, then --resume."""
    from comosvc.models import ComoSVC, ConsistencyDistiller

    out, data = tmp_path / "again", finetuned["out"] / "data"
    update_ema = ConsistencyDistiller.update_ema
    calls = []

    def stop_at_the_third_step(self):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted
        update_ema(self)

    monkeypatch.setattr(ConsistencyDistiller, "update_ema", stop_at_the_third_step)
    with pytest.raises(Interrupted):
        run_finetune(base, out, datasets=(), data=data)
    assert (out / "teacher" / "model").is_dir() and not (out / "student" / "model").exists()
    monkeypatch.setattr(ConsistencyDistiller, "update_ema", update_ema)

    with pytest.raises(FinetuneError, match="is not empty"):
        run_finetune(base, out, datasets=(), data=data)
    pushed = []
    monkeypatch.setattr(ComoSVC, "push_to_hub", lambda model, repo: pushed.append((model.distilled, repo)) or repo)
    with caplog.at_level("INFO", logger="comosvc"):
        result = run_finetune(base, out, datasets=(), data=data, resume=True, push_to_hub="user/alice")
    resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Resumed from")]
    assert resumed == [f"Resumed from {out / 'teacher' / 'checkpoints' / 'step-00000004'} at step 4",
                       f"Resumed from {out / 'student' / 'checkpoints' / 'step-00000002'} at step 2"]
    student = ComoSVC.from_pretrained(result.student)
    assert student.distillation_steps == 4 and student.singers == {**SINGERS, "alice_singer0": 3}
    # both pushed; the student names the pushed teacher as its own
    assert pushed == [(False, "user/alice-teacher"), (True, "user/alice-student")]
    assert student.distilled_from == "user/alice-teacher"

    # training the teacher on would leave the finished student distilled from an older teacher
    with pytest.raises(FinetuneError, match="distilled from the teacher at step 4, which would now train on to step 6"):
        run_finetune(base, out, datasets=(), data=data, resume=True, teacher_steps=6)


def test_the_script_refuses_with_one_error_line(base, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "train" / "finetune.py"), "--teacher", str(base["teacher"]), "--student",
         str(base["student"]), "--dataset", f"generic:alice={base['voice']}", "--out", str(tmp_path / "out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --out {tmp_path / 'out'} is not empty: choose a new folder, or pass --resume to continue the fine-tune in it."
    ]


def test_two_processes_share_the_work(base, tmp_path):
    """torchrun on the CPU: the main process prepares the data, both train, the process group outlives the
    teacher phase, and a batch size is found that gives each process a batch of the few utterances."""
    import os
    import subprocess
    import sys

    from comosvc.models import ComoSVC
    from tests.conftest import REPO

    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    args = ["--teacher", str(base["teacher"]), "--dataset", f"generic:alice={base['voice']}", "--out", str(out),
            "--teacher_steps", "2", "--distill_steps", "2", *FAST, "finetune.batch_size=16"]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(REPO / "train" / "finetune.py"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("2 process(es)") == 2 and result.stdout.count("convert with") == 1
    assert ComoSVC.from_pretrained(out / "student" / "model").singers == {**SINGERS, "alice_singer0": 3}
    from comosvc.config import load_config

    assert load_config(out / "teacher" / "config.yaml").train.batch_size == 1  # 3 training utterances, 2 processes
