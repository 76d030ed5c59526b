"""comosvc.serving: the app's settings, model loading and its fallbacks, the ZeroGPU budget, what the page shows.

The app itself (``app.py``: the page, its handlers, ZeroGPU's ``spaces.GPU``) is tested end
to end in test_app.py and test_app_space.py; here each piece runs without Gradio, on the
tiny model of those tests.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from comosvc.serving.gpu_budget import GpuBudget, calibrated, clip_seconds, measure_budget
from comosvc.serving.inputs import conversion_samplers, key_shift, target_singer
from comosvc.serving.settings import HOW_TO_PROVIDE, ServingSettings, parse_settings
from comosvc.serving.space import SPACE_MODEL, SPACE_TEACHER
from test_app import SINGERS, build_tiny_model, write_clip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_overrides):
    """The app tests' tiny student (its teacher beside it)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), tiny_overrides)


@pytest.fixture(scope="module")
def served(tiny_model):
    from comosvc.serving.loading import load_served_model

    return load_served_model(ServingSettings(model=str(tiny_model), vocoder="griffinlim", device="cpu"))


# --------------------------------------------------------------------------- settings


def test_flags_and_environment_variables():
    settings = parse_settings(["--model", "flag/model", "--max-seconds", "12", "--share"],
                              environ={"COMOSVC_MODEL": "env/model", "COMOSVC_VOCODER": "griffinlim",
                                       "COMOSVC_MAX_FILE_SIZE": "5mb", "COMOSVC_DTYPE": "float32", "COMOSVC_TEACHER": ""})
    assert settings.model == "flag/model"  # a flag wins over its variable
    assert settings.vocoder == "griffinlim" and settings.max_file_size == "5mb" and settings.dtype == "float32"
    assert settings.teacher is None  # an empty variable counts as unset
    assert settings.max_seconds == 12.0 and settings.share is True
    defaults = parse_settings([], environ={})
    assert defaults == ServingSettings() and defaults.model is None and defaults.share is False


def test_space_serves_the_preloaded_model_when_none_is_named():
    space = {"SPACE_ID": "someone/comosvc"}
    settings = parse_settings([], environ=space)
    assert (settings.model, settings.teacher) == (SPACE_MODEL, SPACE_TEACHER)
    named = parse_settings([], environ={**space, "COMOSVC_MODEL": "you/student"})
    assert (named.model, named.teacher) == ("you/student", None)  # its own teacher: the one it names
    assert parse_settings(["--model", "you/student"], environ=space).teacher is None
    assert parse_settings([], environ={}).model is None  # elsewhere: no default model, the page says what is missing


@pytest.mark.parametrize("argv, environ, message", [
    ([], {"COMOSVC_MAX_SECONDS": "a minute"}, "COMOSVC_MAX_SECONDS must be a positive number of seconds, not 'a minute'"),
    ([], {"COMOSVC_DTYPE": "float64"}, "COMOSVC_DTYPE must be one of auto, float32, float16, bfloat16, not 'float64'"),
    ([], {"COMOSVC_GPU_MAX_DURATION": "0"}, "COMOSVC_GPU_MAX_DURATION must be a positive number of seconds, not 0.0"),
    (["--gpu-max-duration", "0"], {}, "--gpu-max-duration must be a positive number of seconds, not 0.0"),
    (["--gpu-cost-per-step", "-1"], {}, "--gpu-cost-per-step must be a positive number of seconds, not -1.0"),
    (["--concurrency", "0"], {}, "--concurrency must be a positive number, not 0"),
    (["--dtype", "float64"], {}, "invalid choice: 'float64'"),
])
def test_bad_settings_exit_with_one_line_naming_the_flag_or_variable(argv, environ, message, capsys):
    with pytest.raises(SystemExit):
        parse_settings(argv, environ=environ)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error


def test_budget_is_configured_by_flags_and_variables():
    settings = parse_settings(["--gpu-cost-per-second", "0.5", "--gpu-cost-per-step", "0.01", "--gpu-max-duration", "30",
                               "--gpu-cost-shared", "0.25"], environ={})
    budget = settings.budget
    assert (budget.shared_per_second, budget.per_second, budget.per_step, budget.cap) == (0.25, 0.5, 0.01, 30)
    assert budget.source == "configured" and budget.seconds(600.0, 101 + 4) == 30  # capped
    assert parse_settings([], environ={"COMOSVC_GPU_COST_PER_STEP": "0.02"}).budget.per_step == 0.02
    defaults = ServingSettings().budget
    assert defaults == GpuBudget() and defaults.source == "defaults"  # start-up measures these on CUDA
    assert "--model MODEL" in HOW_TO_PROVIDE and "COMOSVC_MODEL" in HOW_TO_PROVIDE


# --------------------------------------------------------------------------- GPU budget


def test_budget_pays_content_and_f0_once_and_stays_under_the_cap():
    plain = GpuBudget(shared_per_second=1.0, per_second=0.5, per_step=0.25, overhead=0.0, margin=1.0)
    assert plain.seconds(10.0, evaluations=4, runs=2) == 10 * (1.0 + 2 * 0.5 + 4 * 0.25)
    assert plain.seconds(10.0, evaluations=0, runs=0) == 0
    samplers = [SimpleNamespace(nfe=41), SimpleNamespace(nfe=1)]  # teacher 40 steps (Euler), student 1 step
    assert plain.for_samplers(10.0, samplers) == plain.seconds(10.0, 42, 2)
    budget = GpuBudget()
    assert budget.seconds(0.0, 42) == budget.overhead
    assert budget.seconds(10.0, 42) < budget.seconds(60.0, 42) <= budget.seconds(60.0, 101 + 4) <= budget.cap
    assert str(budget).startswith("GPU budget per conversion (defaults): ")


def test_clip_seconds_counts_the_upload_up_to_the_limit(tmp_path):
    clip = write_clip(tmp_path / "clip.wav", seconds=3.0)
    assert 2.5 < clip_seconds(clip, max_seconds=60.0) < 3.5
    assert clip_seconds(clip, max_seconds=1.0) == 1.0  # longer clips are refused at once: count the limit
    (tmp_path / "notes.txt").write_text("not audio")
    assert clip_seconds(None, 60.0) == clip_seconds(tmp_path / "notes.txt", 60.0) == 0.0


def test_measure_budget_on_the_pipeline(served):
    measured = measure_budget(served.pipe, served.samplers, GpuBudget(cap=30.0))
    assert measured.source == "measured on cpu" and measured.cap == 30.0
    assert measured.shared_per_second > 0 and measured.per_second > 0 and measured.per_step > 0
    assert calibrated(served.pipe, served.samplers, GpuBudget()) == GpuBudget()  # measured on CUDA only
    broken = SimpleNamespace(config=served.pipe.config, sample_rate=served.pipe.sample_rate, singers=served.pipe.singers)
    assert measure_budget(broken, ("student",), GpuBudget()) == GpuBudget()  # a failed run keeps the budget


# --------------------------------------------------------------------------- loading


def test_load_served_model(served):
    assert served.samplers == ("teacher", "student") and served.notes == () and served.vocoder_fallback is None
    assert served.pipe.vocoder_name.lower().replace("-", "") == "griffinlim"
    from comosvc.serving.inputs import singer_names
    from comosvc.serving.loading import warm_up

    assert singer_names(served.pipe) == SINGERS
    warm_up(served.pipe, served.samplers)


def test_unreachable_vocoder_falls_back_to_griffinlim_and_says_so(tiny_model, tmp_path):
    from comosvc.serving.loading import load_served_model

    missing = str(tmp_path / "no-vocoder-here")
    served = load_served_model(ServingSettings(model=str(tiny_model), vocoder=missing, device="cpu"))
    assert served.vocoder_fallback is not None and missing in served.vocoder_fallback
    assert served.pipe.vocoder_name.lower().replace("-", "") == "griffinlim"
    assert any(f"`{missing}` could not be reached" in note and "--vocoder" in note for note in served.notes)


def test_missing_teacher_leaves_the_student_with_a_note(tiny_model, tmp_path):
    from comosvc.serving.loading import load_served_model

    served = load_served_model(ServingSettings(model=str(tiny_model), vocoder="griffinlim", device="cpu",
                                               teacher=str(tmp_path / "no-teacher")))
    assert served.samplers == ("student",)
    assert any(note.startswith("The teacher could not be loaded") for note in served.notes)
    teacher_only = load_served_model(ServingSettings(model=str(tiny_model.parent / "teacher"), vocoder="griffinlim",
                                                     device="cpu"))
    assert teacher_only.samplers == ("teacher",) and "without a distilled student" in teacher_only.notes[0]


def test_no_model_to_load_says_how_to_give_one():
    from comosvc.serving.loading import load_served_model

    with pytest.raises(ValueError, match="--model MODEL"):
        load_served_model(ServingSettings())


# --------------------------------------------------------------------------- inputs, view, live, examples


def test_inputs_to_the_pipelines_arguments(served):
    assert target_singer("alto") == "alto"
    assert target_singer("alto", "tenor", 0.25) == "alto:0.75,tenor:0.25"
    assert key_shift(3) == 3.0 and key_shift(3, auto_key=True) == "auto"
    samplers = conversion_samplers(served.pipe, served.samplers, teacher_steps=4, student_steps=1)
    assert [sampler.nfe for sampler in samplers] == [5, 1]  # Euler: steps + 1
    assert conversion_samplers(None, ("teacher",)) == []
    assert conversion_samplers(served.pipe, served.samplers, teacher_steps=0) == []  # refused: the conversion says why


def test_comparison_view(served):
    from comosvc.compare import compare
    from comosvc.data.songs import sung_phrase
    from comosvc.serving.view import comparison_view

    wav, _ = sung_phrase([220.0, 262.0], note_seconds=0.4, gap_seconds=0.1, seed=0)
    result = compare(served.pipe, wav, SINGERS[0], teacher_steps=2, student_steps=1, samplers=("student",))
    view = comparison_view(result, served.pipe.config.audio)
    assert view.audio["teacher"] is None and view.mels["teacher"] is None  # not run
    rate, pcm = view.audio["student"]
    assert rate == 24000 and pcm.dtype == np.int16 and len(pcm) == len(wav)
    assert view.mels["source"].ndim == 3 and view.mels["student"].dtype == np.uint8
    assert view.headers[1:] == ["teacher, 2 steps", "student, 1 step", "student speed-up"]
    assert len(view.cells) > 0 and all(len(row) == len(view.headers) for row in view.cells)


def test_live_session(served):
    from comosvc.serving.live import LiveSession

    session = LiveSession.start(served.pipe, SINGERS[0], key=0.0, rate=48000)
    assert session.serves(SINGERS[0], 0.0, 48000) and not session.serves(SINGERS[0], "auto", 48000)
    assert session.slowest_recent_block() is None and session.keeps_up() is None
    t = np.arange(48000) / 48000
    stereo = (np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1) * 16000).astype(np.int16)  # a microphone's int16 pair
    out = np.concatenate([session.push(stereo[i:i + 4800]) for i in range(0, len(stereo), 4800)])
    assert out.dtype == np.float32 and len(out) > 0 and session.sample_rate == 24000
    assert session.slowest_recent_block() > 0 and session.keeps_up() in (True, False)
    with pytest.raises((ValueError, KeyError)):
        LiveSession.start(served.pipe, "nobody", key=0.0, rate=48000)


def test_examples_are_written_once(tmp_path):
    from comosvc.serving.examples import EXAMPLES, write_examples

    examples = write_examples(tmp_path / "examples")
    assert [path.name for path, _ in examples] == [name for name, *_ in EXAMPLES]
    stamps = [path.stat().st_mtime_ns for path, _ in examples]
    assert [path.stat().st_mtime_ns for path, _ in write_examples(tmp_path / "examples")] == stamps


# --------------------------------------------------------------------------- adding a singer


def _zip(path, members: dict):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_uploads_are_gathered_into_a_singer_folder_and_unsafe_zips_refused(tmp_path):
    from comosvc.serving.add_singer import AddSingerError, gather_clips

    clip = write_clip(tmp_path / "take.wav", seconds=1.0)
    (tmp_path / "notes.txt").write_text("not audio")
    takes = _zip(tmp_path / "takes.zip", {"songs/take.wav": clip.read_bytes(), "songs/readme.md": "left out",
                                          "__MACOSX/songs/._take.wav": b"macOS metadata"})
    assert gather_clips([clip, tmp_path / "notes.txt", takes], "alice", tmp_path / "data") == 2
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == ["0000-take.wav", "0001-take.wav", "alice"]
    assert (tmp_path / "data" / "alice" / "0001-take.wav").read_bytes() == clip.read_bytes()

    for evil in ("../escaped.wav", "/tmp/escaped.wav", "a/../../escaped.wav"):
        with pytest.raises(AddSingerError, match="a path outside the archive") as info:
            gather_clips([_zip(tmp_path / "evil.zip", {evil: b"x"})], "bob", tmp_path / "evil")
        assert "\n" not in str(info.value)
    assert not (tmp_path / "escaped.wav").exists() and not any((tmp_path / "evil" / "bob").iterdir())
    with pytest.raises(AddSingerError, match="No audio among the uploads"):
        gather_clips([tmp_path / "notes.txt"], "carol", tmp_path / "none")
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(AddSingerError, match="broken.zip is not a readable zip"):
        gather_clips([tmp_path / "broken.zip"], "dave", tmp_path / "broken")


def test_singer_names_and_where_the_tab_can_run():
    from comosvc.serving.add_singer import AddSingerError, finetune_unavailable, singer_key

    assert singer_key(" alice-2 ") == "added_alice-2"
    for bad, match in (("", "Give the new singer a name"), ("../x", "cannot name a singer"), ("a b", "cannot name a singer"),
                       ("a_b", "cannot name a singer"), ("x" * 33, "cannot name a singer")):
        with pytest.raises(AddSingerError, match=match):
            singer_key(bad)
    with pytest.raises(AddSingerError, match="already has a singer 'added_alice': choose another name"):
        singer_key("alice", ["synth_alto", "added_alice"])

    zero_gpu = finetune_unavailable(zero_gpu=True, cuda=True)
    assert "ZeroGPU" in zero_gpu and "accelerate launch train/finetune.py" in zero_gpu
    assert "--allow-cpu-finetune" in finetune_unavailable(cuda=False)
    assert finetune_unavailable(allow_cpu=True, cuda=False) is None and finetune_unavailable(cuda=True) is None
    assert parse_settings(["--allow-cpu-finetune"], environ={}).allow_cpu_finetune is True
    assert ServingSettings().allow_cpu_finetune is False


FAST_FINETUNE = [  # few and small steps: plumbing, not learning (as tests/test_finetune.py)
    "finetune.min_seconds=2", "finetune.batch_size=2", "inference.teacher_steps=2", "train.num_workers=0",
    "distill.num_workers=0", "train.log_with=none", "distill.log_with=none",
]


def test_add_singer_fine_tunes_the_served_models_and_the_app_serves_the_new_singer(served, tmp_path, fresh_accelerate):
    from comosvc.serving.add_singer import AddSingerError, add_singer
    from comosvc.serving.inputs import singer_names
    from comosvc.serving.loading import load_served_model

    clips = [write_clip(tmp_path / f"take{i}.wav", seconds=2.0, seed=i) for i in range(4)]
    takes = _zip(tmp_path / "takes.zip", {path.name: path.read_bytes() for path in clips[1:]})
    heard = []
    added = add_singer([clips[0], takes], "alice", served.pipe, out_root=tmp_path / "runs", teacher_steps=2,
                       distill_steps=2, overrides=FAST_FINETUNE, device="cpu",
                       progress=lambda fraction, what: heard.append((fraction, what)))
    assert added.singer == "added_alice" and added.clips == 4 and added.out == tmp_path / "runs" / "alice"
    assert added.student == added.out / "student" / "model" and added.teacher == added.out / "teacher" / "model"
    assert f"python app.py --model {added.student}" in added.summary
    fractions = [fraction for fraction, _ in heard]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any(what.startswith("fine-tuning the teacher: step") for _, what in heard)
    assert heard[-1][1] == "distilling the student: step 2/2"

    # the app serves the fine-tuned student and its teacher: every singer, the new one too
    settings = ServingSettings(model=str(added.student), teacher=str(added.teacher), vocoder="griffinlim", device="cpu")
    reloaded = load_served_model(settings)
    assert singer_names(reloaded.pipe) == [*SINGERS, "added_alice"] and reloaded.samplers == ("teacher", "student")
    with pytest.raises(AddSingerError, match="already has a singer 'added_alice'"):
        add_singer([clips[0]], "alice", reloaded.pipe, out_root=tmp_path / "runs")
