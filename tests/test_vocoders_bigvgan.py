"""BigVGAN (our implementation) against NVIDIA's reference, and its checkpoint loading.

Nothing is downloaded: checkpoints are small random generators saved in NVIDIA's and
Amphion's file layouts into temporary folders. The full-size v2 and v1 generators
are checked by parameter names and shapes only (built on the ``meta`` device, so no
memory or time), against manifests made from the reference ``bigvgan`` package:

    python tests/test_vocoders_bigvgan.py --write-manifests     # needs `pip install --no-deps bigvgan==2.4.1`
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

from comosvc.config import AudioConfig
from comosvc.vocoders import (
    CPU_VOCODER,
    DEFAULT_VOCODER,
    KNOWN_CONFIGS,
    BigVGANConfig,
    BigVGANGenerator,
    BigVGANVocoder,
    UnsafeCheckpointError,
    VocoderMismatchError,
    load_vocoder,
)
from conftest import require

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).resolve().parent / "data"
# Hub id -> (NVIDIA's config.json of that checkpoint, manifest of the reference state dict)
FULL_MODELS = {
    DEFAULT_VOCODER: ("bigvgan_v2_24khz_100band_256x_config.json", "bigvgan_v2_24khz_100band_256x_manifest.json"),
    CPU_VOCODER: ("bigvgan_base_24khz_100band_config.json", "bigvgan_base_24khz_100band_manifest.json"),
}

_AMP = dict(resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3)
# Reduced channel counts, same structures as the real checkpoints, plus the other branches.
SMALL_CONFIGS = {
    "v2-like": dict(upsample_rates=[4, 4, 2, 2, 2, 2], upsample_kernel_sizes=[8, 8, 4, 4, 4, 4],
                    upsample_initial_channel=128, use_tanh_at_final=False, use_bias_at_final=False, **_AMP),
    "v1-like": dict(upsample_rates=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4],
                    upsample_initial_channel=64, **_AMP),
    "snake-resblock2": dict(upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8], upsample_initial_channel=64,
                            resblock="2", activation="snake", snake_logscale=False,
                            resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 3]]),
}


def _shapes(state: dict) -> dict[str, list[int]]:
    return {name: list(tensor.shape) for name, tensor in state.items()}


def _small_generator(kind: str = "v1-like", seed: int = 0) -> BigVGANGenerator:
    torch.manual_seed(seed)
    generator = BigVGANGenerator(BigVGANConfig(**SMALL_CONFIGS[kind]))
    _perturb(generator.named_parameters(), logscale=generator.config.snake_logscale)
    return generator


def _perturb(named_parameters, logscale: bool) -> None:
    """Move snake alphas/betas and weight-norm gains off their initial values."""
    with torch.no_grad():
        for name, p in named_parameters:
            if name.endswith(("alpha", "beta")):
                p.add_(0.3 * torch.randn_like(p))
                if not logscale:
                    p.abs_().add_(0.1)
            elif name.endswith(("weight_g", "original0")):
                p.mul_(1 + torch.rand_like(p))


def _mel(frames: int = 24, batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 100, generator=g) - 4.0


# --------------------------------------------------------------------------- full-size structure


@pytest.mark.parametrize("hub_id", list(FULL_MODELS))
def test_full_size_generator_has_the_manifest_names_and_shapes(hub_id):
    config_file, manifest_file = FULL_MODELS[hub_id]
    nvidia = json.loads((DATA / config_file).read_text())
    manifest = json.loads((DATA / manifest_file).read_text())
    config = BigVGANConfig.from_nvidia(nvidia)
    assert config == KNOWN_CONFIGS[hub_id]  # our built-in copy of NVIDIA's config
    config.check_mel(AudioConfig())  # fmax null (v2) means Nyquist = 12000
    with torch.device("meta"):
        generator = BigVGANGenerator(config)
    assert _shapes(generator.checkpoint_state_dict()) == manifest["tensors"]
    assert sum(p.numel() for p in generator.parameters()) == manifest["parameters_with_weight_norm"]


@pytest.mark.parametrize("hub_id", list(FULL_MODELS))
def test_manifest_is_the_reference_package_state_dict(hub_id):
    bigvgan = require("bigvgan")
    config_file, manifest_file = FULL_MODELS[hub_id]
    with torch.device("meta"):
        reference = _reference_generator(bigvgan, json.loads((DATA / config_file).read_text()))
    assert _shapes(reference.state_dict()) == json.loads((DATA / manifest_file).read_text())["tensors"]


# --------------------------------------------------------------------------- reference outputs


def _reference_generator(bigvgan, config: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its torch.nn.utils.weight_norm is deprecated
        return bigvgan.BigVGAN(bigvgan.AttrDict(dict(config)), use_cuda_kernel=False)


@pytest.mark.parametrize("kind", list(SMALL_CONFIGS))
def test_same_names_shapes_and_waveform_as_the_reference_package(kind, tmp_path):
    bigvgan = require("bigvgan")
    config = BigVGANConfig(**SMALL_CONFIGS[kind])
    torch.manual_seed(0)
    reference = _reference_generator(bigvgan, config.to_dict()).eval()
    _perturb(reference.named_parameters(), logscale=config.snake_logscale)
    # NVIDIA's file layout, written the way the reference's save_pretrained does
    torch.save({"generator": reference.state_dict()}, tmp_path / "bigvgan_generator.pt")
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))

    with torch.device("meta"):
        assert _shapes(BigVGANGenerator(config).checkpoint_state_dict()) == _shapes(reference.state_dict())

    vocoder = load_vocoder(str(tmp_path), device="cpu")
    mel = _mel()
    with torch.no_grad():
        expected = reference(mel.transpose(1, 2)).squeeze(1)
    wav = vocoder(mel)
    assert wav.shape == (2, 24 * 256)
    assert expected.abs().max() > 0.05  # not a trivially silent output
    # inference on a CPU computes the activations phase by phase (antialias.polyphase_activation):
    # the same sums in another order, whose rounding the deep v2 stack grows to ~3e-5 (-90 dB)
    torch.testing.assert_close(wav, expected, atol=5e-5, rtol=0)
    with torch.enable_grad():  # the reference's order of operations: bit for bit
        reference_order = vocoder.generator(mel.transpose(1, 2)).squeeze(1).detach()
    torch.testing.assert_close(reference_order, expected, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- loader


def test_loader_reads_an_nvidia_folder(tmp_path):
    generator = _small_generator("v2-like")
    generator.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bigvgan_generator.pt", "config.json"]
    state = torch.load(tmp_path / "bigvgan_generator.pt", weights_only=True)["generator"]
    assert "conv_pre.weight_g" in state and "conv_pre.weight_v" in state  # NVIDIA's old-style names

    vocoder = load_vocoder(str(tmp_path), device="cpu")
    assert isinstance(vocoder, BigVGANVocoder)
    assert vocoder.sample_rate == 24000 and vocoder.name == str(tmp_path)
    assert not any("parametrizations" in k for k in vocoder.state_dict())  # weight norm removed
    mel = _mel()
    wav = vocoder(mel)
    assert wav.shape == (2, 24 * 256) and wav.abs().max() <= 1.0
    with torch.no_grad():
        torch.testing.assert_close(wav, generator.eval()(mel.transpose(1, 2)).squeeze(1), atol=1e-5, rtol=0)
    assert vocoder(mel[0]).shape == (24 * 256,)  # unbatched (T, 100) -> (T * 256,)
    with pytest.raises(ValueError, match=r"\(B, T, 100\)"):
        vocoder(mel[..., :80])


def test_loader_reads_plain_weights_and_amphion_layout(tmp_path):
    generator = _small_generator("v1-like")
    nvidia = generator.save_pretrained(tmp_path / "nvidia")
    mel = _mel(frames=12, batch=1)
    expected = load_vocoder(str(nvidia), device="cpu")(mel)

    # weight norm already folded into plain weights
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text((nvidia / "config.json").read_text())
    folded = BigVGANGenerator(generator.config)
    folded.load_state_dict(generator.state_dict())
    torch.save({"generator": folded.remove_weight_norm().checkpoint_state_dict()}, plain / "bigvgan_generator.pt")
    torch.testing.assert_close(load_vocoder(str(plain), device="cpu")(mel), expected, atol=1e-5, rtol=0)

    # Amphion: JSON5-ish args.json (trailing commas), <step>.pt with a DDP "module." prefix
    amphion = tmp_path / "bigvgan_singing"
    amphion.mkdir()
    c = generator.config
    args = f"""{{
    "model": {{
        "generator": "bigvgan",
        "bigvgan": {{
            "resblock": "1", "activation": "snakebeta", "snake_logscale": true,
            "upsample_rates": {c.upsample_rates}, "upsample_kernel_sizes": {c.upsample_kernel_sizes},
            "upsample_initial_channel": {c.upsample_initial_channel},
            "resblock_kernel_sizes": {c.resblock_kernel_sizes},
            "resblock_dilation_sizes": {c.resblock_dilation_sizes},
        }},
    }},
    "preprocess": {{"n_mel": 100, "sample_rate": 24000, "hop_size": 256, "n_fft": 1024,
                    "win_size": 1024, "fmin": 0, "fmax": 12000,}},
}}"""
    (amphion / "args.json").write_text(args)
    state = {"module." + k: v for k, v in generator.checkpoint_state_dict().items()}
    torch.save({"generator_state_dict": state, "step": 400000}, amphion / "400000.pt")
    torch.save({"generator_state_dict": {}}, amphion / "200000.pt")  # older step: not chosen
    torch.testing.assert_close(load_vocoder(str(amphion), device="cpu")(mel), expected, atol=1e-5, rtol=0)


def test_mismatched_mel_config_raises(tmp_path):
    generator = _small_generator("v1-like")
    generator.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "sampling_rate": 22050, "fmax": 8000}))
    with pytest.raises(VocoderMismatchError, match=r"sampling_rate=22050.*fmax=8000") as info:
        load_vocoder(str(tmp_path), device="cpu", fallback=True)  # a mismatch never falls back
    assert "nvidia/bigvgan_v2_24khz_100band_256x" in str(info.value)  # says what would work
    # the same files are fine for an AudioConfig that matches them
    load_vocoder(str(tmp_path), device="cpu", audio=AudioConfig(sample_rate=22050, fmax=8000))


def test_checkpoint_with_python_objects_is_refused(tmp_path):
    generator = _small_generator("v1-like")
    generator.save_pretrained(tmp_path)
    torch.save({"generator": generator.checkpoint_state_dict(), "extra": Path("x")}, tmp_path / "bigvgan_generator.pt")
    with pytest.raises(UnsafeCheckpointError, match="weights_only"):
        load_vocoder(str(tmp_path), device="cpu", fallback=True)


# --------------------------------------------------------------------------- manifests


def write_manifests() -> None:
    """Regenerate tests/data/*_manifest.json from the reference package (bigvgan==2.4.1)."""
    import bigvgan

    version = getattr(bigvgan, "__version__", "2.4.1")
    for config_file, manifest_file in FULL_MODELS.values():
        with torch.device("meta"):
            reference = _reference_generator(bigvgan, json.loads((DATA / config_file).read_text()))
        manifest = {
            "source": f"bigvgan=={version}: BigVGAN(AttrDict(config), use_cuda_kernel=False).state_dict()",
            "config": config_file,
            "parameters_with_weight_norm": sum(p.numel() for p in reference.parameters()),
            "tensors": _shapes(reference.state_dict()),
        }
        text = json.dumps(manifest, indent=1)
        text = re.sub(r"\[\s+([\d,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m[1]) + "]", text)
        (DATA / manifest_file).write_text(text + "\n")  # one line per tensor
        print(f"wrote {manifest_file}: {len(manifest['tensors'])} tensors")


if __name__ == "__main__":
    if "--write-manifests" in sys.argv:
        write_manifests()
