"""Training the acoustic model on a tiny overfit batch of synthetic singing: the teacher's loss
falls, and consistency distillation moves the one-step student towards the teacher's ODE.

The batch: four synthetic singers (comosvc.data.songs), 32 frames each; mel from a librosa
STFT, min/max normalised to [-1, 1]; "content" features are fixed random projections of a
20-band spectral envelope, so the condition is informative but not the whole mel.

The denoiser is the tiny config's except for 128 channels: a denoiser narrower than the
100 mel bins cannot pass its noisy input through, which it must learn to do at low noise.
Learning rate 1e-3 (the reference trains at 4e-4): at 5e-3 most ReLUs of the denoiser's
output head die within a few hundred steps (118 of 128 in a fixed-sigma fit) and the
low-noise loss stops falling. Seeds and noise are fixed; one thread keeps the numbers
reproducible on CPU.
"""

from __future__ import annotations

import math

import dataclasses

import librosa
import numpy as np
import pytest
import torch

from comosvc.config import ComoSVCConfig, load_config
from comosvc.models import ComoSVC, ConsistencyDistiller
from comosvc.data.songs import f0_at_frames, singer_voice, sung_phrase

from conftest import TINY_CONFIG

FRAMES = 32
TEACHER_STEPS, TEACHER_LR = 2000, 1e-3
DISTILL_STEPS, DISTILL_LR = 300, 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_batch(config: ComoSVCConfig, n_singers: int = 4, frames: int = FRAMES, seed: int = 0) -> dict:
    """A model batch (docs/design.md keys) of ``n_singers`` synthetic sung phrases."""
    rng = np.random.default_rng(seed)
    log_mels, f0s = [], []
    for singer in range(n_singers):
        notes = list(rng.uniform(180.0, 400.0, size=3))
        voice = dataclasses.replace(singer_voice(singer), breath=0.0)
        wav, f0 = sung_phrase(notes, note_seconds=0.2, gap_seconds=0.05, voice=voice, seed=seed + singer)
        wav, f0 = wav[: frames * 256], f0[: frames * 256]
        spec = np.abs(librosa.stft(np.pad(wav, 384, mode="reflect"), n_fft=1024, hop_length=256, center=False))
        mel = librosa.feature.melspectrogram(S=spec, sr=24000, n_mels=100, fmax=12000.0)
        log_mels.append(np.log(np.clip(mel, 1e-5, None)).T[:frames])
        f0s.append(f0_at_frames(f0)[:frames])
    log_mel = torch.tensor(np.stack(log_mels), dtype=torch.float32)
    low, high = log_mel.amin(dim=(0, 1)), log_mel.amax(dim=(0, 1))
    mel = (log_mel - low) / (high - low + 1e-12) * 2 - 1
    g = torch.Generator().manual_seed(seed)
    envelope = torch.nn.functional.adaptive_avg_pool1d(mel, 20)  # (B, T, 20)
    return {
        "mel": mel,
        "whisper": envelope @ torch.randn(20, config.content.whisper_dim, generator=g),
        "contentvec": envelope @ torch.randn(20, config.content.contentvec_dim, generator=g),
        "f0": torch.tensor(np.stack(f0s)),
        "energy": torch.exp(log_mel).square().sum(-1).sqrt(),
        "speaker": torch.arange(n_singers),
        "mask": torch.ones(n_singers, frames, dtype=torch.bool),
    }


def evaluation_loss(model: ComoSVC, batch: dict, seeds: int = 8) -> dict[str, float]:
    """Teacher losses averaged over ``seeds`` fixed noise draws, in eval mode."""
    model.eval()
    with torch.no_grad():
        runs = [model.teacher_loss(batch, generator=torch.Generator().manual_seed(s)) for s in range(seeds)]
    return {key: float(np.mean([run[key].item() for run in runs])) for key in ("loss", "diffusion", "prior", "ssim")}


def fit(parameters, losses, steps: int, lr: float, seed: int, after_step=None) -> None:
    """``steps`` AdamW updates of ``losses(generator)["loss"]`` with gradient clipping at 1
    (docs/design.md); the noise comes from one generator seeded with ``seed``."""
    parameters = list(parameters)
    optimiser = torch.optim.AdamW(parameters, lr=lr)
    noise = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = losses(noise)["loss"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        if after_step is not None:
            after_step()


@pytest.fixture(scope="module")
def trained():
    """Train the teacher, then distil it; returns what the tests look at."""
    config = load_config(TINY_CONFIG, overrides=["model.denoiser_channels=128"])
    batch = synthetic_batch(config)
    torch.manual_seed(0)
    teacher = ComoSVC(config)
    before = evaluation_loss(teacher, batch)
    teacher.train()
    fit(teacher.parameters(), lambda noise: teacher.teacher_loss(batch, generator=noise), TEACHER_STEPS, TEACHER_LR, seed=0)
    after = evaluation_loss(teacher, batch)
    per_sigma = diffusion_loss_per_sigma(teacher, batch)

    condition = {k: v for k, v in batch.items() if k != "mel"}
    eps = torch.randn(batch["mel"].shape, generator=torch.Generator().manual_seed(7))
    teacher_40 = teacher.sample(condition, steps=40, noise=[eps])
    teacher_1 = teacher.sample(condition, steps=1, noise=[eps])

    distiller = ConsistencyDistiller(teacher)
    distiller.train()
    fit(
        distiller.trainable_parameters(), lambda noise: distiller.loss(batch, generator=noise), DISTILL_STEPS, DISTILL_LR,
        seed=1, after_step=distiller.update_ema,
    )
    student = distiller.export(distilled_from="tests/teacher", distillation_steps=DISTILL_STEPS)
    student_1 = student.sample(condition, steps=1, noise=[eps])
    return {
        "before": before,
        "after": after,
        "per_sigma": per_sigma,
        "teacher_40": teacher_40,
        "teacher_1": teacher_1,
        "student_1": student_1,
        "mel": batch["mel"],
    }


def diffusion_loss_per_sigma(model: ComoSVC, batch: dict) -> dict[float, float]:
    """The EDM-weighted diffusion loss at fixed noise levels (the same noise draw for each)."""
    model.eval()
    prepared = model.prepare_batch(batch, need_mel=True)
    y, mask = prepared["mel"], prepared["mask"]
    with torch.no_grad():
        mu = model.encode(prepared)
        return {
            sigma: model.edm.loss_at(model.denoiser, y, mu, mask, sigma, torch.Generator().manual_seed(1)).item()
            for sigma in (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 80.0)
        }


def test_teacher_loss_falls_on_an_overfit_batch(trained):
    before, after, per_sigma = trained["before"], trained["after"], trained["per_sigma"]
    print(f"\nteacher loss before {before}\nteacher loss after {TEACHER_STEPS} steps {after}")
    print("diffusion loss per sigma after training:", {s: round(v, 3) for s, v in per_sigma.items()})
    print("fall:", {k: round(before[k] / after[k], 2) for k in before})
    mel = trained["mel"]
    print("mel L1 to the batch:", {k: round((trained[k].mel - mel).abs().mean().item(), 4) for k in ("teacher_40", "teacher_1")},
          "prior mu", round((trained["teacher_40"].mu - mel).abs().mean().item(), 4))
    # Issue 4: the total falls >= 5x. With the reference network (model.denoiser_linear_paths:
    # false) it fell 5.6x: most of what was left was the diffusion loss at sigma < 0.3, where the
    # denoiser must pass the noise of its input through with gain ~1/sigma, which the gated
    # WaveNet learns slowly. With the default linear paths it falls 54x (seed 0).
    # The prior's loss (the reference's NLL / n_mels) has a constant floor, ln(2 pi) / 2 / n_mels,
    # that no fit removes: what falls is the part above it.
    floor = 0.5 * math.log(2 * math.pi) / mel.shape[-1]
    assert (before["loss"] - floor) / (after["loss"] - floor) >= 5.0
    assert (before["prior"] - floor) / (after["prior"] - floor) >= 20.0
    assert before["ssim"] / after["ssim"] >= 10.0
    # Where the denoiser learns quickly (sigma >= 1) its loss is several times lower
    # than the zero-initialised network's ~1.4 average.
    assert max(per_sigma[s] for s in (3.0, 10.0, 80.0)) < 0.25
    assert per_sigma[1.0] < 0.5
    # At sigma 0.3 a network that passes nothing through scores ~0.75 (as does one whose output
    # head died at lr 5e-3); measured 0.60-0.62 after 2000 steps.
    assert per_sigma[0.3] < 0.7


def test_distilled_student_one_step_is_closer_to_the_teacher_ode(trained):
    reference = trained["teacher_40"].mel
    teacher_error = (trained["teacher_1"].mel - reference).abs().mean().item()
    student_error = (trained["student_1"].mel - reference).abs().mean().item()
    margin = (teacher_error - student_error) / teacher_error
    print(
        f"\nmel L1 to the teacher's 40-step output: teacher 1 step {teacher_error:.4f}, "
        f"student 1 step {student_error:.4f}, relative margin {margin:.2%}"
    )
    assert trained["student_1"].nfe == 1 and trained["teacher_40"].nfe == 41
    # Measured on this fixed setup: 1.00% after 300 distillation steps at lr 1e-3 (0.67% at 2e-3). Assert half of it.
    assert margin >= 0.005
