"""The timbre index: k-means, the blend (ratio 0, ratio 1, a mix), the file, the model folder, the pipeline
and the command line (``index``, ``convert --index-ratio``, ``stream --index-ratio``).

A tiny random student (conftest.save_tiny_models: ``synth_alto``, ``synth_bass``, ``other_alto``) with a
random index for the conversion tests; a preprocessed synthetic corpus of two singers for the build.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from comosvc.cli import main
from comosvc.config import load_config
from comosvc.files import INDEX_FILE
from comosvc.index import IndexFileError, NoIndexError, TimbreIndex, blend, blend_mix, index_size, kmeans, neighbour_mean
from comosvc.data.songs import sung_phrase
from comosvc.pipeline import ConversionPipeline
from comosvc.pipeline.mix import SingerMix
from conftest import SINGERS, TINY_CONFIG, fast_vocoder, save_tiny_models
from test_hub import hub  # noqa: F401 - the stand-in Hub fixture, for the push and download of an index

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_mean(x: torch.Tensor, rows: torch.Tensor, k: int = 8) -> torch.Tensor:
    """The inverse-distance-weighted mean of the k nearest rows, by brute force in float64."""
    d = torch.cdist(x.double(), rows.double())
    near_d, near = d.topk(min(k, len(rows)), dim=1, largest=False)
    w = 1.0 / near_d.clamp_min(1e-6)
    w = w / w.sum(1, keepdim=True)
    return (w[:, :, None] * rows.double()[near]).sum(1).float()


def random_index(config, singers=SINGERS, size: int = 40, seed: int = 0) -> TimbreIndex:
    g = torch.Generator().manual_seed(seed)
    dims = {"whisper": config.content.whisper_dim, "contentvec": config.content.contentvec_dim}
    return TimbreIndex({key: {name: torch.randn(size, dim, generator=g) for name, dim in dims.items()} for key in singers})


@pytest.fixture(scope="module")
def config(tiny_overrides):
    return load_config(TINY_CONFIG, overrides=tiny_overrides)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, config):
    """(teacher without an index, student with a random index of every singer)."""
    teacher, student = save_tiny_models(tmp_path_factory.mktemp("index-models"), config)
    random_index(config).save(student / INDEX_FILE)
    return teacher, student


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    wav, _ = sung_phrase([220.0, 262.0], note_seconds=0.5, gap_seconds=0.1, seed=3)
    path = tmp_path_factory.mktemp("index-song") / "song.wav"
    sf.write(path, wav, 24000)
    return wav, path


# ------------------------------------------------------------------ k-means and sizes


def test_kmeans_is_deterministic_and_bounded():
    x = torch.randn(3000, 16, generator=torch.Generator().manual_seed(1)) * 3
    first, again = kmeans(x, 64, seed=5), kmeans(x, 64, seed=5)
    assert first.shape == (64, 16) and torch.equal(first, again)
    assert not torch.equal(first, kmeans(x, 64, seed=6))
    assert torch.equal(kmeans(x[:10], 64), x[:10])  # fewer points than k: the points themselves
    # Lloyd lowers the distortion below that of the k-means++ seeds alone
    distortion = lambda c: torch.cdist(x, c).min(1).values.pow(2).mean()  # noqa: E731
    assert distortion(first) < distortion(kmeans(x, 64, seed=5, iterations=0))


def test_index_size_is_one_vector_per_four_frames_up_to_2048():
    assert index_size(5625) == 1406  # one minute at 93.75 frames/s
    assert index_size(10**7) == 2048 and index_size(1) == 1 and index_size(8192) == 2048


# ------------------------------------------------------------------ the blend


def test_ratio_zero_returns_the_input_itself():
    x, rows = torch.randn(50, 8), torch.randn(20, 8)
    assert blend(x, rows, 0.0) is x


def test_ratio_one_gives_weighted_means_of_the_nearest_index_rows():
    g = torch.Generator().manual_seed(2)
    x, rows = torch.randn(300, 12, generator=g), torch.randn(40, 12, generator=g)
    out = blend(x, rows, 1.0, chunk=64)  # several chunks
    torch.testing.assert_close(out, reference_mean(x, rows), rtol=1e-4, atol=1e-5)
    # so each frame is in the convex hull of the index rows (non-negative weights summing to 1); in particular
    # inside their bounding box, wherever the input frame was
    assert (out >= rows.min(0).values - 1e-6).all() and (out <= rows.max(0).values + 1e-6).all()
    assert not ((x >= rows.min(0).values) & (x <= rows.max(0).values)).all()
    # a frame that is an index row maps to that row
    torch.testing.assert_close(blend(rows[:5], rows, 1.0), rows[:5])
    half = blend(x, rows, 0.5)
    torch.testing.assert_close(half, 0.5 * x + 0.5 * out, rtol=1e-5, atol=1e-6)


def test_a_mix_blends_towards_the_weighted_mean_of_each_singers_neighbours():
    g = torch.Generator().manual_seed(3)
    x, a, b = torch.randn(100, 6, generator=g), torch.randn(30, 6, generator=g), torch.randn(30, 6, generator=g) + 2
    mixed = blend_mix(x, [(a, 0.7), (b, 0.3)], 1.0)
    torch.testing.assert_close(mixed, 0.7 * neighbour_mean(x, a) + 0.3 * neighbour_mean(x, b))
    torch.testing.assert_close(blend_mix(x, [(a, 1.0)], 0.4), blend(x, a, 0.4))


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan"), "half"])
def test_a_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ValueError, match=r"index_ratio must be"):
        blend(torch.zeros(2, 3), torch.zeros(2, 3), ratio)


# ------------------------------------------------------------------ the file and the model folder


def test_index_round_trips_through_save_pretrained_and_from_pretrained(model_dirs, tmp_path, config):
    from comosvc.models import ComoSVC

    teacher = ComoSVC.from_pretrained(model_dirs[0])
    assert teacher.index is None  # a model without an index loads as before
    student = ComoSVC.from_pretrained(model_dirs[1])
    assert sorted(student.index.singers) == sorted(SINGERS)
    student.save_pretrained(tmp_path / "copy")
    again = ComoSVC.from_pretrained(tmp_path / "copy")
    for key in SINGERS:
        for name in ("whisper", "contentvec"):
            assert torch.equal(again.index.vectors[key][name], student.index.vectors[key][name])
    expected = random_index(config)  # stored float16
    assert torch.equal(student.index.vectors["synth_bass"]["whisper"], expected.vectors["synth_bass"]["whisper"])


def test_a_damaged_index_file_is_one_line(model_dirs, tmp_path):
    path = tmp_path / INDEX_FILE
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(IndexFileError) as err:
        TimbreIndex.load(path)
    assert "python -m comosvc index" in str(err.value) and "\n" not in str(err.value)
    wrong = TimbreIndex({"a": {"whisper": torch.ones(3, 5), "contentvec": torch.ones(3, 4)}}).save(tmp_path / "wrong.safetensors")
    with pytest.raises(IndexFileError, match="whisper features have 7 dims"):
        TimbreIndex.load(wrong, dims={"whisper": 7, "contentvec": 4})


def test_save_is_atomic(tmp_path, monkeypatch):
    good = TimbreIndex({"a": {"whisper": torch.ones(3, 5), "contentvec": torch.ones(3, 4)}})
    path = good.save(tmp_path / INDEX_FILE)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", fail)
    with pytest.raises(OSError):
        TimbreIndex({"b": {"whisper": torch.zeros(2, 5), "contentvec": torch.zeros(2, 4)}}).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [INDEX_FILE]


# ------------------------------------------------------------------ conversion


def test_ratio_zero_converts_exactly_as_without_an_index(model_dirs, song, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(model_dirs[1], bare)
    (bare / INDEX_FILE).unlink()
    with_index = ConversionPipeline.from_pretrained(model_dirs[1], vocoder=fast_vocoder(), device="cpu")
    without = ConversionPipeline.from_pretrained(bare, vocoder=fast_vocoder(), device="cpu")
    a = with_index(song[0], singer="synth_alto", seed=1, index_ratio=0.0)
    b = without(song[0], singer="synth_alto", seed=1)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.mel, b.mel)
    blended = with_index(song[0], singer="synth_alto", seed=1, index_ratio=0.75)
    assert blended.audio.shape == a.audio.shape and not np.array_equal(blended.mel, a.mel)
    mixed = with_index(song[0], singer={"synth_alto": 0.7, "other_alto": 0.3}, seed=1, index_ratio=0.75)
    assert np.isfinite(mixed.audio).all() and not np.array_equal(mixed.mel, blended.mel)
    with pytest.raises(NoIndexError, match="python -m comosvc index --model .*bare"):
        without.request("synth_alto", index_ratio=0.5)
    with pytest.raises(ValueError, match="index_ratio must be in"):
        with_index.request("synth_alto", index_ratio=2)
    with_index.runtime = "onnx"  # an ONNX export has no index: it says which runtime has one
    with pytest.raises(ValueError, match="--runtime torch"):
        with_index.timbre_index("synth_alto", 0.5)
    assert with_index.timbre_index("synth_alto", 0.0) is None


def test_the_batch_blend_leaves_padding_and_follows_the_mix(config):
    index = random_index(config, size=16)
    g = torch.Generator().manual_seed(4)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    batch = {
        "whisper": torch.randn(2, 6, config.content.whisper_dim, generator=g) * mask[..., None],
        "contentvec": torch.randn(2, 6, config.content.contentvec_dim, generator=g) * mask[..., None],
        "mask": mask,
    }
    mix = SingerMix(("synth_alto", "synth_bass"), (0.25, 0.75))
    out = index.blend_batch(batch, mix, 1.0)
    assert torch.equal(out["whisper"][1, 3:], batch["whisper"][1, 3:])  # padding stays 0
    rows = {key: index.rows(key, "whisper", "cpu") for key in mix.keys}
    frames = batch["whisper"][mask]
    expected = 0.25 * reference_mean(frames, rows["synth_alto"]) + 0.75 * reference_mean(frames, rows["synth_bass"])
    torch.testing.assert_close(out["whisper"][mask], expected, rtol=1e-4, atol=1e-4)
    assert index.blend_batch(batch, mix, 0.0) is batch
    with pytest.raises(NoIndexError, match="other_alto"):
        TimbreIndex({"synth_alto": index.vectors["synth_alto"]}).blend_batch(batch, SingerMix(("other_alto",), (1.0,)), 0.5)


def test_streaming_blends_each_block(model_dirs, song):
    from comosvc.streaming import StreamingConverter, stream_all

    pipe = ConversionPipeline.from_pretrained(model_dirs[1], vocoder=fast_vocoder(), device="cpu")
    plain = stream_all(StreamingConverter(pipe, "synth_alto", block_seconds=0.5, seed=2), song[0])
    blended = stream_all(StreamingConverter(pipe, "synth_alto", block_seconds=0.5, seed=2, index_ratio=1.0), song[0])
    assert plain.shape == blended.shape and not np.array_equal(plain, blended)


# ------------------------------------------------------------------ command line


@pytest.fixture()
def quick_vocoder(monkeypatch):
    monkeypatch.setattr("comosvc.vocoders.load_vocoder", lambda *args, **kwargs: fast_vocoder())


def one_error_line(capsys) -> str:
    """The one ``error: ...`` line on stderr (progress bars of the encoders' loading aside), no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_index_errors_are_one_line(model_dirs, song, tmp_path, capsys, quick_vocoder):
    convert = ["convert", str(song[1]), "--singer", "synth_alto", "--out", str(tmp_path)]
    assert main([*convert, "--model", str(model_dirs[0]), "--index-ratio", "0.5"]) == 2
    assert "python -m comosvc index --model" in one_error_line(capsys)
    assert main([*convert, "--model", str(model_dirs[1]), "--index-ratio", "1.5"]) == 2
    assert "index_ratio must be in [0, 1]" in one_error_line(capsys)
    assert main(["stream", str(song[1]), "--model", str(model_dirs[1]), "--singer", "synth_alto", "--no-pace",
                 "--index-ratio", "-1"]) == 2
    assert "index_ratio must be in [0, 1]" in one_error_line(capsys)
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dirs[1], damaged)
    (damaged / INDEX_FILE).write_bytes(b"garbage")
    assert main([*convert, "--model", str(damaged)]) == 2
    assert "damaged" in one_error_line(capsys)
    assert main(["index", "--model", str(model_dirs[1]), "--data", str(tmp_path / "nothing")]) == 2
    assert "train/preprocess.py" in one_error_line(capsys)
    assert main([*convert, "--model", str(model_dirs[1]), "--index-ratio", "0.5"]) == 0


# ------------------------------------------------------------------ building from the preprocessed data


@pytest.fixture(scope="module")
def processed(tmp_path_factory, tiny_overrides):
    """2 singers x 2 clips of 1 s, preprocessed (train/preprocess.py's main)."""
    from comosvc.data.preprocess import main as preprocess_main
    from comosvc.data.synthetic import write_corpus

    root = tmp_path_factory.mktemp("index-data")
    write_corpus("generic", root / "corpus", n_singers=2, files_per_singer=3, seconds=1.0, seed=0)
    argv = ["--config", str(TINY_CONFIG), "--dataset", f"generic={root / 'corpus'}", "--out", str(root / "data")]
    assert preprocess_main(argv + list(tiny_overrides) + ["data.validation_per_singer=1"]) == 0
    return root / "data"


def test_cli_builds_the_index_of_the_models_singers_from_the_data(processed, config, tmp_path, capsys):
    import json

    from comosvc.data.preprocess import load_processed, load_stats
    from comosvc.index.build import data_singers
    from comosvc.models import ComoSVC

    singers = json.loads((processed / "singers.json").read_text())
    folder = tmp_path / "model"
    ComoSVC(config, singers=singers, stats=load_stats(processed)).save_pretrained(folder)
    assert main(["index", "--model", str(folder), "--data", str(processed), "--device", "cpu"]) == 0
    index = ComoSVC.from_pretrained(folder).index
    assert sorted(index.singers) == sorted(singers)
    split = load_processed(processed, splits=["train"])["train"]
    rows = data_singers(split)
    key = sorted(singers)[0]
    frames = sum(split[i]["n_frames"] for i in rows[key])
    assert index.size(key) == index_size(frames)
    # the index vectors summarise the singer's own frames: means of them, nearer to them than the other singer's
    own = torch.cat([torch.tensor(np.asarray(split[i]["whisper"]), dtype=torch.float32) for i in rows[key]])
    vectors = index.vectors[key]["whisper"].float()
    assert (vectors >= own.min(0).values - 1e-2).all() and (vectors <= own.max(0).values + 1e-2).all()
    other = index.vectors[sorted(singers)[1]]["whisper"].float()
    assert torch.cdist(own, vectors).min(1).values.mean() < torch.cdist(own, other).min(1).values.mean()
    # --singer rebuilds one singer and keeps the others
    before = index.vectors[sorted(singers)[1]]["whisper"].clone()
    assert main(["index", "--model", str(folder), "--data", str(processed), "--device", "cpu",
                 "--singer", key.split("_", 1)[1], "--size", "3"]) == 0
    again = TimbreIndex.load(folder / INDEX_FILE)
    assert again.size(key) == 3 and torch.equal(again.vectors[sorted(singers)[1]]["whisper"], before)
    assert main(["index", "--model", str(folder), "--data", str(processed), "--singer", "nobody"]) == 2
    assert "Unknown singer" in one_error_line(capsys)


def test_training_builds_the_index_at_the_end_unless_told_not_to(processed, tmp_path, caplog):
    from comosvc.index.build import build_index_at_end_of_training
    from comosvc.training.args import build_parser

    base = ["--config", "c.yaml", "--data", "d", "--out", "o"]
    assert build_parser("train", index_arg=True).parse_args([*base, "--no_index"]).no_index
    assert not build_parser("train", index_arg=True).parse_args(base).no_index
    assert len(build_index_at_end_of_training(processed)) == 2
    # a failure costs the index, never the trained model
    assert build_index_at_end_of_training(tmp_path / "gone") is None
    assert "python -m comosvc index --model OUT/model" in caplog.text


def test_app_advanced_panel_has_the_ratio_and_converts_with_it(model_dirs, song, tmp_path):
    pytest.importorskip("gradio")
    import app

    from comosvc.serving.settings import parse_settings

    argv = ["--model", str(model_dirs[1]), "--vocoder", "griffinlim", "--examples-dir", str(tmp_path / "examples")]
    settings = parse_settings(argv, environ={})
    state = app.load_model(settings)
    demo = app.build_demo(state, settings)
    slider = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "index-ratio")
    assert slider.interactive and slider.value == 0
    convert = app.make_convert(state, settings)
    args = (str(song[1]), "synth_alto", 0, False, 2, 1, 0, None, 0.5)
    plain = convert(*args, 0.0, progress=lambda *a, **k: None)
    blended = convert(*args, 1.0, progress=lambda *a, **k: None)
    assert not np.array_equal(plain[1][1], blended[1][1])  # the student's audio


def test_the_index_goes_to_the_hub_and_comes_back(hub, model_dirs):
    from comosvc.models import ComoSVC

    student = ComoSVC.from_pretrained(model_dirs[1])
    student.push_to_hub("user/indexed")
    assert INDEX_FILE in hub.files("user/indexed")
    loaded = ComoSVC.from_pretrained("user/indexed")  # snapshot_download's allow_patterns name the index
    assert loaded.name_or_path == "user/indexed" and sorted(loaded.index.singers) == sorted(SINGERS)
    assert torch.equal(loaded.index.vectors["other_alto"]["contentvec"], student.index.vectors["other_alto"]["contentvec"])
