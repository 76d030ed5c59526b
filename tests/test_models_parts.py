"""The acoustic model's parts against their formulas: preconditioning, boundary condition,
relative attention (fast == reference), masking, the diffusers-backed samplers, Hub round trips.

Everything runs on the tiny config with random weights (the output layer of the
denoiser is re-initialised away from zero so ``F`` actually contributes).
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from diffusers import CMStochasticIterativeScheduler, EDMEulerScheduler

from comosvc.config import ComoSVCConfig, load_config
from comosvc.models import ComoSVC, ConsistencyDistiller, EDM, StudentSampler, TeacherSampler, karras_sigmas, resolve_sampler
from comosvc.models.comosvc import VALIDATION_SIGMAS
from comosvc.models.prior import Prior, RelativeSelfAttention

from conftest import TINY_CONFIG

N_MELS = 100


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def tiny_config(*overrides: str) -> ComoSVCConfig:
    return load_config(TINY_CONFIG, overrides=list(overrides))


def tiny_model(*overrides: str, seed: int = 0, **kwargs) -> ComoSVC:
    torch.manual_seed(seed)
    model = ComoSVC(tiny_config(*overrides), **kwargs)
    torch.nn.init.normal_(model.denoiser.output[-1].weight, std=0.2)  # F != 0
    torch.nn.init.normal_(model.denoiser.output[-1].bias, std=0.2)
    return model.eval()


def random_batch(config: ComoSVCConfig, lengths=(40, 27), seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of random features; example ``b`` is valid for its first ``lengths[b]`` frames."""
    g = torch.Generator().manual_seed(seed)
    batch_size, frames = len(lengths), max(lengths)
    mask = torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]
    f0 = torch.rand(batch_size, frames, generator=g) * 400 + 100
    f0[:, ::7] = 0.0  # some unvoiced frames
    return {
        "mel": torch.rand(batch_size, frames, N_MELS, generator=g) * 2 - 1,
        "whisper": torch.randn(batch_size, frames, config.content.whisper_dim, generator=g),
        "contentvec": torch.randn(batch_size, frames, config.content.contentvec_dim, generator=g),
        "f0": f0,
        "energy": torch.rand(batch_size, frames, generator=g),
        "speaker": torch.arange(batch_size),
        "mask": mask,
    }


def scramble_padding(batch: dict[str, torch.Tensor], seed: int = 99) -> dict[str, torch.Tensor]:
    """The same batch with different (large, random) values in every padded frame."""
    g = torch.Generator().manual_seed(seed)
    pad = ~batch["mask"]
    out = dict(batch)
    for key in ("mel", "whisper", "contentvec"):
        junk = torch.randn(batch[key].shape, generator=g) * 50
        out[key] = torch.where(pad[..., None], junk, batch[key])
    out["f0"] = torch.where(pad, torch.rand(pad.shape, generator=g) * 900 + 60, batch["f0"])
    out["energy"] = torch.where(pad, torch.rand(pad.shape, generator=g) * 1.4, batch["energy"])
    return out


def condition(batch):
    return {k: v for k, v in batch.items() if k != "mel"}


# ----------------------------------------------------------------------------- preconditioning


def test_preconditioning_coefficients_equal_the_formulas():
    cfg = tiny_config().model
    edm = EDM(cfg)
    sd, s_min = cfg.sigma_data, cfg.sigma_min
    sigma = torch.tensor([0.002, 0.01, 0.3, 1.0, 7.5, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm.scalings(sigma)
    for s, a, b, c, d in zip(sigma.tolist(), c_skip, c_out, c_in, c_noise):
        assert a.item() == pytest.approx(sd**2 / ((s - s_min) ** 2 + sd**2), rel=1e-12)
        assert b.item() == pytest.approx((s - s_min) * sd / math.sqrt(s**2 + sd**2), rel=1e-12, abs=1e-15)
        assert c.item() == pytest.approx(1 / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert d.item() == pytest.approx(math.log(s) / 4, rel=1e-12)
    # diffusers agrees where its convention is ours: CM boundary scalings, EDM c_in and c_noise.
    cm = CMStochasticIterativeScheduler(sigma_min=s_min, sigma_max=cfg.sigma_max, sigma_data=sd)
    cm_skip, cm_out = cm.get_scalings_for_boundary_condition(sigma)
    torch.testing.assert_close(cm_skip, c_skip)
    torch.testing.assert_close(cm_out, c_out)
    euler = EDMEulerScheduler(sigma_min=s_min, sigma_max=cfg.sigma_max, sigma_data=sd)
    torch.testing.assert_close(euler.precondition_inputs(torch.ones_like(sigma), sigma), c_in)
    torch.testing.assert_close(euler.precondition_noise(sigma), c_noise)


def test_consistency_boundary_condition_is_exact():
    model = tiny_model()
    batch = model.prepare_batch(random_batch(model.config))
    mu = model.encode(batch)
    x = torch.randn(mu.shape) * 3
    with torch.no_grad():
        network_out = model.denoiser(x, torch.zeros(x.shape[0]), mu, batch["mask"])
        denoised = model.edm.denoised(model.denoiser, x, model.edm.sigma_min, mu, batch["mask"])
    assert network_out.abs().max() > 0.1  # F really is non-zero
    assert (denoised - x).abs().max().item() <= 1e-6


def test_karras_sigmas():
    sigmas = karras_sigmas(40, 0.002, 80.0, 7.0)
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-1].item() == pytest.approx(0.002)
    assert torch.all(sigmas[1:] < sigmas[:-1])


# ----------------------------------------------------------------------------- attention


def naive_relative_attention(att: RelativeSelfAttention, q, k, v, mask):
    """Shaw/Glow-TTS relative attention with explicit (T, T) offset tables; no tricks."""
    frames, w, d = q.shape[2], att.window, att.head_dim
    offset = torch.arange(frames)[None, :] - torch.arange(frames)[:, None]  # j - i
    inside = offset.abs() <= w
    index = offset.clamp(-w, w) + w
    emb_k = torch.where(inside[..., None], att.rel_key[index], torch.zeros(()))  # (T, T, d)
    emb_v = torch.where(inside[..., None], att.rel_value[index], torch.zeros(()))
    logits = (q @ k.transpose(-1, -2) + torch.einsum("bhid,ijd->bhij", q, emb_k)) / math.sqrt(d)
    logits = logits.masked_fill(~mask[:, None, None, :], -1e30)
    p = logits.softmax(-1)
    return p @ v + torch.einsum("bhij,ijd->bhid", p, emb_v)


@pytest.mark.parametrize("frames, window", [(37, 4), (3, 4), (12, 1)])
def test_fast_attention_equals_reference(frames, window):
    torch.manual_seed(frames)
    att = RelativeSelfAttention(channels=24, heads=2, window=window)
    q, k, v = (torch.randn(2, 2, frames, 12, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, frames, dtype=torch.bool)
    mask[1, frames // 2 + 1 :] = False
    naive = naive_relative_attention(att, q, k, v, mask)
    reference = att.attend_reference(q, k, v, mask)
    fast = att.attend_fast(q, k, v, mask)
    valid = mask[:, None, :, None]
    torch.testing.assert_close(reference * valid, naive * valid, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(fast * valid, naive * valid, atol=2e-6, rtol=1e-5)
    # Gradients agree too (training without dropout uses the fast path).
    grads = []
    for out in (reference, fast):
        grads.append(torch.autograd.grad((out * valid).square().sum(), (q, k, v, att.rel_key, att.rel_value)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_attention_paths_by_mode():
    att = RelativeSelfAttention(channels=16, heads=2, window=4, dropout=0.5)
    x, mask = torch.randn(1, 9, 16), torch.ones(1, 9, dtype=torch.bool)
    att.eval()
    torch.testing.assert_close(att(x, mask), att(x, mask))  # eval: deterministic fast path
    att.train()
    torch.manual_seed(0)
    assert not torch.allclose(att(x, mask), att(x, mask))  # train with dropout: reference path, dropout on p


# ----------------------------------------------------------------------------- masks


def test_prior_padding_does_not_change_valid_frames():
    cfg = tiny_config()
    torch.manual_seed(0)
    prior = Prior(cfg.model, N_MELS).eval()
    x = torch.randn(2, 30, cfg.model.hidden)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 18:] = False
    x_junk = torch.where(mask[..., None], x, torch.randn(x.shape) * 100)
    out, out_junk = prior(x, mask), prior(x_junk, mask)
    alone = prior(x[1:, :18], mask[1:, :18])
    torch.testing.assert_close(out[mask], out_junk[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :18], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.all(out[~mask] == 0)


def test_denoiser_padding_does_not_change_valid_frames():
    model = tiny_model()
    net = model.denoiser
    x, mu = torch.randn(2, 30, N_MELS), torch.randn(2, 30, N_MELS)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[0, 11:] = False
    junk = lambda t: torch.where(mask[..., None], t, torch.randn(t.shape) * 100)  # noqa: E731
    c_noise = torch.tensor([0.3, -1.0])
    with torch.no_grad():
        out, out_junk = net(x, c_noise, mu, mask), net(junk(x), c_noise, junk(mu), mask)
        alone = net(x[:1, :11], c_noise[:1], mu[:1, :11], mask[:1, :11])
    torch.testing.assert_close(out[mask], out_junk[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0, :11], alone[0], atol=1e-5, rtol=1e-5)


def test_whole_model_padding_does_not_change_valid_frames():
    model = tiny_model()
    batch = random_batch(model.config)
    junk = scramble_padding(batch)
    mask = batch["mask"]
    for kwargs in ({"steps": 3}, {"steps": 2, "solver": "heun"}):
        a = model.sample(condition(batch), generator=torch.Generator().manual_seed(1), **kwargs)
        b = model.sample(condition(junk), generator=torch.Generator().manual_seed(1), **kwargs)
        torch.testing.assert_close(a.mel[mask], b.mel[mask], atol=1e-5, rtol=1e-5)
        assert torch.all(a.mel[~mask] == 0)
    with torch.no_grad():
        la = model.teacher_loss(batch, generator=torch.Generator().manual_seed(2))
        lb = model.teacher_loss(junk, generator=torch.Generator().manual_seed(2))
    for key in la:
        assert la[key].item() == pytest.approx(lb[key].item(), rel=1e-5), key
    student = ConsistencyDistiller(tiny_model()).export()
    a = student.sample(condition(batch), steps=2, generator=torch.Generator().manual_seed(3))
    b = student.sample(condition(junk), steps=2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.mel[mask], b.mel[mask], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- samplers vs formulas


def direct_denoise(model: ComoSVC, x, sigma: float, mu, mask):
    """D(x, s) written out from docs/design.md, independent of EDM.denoised."""
    cfg = model.config.model
    sd, s_min = cfg.sigma_data, cfg.sigma_min
    c_skip = sd**2 / ((sigma - s_min) ** 2 + sd**2)
    c_out = (sigma - s_min) * sd / math.sqrt(sigma**2 + sd**2)
    c_in = 1 / math.sqrt(sigma**2 + sd**2)
    c_noise = torch.full((x.shape[0],), math.log(sigma) / 4)
    return c_skip * x + c_out * model.denoiser(c_in * x, c_noise, mu, mask)


def test_validation_reports_the_diffusion_loss_at_fixed_sigmas():
    model = tiny_model()
    batch = random_batch(model.config)
    prepared = model.prepare_batch(batch, need_mel=True)
    y, mask = prepared["mel"], prepared["mask"]
    with torch.no_grad():
        mu = model.encode(prepared)
        # loss_at(s) against the docs/design.md loss written out: weight (s^2 + sd^2) / (s sd)^2,
        # noisy input y + s (eps + mu), masked mean over valid frames and bins.
        for sigma in (0.05, 2.0):
            eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(4))
            noisy = y + sigma * (eps + mu)
            weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
            error = weight * (direct_denoise(model, noisy, sigma, mu, mask) - y) ** 2
            expected = error[mask].mean().item()
            got = model.edm.loss_at(model.denoiser, y, mu, mask, sigma, torch.Generator().manual_seed(4)).item()
            assert got == pytest.approx(expected, rel=1e-5)
        model.train()
        train_losses = model.teacher_loss(batch, generator=torch.Generator().manual_seed(5))
        model.eval()
        val_losses = model.teacher_loss(batch, generator=torch.Generator().manual_seed(5))
    assert set(train_losses) == {"loss", "diffusion", "prior", "ssim"}
    assert set(val_losses) - set(train_losses) == {f"diffusion_sigma_{s:g}" for s in VALIDATION_SIGMAS}
    # The probes draw their noise after the training loss: "loss" itself is unchanged.
    assert val_losses["loss"].item() == pytest.approx(train_losses["loss"].item(), rel=1e-6)
    assert val_losses["loss"].item() == pytest.approx(
        sum(val_losses[k].item() for k in ("diffusion", "prior", "ssim")), rel=1e-6
    )


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("prior_mean", [True, False])
def test_teacher_sampler_equals_the_formula(solver, prior_mean):
    model = tiny_model(f"model.noise_prior_mean={str(prior_mean).lower()}")
    cfg = model.config.model
    batch = model.prepare_batch(condition(random_batch(model.config)))
    mask = batch["mask"]
    steps = 6
    eps = torch.randn(2, 40, N_MELS, generator=torch.Generator().manual_seed(5))
    out = model.sample(batch, steps=steps, solver=solver, noise=[eps])
    with torch.no_grad():
        mu = model.encode(batch)
        n = eps + mu if prior_mean else eps
        sigmas = karras_sigmas(steps + 1, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist() + [0.0]
        x, nfe = cfg.sigma_max * n, 0
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            d = (x - direct_denoise(model, x, s, mu, mask)) / s
            x_next = x + (s_next - s) * d
            nfe += 1
            if solver == "heun" and s_next > 0:
                d_next = (x_next - direct_denoise(model, x_next, s_next, mu, mask)) / s_next
                x_next = x + (s_next - s) * 0.5 * (d + d_next)
                nfe += 1
            x = x_next
    assert out.nfe == nfe == (steps + 1 if solver == "euler" else 2 * steps + 1)
    torch.testing.assert_close(out.mel[mask], x[mask], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_student_sampler_equals_the_formula(steps):
    model = ConsistencyDistiller(tiny_model()).export()
    cfg = model.config.model
    batch = model.prepare_batch(condition(random_batch(model.config)))
    mask = batch["mask"]
    g = torch.Generator().manual_seed(11)
    noise = [torch.randn(2, 40, N_MELS, generator=g) for _ in range(model.noise_draws("student", steps))]
    out = model.sample(batch, steps=steps, noise=noise)
    with torch.no_grad():
        mu = model.encode(batch)
        # s_max, then the N-point distillation grid's sigmas nearest the centres of steps - 1 equal
        # log-parts of [1, 10] (tiny config: N = 40; 2 steps: 2.818, 4 steps: 6.590, 2.818, 1.382)
        n_grid = cfg.cd_steps
        lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
        grid = [(hi + j / (n_grid - 1) * (lo - hi)) ** cfg.rho for j in range(n_grid)]
        centres = [10 ** (1 - (i + 0.5) / (steps - 1)) for i in range(steps - 1)]
        sigmas = [cfg.sigma_max] + [min(grid, key=lambda g: abs(g - c)) for c in centres]
        x = direct_denoise(model, cfg.sigma_max * (noise[0] + mu), sigmas[0], mu, mask)
        for k in range(1, steps):
            renoised = x + math.sqrt(sigmas[k] ** 2 - cfg.sigma_min**2) * (noise[k] + mu)
            x = direct_denoise(model, renoised, sigmas[k], mu, mask)
    assert out.nfe == steps
    torch.testing.assert_close(out.mel[mask], x[mask], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("steps", [1, 3])
def test_student_sampler_equals_stock_diffusers_loop(steps):
    """Zero-mean noise: our wrapper is exactly diffusers' CMStochasticIterativeScheduler loop."""
    model = ConsistencyDistiller(tiny_model("model.noise_prior_mean=false")).export()
    cfg = model.config.model
    batch = model.prepare_batch(condition(random_batch(model.config)))
    mask = batch["mask"]
    ours = model.sample(batch, steps=steps, generator=torch.Generator().manual_seed(4)).mel
    scheduler = CMStochasticIterativeScheduler(
        num_train_timesteps=cfg.cd_steps, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max,
        sigma_data=cfg.sigma_data, rho=cfg.rho, clip_denoised=False,
    )  # fmt: skip
    scheduler.set_timesteps(timesteps=StudentSampler(steps, cfg.cd_steps).timesteps())
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        mu = model.encode(batch)
        x = torch.randn(mu.shape, generator=g) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            sigma = scheduler.sigmas[scheduler.step_index]
            network_out = model.denoiser(x_in, torch.log(sigma).expand(2) / 4, mu, mask)
            x = scheduler.step(network_out, t, x, generator=g).prev_sample
    torch.testing.assert_close(ours[mask], x[mask], atol=2e-4, rtol=1e-4)


def test_samplers_check_their_settings_once_when_built():
    config = tiny_config()
    with pytest.raises(ValueError, match="1 or more steps"):
        TeacherSampler(0)
    with pytest.raises(ValueError, match="'euler' or 'heun'"):
        TeacherSampler(2, solver="rk4")
    with pytest.raises(ValueError, match=r"1\.\.40 steps"):
        StudentSampler.from_config(config, steps=41)
    with pytest.raises(ValueError, match=r"1\.\.40 steps"):
        StudentSampler(0, cd_steps=40)
    teacher, student = TeacherSampler.from_config(config), StudentSampler.from_config(config, steps=3)
    assert (teacher.name, teacher.steps, teacher.solver) == ("teacher", config.inference.teacher_steps, config.model.teacher_solver)
    assert (teacher.noise_draws, teacher.nfe, TeacherSampler(4, "heun").nfe) == (1, config.inference.teacher_steps + 1, 9)
    assert (student.name, student.steps, student.noise_draws, student.nfe) == ("student", 3, 3, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        student.steps = 50  # checked once: it cannot change afterwards
    # resolving an object checks only that the model can run it, and hands back the same object
    assert resolve_sampler(student, None, config, distilled=True) is student
    with pytest.raises(ValueError, match="not both"):
        resolve_sampler(student, 2, config, distilled=True)
    with pytest.raises(ValueError, match="no consistency student"):
        resolve_sampler(student, None, config, distilled=False)
    with pytest.raises(ValueError, match="model.cd_steps=8"):
        resolve_sampler(StudentSampler(1, cd_steps=8), None, config, distilled=True)


def test_sampler_objects_sample_as_the_names_do():
    teacher = tiny_model()
    student = ConsistencyDistiller(tiny_model()).export()
    batch = condition(random_batch(teacher.config))
    runs = [
        (teacher, TeacherSampler(3, "heun"), {"steps": 3, "solver": "heun"}),
        (student, StudentSampler(2, teacher.config.model.cd_steps), {"steps": 2, "sampler": "student"}),
    ]
    for model, sampler, by_name in runs:
        a = model.sample(batch, sampler=sampler, generator=torch.Generator().manual_seed(2))
        b = model.sample(batch, generator=torch.Generator().manual_seed(2), **by_name)
        assert torch.equal(a.mel, b.mel) and (a.sampler, a.steps, a.nfe) == (b.sampler, b.steps, b.nfe) == (
            sampler.name, sampler.steps, sampler.nfe
        )
        assert model.noise_draws(sampler) == sampler.noise_draws


# ----------------------------------------------------------------------------- distiller bookkeeping


def test_ema_moves_only_on_update_ema():
    distiller = ConsistencyDistiller(tiny_model())
    batch = random_batch(distiller.teacher.config)
    target_before = [p.clone() for p in distiller.target.parameters()]
    with torch.no_grad():
        torch.nn.init.normal_(distiller.student.output[-1].weight)  # student differs from target
    student = [p.clone() for p in distiller.student.parameters()]
    distiller.eval()
    with torch.no_grad():
        distiller.loss(batch)  # validation: no EMA update
    assert all(torch.equal(a, b) for a, b in zip(target_before, distiller.target.parameters()))
    distiller.train()
    distiller.loss(batch)["loss"].backward()
    assert all(torch.equal(a, b) for a, b in zip(target_before, distiller.target.parameters()))
    distiller.update_ema()
    mu = distiller.ema_decay
    for before, s, after in zip(target_before, student, distiller.target.parameters()):
        torch.testing.assert_close(after, mu * before + (1 - mu) * s)
    assert distiller.teacher.training is False and distiller.target.training is False
    assert all(not p.requires_grad for p in distiller.teacher.parameters())
    assert {id(p) for p in distiller.trainable_parameters()} == {id(p) for p in distiller.student.parameters()}


def test_distiller_state_dict_resumes():
    a = ConsistencyDistiller(tiny_model(seed=0))
    with torch.no_grad():
        for p in a.student.parameters():
            p.add_(0.1)
    a.update_ema()
    b = ConsistencyDistiller(tiny_model(seed=1))
    b.load_state_dict(a.state_dict())
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


# ----------------------------------------------------------------------------- Hub save / load


SINGERS = {"toyset_alto": 0, "toyset_tenor": 1, "other_bass": 5}
STATS = {
    "mel": {"toyset": {"min": [-11.0] * N_MELS, "max": [2.0] * N_MELS}, "other": {"min": [-10.0] * N_MELS, "max": [1.0] * N_MELS}},
    "f0": {"toyset_alto": {"median": 330.0, "p5": 200.0, "p95": 500.0}},
    "durations": {"toyset_alto": 1800.0, "toyset_tenor": 1800.0, "other_bass": 360.0},
}


def test_teacher_save_load_round_trip(tmp_path):
    model = tiny_model(singers=SINGERS, stats=STATS, training_steps=1234)
    batch = condition(random_batch(model.config))
    model.save_pretrained(tmp_path / "teacher")
    files = {p.name for p in (tmp_path / "teacher").iterdir()}
    assert {"config.json", "model.safetensors", "singers.json", "stats.json", "README.md"} <= files
    assert json.loads((tmp_path / "teacher" / "singers.json").read_text()) == SINGERS
    loaded = ComoSVC.from_pretrained(tmp_path / "teacher")
    assert loaded.config == model.config and loaded.singers == SINGERS and loaded.stats == STATS
    assert (loaded.distilled, loaded.training_steps, loaded.name_or_path) == (False, 1234, str(tmp_path / "teacher"))
    for kwargs in ({"steps": 4}, {"steps": 2, "solver": "heun"}):
        a = model.sample(batch, generator=torch.Generator().manual_seed(0), **kwargs).mel
        b = loaded.sample(batch, generator=torch.Generator().manual_seed(0), **kwargs).mel
        assert torch.equal(a, b)
    card = (tmp_path / "teacher" / "README.md").read_text()
    assert "diffusion teacher" in card and "1234" in card and "toyset: 1.00 h" in card and "other_bass" in card
    assert f"`{model.config.inference.vocoder}`" in card  # the vocoder named from the config, not hard-coded


@pytest.mark.parametrize("name", ["config.json", "singers.json", "stats.json"])
def test_malformed_json_in_a_model_folder_names_the_file(tmp_path, name):
    from comosvc.config import ConfigError
    from comosvc.models import read_singer_tables

    tiny_model(singers=SINGERS, stats=STATS).save_pretrained(tmp_path / "model")
    (tmp_path / "model" / name).write_text("{bad")
    with pytest.raises(ConfigError, match=rf"model/{name} is not valid JSON \(.*\)\. .*save_pretrained.*download it again"):
        ComoSVC.from_pretrained(tmp_path / "model")
    if name != "config.json":
        with pytest.raises(ConfigError, match=rf"model/{name} is not valid JSON"):
            read_singer_tables(tmp_path / "model")


def test_distilled_export_round_trip_and_size(tmp_path):
    teacher = tiny_model(singers=SINGERS, stats=STATS, training_steps=10)
    teacher.save_pretrained(tmp_path / "teacher")
    teacher = ComoSVC.from_pretrained(tmp_path / "teacher")
    distiller = ConsistencyDistiller(teacher)
    with torch.no_grad():
        for p in distiller.student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    distiller.update_ema()
    student = distiller.export(distillation_steps=7)
    assert student.distilled and student.distilled_from == str(tmp_path / "teacher")
    for part in ("condition_encoder", "prior"):
        for a, b in zip(getattr(student, part).parameters(), getattr(teacher, part).parameters()):
            assert torch.equal(a, b)
    for a, b in zip(student.denoiser.parameters(), distiller.target.parameters()):
        assert torch.equal(a, b)  # the EMA target is exported

    student.save_pretrained(tmp_path / "student")
    loaded = ComoSVC.from_pretrained(tmp_path / "student")
    assert loaded.distilled and loaded.distilled_from == str(tmp_path / "teacher") and loaded.distillation_steps == 7
    batch = condition(random_batch(student.config))
    for steps in (1, 2):
        a = student.sample(batch, steps=steps, generator=torch.Generator().manual_seed(0))
        b = loaded.sample(batch, steps=steps, generator=torch.Generator().manual_seed(0))
        assert a.sampler == "student" and a.nfe == steps and torch.equal(a.mel, b.mel)
    card = (tmp_path / "student" / "README.md").read_text()
    assert "distilled student" in card and str(tmp_path / "teacher") in card

    # One denoiser, not three: the inference export is the teacher's size.
    teacher_bytes = (tmp_path / "teacher" / "model.safetensors").stat().st_size
    student_bytes = (tmp_path / "student" / "model.safetensors").stat().st_size
    print(f"teacher {teacher_bytes} bytes, distilled export {student_bytes} bytes")
    assert 0.98 < student_bytes / teacher_bytes < 1.02
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in teacher.parameters())


def test_wrong_sampler_and_bad_batches_fail_clearly(tmp_path):
    teacher = tiny_model()
    student = ConsistencyDistiller(tiny_model()).export(distilled_from="user/teacher")
    batch = condition(random_batch(teacher.config))
    with pytest.raises(ValueError, match="sampler='teacher'"):
        teacher.sample(batch, sampler="student")
    with pytest.raises(ValueError, match="user/teacher"):
        student.sample(batch, sampler="teacher")
    with pytest.raises(KeyError, match="contentvec"):
        teacher.sample({k: v for k, v in batch.items() if k != "contentvec"})
    with pytest.raises(KeyError, match="mel"):
        teacher.teacher_loss(batch)
    with pytest.raises(ValueError, match="speaker ids"):
        teacher.sample({**batch, "speaker": torch.tensor([0, 9999])})
    with pytest.raises(FileNotFoundError, match="not a ComoSVC model"):
        ComoSVC.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="could not be fetched from the Hugging Face Hub"):
        ComoSVC.from_pretrained("someone/no-such-comosvc-model", local_files_only=True)


def test_parameter_counts_at_default_size():
    model = ComoSVC(ComoSVCConfig())
    counts = model.num_parameters()
    print("default-size parameters:", counts)
    assert 25.0e6 < counts["denoiser"] < 27.0e6  # docs/design.md: about 26M
    assert 10.0e6 < counts["prior"] < 12.0e6  # about 11M (condition encoder: another 0.9M)


def test_student_sampler_renoises_inside_the_band_on_the_grid():
    grid = karras_sigmas(40, 0.002, 80.0, 7.0).tolist()  # from s_max down
    picked = {k: [round(grid[j], 3) for j in sorted(StudentSampler(k, 40).timesteps())] for k in (1, 2, 3, 4)}
    assert picked == {1: [80.0], 2: [80.0, 2.818], 3: [80.0, 5.38, 1.767], 4: [80.0, 6.59, 2.818, 1.382]}
    # more steps than the band holds: distinct positions, descending, within the grid
    for k in (12, 20, 40):
        timesteps = StudentSampler(k, 40).timesteps()
        assert timesteps == sorted(set(timesteps), reverse=True) and len(timesteps) == k and timesteps[-1] == 0
        assert timesteps[0] <= 39
