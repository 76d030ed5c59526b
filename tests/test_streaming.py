"""Live conversion (comosvc.streaming, ``python -m comosvc stream``, the app's Live tab) with a tiny student.

The vocoder is a tiny random BigVGAN (fully convolutional like the real ones, so a
window's render depends on its neighbourhood only), with its biases zeroed and its
output layer scaled so that its output follows the mel at an audible level (a fresh
random BigVGAN outputs a near-constant). Griffin-Lim is iterative over its whole
input, so it would not show what the joins do; the CLI and app tests use it for speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from comosvc.audio import save_audio
from comosvc.measure.streaming import block_joins, compare_with_offline
from comosvc.streaming import StreamingConverter, StreamingError, stream_all

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parent.parent
SEED = 5
PUSHES = [1000, 3333, 77, 5000, 0, 12000]  # irregular piece sizes, cycled


def tiny_bigvgan():
    from comosvc.vocoders import BigVGANConfig, BigVGANGenerator, BigVGANVocoder

    torch.manual_seed(0)
    generator = BigVGANGenerator(BigVGANConfig(
        upsample_rates=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4], upsample_initial_channel=32,
        resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5]] * 2,
        use_bias_at_final=False, use_tanh_at_final=False,
    ))
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.add_(0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.zero_()
    vocoder = BigVGANVocoder(generator, name="tiny random bigvgan")
    with torch.no_grad():
        vocoder.generator.conv_post.weight.mul_(3e5)  # output of order 0.1 instead of 1e-6
    return vocoder


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory, tiny_overrides):
    from comosvc.config import load_config
    from conftest import TINY_CONFIG, save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("stream_models"), load_config(TINY_CONFIG, overrides=tiny_overrides))


@pytest.fixture(scope="module")
def student(tiny_dirs, tiny_overrides):
    from comosvc.pipeline import ConversionPipeline

    overrides = [*tiny_overrides, "inference.max_chunk_seconds=30"]  # offline: the whole clip in one chunk
    return ConversionPipeline.from_pretrained(tiny_dirs[1], vocoder=tiny_bigvgan(), device="cpu", overrides=overrides)


@pytest.fixture(scope="module")
def clip():
    from comosvc.data.songs import sung_phrase

    wav, _ = sung_phrase([220.0, 330.0, 262.0, 294.0], note_seconds=0.55, gap_seconds=0.1, seed=3)
    return wav  # 2.7 s


@pytest.fixture(scope="module")
def offline(student, clip):
    return student(clip, "synth_alto", sampler="student", steps=1, seed=SEED)


def _stream(student, clip, **options):
    options = {"block_seconds": 0.25, "context_seconds": 1.0, "lookahead_seconds": 0.1, "seed": SEED, **options}
    converter = StreamingConverter(student, "synth_alto", **options)
    return converter, stream_all(converter, clip, PUSHES)


def test_length_and_latency_for_irregular_pushes(student, clip):
    converter = StreamingConverter(student, "synth_alto", block_seconds=0.25, context_seconds=0.5,
                                   lookahead_seconds=0.1, seed=SEED)
    block, lookahead = converter.block, converter.lookahead
    assert converter.latency_samples == block + lookahead
    assert converter.latency_seconds == converter.block_seconds + converter.lookahead_seconds
    assert converter.block_seconds == pytest.approx(0.25, abs=256 / 24000)  # whole hops
    received, out = 0, 0
    for k, size in enumerate(PUSHES * 3):
        piece = clip[received : received + size]
        out += len(converter.push(piece))
        received += len(piece)
        # exactly the whole blocks whose lookahead has arrived: output lags by at most block + lookahead
        assert out == max(0, (received - lookahead) // block) * block
        assert out >= received - converter.latency_samples
    assert received < len(clip)
    out += len(converter.push(clip[received:]))
    out += len(converter.flush())
    assert out == len(clip)
    assert len(converter.flush()) == 0
    with pytest.raises(StreamingError, match="flushed"):
        converter.push(clip[:100])


def test_stream_matches_offline_away_from_joins_without_clicks(student, clip, offline):
    converter, streamed = _stream(student, clip)
    assert len(streamed) == len(clip)
    joins = block_joins(converter)
    assert len(joins) >= 8
    quality = compare_with_offline(streamed, offline.audio, joins, crossfade=converter.crossfade)
    # measured 0.026 nats (offline with another seed: 0.037; the log mel's own spread: 0.69)
    assert quality.mel_l1 < 0.05
    assert quality.mel_l1 < quality.offline_mel_spread / 10
    assert not quality.clicks, quality  # no step at a join larger than the signal's largest elsewhere
    assert quality.gain > 0

    # more context and lookahead converge to offline (measured 0.009)
    _, closer = _stream(student, clip, context_seconds=3.0, lookahead_seconds=0.5, block_seconds=0.5)
    assert compare_with_offline(closer, offline.audio, joins).mel_l1 < quality.mel_l1 / 2

    # and the measure does see a click when there is one
    clicked = streamed.copy()
    clicked[joins[3]] += 3 * quality.signal_step / quality.gain
    assert compare_with_offline(clicked, offline.audio, joins, crossfade=converter.crossfade).clicks


def test_noise_is_keyed_to_song_frames(student, clip, offline):
    """The same seed draws the offline conversion's noise per frame; another seed does not."""
    _, same = _stream(student, clip, context_seconds=3.0, lookahead_seconds=0.5, block_seconds=0.5)
    _, other = _stream(student, clip, context_seconds=3.0, lookahead_seconds=0.5, block_seconds=0.5, seed=SEED + 1)
    same_l1 = compare_with_offline(same, offline.audio, []).mel_l1
    other_l1 = compare_with_offline(other, offline.audio, []).mel_l1
    assert same_l1 < other_l1 / 2


def test_teacher_and_bad_settings_are_refused(tiny_dirs, tiny_overrides, student):
    from comosvc.pipeline import ConversionPipeline
    from conftest import fast_vocoder

    teacher = ConversionPipeline.from_pretrained(tiny_dirs[0], vocoder=fast_vocoder(), device="cpu",
                                                 overrides=tiny_overrides)
    with pytest.raises(StreamingError, match="distil"):
        StreamingConverter(teacher, "synth_alto")
    from comosvc.models import StudentSampler, TeacherSampler

    for sampler in ("teacher", TeacherSampler(2)):
        with pytest.raises(StreamingError, match="student only"):
            StreamingConverter(student, "synth_alto", sampler=sampler)
    two_steps = StudentSampler.from_config(student.config, steps=2)
    assert StreamingConverter(student, "synth_alto", sampler=two_steps).request.sampler is two_steps
    assert StreamingConverter(student, "synth_alto").request.sampler.steps == student.config.inference.student_steps
    with pytest.raises(StreamingError, match="crossfade"):
        StreamingConverter(student, "synth_alto", lookahead_seconds=0.0)
    with pytest.raises(StreamingError, match="too short"):
        StreamingConverter(student, "synth_alto", block_seconds=0.01)
    with pytest.raises(StreamingError, match="mono"):
        StreamingConverter(student, "synth_alto").push(np.zeros((10, 2)))


def test_auto_key_follows_the_running_median(student, clip, offline):
    converter, streamed = _stream(student, clip, key="auto")
    reference = student(clip, "synth_alto", sampler="student", steps=1, seed=SEED, key="auto")
    assert len(streamed) == len(clip)
    assert converter.key_semitones == pytest.approx(reference.key, abs=1.0)


def test_cli_stream_no_pace(tiny_dirs, tiny_overrides, clip, tmp_path, capsys):
    from comosvc.cli import main

    source = save_audio(tmp_path / "in.wav", clip[: 24000 * 3 // 2])
    target = tmp_path / "out.wav"
    args = ["stream", str(source), "--model", str(tiny_dirs[1]), "--singer", "synth_alto", "--vocoder", "griffinlim",
            "--block", "0.25", "--out", str(target), "--no-pace"]
    for override in tiny_overrides:
        args += ["--set", override]
    assert main(args) == 0
    import soundfile as sf

    assert sf.info(str(target)).frames == sf.info(str(source)).frames
    printed = capsys.readouterr().out
    for word in ("latency", "p95", "real-time factor", "underruns"):
        assert word in printed


def test_cli_stream_refuses_a_teacher(tiny_dirs, tiny_overrides, clip, tmp_path, capsys):
    from comosvc.cli import main

    source = save_audio(tmp_path / "in.wav", clip[:24000])
    args = ["stream", str(source), "--model", str(tiny_dirs[0]), "--singer", "synth_alto", "--vocoder", "griffinlim"]
    for override in tiny_overrides:
        args += ["--set", override]
    assert main(args) == 2
    assert "distil" in capsys.readouterr().err


def test_live_tab_converts_through_gradio_client(tiny_dirs, tiny_overrides, clip, tmp_path, monkeypatch):
    from gradio_client import Client

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import app
    from test_app import free_port, wait_until_up

    monkeypatch.setattr("comosvc.serving.state.warm_up", lambda pipe, samplers: None)
    port = free_port()
    demo = app.main(["--model", str(tiny_dirs[1]), "--vocoder", "griffinlim", "--host", "127.0.0.1", "--port",
                     str(port), "--examples-dir", str(tmp_path / "examples"), "--device", "cpu"], block=False)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/")
        ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
        assert {"live-tab", "live-input", "live-output", "live-latency"} <= ids
        latency = next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "live-latency")
        assert "600 ms" in latency
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert "/live" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        # gradio_client cannot consume a streaming endpoint's messages: call its handler as the server does,
        # with what a browser microphone sends (48 kHz int16 pieces, stream_every = one block)
        live = next(fn.fn for fn in demo.fns.values() if fn.api_name == "live")
        mic = np.round(np.interp(np.arange(48000 * 2) / 2, np.arange(len(clip)), clip) * 32767).astype(np.int16)
        session, outputs = None, []
        for start in range(0, len(mic), 24000):
            audio_out, session, text = live((48000, mic[start : start + 24000]), "synth_alto", 0, False, session)
            outputs.append(audio_out)
        assert outputs[0] is None  # the first half second: not a whole block plus lookahead yet
        rate, pcm = outputs[1]
        assert rate == 24000 and pcm.dtype == np.int16 and len(pcm) == session.converter.block
        assert np.abs(pcm).max() > 0
        assert "Latency" in text and "to convert" in text
    finally:
        demo.close()
