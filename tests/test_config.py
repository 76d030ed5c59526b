"""The config system: defaults match docs/design.md, loading is strict, overrides work."""

from pathlib import Path

import pytest

from comosvc.config import ComoSVCConfig, ConfigError, load_config, with_overrides

REPO = Path(__file__).resolve().parent.parent


def test_default_file_equals_dataclass_defaults():
    assert load_config(REPO / "configs" / "comosvc.yaml") == ComoSVCConfig()


def test_defaults_are_design_numbers():
    cfg = load_config(REPO / "configs" / "comosvc.yaml")
    assert (cfg.audio.sample_rate, cfg.audio.n_fft, cfg.audio.hop_length, cfg.audio.n_mels) == (24000, 1024, 256, 100)
    assert (cfg.audio.fmin, cfg.audio.fmax) == (0.0, 12000.0)
    assert (cfg.model.sigma_data, cfg.model.sigma_min, cfg.model.sigma_max, cfg.model.rho) == (0.5, 0.002, 80.0, 7.0)
    assert (cfg.model.prior_layers, cfg.model.hidden, cfg.model.denoiser_layers) == (6, 384, 20)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.crop_frames, cfg.train.grad_clip) == (4e-4, 64, 512, 1.0)
    assert cfg.model.ema_decay == 0.95 and cfg.model.cd_steps == 40 and cfg.inference.teacher_steps == 40


def test_tiny_keeps_structure_and_shrinks_sizes():
    tiny = load_config(REPO / "configs" / "tiny.yaml")
    assert tiny.model.hidden < 384 and tiny.model.denoiser_layers < 20
    assert tiny.audio == ComoSVCConfig().audio  # same mel: tiny models still vocode


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hiden: 3\n")
    with pytest.raises(ConfigError, match=r"model\.hiden"):
        load_config(path)


def test_unknown_section_names_the_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("modle:\n  hidden: 3\n")
    with pytest.raises(ConfigError, match="modle"):
        load_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.hidden=abc", "model.hidden must be an integer"),
        ("model.hidden=3.5", "model.hidden must be an integer"),
        ("train.lr=fast", "train.lr must be a number"),
        ("model.ssim_loss=3", "model.ssim_loss must be true or false"),
        ("f0.method=yin", "f0.method must be one of"),
        ("train.adam_betas=[0.9]", "train.adam_betas must have 2 items"),
        ("model", "must look like section.key=value"),
    ],
)
def test_wrong_types_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "configs" / "tiny.yaml", overrides=[override])


def test_overrides_apply_and_coerce():
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides=["train.lr=1e-4", "model.hidden=48", "f0.method=fcpe"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.hidden == 48 and cfg.f0.method == "fcpe"


def test_overrides_on_a_loaded_config_leave_the_original_alone():
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    changed = with_overrides(cfg, ["inference.teacher_steps=8", "f0.method=fcpe"])
    assert (changed.inference.teacher_steps, changed.f0.method) == (8, "fcpe")
    assert cfg == load_config(REPO / "configs" / "tiny.yaml")
    assert with_overrides(cfg, []) is cfg
    with pytest.raises(ConfigError, match="inference.teacher_stpes"):
        with_overrides(cfg, ["inference.teacher_stpes=8"])


def test_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(ConfigError, match="configs/comosvc.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_round_trip_through_dict_and_files(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides=["model.hidden=40"])
    assert ComoSVCConfig.from_dict(cfg.to_dict()) == cfg
    for name in ("c.yaml", "c.json"):
        cfg.save(tmp_path / name)
        assert load_config(tmp_path / name) == cfg


def test_retired_key_of_old_model_folders_is_dropped_with_a_warning(caplog):
    # model.teacher_steps was written by older versions but never read; their model folders must still load.
    old = ComoSVCConfig().to_dict()
    old["model"]["teacher_steps"] = 7
    with caplog.at_level("WARNING", logger="comosvc.config"):
        cfg = ComoSVCConfig.from_dict(old, source="old/config.json")
    assert cfg == ComoSVCConfig()
    assert "model.teacher_steps" in caplog.text and "inference.teacher_steps" in caplog.text
    assert not hasattr(cfg.model, "teacher_steps")


def test_cpu_config_is_the_default_with_bigvgan_v1_base_and_unpadded_whisper():
    cpu = load_config(REPO / "configs" / "cpu.yaml")
    assert cpu.inference.vocoder == "nvidia/bigvgan_base_24khz_100band"
    assert cpu.content.whisper_mode == "unpadded"
    default = ComoSVCConfig()
    assert cpu.to_dict() == with_overrides(
        default,
        ["inference.vocoder=nvidia/bigvgan_base_24khz_100band", "content.whisper_mode=unpadded"],
    ).to_dict()  # everything else as configs/comosvc.yaml


def test_a_trained_model_converts_in_its_whisper_mode():
    from comosvc.pipeline import apply_overrides

    trained = load_config(REPO / "configs" / "cpu.yaml")  # unpadded
    with pytest.raises(ConfigError, match="trained with content.whisper_mode=unpadded.*asks for padded.*retrain"):
        apply_overrides(trained, ["content.whisper_mode=padded"])
    assert apply_overrides(trained, ["content.whisper_mode=unpadded"]).content.whisper_mode == "unpadded"
    assert apply_overrides(trained, ["inference.max_chunk_seconds=5"]).inference.max_chunk_seconds == 5
