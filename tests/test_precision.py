"""inference.dtype: resolved per device, applied to every network of a conversion; the stage clock syncs.

The CPU refuses half precision (:func:`comosvc.precision.resolve_dtype`); the tests that
run bfloat16 through the pipeline pass a dtype resolved with ``allow_cpu_half=True``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comosvc.config import PRECISIONS, ComoSVCConfig, ConfigError, load_config
from comosvc.pipeline import ConversionPipeline, StageClock
from comosvc.precision import AUTO, DTYPES, PrecisionError, cast_module, float32_io, module_dtype, resolve_dtype
from comosvc.vocoders import BigVGANConfig, BigVGANGenerator, BigVGANVocoder

from conftest import TINY_CONFIG, fast_vocoder, save_tiny_models

pytestmark = pytest.mark.usefixtures("one_thread")

HOP = 256


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_overrides):
    return save_tiny_models(tmp_path_factory.mktemp("models"), load_config(TINY_CONFIG, overrides=tiny_overrides))


@pytest.fixture(scope="module")
def phrase():
    from comosvc.data.songs import sung_phrase

    wav, _ = sung_phrase([220.0, 262.0], note_seconds=0.4, gap_seconds=0.1, seed=3)
    return wav


def small_bigvgan(seed: int = 0) -> BigVGANVocoder:
    """A BigVGAN with few channels (hop 256, 100 bins): a vocoder with weights that is quick on a CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = BigVGANConfig(
            upsample_rates=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4], upsample_initial_channel=32,
            resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        )
        return BigVGANVocoder(BigVGANGenerator(config), name="small bigvgan")


def pipeline(student_dir, tiny_overrides, dtype=None) -> ConversionPipeline:
    return ConversionPipeline.from_pretrained(
        student_dir, vocoder=small_bigvgan(), device="cpu", overrides=tiny_overrides, dtype=dtype
    )


def networks(pipe: ConversionPipeline) -> dict[str, torch.nn.Module]:
    return {
        "acoustic": pipe.model,
        "vocoder": pipe.vocoder,
        "whisper": pipe.features.whisper,
        "contentvec": pipe.features.contentvec,
    }


def parameter_dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters() if p.is_floating_point()}


# --------------------------------------------------------------------------- resolving


def test_auto_is_float16_on_cuda_and_float32_on_the_cpu():
    assert resolve_dtype(AUTO, "cpu") == torch.float32
    assert resolve_dtype(AUTO, "cuda") == torch.float16
    assert resolve_dtype(AUTO, torch.device("cuda", 0)) == torch.float16
    assert resolve_dtype("float32", "cuda") == torch.float32
    assert resolve_dtype("bfloat16", "cuda") == torch.bfloat16
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert ComoSVCConfig().inference.dtype == AUTO
    assert (AUTO, *DTYPES) == PRECISIONS  # the config's choices are the ones resolve_dtype knows


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_half_precision_on_the_cpu_is_refused_with_what_to_do(name):
    with pytest.raises(PrecisionError, match=f"inference.dtype={name}") as err:
        resolve_dtype(name, "cpu")
    message = str(err.value)
    assert "inference.dtype=float32" in message and "CUDA" in message and "cpu_matmul_precision" in message
    assert resolve_dtype(name, "cpu", allow_cpu_half=True) == DTYPES[name]


def test_an_unknown_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="inference.dtype must be one of"):
        load_config(TINY_CONFIG, overrides=["inference.dtype=float8"])
    with pytest.raises(PrecisionError, match="must be one of"):
        resolve_dtype("half", "cuda")


def test_old_model_folders_with_half_on_cuda_still_load(caplog):
    old = ComoSVCConfig().to_dict()
    old["content"]["half_on_cuda"] = True
    with caplog.at_level("WARNING", logger="comosvc.config"):
        cfg = ComoSVCConfig.from_dict(old, source="old/config.json")
    assert cfg == ComoSVCConfig()
    assert "content.half_on_cuda" in caplog.text and "inference.dtype" in caplog.text


def test_float16_on_a_cpu_pipeline_raises_the_clear_error(model_dirs, tiny_overrides):
    with pytest.raises(PrecisionError, match="inference.dtype=float16 is not supported on the cpu"):
        ConversionPipeline.from_pretrained(
            model_dirs[1], vocoder=fast_vocoder(), device="cpu", overrides=[*tiny_overrides, "inference.dtype=float16"]
        )


def test_convert_command_maps_dtype_to_the_config_and_reports_the_refusal(model_dirs, tmp_path, phrase, capsys):
    import soundfile as sf

    from comosvc.cli import main

    source = tmp_path / "in.wav"
    sf.write(source, phrase, 24000)
    code = main(["convert", str(source), "--model", str(model_dirs[1]), "--singer", "synth_alto",
                 "--device", "cpu", "--dtype", "float16", "--vocoder", "griffinlim", "--out", str(tmp_path)])
    assert code == 2
    assert "inference.dtype=float16 is not supported" in capsys.readouterr().err


def test_bench_command_takes_dtype_and_reports_the_refusal(capsys):
    from comosvc.cli import main

    code = main(["bench", "--config", str(TINY_CONFIG), "--device", "cpu", "--dtype", "bfloat16", "--seconds", "1",
                 "--acoustic-only", "--repeats", "1", "--warmup", "0"])
    assert code == 2
    assert "inference.dtype=bfloat16 is not supported" in capsys.readouterr().err


def test_app_takes_dtype_from_the_command_line_or_the_environment(monkeypatch, model_dirs):
    import sys

    from conftest import REPO

    if str(REPO) not in sys.path:  # app.py lives at the repository root
        sys.path.insert(0, str(REPO))
    import app

    from comosvc.serving.settings import ServingSettings, parse_settings

    assert parse_settings([], environ={}).dtype is None
    assert parse_settings(["--dtype", "float32"], environ={}).dtype == "float32"
    assert parse_settings([], environ={"COMOSVC_DTYPE": "bfloat16"}).dtype == "bfloat16"
    with pytest.raises(SystemExit):
        parse_settings([], environ={"COMOSVC_DTYPE": "half"})
    # the setting reaches the pipeline: a half dtype on the CPU becomes the page's banner
    state = app.load_model(ServingSettings(model=str(model_dirs[1]), device="cpu", dtype="float16"))
    assert state.pipe is None and "inference.dtype=float16 is not supported" in state.problem


# --------------------------------------------------------------------------- casting


def test_float32_io_is_the_network_itself_in_float32_and_casts_around_a_half_one():
    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.seen: list[torch.dtype] = []

        def forward(self, x_in, c_noise, mu, mask):
            self.seen += [x_in.dtype, c_noise.dtype, mu.dtype]
            return x_in * self.scale + mu

    network = Echo()
    assert float32_io(network) is network
    inner = cast_module(Echo(), torch.bfloat16)
    x = torch.randn(1, 3, 4)
    out = float32_io(inner)(x, torch.zeros(1), x, torch.ones(1, 3, dtype=torch.bool))
    assert out.dtype == torch.float32
    assert inner.seen == [torch.bfloat16, torch.float32, torch.bfloat16]  # x_in, c_noise, mu


def test_networkless_modules_stay_float32():
    griffinlim = fast_vocoder()
    assert cast_module(griffinlim, torch.bfloat16) is griffinlim
    assert griffinlim.dtype == torch.float32 and griffinlim.mel_basis.dtype == torch.float32
    assert module_dtype("not a module") == torch.float32


def test_float32_pipeline_keeps_every_network_in_float32(model_dirs, tiny_overrides):
    pipe = pipeline(model_dirs[1], tiny_overrides)
    assert pipe.dtype == torch.float32
    for name, module in networks(pipe).items():
        assert parameter_dtypes(module) == {torch.float32}, name


def test_bfloat16_reaches_every_stage_and_the_audio_comes_back_float32(model_dirs, tiny_overrides, phrase):
    bf16 = resolve_dtype("bfloat16", "cpu", allow_cpu_half=True)
    pipe = pipeline(model_dirs[1], tiny_overrides, dtype=bf16)
    assert pipe.dtype == torch.bfloat16
    for name, module in networks(pipe).items():
        assert parameter_dtypes(module) == {torch.bfloat16}, name

    # what each network is fed during a conversion
    fed: dict[str, set[torch.dtype]] = {}

    def record(name):
        def hook(module, args):
            dtypes = tuple(a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point())
            fed.setdefault(name, set()).add(dtypes)

        return hook

    features = pipe.features
    hooks = [
        pipe.model.condition_encoder.whisper.register_forward_pre_hook(record("condition")),
        pipe.model.prior.register_forward_pre_hook(record("prior")),
        pipe.model.denoiser.register_forward_pre_hook(record("denoiser")),
        getattr(pipe.vocoder, "inner", pipe.vocoder).generator.register_forward_pre_hook(record("vocoder")),
        features.whisper.encoder.conv1.register_forward_pre_hook(record("whisper")),
        features.contentvec.model.feature_extractor.register_forward_pre_hook(record("contentvec")),
    ]
    try:
        results = {s: pipe(phrase, "synth_alto", sampler=s, steps=2, seed=0) for s in ("student", "teacher")}
    finally:
        for hook in hooks:
            hook.remove()
    # x_in and mu in bfloat16; c_noise (the log noise level) stays float32 for the step embedding's sinusoids
    assert fed.pop("denoiser") == {(torch.bfloat16, torch.float32, torch.bfloat16)}
    assert fed == dict.fromkeys(["whisper", "contentvec", "condition", "prior", "vocoder"], {(torch.bfloat16,)})
    assert parameter_dtypes(pipe.teacher()) == {torch.bfloat16}  # the lazily loaded teacher too
    frames = -(-len(phrase) // HOP)
    for sampler, result in results.items():
        assert result.audio.dtype == np.float32 and result.audio.shape == phrase.shape, sampler
        assert np.isfinite(result.audio).all() and np.abs(result.audio).max() > 0, sampler
        assert result.mel.dtype == np.float32 and result.mel.shape == (frames, 100), sampler

    # bfloat16 is an approximation of the float32 conversion, not another conversion
    reference = pipeline(model_dirs[1], tiny_overrides)(phrase, "synth_alto", sampler="student", steps=2, seed=0)
    error = np.abs(results["student"].mel - reference.mel).mean()
    assert error < 0.02 * np.abs(reference.mel).mean()  # measured: 0.8 %


# --------------------------------------------------------------------------- timing


def test_stage_clock_syncs_before_every_reading():
    calls = []
    clock = StageClock(sync=lambda: calls.append(1))
    assert len(calls) == 1  # the total starts
    with clock("acoustic"):
        assert len(calls) == 2
    assert len(calls) == 3
    with clock("vocoder"):
        pass
    assert len(calls) == 5
    wall = clock.wall()
    assert len(calls) == 6 and set(wall) == {"content", "f0", "acoustic", "vocoder", "total"}


def test_the_pipeline_clock_syncs_its_device_around_every_stage(model_dirs, tiny_overrides, phrase, monkeypatch):
    synced = []

    def sync_device(device):
        return lambda: synced.append(device)

    monkeypatch.setattr("comosvc.pipeline.conversion.sync_device", sync_device)
    pipe = ConversionPipeline.from_pretrained(model_dirs[1], vocoder=fast_vocoder(), device="cpu", overrides=tiny_overrides)
    entered = []
    clock_call = StageClock.__call__

    def counting(self, stage):
        entered.append(stage)
        return clock_call(self, stage)

    monkeypatch.setattr(StageClock, "__call__", counting)
    pipe(phrase, "synth_alto", seed=0)
    assert {"f0", "content", "acoustic", "vocoder"} <= set(entered)
    # once when the total starts, twice per stage block, once each for the wall and CPU totals
    assert len(synced) == 1 + 2 * len(entered) + 2
    assert set(synced) == {pipe.device}
