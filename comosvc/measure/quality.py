"""Does distillation keep the teacher's quality? ``python -m comosvc.quality``.

A self-contained check on synthetic data, small enough for a CPU:

1. a multi-singer corpus of synthetic singing (:func:`comosvc.data.songs.synthetic_song`:
   a distinct timbre and register per singer, short phrases), split into training
   clips and held-out clips (every singer has both);
2. features with :class:`~comosvc.features.extract.FeatureExtractor` and tiny
   random content encoders (no download), per-singer statistics with
   :func:`comosvc.data.preprocess.compute_stats`, training crops with
   :class:`~comosvc.data.dataset.FeatureDataset`;
3. a tiny teacher (``configs/tiny.yaml``) trained with the library's training loop
   (:func:`comosvc.training.train_loop`, ``ComoSVC.teacher_loss``), then distilled
   (:class:`~comosvc.models.consistency.ConsistencyDistiller`, EMA after each update);
4. on the held-out clips, every system starts from the SAME noise and is scored
   against the ground truth:

   - mel L1: mean absolute error of the natural-log mel (denormalised with the
     training statistics), over all frames and bins;
   - L1 to the teacher: the same, against the teacher's own output at
     ``inference.teacher_steps`` from the same noise (what distillation is meant to reproduce);
   - MCD (dB): the predicted mel is vocoded with Griffin-Lim (no neural vocoder
     needed) and compared with the ground-truth waveform by
     :func:`comosvc.metrics.mcd` (WORLD mel-cepstra, DTW). Griffin-Lim itself
     distorts, so the ground-truth mel through Griffin-Lim is reported as the floor.

Systems: the teacher at ``inference.teacher_steps`` and at a few fewer steps, the student
at 1, 2 and 4 steps, plus the prior's coarse mel ``mu`` (no diffusion at all) for reference.

The student's story besides: its one-step mel L1 at a few points of distillation (the
distillation curve), the seconds per distillation step, and
:func:`comosvc.measure.distillation.student_error_by_sigma` (how close the student is to the
teacher's ODE solution at each grid sigma, on the data noised as in training and on the
re-noised estimate that 2+ sampling steps feed it). Variants that change only distillation
settings (``distill.*``, ``model.cd_steps``, ``model.ema_decay``) distil one trained teacher;
``--teacher-from DIR`` distils a teacher saved by an earlier ``--save DIR``.

    python -m comosvc.quality --out quality.json           # ~5-10 min on 2 CPU cores
    python -m comosvc.quality --quick                      # the test's size, ~1 min
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from comosvc.measure.timer import Timer

REPO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
DATASET = "synthetic"

# Row names of the report, in table order.
GROUND_TRUTH_GL = "ground truth mel (Griffin-Lim floor)"
PRIOR_MU = "prior mu (no diffusion)"


@dataclass
class QualitySettings:
    """Size of the corpus, of the training runs and of the evaluation."""

    config: str = str(REPO_CONFIG)
    overrides: list[str] = field(default_factory=list)
    # The tiny config's denoiser has 32 channels, fewer than the 100 mel bins: it cannot pass the
    # noise of its input through, so its multi-step samples end noisy. At least n_mels here.
    denoiser_channels: int = 128
    n_singers: int = 4
    train_clips_per_singer: int = 8
    test_clips_per_singer: int = 2
    clip_seconds: tuple[float, float] = (1.5, 3.0)
    teacher_train_steps: int = 2000
    distill_steps: int = 1000
    batch_size: int = 8
    crop_frames: int = 128
    teacher_lr: float | None = 2e-3  # None: the config's train.lr (4e-4 suits the default size, not a tiny model)
    distill_lr: float | None = 1e-3  # None: the config's distill.lr
    # sampling steps of the teacher reference (the "L1 to teacher" column); None: the config's inference.teacher_steps
    teacher_steps: int | None = None
    teacher_step_list: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # teacher-k rows (+ the reference)
    student_steps: list[int] = field(default_factory=lambda: [1, 2, 4])
    griffinlim_iters: int = 32
    mcd: bool = True
    # student-1's mel L1 at this many evenly spaced points of distillation (the distillation curve); 0: none
    curve_points: int = 4
    # a saved teacher (``--save DIR`` writes DIR/teacher) to distil instead of training one; it must
    # have been trained on this corpus (same settings and seed)
    teacher_from: str | None = None
    seed: int = 0
    # torch CPU threads during the run (restored after): the tiny model gains nothing from more, and
    # on a busy machine extra threads spin-wait (several times slower); None keeps torch's setting
    threads: int | None = 1

    @classmethod
    def gpu(cls, **changes) -> "QualitySettings":
        """``--preset gpu``: the default-size model (configs/comosvc.yaml, tiny random content
        encoders) on a larger synthetic corpus, sized for about 10 minutes on one large GPU."""
        base = dict(
            config=str(REPO_CONFIG.parent / "comosvc.yaml"),
            denoiser_channels=384,
            n_singers=8,
            train_clips_per_singer=24,
            test_clips_per_singer=3,
            clip_seconds=(2.0, 5.0),
            teacher_train_steps=8000,
            distill_steps=3000,
            batch_size=32,
            crop_frames=256,
            teacher_lr=4e-4,
            distill_lr=2e-4,
            threads=None,
        )
        base.update(changes)
        return cls(**base)

    @classmethod
    def quick(cls, **changes) -> "QualitySettings":
        """The size the test runs (about a minute on 2 shared CPU cores)."""
        base = dict(
            n_singers=3,
            train_clips_per_singer=4,
            test_clips_per_singer=1,
            clip_seconds=(1.0, 1.6),
            teacher_train_steps=150,
            distill_steps=240,
            batch_size=6,
            crop_frames=96,
            teacher_lr=2e-3,
            distill_lr=1e-3,
            teacher_step_list=[1, 4],
            mcd=False,
        )
        base.update(changes)
        return cls(**base)


@dataclass
class SyntheticClip:
    """One utterance of the synthetic corpus: 24 kHz mono ``wav`` ``(N,)`` float32."""

    singer: str
    utterance: str
    wav: np.ndarray
    split: str  # "train" or "test"


# --------------------------------------------------------------------------- corpus and features


def synthetic_corpus(settings: QualitySettings, sample_rate: int = 24000) -> list[SyntheticClip]:
    """``n_singers`` synthetic singers, each with training and held-out phrases of random length."""
    from comosvc.data.songs import synthetic_song

    rng = np.random.default_rng(settings.seed)
    clips = []
    per_singer = settings.train_clips_per_singer + settings.test_clips_per_singer
    for s in range(settings.n_singers):
        for i in range(per_singer):
            seconds = float(rng.uniform(*settings.clip_seconds))
            wav = synthetic_song(seconds, s, seed=int(rng.integers(1 << 30)), sample_rate=sample_rate)
            split = "train" if i < settings.train_clips_per_singer else "test"
            clips.append(SyntheticClip(f"singer{s}", f"phrase{i:03d}", wav, split))
    return clips


def quality_config(settings: QualitySettings):
    """The tiny config pointed at the tiny random content encoders' sizes (no files needed)."""
    from comosvc.config import load_config
    from comosvc.features.content import contentvec_config, whisper_config
    from comosvc.vocoders import GRIFFINLIM

    wcfg, hcfg = whisper_config("tiny"), contentvec_config("tiny")
    sizes = [
        f"content.whisper_dim={wcfg.d_model}",
        f"content.contentvec_dim={hcfg.classifier_proj_size}",
        f"content.contentvec_layer={hcfg.num_hidden_layers}",
        "content.whisper_mode=unpadded",
        f"inference.vocoder={GRIFFINLIM}",
        f"model.denoiser_channels={settings.denoiser_channels}",
    ]
    return load_config(settings.config, overrides=sizes + list(settings.overrides))


def extract_features(clips: list[SyntheticClip], config, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Aligned features of every clip (``FeatureExtractor`` with tiny random Whisper/ContentVec on the CPU)."""
    from comosvc.features.content import ContentVecEncoder, WhisperContentEncoder
    from comosvc.features.extract import FeatureExtractor

    extractor = FeatureExtractor(
        config,
        device="cpu",
        whisper=WhisperContentEncoder.random("tiny", mode="unpadded", device="cpu", seed=seed),
        contentvec=ContentVecEncoder.random("tiny", device="cpu", seed=seed + 1),
    )
    return extractor.extract_batch([c.wav for c in clips])


def feature_splits(clips: list[SyntheticClip], features: list[dict[str, np.ndarray]]):
    """A ``datasets.DatasetDict`` ({"train", "test"}) with the columns preprocessing writes."""
    import datasets

    def rows(split: str) -> dict[str, list]:
        chosen = [(c, f) for c, f in zip(clips, features) if c.split == split]
        out: dict[str, list] = {
            "dataset": [DATASET] * len(chosen),
            "singer": [c.singer for c, _ in chosen],
            "utterance": [c.utterance for c, _ in chosen],
            "start": [0] * len(chosen),
            "end": [len(c.wav) for c, _ in chosen],
        }
        for key in ("mel", "whisper", "contentvec", "f0", "energy"):
            out[key] = [np.asarray(f[key], np.float32) for _, f in chosen]
        return out

    return datasets.DatasetDict({split: datasets.Dataset.from_dict(rows(split)) for split in ("train", "test")})


# --------------------------------------------------------------------------- training


def _train(objective, parameters, loader, tc, out: Path, desc: str, after_update=None):
    """The library's training setup and loop on one process, no validation, no trackers;
    returns (summary, seconds)."""
    from comosvc.training import prepare_training

    run = prepare_training(objective, tc, out, loader, parameters=parameters)
    timer = Timer().start()
    summary = run.fit(after_update=after_update, desc=desc)
    run.final_model()  # the EMA weights, as train/train.py exports them
    run.end()
    return summary, timer.stop().wall


def _train_config(base, steps: int, lr: float | None, settings: QualitySettings):
    tc = copy.deepcopy(base)
    tc.max_steps = steps
    tc.batch_size = settings.batch_size
    tc.crop_frames = settings.crop_frames
    tc.lr = tc.lr if lr is None else lr
    tc.min_lr = min(tc.min_lr, tc.lr)
    tc.checkpoint_every = max(steps, 1)
    tc.validate_every = steps + 1  # no validation loader: nothing to validate
    tc.log_every = max(1, steps // 10)
    tc.log_with = "none"
    tc.num_workers = 0
    tc.seed = settings.seed
    return tc


def _loader(dataset, batch_size: int, seed: int):
    from comosvc.data.dataset import collate

    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=True,
        drop_last=True,
        collate_fn=collate,
        generator=generator,
    )


# Config keys that change only the distillation: variants differing in these alone distil the same teacher.
DISTILLATION_KEYS = ("distill.", "model.cd_steps=", "model.ema_decay=")


def teacher_key(settings: QualitySettings) -> str:
    """What the teacher of a run depends on: its settings without the distillation-only ones."""
    teacher_overrides = [o for o in settings.overrides if not o.startswith(DISTILLATION_KEYS)]
    return json.dumps(
        _jsonable(asdict(dataclasses.replace(settings, overrides=teacher_overrides, distill_steps=0, distill_lr=None,
                                             student_steps=[], curve_points=0))),
        sort_keys=True,
    )


def train_teacher(config, train, singers: dict[str, int], stats: dict, settings: QualitySettings, work: Path):
    """The teacher, trained (or loaded from ``settings.teacher_from``); returns ``(teacher, info)`` in eval mode."""
    from comosvc.models.comosvc import ComoSVC
    from comosvc.training import Objective

    if settings.teacher_from:
        teacher = ComoSVC.from_pretrained(settings.teacher_from).eval()
        if teacher.distilled or teacher.singers != singers:
            raise SystemExit(f"--teacher-from {settings.teacher_from}: not a teacher of this corpus ({settings.n_singers} singers)")
        return teacher, {"teacher_train_steps": teacher.training_steps, "teacher_train_seconds": None, "teacher_lr": None,
                         "teacher_from": settings.teacher_from, "parameters": teacher.num_parameters()}
    torch.manual_seed(settings.seed)
    teacher = ComoSVC(config, singers=singers, stats=stats)
    tc = _train_config(config.train, settings.teacher_train_steps, settings.teacher_lr, settings)
    summary, seconds = _train(
        Objective(teacher, "teacher_loss"), teacher.parameters(), _loader(train, tc.batch_size, settings.seed),
        tc, work / "teacher", "teacher",
    )
    teacher.training_steps = summary.state.step
    info = {"teacher_train_steps": summary.state.step, "teacher_train_seconds": round(seconds, 1), "teacher_lr": tc.lr,
            "parameters": teacher.num_parameters()}
    return teacher.eval(), info


def distil(config, teacher, train, settings: QualitySettings, work: Path, curve_batch=None, denormalize=None):
    """Distil ``teacher`` with ``config``'s distillation settings; returns ``(student, info)``.

    With ``curve_batch`` (collated held-out clips) and ``settings.curve_points``, ``info["curve"]``
    holds student-1's mel L1 (after ``denormalize``) at evenly spaced steps of distillation."""
    from comosvc.models.consistency import ConsistencyDistiller
    from comosvc.training import Objective

    teacher = copy.copy(teacher)
    teacher.config = config  # the distillation keys of this run (same architecture)
    torch.manual_seed(settings.seed + 1)
    distiller = ConsistencyDistiller(teacher, config.distill)
    dc = _train_config(config.distill, settings.distill_steps, settings.distill_lr, settings)
    points = settings.curve_points if curve_batch is not None else 0
    marks = {round(settings.distill_steps * (i + 1) / points) for i in range(points)} if points else set()
    curve = [{"step": 0, "mel_l1": _one_step_l1(distiller, curve_batch, denormalize, settings.seed)}] if points else []
    curve_seconds = [0.0]  # the curve's evaluations are not distillation time

    def after_update(step: int) -> None:
        distiller.update_ema()
        if step in marks:
            start = time.perf_counter()
            curve.append({"step": step, "mel_l1": _one_step_l1(distiller, curve_batch, denormalize, settings.seed)})
            curve_seconds[0] += time.perf_counter() - start

    summary, seconds = _train(
        Objective(distiller, "loss"), distiller.trainable_parameters(), _loader(train, dc.batch_size, settings.seed + 1),
        dc, work / "distill", "distill", after_update=after_update,
    )
    student = distiller.export(distillation_steps=summary.state.step).eval()
    info = {
        "distill_steps": summary.state.step,
        "distill_seconds": round(seconds, 1),
        # the loop's time in training steps (no checkpoints, no curve), per optimiser step
        "distill_seconds_per_step": round((summary.train_seconds - curve_seconds[0]) / max(summary.steps_run, 1), 4),
        "distill_lr": dc.lr,
        "distillation_curve": curve,
    }
    return student, info


@torch.no_grad()
def _one_step_l1(distiller, batch, denormalize, seed: int) -> float:
    """Student-1 (the EMA target, as exported) on the held-out ``batch``: mel L1 to the ground truth,
    from the evaluation's noise."""
    teacher, edm = distiller.teacher, distiller.edm
    prepared = teacher.prepare_batch(batch, need_mel=True)
    mask = prepared["mask"]
    mu = teacher.encode(prepared)
    generator = torch.Generator().manual_seed(seed + 1000)
    eps = torch.randn(prepared["mel"].shape, generator=generator).to(mu)
    mel = edm.denoised(distiller.target, edm.sigma_max * edm.draw_noise(mu, eps=eps), edm.sigma_max, mu, mask)
    valid = mask[..., None].expand_as(mel)
    return round(float((denormalize(mel) - denormalize(prepared["mel"])).abs()[valid].mean()), 4)


# --------------------------------------------------------------------------- evaluation


def _row(name: str, sampler: str | None, steps: int | None, nfe: int | None) -> dict[str, Any]:
    return {"system": name, "sampler": sampler, "steps": steps, "nfe": nfe}


def held_out_examples(splits, stats: dict, singers: dict[str, int]) -> list[dict[str, torch.Tensor]]:
    """The held-out clips, whole (no crops), as model examples in corpus order."""
    from comosvc.data.dataset import FeatureDataset

    test = FeatureDataset(splits["test"], stats, singers, crop_frames=None, random_crop=False)
    return [test[i] for i in range(len(test))]


@torch.no_grad()
def evaluate_systems(teacher, student, examples: list[dict], stats: dict, clips, settings: QualitySettings):
    """Score every system on the held-out ``examples`` (:func:`held_out_examples`);
    returns ``(rows, per_clip)`` (see the module docstring). ``settings.teacher_steps`` is resolved."""
    from comosvc.data.dataset import collate
    from comosvc.features.mel import MelStats
    from comosvc.models.samplers import StudentSampler, TeacherSampler
    from comosvc.vocoders import GRIFFINLIM, load_vocoder

    config = teacher.config
    batch = collate(examples)
    lengths = batch["mask"].sum(1).tolist()
    mel_stats = MelStats.from_dict(stats["mel"][DATASET])
    truth_log = [mel_stats.denormalize(ex["mel"]).numpy() for ex in examples]  # (T_i, n_mels) log mel
    truth_wavs = [c.wav[: n * config.audio.hop_length] for c, n in zip([c for c in clips if c.split == "test"], lengths)]

    teachers = [TeacherSampler.from_config(config, k) for k in sorted(set(settings.teacher_step_list) | {settings.teacher_steps})]
    students = [StudentSampler.from_config(student.config, k) for k in settings.student_steps]  # its cd_steps
    generator = torch.Generator().manual_seed(settings.seed + 1000)
    max_draws = max(sampler.noise_draws for sampler in teachers + students)
    noise = [torch.randn(batch["mel"].shape, generator=generator).to(teacher.device) for _ in range(max_draws)]

    outputs: dict[str, tuple[dict, torch.Tensor]] = {}
    for sampler in teachers:
        t = teacher.sample(batch, sampler=sampler, noise=noise[: sampler.noise_draws])
        outputs[f"teacher-{sampler.steps}"] = (_row("teacher", "teacher", sampler.steps, t.nfe), t.mel.cpu())
    outputs[PRIOR_MU] = (_row(PRIOR_MU, None, None, 0), t.mu.cpu())
    for sampler in students:
        s = student.sample(batch, sampler=sampler, noise=noise[: sampler.noise_draws])
        outputs[f"student-{sampler.steps}"] = (_row("student", "student", sampler.steps, s.nfe), s.mel.cpu())

    vocoder = load_vocoder(GRIFFINLIM, device="cpu", audio=config.audio, griffinlim_iters=settings.griffinlim_iters) if settings.mcd else None
    reference_key = f"teacher-{settings.teacher_steps}"
    reference_log = [mel_stats.denormalize(outputs[reference_key][1][i, : lengths[i]]).numpy() for i in range(len(lengths))]

    rows, per_clip = [], []
    for key, (row, mel) in outputs.items():
        logs = [mel_stats.denormalize(mel[i, : lengths[i]]).numpy() for i in range(len(lengths))]
        row = dict(row, name=key)
        row["mel_l1"] = _frame_weighted_l1(logs, truth_log)
        row["mel_l1_to_teacher"] = _frame_weighted_l1(logs, reference_log)
        row["variance_ratio"] = variance_ratio(logs, truth_log)
        if vocoder is not None:
            mcds = [_mcd(vocoder, log, wav, config.audio.sample_rate) for log, wav in zip(logs, truth_wavs)]
            row["mcd"] = float(np.mean(mcds))
            per_clip.append({"name": key, "mcd": mcds})
        rows.append(row)
    if vocoder is not None:
        floor = [_mcd(vocoder, log, wav, config.audio.sample_rate) for log, wav in zip(truth_log, truth_wavs)]
        rows.append(
            dict(_row(GROUND_TRUTH_GL, None, None, None), name=GROUND_TRUTH_GL, mel_l1=0.0,
                 mel_l1_to_teacher=_frame_weighted_l1(truth_log, reference_log), variance_ratio=1.0,
                 mcd=float(np.mean(floor)))
        )
    return rows, per_clip


@torch.no_grad()
def teacher_loss_by_sigma(teacher, examples: list[dict], seed: int = 0) -> dict[str, float]:
    """The teacher's diffusion loss on the held-out ``examples`` at the fixed validation noise levels
    (``diffusion_sigma_<s>`` of an eval-mode :meth:`ComoSVC.teacher_loss`): about 1 at low sigma
    means the denoiser removes no small noise there, so the 40-step samples end noisy."""
    from comosvc.data.dataset import collate

    batch = collate(examples)
    teacher.eval()
    losses = teacher.teacher_loss(batch, generator=torch.Generator(device=teacher.device).manual_seed(seed))
    prefix = "diffusion_sigma_"
    return {key[len(prefix):]: round(value.item(), 4) for key, value in losses.items() if key.startswith(prefix)}


def variance_ratio(predicted: list[np.ndarray], target: list[np.ndarray]) -> float:
    """How noisy an output is against the data: per mel bin, the variance over time of all the
    predicted frames ``(T_i, n_mels)`` (clips concatenated) over that of the ground truth, averaged
    over bins. 1 = as much variation as the data; above 1 = noisier; below 1 = smoother."""
    pred, true = np.concatenate(predicted), np.concatenate(target)
    return float(np.mean(pred.var(axis=0) / np.maximum(true.var(axis=0), 1e-12)))


def _frame_weighted_l1(predicted: list[np.ndarray], target: list[np.ndarray]) -> float:
    """Mean |a - b| over every frame and bin of every clip."""
    total = sum(float(np.abs(p - t).sum()) for p, t in zip(predicted, target))
    count = sum(t.size for t in target)
    return total / max(count, 1)


def _mcd(vocoder, log_mel: np.ndarray, wav_ref: np.ndarray, sample_rate: int) -> float:
    from comosvc.metrics import mcd

    wav = vocoder(torch.from_numpy(np.ascontiguousarray(log_mel, dtype=np.float32))[None])[0].cpu().numpy()
    return mcd(wav_ref, wav, sample_rate)


# --------------------------------------------------------------------------- the whole run


def run_quality(
    settings: QualitySettings,
    work_dir: str | Path | None = None,
    save_dir: str | Path | None = None,
    teachers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Corpus -> features -> teacher -> student -> scores; the report dict (JSON-ready).

    ``work_dir`` keeps the training checkpoints (default: a temporary folder);
    ``save_dir`` receives the trained models (``save_dir/teacher``, ``save_dir/student``);
    ``teachers`` (a dict, filled in) keeps trained teachers by :func:`teacher_key`, so that runs
    differing only in distillation settings distil one teacher.
    """
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _run_quality(settings, work_dir, save_dir, teachers if teachers is not None else {})
    finally:
        torch.set_num_threads(threads)


def _run_quality(settings: QualitySettings, work_dir, save_dir, teachers: dict[str, Any]) -> dict[str, Any]:
    from comosvc.data.dataset import FeatureDataset, collate
    from comosvc.data.preprocess import compute_stats
    from comosvc.features.mel import MelStats
    from comosvc.measure.distillation import student_error_by_sigma

    timer = Timer().start()
    config = quality_config(settings)
    if settings.teacher_steps is None:
        settings = dataclasses.replace(settings, teacher_steps=config.inference.teacher_steps)
    clips = synthetic_corpus(settings, config.audio.sample_rate)
    features = extract_features(clips, config, seed=settings.seed)
    splits = feature_splits(clips, features)
    stats = compute_stats(splits, config)
    singers = {f"{DATASET}_singer{s}": s for s in range(settings.n_singers)}
    examples = held_out_examples(splits, stats, singers)
    held_out = collate(examples)
    denormalize = MelStats.from_dict(stats["mel"][DATASET]).denormalize
    train = FeatureDataset(splits["train"], stats, singers, crop_frames=settings.crop_frames, random_crop=True)
    with tempfile.TemporaryDirectory(prefix="comosvc-quality-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        key = teacher_key(settings)
        if key not in teachers:
            teachers[key] = train_teacher(config, train, singers, stats, settings, work)
        teacher, info = teachers[key]
        student, distill_info = distil(config, teacher, train, settings, work, held_out, denormalize)
    info = {**info, **distill_info}
    if save_dir is not None:
        teacher.save_pretrained(Path(save_dir) / "teacher")
        student.distilled_from = str(Path(save_dir) / "teacher")
        student.save_pretrained(Path(save_dir) / "student")
    rows, per_clip = evaluate_systems(teacher, student, examples, stats, clips, settings)
    info["teacher_loss_by_sigma"] = teacher_loss_by_sigma(teacher, examples, seed=settings.seed)
    info["student_by_sigma"] = student_error_by_sigma(teacher, student, held_out, denormalize, seed=settings.seed)
    sr = config.audio.sample_rate
    return {
        "settings": _jsonable(asdict(settings)),
        "corpus": {
            "singers": settings.n_singers,
            "train_clips": sum(c.split == "train" for c in clips),
            "test_clips": sum(c.split == "test" for c in clips),
            "train_seconds": round(sum(len(c.wav) for c in clips if c.split == "train") / sr, 2),
            "test_seconds": round(sum(len(c.wav) for c in clips if c.split == "test") / sr, 2),
        },
        "training": info,
        "systems": rows,
        "per_clip": per_clip,
        "seconds": round(timer.stop().wall, 1),
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(report: dict[str, Any]) -> str:
    """The systems of a report as a markdown table."""
    from comosvc.measure import tables

    has_mcd = any("mcd" in row for row in report["systems"])
    headers = ["system", "NFE", "mel L1 to ground truth", "mel L1 to teacher-40", "variance ratio"]
    headers += ["MCD (dB)"] if has_mcd else []
    headers[3] = f"mel L1 to teacher-{report['settings']['teacher_steps']}"
    rows = []
    for row in report["systems"]:
        cells = [
            row["name"],
            "" if row["nfe"] is None else str(row["nfe"]),
            f"{row['mel_l1']:.3f}",
            f"{row['mel_l1_to_teacher']:.3f}",
            f"{row['variance_ratio']:.3f}",
        ]
        if has_mcd:
            cells.append(f"{row['mcd']:.2f}" if row.get("mcd") is not None else "")
        rows.append(cells)
    return tables.markdown_table(headers, rows)


def sigma_table(report: dict[str, Any]) -> str:
    """The teacher's held-out diffusion loss by noise level, one row."""
    from comosvc.measure import tables

    by_sigma = report["training"]["teacher_loss_by_sigma"]
    return tables.markdown_table(["sigma", *by_sigma], [["diffusion loss", *(f"{v:.3f}" for v in by_sigma.values())]])


def variants_table(reports: dict[str, dict[str, Any]]) -> str:
    """One row per variant: the loss by sigma, teacher-k and student-1 mel L1, teacher-40's variance ratio."""
    from comosvc.measure import tables

    first = next(iter(reports.values()))
    sigmas = list(first["training"]["teacher_loss_by_sigma"])
    reference = f"teacher-{first['settings']['teacher_steps']}"
    names = [row["name"] for row in first["systems"] if row["name"].startswith(("teacher-", "student-")) or row["name"] == PRIOR_MU]
    headers = ["variant", *(f"loss at {s}" for s in sigmas), *(f"{n} L1" for n in names), f"{reference} variance ratio"]
    rows = []
    for variant, report in reports.items():
        systems = {row["name"]: row for row in report["systems"]}
        by_sigma = report["training"]["teacher_loss_by_sigma"]
        rows.append(
            [variant, *(f"{by_sigma[s]:.3f}" for s in sigmas), *(f"{systems[n]['mel_l1']:.3f}" for n in names),
             f"{systems[reference]['variance_ratio']:.3f}"]
        )
    return tables.markdown_table(headers, rows)


def student_table(report: dict[str, Any]) -> str:
    """The student at each sigma of the diagnostic (:func:`comosvc.measure.distillation.student_error_by_sigma`)."""
    from comosvc.measure import tables

    headers = ["grid n", "sigma", "student to teacher's solution", "student to truth", "teacher's solution to truth",
               "student on re-noised estimate to truth", "teacher on re-noised estimate to truth"]
    keys = ["student_to_teacher", "student_to_truth", "teacher_to_truth", "renoised_student_to_truth", "renoised_teacher_to_truth"]
    rows = [[str(r["n"]), f"{r['sigma']:g}", *(f"{r[k]:.3f}" for k in keys)] for r in report["training"]["student_by_sigma"]]
    return tables.markdown_table(headers, rows)


def curve_table(report: dict[str, Any]) -> str:
    """Student-1's mel L1 against distillation steps, one row."""
    from comosvc.measure import tables

    curve = report["training"]["distillation_curve"]
    return tables.markdown_table(["distillation step", *(str(p["step"]) for p in curve)],
                                 [["student-1 mel L1", *(f"{p['mel_l1']:.3f}" for p in curve)]])


def distillation_table(reports: dict[str, dict[str, Any]], settings: dict[str, list[str]] | None = None) -> str:
    """One row per variant: seconds per distillation step, student-k mel L1 and variance ratio,
    student-1 against teacher-40 and the best teacher-k."""
    from comosvc.measure import tables

    first = next(iter(reports.values()))
    reference = f"teacher-{first['settings']['teacher_steps']}"
    students = [row["name"] for row in first["systems"] if row["name"].startswith("student-")]
    headers = ["variant", "settings", "s / distillation step", *(f"{n} L1" for n in students),
               *(f"{n} var. ratio" for n in students), f"student-1 / {reference}", "student-1 / best teacher-k"]
    rows = []
    for variant, report in reports.items():
        systems = {row["name"]: row for row in report["systems"]}
        best = min(row["mel_l1"] for name, row in systems.items() if name.startswith("teacher-"))
        one = systems.get("student-1", systems[students[0]])["mel_l1"]
        rows.append([
            variant, " ".join((settings or {}).get(variant, [])) or "(defaults)",
            f"{report['training']['distill_seconds_per_step']:.3f}",
            *(f"{systems[n]['mel_l1']:.3f}" for n in students), *(f"{systems[n]['variance_ratio']:.3f}" for n in students),
            f"{one / systems[reference]['mel_l1']:.3f}", f"{one / best:.3f}",
        ])
    return tables.markdown_table(headers, rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comosvc.quality",
        description="Train a tiny teacher on synthetic singers, distil it, and score teacher and student "
        "(mel L1, MCD) on held-out clips.",
    )
    d = QualitySettings()
    parser.add_argument("--config", help="config file (default: configs/tiny.yaml; configs/comosvc.yaml with --preset gpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--quick", action="store_true", help="the test's small size (about a minute); same as --preset quick")
    parser.add_argument(
        "--preset", choices=["cpu", "quick", "gpu"], default="cpu",
        help="cpu: the tiny model, ~10 min on 2 CPU cores (default); quick: the test's size; gpu: the "
        "default-size model on a larger corpus, ~10 min on one large GPU (the flags below still apply)",
    )
    parser.add_argument(
        "--variant", nargs="+", action="append", default=[], metavar="NAME_OR_SETTING",
        help="also train and score a variant: a name, then its section.key=value settings (repeatable), "
        "e.g. --variant reference-network model.denoiser_linear_paths=false; a table compares the variants with the default",
    )
    parser.add_argument("--singers", type=int, help=f"synthetic singers (default {d.n_singers})")
    parser.add_argument("--train-clips", type=int, help=f"training phrases per singer (default {d.train_clips_per_singer})")
    parser.add_argument("--test-clips", type=int, help=f"held-out phrases per singer (default {d.test_clips_per_singer})")
    parser.add_argument("--teacher-train-steps", type=int, help=f"teacher optimiser steps (default {d.teacher_train_steps})")
    parser.add_argument("--distill-steps", type=int, help=f"distillation optimiser steps (default {d.distill_steps})")
    parser.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    parser.add_argument("--teacher-lr", type=float, help=f"default {d.teacher_lr}")
    parser.add_argument("--distill-lr", type=float, help=f"default {d.distill_lr}")
    parser.add_argument("--teacher-steps", type=int, help="teacher sampling steps (default: the config's inference.teacher_steps)")
    parser.add_argument("--student-steps", type=int, nargs="+", help="student sampling steps (default 1 2 4)")
    parser.add_argument("--no-mcd", action="store_true", help="skip Griffin-Lim vocoding and MCD")
    parser.add_argument("--teacher-from", metavar="DIR",
                        help="distil this saved teacher (DIR/teacher of an earlier --save, same settings) instead of training one")
    parser.add_argument("--curve-points", type=int, help=f"student-1 evaluations during distillation (default {d.curve_points})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help=f"torch CPU threads (default {d.threads})")
    parser.add_argument("--out", type=Path, metavar="FILE.json", help="write the report here (and the table as .md)")
    parser.add_argument("--save", type=Path, metavar="DIR", help="save the trained teacher and student under DIR")
    return parser


def settings_from_args(args: argparse.Namespace) -> QualitySettings:
    mapping = {
        "n_singers": args.singers,
        "train_clips_per_singer": args.train_clips,
        "test_clips_per_singer": args.test_clips,
        "teacher_train_steps": args.teacher_train_steps,
        "distill_steps": args.distill_steps,
        "batch_size": args.batch_size,
        "teacher_lr": args.teacher_lr,
        "distill_lr": args.distill_lr,
        "teacher_steps": args.teacher_steps,
        "student_steps": args.student_steps,
        "threads": args.threads,
        "teacher_from": args.teacher_from,
        "curve_points": args.curve_points,
    }
    changes = {k: v for k, v in mapping.items() if v is not None}
    changes.update(overrides=args.overrides, seed=args.seed)
    if args.config:
        changes["config"] = args.config
    if args.no_mcd:
        changes["mcd"] = False
    preset = "quick" if args.quick else args.preset
    return {"cpu": QualitySettings, "quick": QualitySettings.quick, "gpu": QualitySettings.gpu}[preset](**changes)


def parse_variants(raw: list[list[str]]) -> dict[str, list[str]]:
    """``--variant NAME KEY=VALUE ...`` lists -> ``{name: overrides}`` (the default first, as "default")."""
    variants = {"default": []}
    for items in raw:
        name, settings = (items[0], items[1:]) if "=" not in items[0] else (",".join(items), items)
        if not settings or any("=" not in s for s in settings):
            raise SystemExit(f"--variant {' '.join(items)}: give a name, then section.key=value settings")
        variants[name] = settings
    return variants


def _summary(report: dict[str, Any]) -> str:
    t = report["training"]
    return (
        f"{report['corpus']['singers']} singers, {report['corpus']['train_seconds']} s training / "
        f"{report['corpus']['test_seconds']} s held-out; teacher {t['teacher_train_steps']} steps "
        f"({t['teacher_train_seconds']} s), distillation {t['distill_steps']} steps ({t['distill_seconds']} s, "
        f"{t['distill_seconds_per_step']} s per step); "
        f"total {report['seconds']} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = settings_from_args(args)
    reports, texts, teachers = {}, [], {}
    variants = parse_variants(args.variant)
    for name, overrides in variants.items():
        variant = dataclasses.replace(settings, overrides=list(settings.overrides) + overrides)
        save = args.save / name if args.save is not None and args.variant else args.save
        report = reports[name] = run_quality(variant, save_dir=save, teachers=teachers)
        text = f"## {name}{' (' + ' '.join(overrides) + ')' if overrides else ''}\n\n{markdown_table(report)}\n\n"
        text += f"{_summary(report)}\n\nThe teacher's diffusion loss on the held-out clips by noise level "
        text += f"(about 1 at low sigma: small noise is not removed):\n\n{sigma_table(report)}\n\n"
        text += "The student by noise level (log-mel L1; the re-noised estimate is what 2+ student steps feed it):\n\n"
        text += f"{student_table(report)}\n"
        if report["training"]["distillation_curve"]:
            text += f"\nDistillation curve:\n\n{curve_table(report)}\n"
        texts.append(text)
        print(text, flush=True)
    if len(reports) > 1:
        texts.append(f"## Variants\n\n{variants_table(reports)}\n\n{distillation_table(reports, variants)}\n")
        print(texts[-1])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        data = reports["default"] if len(reports) == 1 else {"variants": reports}
        args.out.write_text(json.dumps(data, indent=2) + "\n")
        args.out.with_suffix(".md").write_text("\n".join(texts))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
