"""The teacher's training recipe: the reference's losses (pinned to numbers its own code
computed), per-module gradient clipping, the weight EMA, and the denoiser variants."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from comosvc.config import ComoSVCConfig, ConfigError, ModelConfig, load_config
from comosvc.models import ComoSVC
from comosvc.models.denoiser import BiDilConv
from comosvc.models.prior import prior_loss
from comosvc.models.ssim import ssim_loss
from comosvc.training.ema import WeightEMA
from comosvc.training.loop import clip_gradients, clip_groups

REPO = Path(__file__).resolve().parent.parent
PINS = json.loads((Path(__file__).parent / "data" / "reference_losses.json").read_text())


def pinned_inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inputs the reference's numbers were computed on (see the JSON's "about")."""
    shape = PINS["shape"]
    b, t, m = shape["batch"], shape["frames"], shape["n_mels"]
    g = torch.Generator().manual_seed(case["seed"])
    mel = torch.rand(b, t, m, generator=g, dtype=torch.float64) * 2 - 1
    mu = mel + 0.5 * torch.randn(b, t, m, generator=g, dtype=torch.float64)
    mask = torch.arange(t)[None] < torch.tensor(case["lengths"])[:, None]
    return mel, mu, mask


# --------------------------------------------------------------------------- the reference's losses


@pytest.mark.parametrize("case", PINS["cases"], ids=lambda c: f"seed{c['seed']}")
def test_prior_loss_equals_the_reference(case):
    mel, mu, mask = pinned_inputs(case)
    value = prior_loss(mu, mel, mask).item()
    assert value == pytest.approx(case["prior_nll"], rel=1e-4)


@pytest.mark.parametrize("case", [c for c in PINS["cases"] if "ssim_loss" in c], ids=lambda c: f"seed{c['seed']}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ssim_loss_equals_the_reference(case, dtype):
    mel, mu, mask = pinned_inputs(case)
    value = ssim_loss(mu.to(dtype), mel.to(dtype), mask).item()
    assert value == pytest.approx(case["ssim_loss"], rel=1e-4)


def test_ssim_ignores_padded_frames():
    mel, mu, mask = pinned_inputs({"seed": 2, "lengths": [64, 41]})
    other_mu = mu.clone()
    other_mu[1, 41:] = 5.0  # garbage on padded frames only
    assert ssim_loss(other_mu, mel, mask).item() == pytest.approx(ssim_loss(mu, mel, mask).item(), abs=1e-12)


def test_the_reference_recipe_is_the_default_and_the_lost_switches_are_retired():
    cfg = ComoSVCConfig()
    assert cfg.train.weight_decay == 0.01 and cfg.train.grad_clip_mode == "per_module"
    assert cfg.train.ema_halflife_steps > 0 and cfg.distill.ema_halflife_steps == 0
    assert load_config(REPO / "configs" / "comosvc.yaml", overrides=["train.grad_clip_mode=joint"]).train.grad_clip_mode == "joint"
    # a saved config with the value the code now has still loads; any other value says what to do
    kept = ["model.prior_loss=reference", "model.ssim_form=reference", "model.denoiser_relu=true", "model.step_embed_scale=1.0"]
    assert load_config(REPO / "configs" / "comosvc.yaml", overrides=kept) == cfg
    for override in ("model.prior_loss=mse", "model.ssim_form=masked", "model.denoiser_relu=false", "model.step_embed_scale=100"):
        with pytest.raises(ConfigError, match=rf"{override.split('=')[0]}=.*no longer supported.*remove the key"):
            load_config(overrides=[override])


# --------------------------------------------------------------------------- clipping per module


def _tiny_teacher(*overrides: str) -> ComoSVC:
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides=["content.whisper_dim=16", "content.contentvec_dim=8", *overrides])
    torch.manual_seed(0)
    return ComoSVC(cfg, singers={"d_a": 0})


def _set_grads(model: nn.Module, value: float) -> None:
    for p in model.parameters():
        p.grad = torch.full_like(p, value)


def _norm(params) -> float:
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()


def test_per_module_clipping_clips_prior_and_denoiser_apart_and_never_the_condition_encoder():
    model = _tiny_teacher()
    params = list(model.parameters())
    groups, rest = clip_groups(model, params, "per_module")
    assert [len(g) for g in groups] == [len(list(model.prior.parameters())), len(list(model.denoiser.parameters()))]
    assert {id(p) for p in rest} == {id(p) for p in model.condition_encoder.parameters()}

    _set_grads(model, 1.0)
    before = {"prior": _norm(model.prior.parameters()), "denoiser": _norm(model.denoiser.parameters()),
              "condition": _norm(model.condition_encoder.parameters())}
    total = clip_gradients(Accelerator(cpu=True), groups, rest, 1.0)
    assert total.item() == pytest.approx(math.sqrt(sum(v**2 for v in before.values())), rel=1e-5)
    assert _norm(model.prior.parameters()) == pytest.approx(1.0, rel=1e-4)
    assert _norm(model.denoiser.parameters()) == pytest.approx(1.0, rel=1e-4)
    assert _norm(model.condition_encoder.parameters()) == pytest.approx(before["condition"], rel=1e-6)


def test_joint_clipping_clips_one_norm_over_everything():
    model = _tiny_teacher()
    params = list(model.parameters())
    groups, rest = clip_groups(model, params, "joint")
    assert len(groups) == 1 and not rest
    _set_grads(model, 1.0)
    clip_gradients(Accelerator(cpu=True), groups, rest, 1.0)
    assert _norm(params) == pytest.approx(1.0, rel=1e-4)


# --------------------------------------------------------------------------- the weight EMA


def test_ema_decay_follows_the_half_life_with_ramp_up():
    ema = WeightEMA(nn.Linear(2, 2), halflife_steps=100, rampup=0.05)
    assert ema.beta(10) == pytest.approx(0.5 ** (1 / 0.5))  # ramp-up: half-life 0.05 x 10 steps
    assert ema.beta(100_000) == pytest.approx(0.5 ** (1 / 100))  # capped at the half-life
    # after `halflife` steps at the full half-life, a past value's weight has halved
    assert ema.beta(100_000) ** 100 == pytest.approx(0.5)


def test_ema_averages_swaps_in_and_out_and_round_trips():
    layer = nn.Linear(3, 1)
    ema = WeightEMA(layer, halflife_steps=1.0, rampup=0.0)  # beta = 0.5
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(2.0)
    ema.update(1)
    assert torch.allclose(ema.average["weight"], start + 1.0)
    with ema.swapped_in():
        assert torch.allclose(layer.weight, start + 1.0)
    assert torch.allclose(layer.weight, start + 2.0)  # own weights back
    other = WeightEMA(nn.Linear(3, 1), halflife_steps=1.0)
    other.load_state_dict(ema.state_dict())
    assert torch.allclose(other.average["weight"], start + 1.0)
    ema.copy_to_model()
    assert torch.allclose(layer.weight, start + 1.0)


def test_a_training_run_validates_and_exports_the_ema_and_checkpoints_it(tmp_path):
    from comosvc.config import TrainConfig
    from comosvc.training import prepare_training

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(4))
            self.seen = []

        def forward(self, batch):
            if not self.training:
                self.seen.append(self.w.detach().clone())
            return {"loss": ((self.w - batch) ** 2).mean()}

    tc = TrainConfig(lr=0.1, batch_size=2, max_steps=6, validate_every=3, checkpoint_every=3, log_every=3,
                     log_with="none", num_workers=0, ema_halflife_steps=50.0, ema_rampup=0.5, weight_decay=0.0)
    data = torch.ones(8, 4)
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    toy = Toy()
    run = prepare_training(toy, tc, tmp_path / "run", loader, val_loader=loader)
    assert run.ema is not None
    run.fit()
    averaged = run.ema.average["w"].clone()
    assert not torch.allclose(averaged, toy.w.detach())  # the EMA lags the weights
    assert torch.allclose(toy.seen[-1], averaged)  # validation saw the EMA weights
    assert torch.allclose(run.final_model().w.detach(), averaged)  # the export carries them
    run.end()

    resumed = prepare_training(Toy(), tc, tmp_path / "run", loader, val_loader=loader, resume=True)
    assert torch.allclose(resumed.ema.average["w"], averaged)  # kept in the checkpoint
    resumed.end()


# --------------------------------------------------------------------------- denoiser variants


def _denoiser(**changes) -> BiDilConv:
    cfg = ModelConfig(denoiser_channels=16, denoiser_layers=2, step_embed_dim=8, step_mlp_hidden=16, **changes)
    torch.manual_seed(0)
    return BiDilConv(cfg, n_mels=10)


def _inputs():
    g = torch.Generator().manual_seed(1)
    x, mu = torch.randn(2, 7, 10, generator=g), torch.randn(2, 7, 10, generator=g)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    return x, torch.tensor([-1.0, 0.5]), mu, mask


def test_linear_paths_start_as_the_reference_network_then_add_gain_times_input():
    reference, paths = _denoiser(denoiser_linear_paths=False), _denoiser(denoiser_linear_paths=True)
    missing = paths.load_state_dict(reference.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["linear_gains.bias", "linear_gains.weight"]
    x, c_noise, mu, mask = _inputs()
    torch.testing.assert_close(paths(x, c_noise, mu, mask), reference(x, c_noise, mu, mask))
    # with the x-gain of every bin set to 1 (bias), the output moves by exactly x on valid frames
    with torch.no_grad():
        paths.linear_gains.bias[:10] = 1.0
    diff = paths(x, c_noise, mu, mask) - reference(x, c_noise, mu, mask)
    torch.testing.assert_close(diff, x * mask[..., None])


def test_a_model_saved_before_the_variant_switches_loads_as_the_reference_network(tmp_path):
    from comosvc.models.comosvc import _with_architecture_of_its_time

    filled = _with_architecture_of_its_time({"model": {"hidden": 8}, "audio": {}})
    assert filled["model"] == {"hidden": 8, "denoiser_linear_paths": False}
    kept = _with_architecture_of_its_time({"model": {"denoiser_linear_paths": True}})
    assert kept["model"]["denoiser_linear_paths"] is True

    model = _tiny_teacher("model.denoiser_linear_paths=false")  # an older model: the reference network
    model.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    meta = json.loads(path.read_text())
    del meta["config"]["model"]["denoiser_linear_paths"]  # as an older version wrote it
    meta["config"]["model"].update(denoiser_relu=True, step_embed_scale=1.0, prior_loss="reference", ssim_form="reference")
    meta["config"]["content"].update(sample_rate=16000, frame_hop=320)  # retired settings, at their kept values
    path.write_text(json.dumps(meta))
    loaded = ComoSVC.from_pretrained(tmp_path / "old")
    assert loaded.config.model.denoiser_linear_paths is False and loaded.denoiser.linear_gains is None
