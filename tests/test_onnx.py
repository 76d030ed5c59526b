"""ONNX export of the one-step student and BigVGAN (comosvc.onnx): parity with torch, the pipeline's
onnx runtime, the CLI, and what cannot be exported.

One export per module (the exporter takes ~10-20 s on a shared CPU), made through the CLI.
Tolerances measured on this code: mel max |diff| ~2e-7, vocoder SNR > 100 dB.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import require

require("onnxruntime")  # both in requirements.txt
require("onnxscript")

from comosvc.cli import main  # noqa: E402
from comosvc.config import load_config  # noqa: E402
from comosvc.data.songs import sung_phrase  # noqa: E402
from comosvc.models import ComoSVC  # noqa: E402
from comosvc.pipeline import ConversionPipeline  # noqa: E402
from comosvc.vocoders import BigVGANConfig, BigVGANGenerator, BigVGANVocoder  # noqa: E402
from conftest import TINY_CONFIG, save_tiny_models  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

MEL_TOLERANCE = 1e-4  # max |diff| of the normalised mel; measured ~2e-7
SNR_DB = 40.0  # vocoder waveform SNR; measured > 100 dB


def tiny_bigvgan() -> BigVGANVocoder:
    """A small random BigVGAN with our mel (hop 256): the structure of v1 base at a fraction of the width."""
    config = BigVGANConfig(
        upsample_rates=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4], upsample_initial_channel=32,
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        generator = BigVGANGenerator(config)
    return BigVGANVocoder(generator, name="tiny-bigvgan")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_overrides):
    return save_tiny_models(tmp_path_factory.mktemp("onnx-models"), load_config(TINY_CONFIG, overrides=tiny_overrides))


@pytest.fixture(scope="module")
def vocoder_dir(tmp_path_factory):
    return tiny_bigvgan().generator.save_pretrained(tmp_path_factory.mktemp("tiny-bigvgan"))


@pytest.fixture(scope="module")
def export_dir(model_dirs, vocoder_dir, tmp_path_factory):
    """The CLI's export of the tiny student with the tiny BigVGAN."""
    out = tmp_path_factory.mktemp("export")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["export-onnx", "--model", str(model_dirs[1]), "--out", str(out), "--vocoder", str(vocoder_dir)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out


def _batch(model, batch: int, frames: int, seed: int) -> tuple[dict, torch.Tensor]:
    config = model.config
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[-1, frames * 2 // 3 :] = False
    voiced = torch.rand(batch, frames, generator=g) > 0.2
    out = {
        "whisper": torch.randn(batch, frames, config.content.whisper_dim, generator=g),
        "contentvec": torch.randn(batch, frames, config.content.contentvec_dim, generator=g),
        "f0": (80.0 + 600.0 * torch.rand(batch, frames, generator=g)) * voiced,
        "energy": 3.0 * torch.rand(batch, frames, generator=g),
        "speaker": torch.arange(batch) % len(model.singers),
        "mask": mask,
    }
    return out, torch.randn(batch, frames, config.audio.n_mels, generator=g)


def test_export_folder_holds_graphs_model_files_and_manifest(export_dir):
    names = {p.name for p in export_dir.iterdir()}
    assert {"student.onnx", "vocoder.onnx", "onnx.json", "config.json", "singers.json", "stats.json"} <= names
    assert "model.safetensors" not in names
    manifest = json.loads((export_dir / "onnx.json").read_text())
    assert manifest["opset"] == 18 and manifest["graphs"]["student"]["steps"] == 1
    assert manifest["graphs"]["student"]["inputs"] == ["whisper", "contentvec", "f0", "energy", "speaker", "mask", "noise"]
    assert manifest["graphs"]["vocoder"]["hop_length"] == 256


@pytest.mark.parametrize(("batch", "frames"), [(2, 37), (1, 150)])  # the export traced B=2, T=64
def test_student_graph_equals_torch_sample_at_other_lengths(model_dirs, export_dir, batch, frames):
    from comosvc.models import StudentSampler
    from comosvc.onnx.runtime import load_onnx

    model = ComoSVC.from_pretrained(str(model_dirs[1]))
    student, _ = load_onnx(export_dir)
    features, noise = _batch(model, batch, frames, seed=frames)
    one_step = StudentSampler.from_config(model.config, steps=1)
    want = model.sample(features, sampler=one_step, noise=[noise])
    got = student.sample(features, sampler=one_step, noise=[noise])
    assert got.mel.shape == want.mel.shape == (batch, frames, 100)
    assert (got.mel - want.mel).abs().max().item() < MEL_TOLERANCE
    assert (got.mu - want.mu).abs().max().item() < MEL_TOLERANCE
    assert got.mel[~features["mask"]].abs().max().item() == 0.0  # padded frames stay 0
    assert want.mel.abs().max().item() > 0.05  # the comparison is not of zeros


def test_vocoder_graph_matches_torch_bigvgan(export_dir):
    from comosvc.onnx.runtime import load_onnx

    _, vocoder = load_onnx(export_dir)
    torch_vocoder = tiny_bigvgan()
    for frames in (23, 101):  # the export traced T=64
        log_mel = torch.randn(1, frames, 100, generator=torch.Generator().manual_seed(frames)) - 4.0
        want, got = torch_vocoder(log_mel), vocoder(log_mel)
        assert got.shape == want.shape == (1, frames * 256)
        snr = 10 * torch.log10(want.pow(2).sum() / (got - want).pow(2).sum().clamp(min=1e-30))
        assert snr.item() > SNR_DB


def test_pipeline_onnx_runtime_equals_torch(model_dirs, export_dir, vocoder_dir):
    wav, _ = sung_phrase([262.0, 330.0], note_seconds=0.5, gap_seconds=0.1, seed=2)
    onnx_pipe = ConversionPipeline.from_pretrained(export_dir, device="cpu", runtime="onnx")
    torch_pipe = ConversionPipeline.from_pretrained(model_dirs[1], vocoder=str(vocoder_dir), device="cpu")
    assert onnx_pipe.runtime == "onnx" and torch_pipe.runtime == "torch"
    assert onnx_pipe.vocoder_name.endswith("(onnx)")
    got, want = onnx_pipe(wav, "synth_alto", seed=3), torch_pipe(wav, "synth_alto", seed=3)
    assert got.audio.shape == want.audio.shape and got.nfe == want.nfe == 1
    assert np.abs(got.mel - want.mel).max() < 1e-3  # unnormalised log mel (range ~13)
    snr = 10 * np.log10(np.sum(want.audio**2) / max(np.sum((got.audio - want.audio) ** 2), 1e-30))
    assert snr > SNR_DB


def test_onnx_runtime_refuses_the_teacher_and_more_steps(export_dir, model_dirs):
    pipe = ConversionPipeline.from_pretrained(export_dir, device="cpu", runtime="onnx")
    assert pipe.samplers == ["student"]
    from comosvc.models import StudentSampler, TeacherSampler

    cd_steps = pipe.config.model.cd_steps
    one_step = StudentSampler(1, cd_steps)
    assert pipe.resolve_sampler() == pipe.resolve_sampler("student", 1) == one_step
    assert pipe.resolve_sampler(one_step) is one_step and pipe.model.noise_draws(one_step) == 1
    for sampler, steps in (("teacher", None), ("student", 2), (StudentSampler(2, cd_steps), None), (TeacherSampler(1), None)):
        with pytest.raises(ValueError, match="one-step student only"):
            pipe.resolve_sampler(sampler, steps)
    with pytest.raises(ValueError, match="is not an ONNX export.*export-onnx"):
        ConversionPipeline.from_pretrained(model_dirs[1], device="cpu", runtime="onnx")
    with pytest.raises(ValueError, match="is an ONNX export.*runtime='onnx'"):
        ConversionPipeline.from_pretrained(export_dir, device="cpu")


def test_a_teacher_is_not_exported(model_dirs, tmp_path, capsys):
    code = main(["export-onnx", "--model", str(model_dirs[0]), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Only a distilled one-step student" in err and "train/distill.py" in err


def test_cli_convert_with_the_onnx_runtime(export_dir, tmp_path, capsys):
    wav, _ = sung_phrase([262.0], note_seconds=0.5, gap_seconds=0.1, seed=1)
    sf.write(tmp_path / "song.wav", wav, 24000)
    out = tmp_path / "out"
    code = main(["convert", str(tmp_path / "song.wav"), "--model", str(export_dir), "--runtime", "onnx",
                 "--singer", "synth_alto", "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    audio, rate = sf.read(out / "song_synth_alto.wav")
    assert rate == 24000 and len(audio) == len(wav) and np.abs(audio).max() > 0
    code = main(["convert", str(tmp_path / "song.wav"), "--model", str(export_dir), "--runtime", "onnx",
                 "--singer", "synth_alto", "--steps", "2", "--out", str(out), "--device", "cpu"])
    assert code == 2 and "one-step student only" in capsys.readouterr().err


def test_export_path_of_the_band_add_equals_the_in_place_one(monkeypatch):
    from comosvc.models.prior import RelativeSelfAttention

    attention = RelativeSelfAttention(8, 2, window=3)
    for frames in (2, 9):  # shorter and longer than the window
        dense = torch.randn(2, 2, frames, frames)
        band = torch.randn(2, 2, frames, 7)
        eager = attention._add_band(dense.clone(), band)
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
        functional = attention._add_band(dense.clone(), band)
        monkeypatch.undo()
        assert torch.equal(eager, functional)



def test_bench_adds_the_onnx_student(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        ["bench", "--config", str(TINY_CONFIG), "--set", "content.whisper_dim=64", "--set", "content.contentvec_layer=2",
         "--seconds", "2", "--repeats", "1", "--teacher-steps", "4", "--student-steps", "1", "--warmup", "0",
         "--acoustic-only", "--threads", "1", "--runtime", "torch", "onnx", "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    (duration,) = json.loads(out.read_text())["durations"]
    systems = {e["name"]: e for e in duration["systems"]}
    assert list(systems) == ["teacher-4", "student-1", "student-1-onnx"]
    onnx = systems["student-1-onnx"]
    assert onnx["nfe"] == 1 and onnx["median"]["acoustic"] > 0 and "prior" not in onnx["median"]
    assert onnx["speedup"]["acoustic"] == pytest.approx(systems["teacher-4"]["median"]["acoustic"] / onnx["median"]["acoustic"])
    assert "| student-1-onnx | 1 |" in capsys.readouterr().out


def test_onnx_runtime_refuses_a_mix_of_singers(export_dir, tmp_path, capsys):
    """The export's speaker input is one id per row: a mix is refused before converting, in one line."""
    pipe = ConversionPipeline.from_pretrained(export_dir, device="cpu", runtime="onnx")
    wav, _ = sung_phrase([262.0], note_seconds=0.5, gap_seconds=0.1, seed=1)
    assert pipe(wav, "synth_alto:1,synth_bass:0", seed=0).singer == "synth_alto"  # one singer left: converts
    with pytest.raises(ValueError, match="converts to one singer.*use the torch runtime"):
        pipe(wav, "synth_alto:0.5,synth_bass:0.5")
    sf.write(tmp_path / "song.wav", wav, 24000)
    code = main(["convert", str(tmp_path / "song.wav"), "--model", str(export_dir), "--runtime", "onnx",
                 "--singer", "synth_alto:0.5,bass:0.5", "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "use the torch runtime" in err[-1]
