"""Mixing singers: the mix syntax and its errors, the batch contract, de-normalisation and the automatic
key across datasets, and a mix through the pipeline, the CLI, streaming, the app and the ONNX runtime.

A tiny random student (conftest.save_tiny_models): ``synth_alto`` and ``synth_bass`` of dataset
``synth``, ``other_alto`` of dataset ``other`` (other mel bounds); F0 medians 330, 110 and 300 Hz.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from comosvc.config import load_config
from comosvc.features.mel import MelStats
from comosvc.data.songs import sung_phrase
from comosvc.pipeline import ConversionPipeline, SingerMix, UnknownSingerError, parse_mix
from comosvc.pipeline.chunks import Chunk
from comosvc.pipeline.mix import blend_mel_stats, mix_f0, mix_f0_range
from comosvc.pipeline.pitch import voiced_median
from conftest import F0_MEDIANS, REPO, SINGERS, TINY_CONFIG, fast_vocoder, save_tiny_models, tiny_stats

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_overrides):
    return save_tiny_models(tmp_path_factory.mktemp("mix-models"), load_config(TINY_CONFIG, overrides=tiny_overrides))


@pytest.fixture(scope="module")
def pipe(model_dirs):
    return ConversionPipeline.from_pretrained(model_dirs[1], vocoder=fast_vocoder(), device="cpu")


@pytest.fixture(scope="module")
def phrase():
    wav, _ = sung_phrase([220.0, 262.0], note_seconds=0.5, gap_seconds=0.1, seed=3)
    return wav


# ------------------------------------------------------------------ the syntax


def test_mix_forms_resolve_and_normalise():
    one = parse_mix("bass", SINGERS)
    assert one == SingerMix(("synth_bass",), (1.0,)) and one.single == "synth_bass" and str(one) == "synth_bass"
    mix = parse_mix("synth_alto:0.7, bass:0.3", SINGERS)
    assert mix.keys == ("synth_alto", "synth_bass") and mix.weights == (0.7, 0.3) and mix.single is None
    assert str(mix) == "synth_alto:0.7,synth_bass:0.3" and mix.label == "synth_alto-0.7+synth_bass-0.3"
    assert parse_mix({"synth_alto": 7, "bass": 3}, SINGERS) == mix  # normalised to sum 1
    assert parse_mix(str(mix), SINGERS) == mix and parse_mix(mix, SINGERS) is mix
    assert parse_mix("synth_alto,synth_bass", SINGERS).weights == (0.5, 0.5)  # a name alone weighs 1
    # weight 0 drops a singer: what is left of one singer is that singer
    assert parse_mix("synth_alto:2,other_alto:0", SINGERS) == SingerMix(("synth_alto",), (1.0,))


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("soprano:1,bass:1", UnknownSingerError, "Unknown singer 'soprano'. Valid singers: other_alto, synth_alto"),
        ("alto:1,bass:1", UnknownSingerError, "ambiguous"),
        ("synth_alto:x,bass:1", ValueError, "weight 'x' of singer 'synth_alto' is not a number"),
        ("synth_alto:-1,bass:1", ValueError, "must be a non-negative number"),
        ({"synth_alto": float("nan")}, ValueError, "must be a non-negative number"),
        ("synth_alto:0,bass:0", ValueError, "all zero"),
        ("synth_bass:1,bass:1", ValueError, "synth_bass is named twice"),
        ("synth_alto:1,", ValueError, "singer name is missing"),
        ({}, ValueError, "mix is empty"),
    ],
)
def test_mix_errors_are_one_line(spec, error, message):
    with pytest.raises(error, match=message) as caught:
        parse_mix(spec, SINGERS)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------ the batch contract


def test_mixed_embedding_is_the_weighted_sum_of_rows(tiny_config):
    from comosvc.models import ComoSVC

    model = ComoSVC(tiny_config, singers=SINGERS, stats=tiny_stats())
    encoder = model.condition_encoder
    ids = torch.tensor([[0, 1], [2, 0]])
    weights = torch.tensor([[0.7, 0.3], [0.25, 0.75]])
    table = encoder.speaker.weight
    want = torch.stack([0.7 * table[0] + 0.3 * table[1], 0.25 * table[2] + 0.75 * table[0]])
    torch.testing.assert_close(encoder.speaker_embedding(ids, weights), want)
    # one singer of weight 1 through the mix path is the plain row, bit for bit
    assert torch.equal(encoder.speaker_embedding(ids[:, :1], torch.ones(2, 1)), encoder.speaker(ids[:, 0]))

    frames = 5
    batch = {
        "whisper": torch.zeros(2, frames, tiny_config.content.whisper_dim),
        "contentvec": torch.zeros(2, frames, tiny_config.content.contentvec_dim),
        "f0": torch.full((2, frames), 200.0),
        "energy": torch.ones(2, frames),
        "speaker": ids,
    }
    with pytest.raises(ValueError, match=r"must have shape \(2,\) \(or \(2, K\) with batch\['speaker_weights'\]"):
        model.prepare_batch(batch)
    with pytest.raises(ValueError, match=r"one shape \(2, K\), got \(2, 2\) and \(2, 3\)"):
        model.prepare_batch({**batch, "speaker_weights": torch.ones(2, 3)})
    assert "speaker_weights" in model.prepare_batch({**batch, "speaker_weights": weights})


def test_one_singer_keeps_todays_batch_and_output(pipe, phrase):
    """Every way of naming one singer gives today's ``speaker`` (B,) batch and the same output, bit for bit."""
    feats = [{"whisper": np.zeros((8, 64)), "contentvec": np.zeros((8, 64)), "energy": np.ones(8)}] * 2
    chunks = [Chunk(0, 8 * 256, 0, 8 * 256)] * 2
    batch, _ = pipe._model_batch(chunks, feats, np.zeros(8, dtype=np.float32), "synth_bass:3,other_alto:0")
    assert "speaker_weights" not in batch and batch["speaker"].dtype == torch.int64
    assert batch["speaker"].tolist() == [SINGERS["synth_bass"]] * 2
    mixed, _ = pipe._model_batch(chunks, feats, np.zeros(8, dtype=np.float32), "synth_bass:3,other_alto:1")
    assert mixed["speaker"].tolist() == [[SINGERS["synth_bass"], SINGERS["other_alto"]]] * 2
    assert mixed["speaker_weights"].tolist() == [[0.75, 0.25]] * 2

    base = pipe(phrase, "synth_bass", seed=0)
    for same in ("bass", "synth_bass:1", {"synth_bass": 0.2, "other_alto": 0.0}):
        result = pipe(phrase, same, seed=0)
        assert np.array_equal(result.mel, base.mel) and np.array_equal(result.audio, base.audio)
        assert result.singer == "synth_bass"


def test_a_mix_converts_as_a_singer_whose_embedding_is_the_mix(pipe, phrase):
    mixed = pipe(phrase, {"synth_alto": 0.7, "synth_bass": 0.3}, seed=0)
    assert mixed.singer == "synth_alto:0.7,synth_bass:0.3"
    table = pipe.model.condition_encoder.speaker.weight
    saved = table[SINGERS["synth_alto"]].clone()
    with torch.no_grad():  # the same dataset: only the embedding differs between the two singers
        table[SINGERS["synth_alto"]] = 0.7 * saved + 0.3 * table[SINGERS["synth_bass"]]
    try:
        patched = pipe(phrase, "synth_alto", seed=0)
    finally:
        with torch.no_grad():
            table[SINGERS["synth_alto"]] = saved
    np.testing.assert_allclose(mixed.mel, patched.mel, atol=1e-4)
    alto = pipe(phrase, "synth_alto", seed=0)
    assert not np.allclose(mixed.mel, alto.mel, atol=1e-3)


# ------------------------------------------------------------------ several datasets: bounds and key


def test_mixed_datasets_denormalise_with_the_weighted_bounds(pipe):
    synth, other = (MelStats.from_dict(tiny_stats()["mel"][name]) for name in ("synth", "other"))
    assert pipe._mel_stats("synth_alto:0.5,synth_bass:0.5") is pipe._mel_stats("synth_alto")  # one dataset
    blended = pipe._mel_stats("synth_alto:0.25,other_alto:0.75")
    np.testing.assert_allclose(blended.min, 0.25 * synth.min + 0.75 * other.min)
    np.testing.assert_allclose(blended.max, 0.25 * synth.max + 0.75 * other.max)
    # de-normalising is affine in the bounds: the weighted mean of each dataset's de-normalised mel
    x = torch.linspace(-1.2, 1.2, 100)[None]
    want = 0.25 * synth.denormalize(x) + 0.75 * other.denormalize(x)
    torch.testing.assert_close(blend_mel_stats([(synth, 0.25), (other, 0.75)]).denormalize(x), want)


def test_auto_key_aims_at_the_weighted_mean_in_semitones(pipe, phrase, monkeypatch):
    mix = parse_mix("synth_alto:0.25,synth_bass:0.75", SINGERS)
    target = 2 ** (0.25 * math.log2(F0_MEDIANS["synth_alto"]) + 0.75 * math.log2(F0_MEDIANS["synth_bass"]))
    assert mix_f0(mix, tiny_stats()) == pytest.approx(target, rel=1e-12)
    assert mix_f0(parse_mix("synth_bass", SINGERS), tiny_stats()) == F0_MEDIANS["synth_bass"]

    result = pipe(phrase, mix, key="auto", seed=0)
    assert voiced_median(result.f0) == pytest.approx(target, rel=1e-4)
    singles = [pipe(phrase, name, key="auto", seed=0).key for name in ("synth_alto", "synth_bass")]
    assert result.key == pytest.approx(0.25 * singles[0] + 0.75 * singles[1], abs=1e-6)  # the mean of the shifts

    # a melody reaching 350 Hz, 9.7 semitones above its median (200 Hz), would pass the singers' p95
    # (1.4x their medians, 5.8 semitones above) at the median shift: auto keeps its p95 at the mix's
    # p95, the weighted geometric mean of theirs
    wide = np.concatenate([np.full(60, 200.0), np.full(40, 350.0), np.zeros(10)])
    p95 = 2 ** (0.25 * math.log2(1.4 * F0_MEDIANS["synth_alto"]) + 0.75 * math.log2(1.4 * F0_MEDIANS["synth_bass"]))
    assert mix_f0_range(mix, tiny_stats()) == pytest.approx((p95 / 2, p95), rel=1e-12)  # p5 is 0.7x: half of 1.4x
    shifted, semitones, warnings = pipe.key_shift(wide, mix, "auto")
    assert semitones == pytest.approx(12 * math.log2(p95 / np.percentile(wide[wide > 0], 95)), abs=1e-9)
    assert semitones < 12 * math.log2(target / 200.0) and not warnings  # less than the median shift
    assert shifted.max() == pytest.approx(p95, rel=1e-5)

    stats = tiny_stats()
    del stats["f0"]["other_alto"]
    monkeypatch.setattr(pipe.model, "stats", stats)
    with pytest.raises(ValueError, match="median F0 of synth_alto:0.5,other_alto:0.5.*pass a key in semitones"):
        pipe.key_shift(np.full(10, 200.0), "synth_alto,other_alto", "auto")


# ------------------------------------------------------------------ CLI, streaming, app, ONNX


def test_cli_convert_with_a_mix(model_dirs, phrase, tmp_path, capsys, monkeypatch):
    from comosvc.cli import main

    monkeypatch.setattr("comosvc.vocoders.load_vocoder", lambda *args, **kwargs: fast_vocoder())
    sf.write(tmp_path / "song.wav", phrase, 24000)
    args = ["convert", str(tmp_path / "song.wav"), "--model", str(model_dirs[1]), "--out", str(tmp_path / "out"),
            "--device", "cpu", "--singer"]
    assert main([*args, "synth_alto:0.7,bass:0.3"]) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "song_synth_alto-0.7+synth_bass-0.3.wav").is_file()
    assert main([*args, "synth_alto:0,bass:0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: The singer weights in 'synth_alto:0,bass:0' are all zero")


def test_streaming_with_a_mix(pipe, phrase):
    from comosvc.streaming import StreamingConverter, stream_all

    seen = []
    acoustic = pipe.acoustic

    def spy(chunks, feats, f0, singer, *args):
        seen.append(singer)
        return acoustic(chunks, feats, f0, singer, *args)

    pipe.acoustic = spy
    try:
        live = StreamingConverter(pipe, "synth_alto:0.5,synth_bass:0.5", block_seconds=0.25, key="auto")
        streamed = stream_all(live, phrase)
        single = stream_all(StreamingConverter(pipe, "synth_alto", block_seconds=0.25, key="auto"), phrase)
    finally:
        del pipe.acoustic
    mix = parse_mix("synth_alto:0.5,synth_bass:0.5", SINGERS)
    assert live.request.singer == mix and seen[0] == mix
    assert len(streamed) == len(phrase) and not np.allclose(streamed, single)
    offline = pipe(phrase, mix, key="auto", seed=0)
    assert live.key_semitones == pytest.approx(offline.key, abs=1.0)  # the running median: near the offline shift


def test_app_mix_inputs():
    sys.path.insert(0, str(REPO))
    import app

    assert app.target_singer("synth_alto") == "synth_alto"
    assert app.target_singer("synth_alto", None, 0.3) == "synth_alto"
    mix = app.target_singer("synth_alto", "synth_bass", 0.3)
    assert parse_mix(mix, SINGERS) == parse_mix({"synth_alto": 0.7, "synth_bass": 0.3}, SINGERS)


def test_onnx_runtime_refuses_a_mix(pipe, tiny_config, monkeypatch):
    """The pipeline says so before any audio is read; the runtime itself refuses a mixed batch too
    (tests/test_onnx.py runs a real export)."""
    from comosvc.onnx.runtime import OnnxStudent

    monkeypatch.setattr(pipe, "runtime", "onnx")
    assert pipe.resolve_mix("synth_bass:1,other_alto:0").single == "synth_bass"
    with pytest.raises(ValueError, match="converts to one singer.*use the torch runtime") as caught:
        pipe.resolve_mix("synth_alto:0.5,synth_bass:0.5")
    assert "\n" not in str(caught.value)
    student = OnnxStudent(None, tiny_config, SINGERS, tiny_stats())
    batch = {"whisper": 0, "contentvec": 0, "f0": torch.zeros(1, 4), "energy": 0, "speaker": torch.zeros(1, 2),
             "speaker_weights": torch.ones(1, 2) / 2}
    with pytest.raises(ValueError, match="use the torch runtime"):
        student.sample(batch)
