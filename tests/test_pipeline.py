"""ConversionPipeline end to end with a tiny random model saved to disk and a fast Griffin-Lim vocoder."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from comosvc.audio import NotAudioError, load_audio
from comosvc.config import load_config
from comosvc.pipeline import ConversionPipeline, UnknownSingerError
from comosvc.pipeline.pitch import voiced_median
from comosvc.data.songs import singer_voice, sung_phrase
from comosvc.vocoders import GRIFFINLIM

from conftest import TINY_CONFIG, fast_vocoder, save_tiny_models, tiny_stats

HOP = 256


@pytest.fixture(scope="module")
def config(tiny_overrides):
    return load_config(TINY_CONFIG, overrides=tiny_overrides)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, config):
    return save_tiny_models(tmp_path_factory.mktemp("models"), config)


@pytest.fixture(scope="module")
def pipe(model_dirs):
    return ConversionPipeline.from_pretrained(model_dirs[1], vocoder=fast_vocoder(), device="cpu")


@pytest.fixture(scope="module")
def phrase():
    """1.3 s: two notes (220 and 262 Hz) with silent gaps."""
    wav, _ = sung_phrase([220.0, 262.0], note_seconds=0.5, gap_seconds=0.1, seed=3)
    return wav


def test_output_is_exactly_as_long_as_the_input_at_24khz(pipe, phrase, tmp_path):
    # a 16 kHz file of odd length: the pipeline resamples, converts and returns the loader's length
    path = tmp_path / "input.wav"
    sf.write(path, load_audio_16k(phrase)[:-37], 16000)
    n = len(load_audio(path, 24000))
    result = pipe(path, "synth_alto", seed=0)
    assert result.sample_rate == 24000
    assert result.audio.shape == (n,) and result.audio.dtype == np.float32
    assert np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() == pytest.approx(0.9, abs=1e-4)  # peak-normalised
    frames = math.ceil(n / HOP)
    assert result.mel.shape == (frames, 100) and result.f0.shape == (frames,)
    assert result.sampler == "student" and result.nfe == 1 and result.singer == "synth_alto"
    assert set(result.timings) == {"content", "f0", "acoustic", "vocoder", "total"}
    assert result.timings["total"] >= sum(result.timings[k] for k in ("content", "f0", "acoustic", "vocoder"))
    assert result.warnings == []
    # (sample_rate, int16 samples) as Gradio gives them: same length rule
    pcm = (phrase[:-5] * 32767).astype(np.int16)
    assert pipe((24000, pcm), "synth_alto", seed=0).audio.shape == (len(pcm),)


def load_audio_16k(wav: np.ndarray) -> np.ndarray:
    from comosvc.audio import resample

    return resample(wav, 24000, 16000)


def test_student_model_loads_its_teacher_lazily_and_shares_the_prior(model_dirs, phrase):
    pipe = ConversionPipeline.from_pretrained(model_dirs[1], vocoder=fast_vocoder(), device="cpu")
    assert pipe.samplers == ["teacher", "student"] and pipe._teacher is None
    result = pipe(phrase, "synth_alto", sampler="teacher", steps=2, seed=0)
    assert result.nfe == 3  # 2 Karras steps = 3 Euler updates down to sigma 0
    assert pipe.teacher().prior is pipe.model.prior  # identical frozen weights: one copy
    assert pipe.teacher().denoiser is not pipe.model.denoiser

    teacher_only = ConversionPipeline.from_pretrained(model_dirs[0], vocoder=fast_vocoder(), device="cpu")
    assert teacher_only.samplers == ["teacher"]
    with pytest.raises(ValueError, match="no consistency student"):
        teacher_only(phrase, "synth_alto", sampler="student")


def test_key_shift_scales_the_conditioning_f0(pipe, phrase):
    seen = []
    sample = pipe.model.sample

    def spy(batch, **kwargs):
        seen.append(batch["f0"].clone())
        return sample(batch, **kwargs)

    pipe.model.sample = spy
    try:
        base = pipe(phrase, "synth_alto", key=0, seed=0)
        octave = pipe(phrase, "synth_alto", key=12, seed=0)
    finally:
        del pipe.model.sample
    assert (base.f0 > 0).sum() > 50
    np.testing.assert_allclose(octave.f0, 2 * base.f0, rtol=1e-6)
    np.testing.assert_allclose(seen[1], 2 * seen[0], rtol=1e-6)  # what the model was given
    assert octave.key == 12.0

    auto = pipe(phrase, "synth_bass", key="auto", seed=0)  # bass: median 110 Hz in stats.json
    assert voiced_median(auto.f0) == pytest.approx(110.0, rel=1e-4)
    assert auto.key == pytest.approx(12 * math.log2(110.0 / voiced_median(base.f0)), abs=1e-4)
    assert np.array_equal(auto.f0 > 0, base.f0 > 0)  # unvoiced frames stay unvoiced


def test_auto_key_stops_at_the_top_of_the_singers_range(pipe):
    # stats.json: each singer's p95 is 1.4 x its median (conftest)
    melody = np.concatenate([np.full(60, 200.0), np.full(40, 350.0), np.zeros(10)])  # reaches 9.7 st above its median
    for singer, median in (("synth_alto", 330.0), ("synth_bass", 110.0)):
        top = pipe.model.stats["f0"][singer]["p95"]
        shifted, semitones, warnings = pipe.key_shift(melody, singer, "auto")
        # the median shift would put 350 Hz 3.9 semitones past the singer's p95: held at the p95
        assert semitones == pytest.approx(12 * math.log2(top / 350.0), abs=1e-9)
        assert semitones < 12 * math.log2(median / 200.0) and not warnings
        assert shifted.max() == pytest.approx(top, rel=1e-5)


def test_unknown_or_ambiguous_singer_lists_the_valid_ones(pipe, phrase):
    with pytest.raises(UnknownSingerError, match="Valid singers: other_alto, synth_alto, synth_bass"):
        pipe(phrase, "soprano")
    with pytest.raises(UnknownSingerError, match="ambiguous.*other_alto, synth_alto"):
        pipe(phrase, "alto")
    assert pipe.resolve_singer("bass") == "synth_bass"


def test_notes_past_every_singers_range_are_converted_with_a_warning(pipe, phrase):
    # the tiny stats span 77-462 Hz; the phrase (220 and 262 Hz) an octave up puts its second note past it
    assert pipe(phrase, "synth_alto", seed=0, key=0).warnings == []
    up = pipe(phrase, "synth_alto", seed=0, key=12)
    assert len(up.warnings) == 1 and "above 462 Hz" in up.warnings[0] and "lower the key by about 3 semitones" in up.warnings[0]
    assert np.isfinite(up.audio).all()
    down = pipe(phrase, "synth_alto", seed=0, key=-24)
    assert len(down.warnings) == 1 and "below 77 Hz" in down.warnings[0]


def test_silent_input_gives_silence_and_a_warning(pipe):
    result = pipe(np.zeros(30000, dtype=np.float32), "synth_alto")
    assert result.audio.shape == (30000,) and not result.audio.any()
    assert result.nfe == 0 and not result.f0.any()
    assert len(result.warnings) == 1 and "silent" in result.warnings[0]


def test_unreadable_input_raises_the_loaders_error(pipe, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(NotAudioError, match="notes.wav"):
        pipe(bad, "synth_alto")


def test_loudness_matching_follows_the_source_envelope(pipe, phrase):
    from comosvc.pipeline.loudness import frame_rms

    result = pipe(phrase, "synth_alto", loudness_match=True, seed=0)
    source, converted = frame_rms(phrase), frame_rms(result.audio)
    loud = source > 0.05 * source.max()
    assert np.corrcoef(source[loud], converted[loud])[0, 1] > 0.9
    assert np.abs(result.audio).max() <= 0.99


# --------------------------------------------------------------------------- chunking


def seam_free_frames(n_frames: int, *results, guard: int) -> np.ndarray:
    """Frames at least ``guard`` frames away from every chunk edge (and not silent) in every result."""
    ok = np.ones(n_frames, dtype=bool)
    for result in results:
        for chunk in result.chunks:
            for edge in (chunk.core_start // HOP, chunk.core_end // HOP):
                ok[max(0, edge - guard) : edge + guard] = False
            if chunk.silent:
                ok[chunk.core_start // HOP : chunk.core_end // HOP] = False
    return ok


def test_chunked_conversion_agrees_with_unchunked_away_from_the_seams(model_dirs):
    """Real tiny teacher. Its content encoders and prior attend over the whole chunk, so
    context changes the output a little everywhere; with noise keyed to song frames the
    chunked result must still be far closer to the unchunked one than another seed is."""
    wav, _ = sung_phrase([220.0, 330.0, 262.0, 196.0], note_seconds=0.5, gap_seconds=0.35, voice=singer_voice(1), seed=5)
    pipe = ConversionPipeline.from_pretrained(model_dirs[0], vocoder=fast_vocoder(), device="cpu")
    runs = {}
    for max_chunk, seed in ((60.0, 0), (0.8, 0), (60.0, 1)):
        pipe.config.inference.max_chunk_seconds = max_chunk
        runs[max_chunk, seed] = pipe(wav, "synth_alto", steps=2, seed=seed)
    whole, chunked, other_seed = runs[60.0, 0], runs[0.8, 0], runs[60.0, 1]
    assert whole.n_chunks == 1 and chunked.n_chunks == 4
    assert whole.audio.shape == chunked.audio.shape == wav.shape
    ok = seam_free_frames(len(whole.mel), whole, chunked, guard=8)
    assert ok.sum() > 100
    # F0 is nearly local (Praat's voicing threshold is relative to the clip's peak)
    a, b = chunked.f0[ok], whole.f0[ok]
    both = (a > 0) & (b > 0)
    assert np.mean((a > 0) == (b > 0)) > 0.95
    assert np.max(np.abs(a - b)[both] / b[both]) < 0.01
    chunk_diff = np.abs(chunked.mel - whole.mel)[ok].mean()
    seed_diff = np.abs(other_seed.mel - whole.mel)[ok].mean()
    assert chunk_diff < 0.5 * seed_diff, (chunk_diff, seed_diff)


class FrameLocalFeatures:
    """Every feature of frame i depends only on samples [i * hop, (i + 1) * hop)."""

    def __init__(self, config):
        self.config = config

    def extract_batch(self, wavs, features):
        out = []
        for wav in wavs:
            rms = np.sqrt((wav[: len(wav) // HOP * HOP].reshape(-1, HOP) ** 2).mean(axis=1)).astype(np.float32)
            item = {"energy": rms, "f0": np.where(rms > 1e-3, 200.0 + 100.0 * rms, 0.0).astype(np.float32)}
            item["whisper"] = np.repeat(rms[:, None], 4, axis=1)
            item["contentvec"] = np.repeat(rms[:, None], 2, axis=1)
            out.append({name: item[name] for name in features})
        return out


class FrameLocalModel(torch.nn.Module):
    """A "student" whose mel frame depends only on that frame's features and noise."""

    def __init__(self, config):
        super().__init__()
        self.config, self.distilled, self.distilled_from = config, True, None
        self.singers, self.stats = {"synth_alto": 0}, tiny_stats()

    def sample(self, batch, sampler, noise):
        assert len(noise) == sampler.noise_draws
        mel = batch["whisper"][..., :1] + batch["f0"][..., None] / 1000 + 0.1 * sum(noise)
        return SimpleNamespace(mel=torch.tanh(mel) * batch["mask"][..., None], nfe=sampler.nfe)


class FrameLocalVocoder(torch.nn.Module):
    name = "frame-local"

    def forward(self, log_mel):
        return torch.repeat_interleave(log_mel.mean(-1) + 12.0, HOP, dim=1)


def test_chunk_machinery_is_exact_for_a_frame_local_model(config):
    """Cut, batch, position-keyed noise and crossfade join add nothing of their own: with a
    frame-local model, chunked output equals unchunked output wherever both convert."""
    wav, _ = sung_phrase([220.0, 330.0, 262.0, 196.0, 247.0], note_seconds=0.6, gap_seconds=0.35, seed=7)
    results = []
    for max_chunk in (60.0, 0.5):
        cfg = load_config(TINY_CONFIG, overrides=[f"inference.max_chunk_seconds={max_chunk}", "inference.batch_size=3"])
        pipe = ConversionPipeline(FrameLocalModel(cfg), FrameLocalFeatures(cfg), FrameLocalVocoder(), config=cfg, device="cpu")
        results.append(pipe(wav, "synth_alto", steps=2, seed=11))
    whole, chunked = results
    assert chunked.n_chunks > 2 * whole.n_chunks
    # frames away from silent chunks (those are not converted: zeros) - seams between converted chunks included
    ok = np.ones(len(whole.mel), dtype=bool)
    for result in results:
        for chunk in result.chunks:
            if chunk.silent:
                ok[max(0, chunk.start // HOP - 3) : chunk.end // HOP + 3] = False
    assert ok.sum() > 200
    np.testing.assert_allclose(chunked.mel[ok], whole.mel[ok], atol=1e-5)
    samples = np.repeat(ok, HOP)[: len(wav)]
    a, b = chunked.audio[samples], whole.audio[samples]
    scale = float(a @ b / (b @ b))  # the two songs are peak-normalised separately
    np.testing.assert_allclose(a, scale * b, atol=1e-4)


def test_from_config_builds_a_random_pipeline_for_speed_runs(config, phrase):
    pipe = ConversionPipeline.from_config(config, vocoder=GRIFFINLIM, device="cpu", distilled=True)
    assert pipe.samplers == ["student"] and list(pipe.singers) == ["random_0"]
    result = pipe(phrase[:12000], "random_0", seed=0)
    assert result.audio.shape == (12000,) and result.nfe == 1
    assert set(result.cpu_timings) == set(result.timings)
    with pytest.raises(ValueError, match="no random-weight config"):
        ConversionPipeline.from_config(config, vocoder="someone/unknown-vocoder", device="cpu")


# --------------------------------------------------------------------------- samplers and several requests


def test_a_sampler_object_converts_as_its_name_does(pipe, phrase):
    from comosvc.models import StudentSampler, TeacherSampler

    for name, sampler in (("student", StudentSampler.from_config(pipe.config, steps=2)),
                          ("teacher", TeacherSampler.from_config(pipe.config, steps=2))):
        by_object = pipe(phrase, "synth_alto", sampler=sampler, seed=0)
        by_name = pipe(phrase, "synth_alto", sampler=name, steps=2, seed=0)
        np.testing.assert_array_equal(by_object.audio, by_name.audio)
        assert (by_object.sampler, by_object.steps, by_object.nfe) == (name, 2, sampler.nfe)
    assert pipe.request("synth_alto", sampler=sampler, seed=0).sampler is sampler  # resolved once, kept as given
    with pytest.raises(ValueError, match="not both"):
        pipe(phrase, "synth_alto", sampler=StudentSampler.from_config(pipe.config), steps=2)
    with pytest.raises(ValueError, match=r"1\.\.40 steps"):
        pipe.request("synth_alto", sampler="student", steps=41)


class CountingFeatures:
    """The pipeline's feature extractor, passed in as its ``features``: counts the clips each feature is computed for."""

    def __init__(self, features):
        self.features, self.clips = features, {}

    def extract_batch(self, wavs, features):
        for name in features:
            self.clips[name] = self.clips.get(name, 0) + len(wavs)
        return self.features.extract_batch(wavs, features=features)


def test_the_ab_computes_content_and_f0_once_and_equals_separate_calls(model_dirs, phrase):
    from comosvc.compare import compare

    base = ConversionPipeline.from_pretrained(model_dirs[1], vocoder=fast_vocoder(), device="cpu",
                                              overrides=["inference.teacher_steps=3"])
    counting = CountingFeatures(base.features)
    pipe = ConversionPipeline(base.model, counting, base.vocoder, config=base.config, device="cpu")
    ab = compare(pipe, phrase, "synth_alto", seed=0)  # no teacher_steps: the model's inference.teacher_steps
    chunks = ab.student.n_chunks
    assert chunks >= 1 and counting.clips == {"f0": chunks, "energy": chunks, "whisper": chunks, "contentvec": chunks}
    assert ab.teacher_steps == ab.teacher.steps == 3 and ab.teacher.nfe == 4
    assert ab.student_steps == ab.student.steps == pipe.config.inference.student_steps
    for name, result in (("teacher", ab.teacher), ("student", ab.student)):
        alone = base(phrase, "synth_alto", sampler=name, seed=0)
        np.testing.assert_array_equal(result.audio, alone.audio)
        np.testing.assert_array_equal(result.mel, alone.mel)
        assert (result.nfe, result.sampler, result.steps) == (alone.nfe, alone.sampler, alone.steps)
        stages = result.timings
        assert stages["total"] >= sum(stages[k] for k in ("content", "f0", "acoustic", "vocoder"))
    for shared in ("content", "f0"):  # computed once, reported to both
        assert ab.teacher.timings[shared] == ab.student.timings[shared] > 0
    with pytest.raises(ValueError, match="pipe.request"):
        pipe.convert_many(phrase, [])


def test_stage_clock_shares_content_and_f0_and_charges_each_request_its_own_stages():
    import time

    from comosvc.pipeline import StageClock

    clock = StageClock(requests=2)
    with clock("content"):
        time.sleep(0.01)
    with clock.serving(1):
        with clock("acoustic"):
            time.sleep(0.02)
        with clock("f0"):  # a shared stage stays shared inside serving()
            pass
    first, second = clock.wall(0), clock.wall(1)
    assert first["content"] == second["content"] >= 0.01 and first["f0"] == second["f0"]
    assert first["acoustic"] == 0.0 and second["acoustic"] >= 0.02
    # each total leaves out the other request's own stages: what it would have cost alone
    assert second["total"] - first["total"] >= second["acoustic"]
    assert second["total"] >= second["content"] + second["acoustic"]
