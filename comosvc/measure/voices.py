"""Whose voice comes out? ``python -m comosvc.measure.voices``: the fine-tune and the timbre index, measured.

Two protocols on a synthetic multi-singer corpus, small enough for a CPU (a smoke-scale
measurement: a tiny model, seconds of audio per singer, a few hundred training steps):

- ``own-voice`` (issue 21, "your own voice"): a base teacher is trained on every synthetic
  singer but the last and distilled into a student; the library's fine-tune
  (:func:`comosvc.training.finetune.finetune`, default ``finetune.train_parts``) then teaches
  both the held-out singer from about a minute of its audio, once per
  ``finetune.start_embedding`` choice. Scored: conversions INTO the new singer (by the
  fine-tuned models; also through the new singer's timbre index, which the fine-tune builds,
  at each ``--ratios`` ratio) and conversions into the BASE singers, by the base models
  (before) and by the fine-tuned ones (after); plus the fine-tune's wall and CPU time.
- ``index`` (issue 23, the timbre index): a base teacher and student on every singer, their
  timbre index built from the training features (:func:`comosvc.index.build_index`), then
  conversions between every pair of singers at each ``index_ratio``. Scored as above, plus a
  content-keeping measure: the log-mel L1 between a clip converted to its own singer at ratio
  R and at ratio 0 (same noise), the index size and the extra conversion time.

The pieces are those of :mod:`comosvc.measure.quality` (its synthetic singers, config and
training loop) with the content encoders saved to a temporary folder
(:func:`comosvc.features.content.build_tiny_encoders`), so that the library's preprocessing,
fine-tune and :class:`~comosvc.pipeline.ConversionPipeline` load them as they would real ones.
Audio is vocoded with Griffin-Lim (no weights).

Scores of a set of conversions (source clip, target singer), on held-out clips only:

- nearest = target: the share of conversions whose Resemblyzer embedding
  (:func:`comosvc.metrics.speaker_embedding`) is nearer (cosine) the target singer's centroid
  than any other singer's; a centroid is :func:`~comosvc.metrics.mean_speaker_embedding` of the
  singer's held-out ground-truth clips (every singer of the corpus, the new one included);
- margin: the mean of cos(conversion, target centroid) - cos(conversion, source centroid);
- F0 corr: the mean :func:`~comosvc.metrics.f0_pearson_correlation` of the source's and the
  conversion's F0 (both extracted with the model's ``f0`` settings), and its median over the
  conversions (own-voice);
- octave jumps (own-voice): the mean :func:`~comosvc.metrics.f0_octave_jumps`, the share of
  frames where a conversion leaves the melody by more than half an octave, which is what
  pulls a mean F0 corr far below its median.

    python -m comosvc.measure.voices --out voices.json                 # both protocols, a few minutes each
    python -m comosvc.measure.voices --protocol index --out index.json
    python -m comosvc.measure.voices --quick                           # the test's size
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from comosvc.measure.timer import Timer
from comosvc.training.setup import reset_accelerate_state

DATASET = "synthetic"  # the dataset name of the corpus folders: singer keys are "synthetic_singer<k>"
PROTOCOLS = ("own-voice", "index")


@dataclass
class VoicesSettings:
    """Size of the corpus, the training runs, the fine-tune and the evaluation."""

    n_singers: int = 5
    new_singer: int | None = None  # own-voice: the synthetic singer left out of the base, the new voice (None: the last)
    train_clips_per_singer: int = 6
    test_clips_per_singer: int = 2
    clip_seconds: tuple[float, float] = (2.0, 3.5)
    new_voice_seconds: float = 60.0  # the new singer's fine-tune audio (own-voice)
    denoiser_channels: int = 128  # as comosvc.measure.quality: at least n_mels
    teacher_train_steps: int = 1500
    distill_steps: int = 600
    batch_size: int = 8
    crop_frames: int = 96
    teacher_lr: float | None = 2e-3
    distill_lr: float | None = 1e-3
    finetune_teacher_steps: int = 400
    finetune_distill_steps: int = 200
    # the fine-tune's lr (finetune.lr); None: the config's 1e-4, which suits the default model, not the tiny one
    finetune_lr: float | None = 3e-4
    start_embeddings: list[str] = field(default_factory=lambda: ["nearest_f0", "mean"])
    ratios: list[float] = field(default_factory=lambda: [0.0, 0.5, 0.75, 1.0])
    teacher_steps: int = 40
    student_steps: int = 1
    # of every conversion: semitones, or "auto": the source moved into the target singer's register, as a user
    # converting between singers of different ranges does (at "0" a base model's F0 corr is 0.58, at "auto" 0.94)
    key: str = "auto"
    griffinlim_iters: int = 32
    overrides: list[str] = field(default_factory=list)
    finetune_overrides: list[str] = field(default_factory=list)  # section.key=value for the fine-tune only
    seed: int = 0
    threads: int | None = 1  # torch CPU threads during the run (restored after); None keeps torch's

    @classmethod
    def quick(cls, **changes) -> "VoicesSettings":
        """The size the test runs (well under a minute on 2 shared CPU cores): numbers mean nothing here."""
        base = dict(
            n_singers=3,
            train_clips_per_singer=2,
            test_clips_per_singer=1,
            clip_seconds=(1.0, 1.4),
            new_voice_seconds=4.0,
            denoiser_channels=32,
            teacher_train_steps=6,
            distill_steps=4,
            batch_size=2,
            crop_frames=64,
            finetune_teacher_steps=2,
            finetune_distill_steps=2,
            start_embeddings=["nearest_f0"],
            ratios=[0.0, 1.0],
            teacher_steps=2,
            griffinlim_iters=4,
        )
        base.update(changes)
        return cls(**base)

    @property
    def index_ratios(self) -> list[float]:
        """The index ratios converted at, ascending, 0 always among them (the conversions without the index)."""
        return [float(r) for r in sorted(set(self.ratios) | {0.0})]

    def quality_settings(self, overrides: list[str]):
        """The :class:`~comosvc.measure.quality.QualitySettings` of the shared pieces (corpus, config, training)."""
        from comosvc.measure.quality import QualitySettings

        return QualitySettings(
            overrides=list(overrides) + list(self.overrides), denoiser_channels=self.denoiser_channels,
            n_singers=self.n_singers, train_clips_per_singer=self.train_clips_per_singer,
            test_clips_per_singer=self.test_clips_per_singer, clip_seconds=self.clip_seconds,
            teacher_train_steps=self.teacher_train_steps, distill_steps=self.distill_steps, batch_size=self.batch_size,
            crop_frames=self.crop_frames, teacher_lr=self.teacher_lr, distill_lr=self.distill_lr, seed=self.seed,
            threads=self.threads,
        )


def singer_key(index: int) -> str:
    return f"{DATASET}_singer{index}"


# --------------------------------------------------------------------------- corpus, config, base models


def write_clips(clips, root: Path, sample_rate: int) -> Path:
    """``clips`` as a generic corpus under ``root`` (``root/<singer>/<utterance>.wav``)."""
    from comosvc.audio import save_audio

    for clip in clips:
        save_audio(root / clip.singer / f"{clip.utterance}.wav", clip.wav, sample_rate)
    return root


def new_voice_clips(settings: VoicesSettings, singer: int, sample_rate: int, start: int = 0):
    """About ``new_voice_seconds`` of fresh phrases of synthetic ``singer`` (its fine-tune audio)."""
    from comosvc.data.songs import synthetic_song
    from comosvc.measure.quality import SyntheticClip

    rng = np.random.default_rng(settings.seed + 7919)
    clips, total, i = [], 0.0, start
    while total < settings.new_voice_seconds - 1e-6:
        seconds = min(float(rng.uniform(*settings.clip_seconds)), max(settings.new_voice_seconds - total, 1.0))
        wav = synthetic_song(seconds, singer, seed=int(rng.integers(1 << 30)), sample_rate=sample_rate)
        clips.append(SyntheticClip(f"singer{singer}", f"take{i:03d}", wav, "train"))
        total, i = total + seconds, i + 1
    return clips


def voices_config(settings: VoicesSettings, encoders: dict):
    """configs/tiny.yaml as :func:`comosvc.measure.quality.quality_config` makes it, its content encoders
    the saved tiny random ones, its train and distill sections this run's."""
    from comosvc.measure.quality import _train_config, quality_config

    content = [f"content.{key}={value}" for key, value in encoders.items()]
    qs = settings.quality_settings(content + ["data.validation_per_singer=1", "data.validation_fraction=0"])
    config = quality_config(qs)
    train = _train_config(config.train, settings.teacher_train_steps, settings.teacher_lr, qs)
    distill = _train_config(config.distill, settings.distill_steps, settings.distill_lr, qs)
    return dataclasses.replace(config, train=train, distill=distill)


def preprocess_corpus(config, root: Path, out: Path) -> Path:
    """The library's preprocessing of the generic corpus ``root`` into ``out`` (on the CPU)."""
    from comosvc.data.preprocess import preprocess

    with _quiet():
        preprocess(config, [f"generic:{DATASET}={root}"], out, device="cpu")
    return out


def train_base(config, data_dir: Path, settings: VoicesSettings, work: Path, index: bool = False):
    """A base teacher trained on ``data_dir`` and a student distilled from it (the training loop of
    :mod:`comosvc.measure.quality`), saved as ``work/teacher`` and ``work/student`` (with a timbre index
    of every singer when ``index``); returns ``(teacher_dir, student_dir, info)``."""
    from comosvc.measure.quality import _train
    from comosvc.models.comosvc import ComoSVC
    from comosvc.models.consistency import ConsistencyDistiller
    from comosvc.training import Objective
    from comosvc.training.data import load_training_data

    data = load_training_data(data_dir, config.train)
    torch.manual_seed(settings.seed)
    teacher = ComoSVC(config, singers=data.singers, stats=data.stats)
    summary, teacher_seconds = _train(Objective(teacher, "teacher_loss"), teacher.parameters(), data.train_loader,
                                      config.train, work / "runs" / "teacher", "teacher")
    teacher.training_steps = summary.state.step
    teacher.eval()
    torch.manual_seed(settings.seed + 1)
    distiller = ConsistencyDistiller(teacher)
    data = load_training_data(data_dir, config.distill)
    distilled, distill_seconds = _train(Objective(distiller, "loss"), distiller.trainable_parameters(), data.train_loader,
                                        config.distill, work / "runs" / "distill", "distill",
                                        after_update=lambda step: distiller.update_ema())
    teacher_dir, student_dir = work / "teacher", work / "student"
    student = distiller.export(distilled_from=str(teacher_dir), distillation_steps=distilled.state.step).eval()
    info = {"teacher_train_steps": summary.state.step, "teacher_train_seconds": round(teacher_seconds, 1),
            "distill_steps": distilled.state.step, "distill_seconds": round(distill_seconds, 1)}
    if index:
        from comosvc.index import build_index

        timer = Timer().start()
        teacher.index = student.index = build_index(data_dir, progress=False, seed=settings.seed)
        info["index_build_seconds"] = round(timer.stop().wall, 2)
    teacher.save_pretrained(teacher_dir)
    student.save_pretrained(student_dir)
    return teacher_dir, student_dir, info


# --------------------------------------------------------------------------- scoring


class Scorer:
    """Speaker embeddings and F0 of audio; the singers' centroids from their held-out ground-truth clips.

    ``ceiling``: Hz, the top of the base singers' range (the highest of their F0 p95s); conversions
    scored with their conditioning F0 then also count their octave jumps on the frames asked to sing
    above it and on the others.
    """

    def __init__(self, config, test_clips, ceiling: float | None = None):
        from comosvc.metrics import mean_speaker_embedding, speaker_embedding

        self.config = config
        self.rate = config.audio.sample_rate
        self.embed = lambda wav: speaker_embedding(wav, self.rate)
        by_singer: dict[str, list] = {}
        for clip in test_clips:
            by_singer.setdefault(f"{DATASET}_{clip.singer}", []).append(self.embed(clip.wav))
        self.centroids = {key: mean_speaker_embedding(embs) for key, embs in sorted(by_singer.items())}
        self.ceiling = ceiling
        self._f0: dict[int, np.ndarray] = {}

    def f0(self, wav: np.ndarray) -> np.ndarray:
        from comosvc.features.f0 import extract_f0

        return extract_f0(wav, self.config.f0, self.config.audio)

    def source_f0(self, clip) -> np.ndarray:
        if id(clip) not in self._f0:
            self._f0[id(clip)] = self.f0(clip.wav)
        return self._f0[id(clip)]

    def score(self, wav: np.ndarray, source_clip, target: str, sung_f0: np.ndarray | None = None) -> dict[str, float]:
        """One conversion: whether its nearest centroid is the target's, the margin, the F0 correlation and
        octave jumps; with ``sung_f0`` ``(T,)`` Hz (its conditioning F0) and a ``ceiling``, also the share of
        its voiced frames above the ceiling and its octave jumps there and below."""
        from comosvc.metrics import cosine_similarity, f0_octave_jumps, f0_pearson_correlation

        emb = self.embed(wav)
        cos = {key: cosine_similarity(emb, c) for key, c in self.centroids.items()}
        source = f"{DATASET}_{source_clip.singer}"
        f0_source, f0 = self.source_f0(source_clip), self.f0(wav)
        scores = {
            "nearest_is_target": float(max(cos, key=cos.get) == target),
            "margin": cos[target] - cos[source],
            "f0_corr": f0_pearson_correlation(f0_source, f0),
            "f0_octave_jumps": f0_octave_jumps(f0_source, f0),
        }
        if sung_f0 is not None and self.ceiling is not None:
            sung = np.asarray(sung_f0, np.float64)
            above = sung > self.ceiling
            scores["above_base_range"] = float(above.sum() / max(1, (sung > 0).sum()))
            scores["f0_octave_jumps_above"] = f0_octave_jumps(f0_source, f0, among=above)
            scores["f0_octave_jumps_below"] = f0_octave_jumps(f0_source, f0, among=(sung > 0) & ~above)
        return scores


def ground_truth_floor(pipe, scorer: Scorer, clips) -> dict[str, float | int | None]:
    """The scores of the held-out clips' own mel through the pipeline's Griffin-Lim, each against its own
    singer: what the metrics give a perfect acoustic model (the margin is 0 by construction)."""
    from comosvc.features.mel import MelSpectrogram

    mel = MelSpectrogram(pipe.config.audio)
    scores = []
    with torch.no_grad():
        for clip in clips:
            log_mel = mel(torch.from_numpy(clip.wav)[None])
            wav = pipe.vocoder(log_mel)[0].cpu().numpy()
            scores.append(scorer.score(wav, clip, f"{DATASET}_{clip.singer}"))
    return summarise(scores)


def summarise(scores: list[dict[str, float]]) -> dict[str, float | int | None]:
    """The mean of each score over conversions (F0 corr over those where it is defined)."""
    def mean(key, average=np.mean):
        values = [s[key] for s in scores if s.get(key) is not None and np.isfinite(s[key])]
        return round(float(average(values)), 4) if values else None

    summary = {"conversions": len(scores), "nearest_is_target": mean("nearest_is_target"), "margin": mean("margin"),
               "f0_corr": mean("f0_corr"), "f0_corr_median": mean("f0_corr", np.median),
               "f0_octave_jumps": mean("f0_octave_jumps")}
    if any("above_base_range" in s for s in scores):
        summary.update(above_base_range=mean("above_base_range"), f0_octave_jumps_above=mean("f0_octave_jumps_above"),
                       f0_octave_jumps_below=mean("f0_octave_jumps_below"))
    return summary


def load_pipeline(student_dir: Path, settings: VoicesSettings):
    """The student's conversion pipeline on the CPU (its teacher loads for the teacher sampler), Griffin-Lim."""
    from comosvc.pipeline import ConversionPipeline
    from comosvc.vocoders import GRIFFINLIM, load_vocoder

    with _quiet():
        pipe = ConversionPipeline.from_pretrained(student_dir, vocoder=GRIFFINLIM, device="cpu")
    pipe.vocoder = load_vocoder(GRIFFINLIM, device="cpu", audio=pipe.config.audio, griffinlim_iters=settings.griffinlim_iters)
    return pipe


def systems(settings: VoicesSettings) -> dict[str, tuple[str, int]]:
    return {f"teacher-{settings.teacher_steps}": ("teacher", settings.teacher_steps),
            f"student-{settings.student_steps}": ("student", settings.student_steps)}


def convert_and_score(pipe, scorer: Scorer, pairs, settings: VoicesSettings, ratios=(0.0,)):
    """Convert each (source clip, target keys) of ``pairs`` by both systems at each ratio; returns
    ``{(system, ratio): [score, ...]}``, the results ``{(system, ratio, clip id, target): result}``
    and the audio seconds converted per (system, ratio)."""
    scores: dict[tuple[str, float], list] = {}
    results: dict[tuple, Any] = {}
    for clip, targets in pairs:
        requests, keys = [], []
        for name, (sampler, steps) in systems(settings).items():
            for ratio in ratios:
                for target in targets:
                    requests.append(pipe.request(target, sampler=sampler, steps=steps, seed=settings.seed, index_ratio=ratio,
                                                 key=settings.key))
                    keys.append((name, ratio, target))
        for (name, ratio, target), result in zip(keys, pipe.convert_many(clip.wav, requests)):
            scores.setdefault((name, ratio), []).append(scorer.score(result.audio, clip, target, result.f0))
            results[(name, ratio, id(clip), target)] = result
    return scores, results


# --------------------------------------------------------------------------- own voice (issue 21)

BASE_SETTINGS = ("n_singers", "new_singer", "train_clips_per_singer", "test_clips_per_singer", "clip_seconds", "denoiser_channels",
                 "teacher_train_steps", "distill_steps", "batch_size", "crop_frames", "teacher_lr", "distill_lr",
                 "overrides", "seed")  # what the base models depend on
BASE_RECORD = "base.json"  # under the protocol's work folder: the settings the kept base was trained with


def _base_settings(settings: VoicesSettings) -> dict[str, Any]:
    """The :data:`BASE_SETTINGS` of ``settings``, as :data:`BASE_RECORD` holds them."""
    return _jsonable({key: getattr(settings, key) for key in BASE_SETTINGS})


def kept_base(settings: VoicesSettings, work: Path):
    """The base of an earlier run in ``work`` (``--work``) trained with the same :data:`BASE_SETTINGS`:
    ``(teacher_dir, student_dir, info)``, or ``(None, None, None)``."""
    record = work / BASE_RECORD
    if not record.is_file():
        return None, None, None
    kept = json.loads(record.read_text())
    if kept["settings"] != _base_settings(settings):
        raise SystemExit(f"{work} holds a base trained with other settings ({record}): give another --work folder.")
    return work / "base" / "teacher", work / "base" / "student", {**kept["training"], "base_reused": True}


def keep_base(settings: VoicesSettings, work: Path, info: dict) -> None:
    """Record the base's settings so that another run with ``--work`` reuses it (:func:`kept_base`)."""
    record = {"settings": _base_settings(settings), "training": info}
    (work / BASE_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def run_own_voice(settings: VoicesSettings, work: Path, encoders: dict) -> dict[str, Any]:
    """The issue 21 protocol (see the module docstring); the report dict."""
    from comosvc.data.preprocess import load_stats
    from comosvc.measure.quality import synthetic_corpus
    from comosvc.pipeline.pitch import trained_range
    from comosvc.training.finetune import finetune

    timer = Timer().start()
    config = voices_config(settings, encoders)
    rate = config.audio.sample_rate
    new = settings.n_singers - 1 if settings.new_singer is None else settings.new_singer
    if not 0 <= new < settings.n_singers:
        raise SystemExit(f"--new-singer {new}: choose one of the {settings.n_singers} synthetic singers, 0 to {settings.n_singers - 1}.")
    clips = synthetic_corpus(settings.quality_settings([]), rate)
    base_train = [c for c in clips if c.split == "train" and c.singer != f"singer{new}"]
    test = [c for c in clips if c.split == "test"]
    voice = new_voice_clips(settings, new, rate)
    teacher_dir, student_dir, info = kept_base(settings, work)
    if teacher_dir is None:
        data_dir = preprocess_corpus(config, write_clips(base_train, work / "corpus" / "base", rate), work / "data")
        teacher_dir, student_dir, info = train_base(config, data_dir, settings, work / "base")
        keep_base(settings, work, info)
    voice_root = write_clips(voice, work / "corpus" / "new", rate)

    ceiling = trained_range(load_stats(teacher_dir).get("f0", {}))[1]  # the top of the base singers' range
    scorer = Scorer(config, test, ceiling=ceiling)
    base_keys = [singer_key(s) for s in range(settings.n_singers) if s != new]
    new_key = singer_key(new)
    into_base = [(c, [k for k in base_keys if k != f"{DATASET}_{c.singer}"]) for c in test]
    into_new = [(c, [new_key]) for c in test if c.singer != f"singer{new}"]
    base_pipe = load_pipeline(student_dir, settings)
    floor = ground_truth_floor(base_pipe, scorer, test)
    before, _ = convert_and_score(base_pipe, scorer, into_base, settings)
    rows = [dict(system=name, start_embedding="", conversions_into="base singers, before", **summarise(scores))
            for (name, _), scores in before.items()]
    finetunes = []
    for start in settings.start_embeddings:
        reset_accelerate_state()
        overrides = [
            f"finetune.start_embedding={start}", f"finetune.min_seconds={min(30.0, settings.new_voice_seconds / 2)}",
            "train.log_with=none", "distill.log_with=none", "train.num_workers=0", "distill.num_workers=0",
            f"inference.teacher_steps={settings.teacher_steps}",
        ] + ([f"finetune.lr={settings.finetune_lr}"] if settings.finetune_lr is not None else []) + settings.finetune_overrides
        folder = work / f"finetune-{start}"
        shutil.rmtree(folder, ignore_errors=True)  # this measurement's own fine-tune of an earlier run in --work
        clock = Timer().start()
        with _quiet():
            result = finetune(
                teacher_dir, folder, datasets=[f"generic:{DATASET}={voice_root}"], student=student_dir,
                teacher_steps=settings.finetune_teacher_steps, distill_steps=settings.finetune_distill_steps,
                overrides=overrides, device="cpu",
            )
        clock.stop()
        reset_accelerate_state()
        finetunes.append({"start_embedding": start, "started_from": result.started_from, "minutes": round(result.minutes, 2),
                          "wall_seconds": round(clock.wall, 1), "cpu_seconds": round(clock.cpu, 1)})
        pipe = load_pipeline(result.student, settings)
        # into the new singer also through its timbre index (built by the fine-tune) at each ratio
        for label, pairs, ratios in (("new singer", into_new, settings.index_ratios), ("base singers, after", into_base, (0.0,))):
            after, _ = convert_and_score(pipe, scorer, pairs, settings, ratios)
            rows += [dict(system=name, start_embedding=start, conversions_into=label if ratio == 0 else f"{label}, index {ratio:g}",
                          **summarise(scores)) for (name, ratio), scores in after.items()]
    return {
        "protocol": "own-voice",
        "ground_truth_griffinlim": floor,
        "settings": _jsonable(asdict(settings)),
        "corpus": {"base_singers": len(base_keys), "new_singer": new_key, "base_f0_ceiling_hz": round(ceiling, 1),
                   "base_train_seconds": round(sum(len(c.wav) for c in base_train) / rate, 1),
                   "new_voice_seconds": round(sum(len(c.wav) for c in voice) / rate, 1),
                   "test_clips": len(test), "test_seconds": round(sum(len(c.wav) for c in test) / rate, 1)},
        "training": info,
        "finetunes": finetunes,
        "rows": rows,
        "seconds": round(timer.stop().wall, 1),
    }


# --------------------------------------------------------------------------- timbre index (issue 23)


def run_index(settings: VoicesSettings, work: Path, encoders: dict) -> dict[str, Any]:
    """The issue 23 protocol (see the module docstring); the report dict."""
    from comosvc.files import INDEX_FILE
    from comosvc.measure.quality import _frame_weighted_l1, synthetic_corpus

    timer = Timer().start()
    config = voices_config(settings, encoders)
    rate = config.audio.sample_rate
    clips = synthetic_corpus(settings.quality_settings([]), rate)
    train = [c for c in clips if c.split == "train"]
    test = [c for c in clips if c.split == "test"]
    data_dir = preprocess_corpus(config, write_clips(train, work / "corpus" / "base", rate), work / "data")
    teacher_dir, student_dir, info = train_base(config, data_dir, settings, work / "base", index=True)
    pipe = load_pipeline(student_dir, settings)
    index = pipe.model.index
    keys = [singer_key(s) for s in range(settings.n_singers)]
    ratios = settings.index_ratios

    scorer = Scorer(config, test)
    pairs = [(c, [k for k in keys if k != f"{DATASET}_{c.singer}"]) for c in test]
    scores, results = convert_and_score(pipe, scorer, pairs, settings, ratios)
    own = [(c, [f"{DATASET}_{c.singer}"]) for c in test]
    _, own_results = convert_and_score(pipe, scorer, own, settings, ratios)
    audio_seconds = sum(len(c.wav) for c in test) / rate * (settings.n_singers - 1)
    rows = []
    for (name, ratio), group in scores.items():
        reference = [own_results[(name, 0.0, id(c), f"{DATASET}_{c.singer}")].mel for c in test]
        mels = [own_results[(name, ratio, id(c), f"{DATASET}_{c.singer}")].mel for c in test]
        acoustic = [r.timings["acoustic"] for (n, q, _, _), r in results.items() if n == name and q == ratio]
        acoustic_cpu = [r.cpu_timings["acoustic"] for (n, q, _, _), r in results.items() if n == name and q == ratio]
        rows.append(dict(system=name, ratio=ratio, **summarise(group),
                         reconstruction_l1_to_ratio_0=round(_frame_weighted_l1(mels, reference), 4),
                         acoustic_seconds_per_audio_second=round(sum(acoustic) / audio_seconds, 4),
                         acoustic_cpu_seconds_per_audio_second=round(sum(acoustic_cpu) / audio_seconds, 4)))
    for row in rows:  # the index's cost: the acoustic stage against ratio 0, per second of audio
        zero = next(r for r in rows if r["system"] == row["system"] and r["ratio"] == 0.0)
        row["extra_seconds_per_audio_second"] = round(row["acoustic_seconds_per_audio_second"] - zero["acoustic_seconds_per_audio_second"], 4)
        row["extra_cpu_seconds_per_audio_second"] = round(
            row["acoustic_cpu_seconds_per_audio_second"] - zero["acoustic_cpu_seconds_per_audio_second"], 4)
    blend = blend_seconds(pipe, test, keys, [r for r in ratios if r > 0], repeats=5)
    return {
        "protocol": "index",
        "ground_truth_griffinlim": ground_truth_floor(pipe, scorer, test),
        "blend_per_audio_second": blend,
        "settings": _jsonable(asdict(settings)),
        "corpus": {"singers": settings.n_singers, "train_seconds": round(sum(len(c.wav) for c in train) / rate, 1),
                   "test_clips": len(test), "test_seconds": round(sum(len(c.wav) for c in test) / rate, 1)},
        "training": info,
        "index": {"vectors_per_singer": {key: index.size(key) for key in keys},
                  "file_bytes": (student_dir / INDEX_FILE).stat().st_size,
                  "dims": {name: int(t.shape[1]) for name, t in index.vectors[keys[0]].items()}},
        "rows": rows,
        "seconds": round(timer.stop().wall, 1),
    }


def blend_seconds(pipe, clips, keys: list[str], ratios: list[float], repeats: int = 5) -> dict[str, dict[str, float]]:
    """The index blend alone (:meth:`~comosvc.index.TimbreIndex.blend_batch`, what a ratio above 0 adds to a
    conversion) on the content features of ``clips``, each blended towards every other singer of ``keys``:
    the median over ``repeats`` of the wall and CPU seconds per second of audio, per ratio."""
    from comosvc.measure.timer import time_call

    features = pipe.chunk_features([c.wav for c in clips])
    batches = [{name: torch.from_numpy(np.asarray(f[name], np.float32))[None] for name in ("whisper", "contentvec")}
               for f in features]
    for batch in batches:
        batch["mask"] = torch.ones(batch["whisper"].shape[:2], dtype=torch.bool)
    mixes = [[pipe.resolve_mix(k) for k in keys if k != f"{DATASET}_{c.singer}"] for c in clips]
    seconds = sum(len(c.wav) for c in clips) / pipe.sample_rate * (len(keys) - 1)
    out = {}
    for ratio in ratios:
        def run():
            for batch, targets in zip(batches, mixes):
                for mix in targets:
                    pipe.model.index.blend_batch(batch, mix, ratio)

        with torch.no_grad():
            runs = [time_call(run) for _ in range(repeats)]
        out[f"{ratio:g}"] = {"wall": round(float(np.median([r.wall for r in runs])) / seconds, 5),
                             "cpu": round(float(np.median([r.cpu for r in runs])) / seconds, 5)}
    return out


# --------------------------------------------------------------------------- the default size's cost


def finetune_step_flops(config_path: str | Path | None = None, batch_size: int | None = None,
                        crop_frames: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Floating-point operations of one fine-tune step of each phase at a config's size (default
    configs/comosvc.yaml, ``finetune.batch_size`` x ``train.crop_frames`` / ``distill.crop_frames``),
    counted by :func:`comosvc.measure.peak.count_flops` on a batch of one (the count is
    linear in the batch) of random features: the teacher's loss with the base singers' anchor
    (``finetune.base_anchor``) forward and backward with the default ``finetune.train_parts``
    trainable, the distiller's loss forward and backward. Matrix
    products and convolutions only (what the counter knows); the steps' totals with the
    ``finetune.*_steps`` of the config."""
    from comosvc.config import load_config
    from comosvc.measure.peak import count_flops
    from comosvc.measure.quality import REPO_CONFIG
    from comosvc.models.comosvc import ComoSVC
    from comosvc.models.consistency import ConsistencyDistiller
    from comosvc.training.base_singers import AnchoredTeacherLoss, WithBaseSingers
    from comosvc.training.finetune import select_parts

    config = load_config(config_path or REPO_CONFIG.parent / "comosvc.yaml")
    ft = config.finetune
    batch_size = batch_size or ft.batch_size
    crops = {"teacher": crop_frames or config.train.crop_frames, "student": crop_frames or config.distill.crop_frames}
    torch.manual_seed(seed)
    model = ComoSVC(config, singers={singer_key(0): 0, singer_key(1): 1})
    out: dict[str, Any] = {"config": str(config_path or "configs/comosvc.yaml"), "batch_size": batch_size,
                           "crop_frames": crops, "parameters": model.num_parameters()}

    def batch(frames: int) -> dict[str, torch.Tensor]:
        c = config.content
        return {"mel": torch.rand(1, frames, config.audio.n_mels) * 2 - 1, "whisper": torch.randn(1, frames, c.whisper_dim),
                "contentvec": torch.randn(1, frames, c.contentvec_dim), "f0": torch.full((1, frames), 220.0),
                "energy": torch.rand(1, frames), "speaker": torch.tensor([1]), "mask": torch.ones(1, frames, dtype=torch.bool)}

    def count(objective, frames: int) -> float:
        return float(count_flops(lambda: objective(batch(frames))["loss"].backward()).total)

    frozen = copy.deepcopy(model)
    model.train()
    select_parts(model, ft.train_parts, rows=[1])
    teacher = count(AnchoredTeacherLoss(model, frozen, [0], ft.base_anchor).train(), crops["teacher"]) * batch_size
    model.requires_grad_(False).eval()
    distiller = ConsistencyDistiller(model).train()
    student = count(WithBaseSingers(distiller, [0], ft.base_share).train(), crops["student"]) * batch_size
    out["flops_per_step"] = {"teacher": teacher, "student": student}
    out["steps"] = {"teacher": ft.teacher_steps, "student": ft.distill_steps}
    out["total_flops"] = teacher * ft.teacher_steps + student * ft.distill_steps
    return out


# --------------------------------------------------------------------------- the run


def run_voices(settings: VoicesSettings, protocols=PROTOCOLS, work_dir: str | Path | None = None) -> dict[str, Any]:
    """The chosen protocols; ``{protocol: report}``. ``work_dir`` keeps the corpora, data and models
    (default: a temporary folder)."""
    from comosvc.features.content import build_tiny_encoders

    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    reset_accelerate_state()
    try:
        with tempfile.TemporaryDirectory(prefix="comosvc-voices-") as tmp:
            work = Path(work_dir) if work_dir is not None else Path(tmp)
            encoders = build_tiny_encoders(work / "encoders", seed=settings.seed)
            runs = {"own-voice": run_own_voice, "index": run_index}
            return {name: runs[name](settings, work / name, encoders) for name in protocols}
    finally:
        reset_accelerate_state()
        torch.set_num_threads(threads)


class _quiet:
    """Progress bars and info logs off while the library prepares data and loads models."""

    def __enter__(self):
        import datasets

        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)
        self.bars = datasets.utils.logging.is_progress_bar_enabled()
        datasets.utils.logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        import datasets

        logging.getLogger().setLevel(self.level)
        if self.bars:
            datasets.utils.logging.enable_progress_bar()
        return False


def _jsonable(value):
    from comosvc.measure.quality import _jsonable as jsonable

    return jsonable(value)


def _cell(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def own_voice_table(report: dict[str, Any]) -> str:
    from comosvc.measure import tables

    headers = ["system", "start embedding", "conversions into", "n", "nearest = target", "margin", "F0 corr",
               "F0 corr, median", "octave jumps", "notes above the base's range", "octave jumps there", "octave jumps below"]
    rows = [[r["system"], r["start_embedding"] or "(base model)", r["conversions_into"], str(r["conversions"]),
             _cell(r["nearest_is_target"], ".2f"), _cell(r["margin"], "+.3f"), _cell(r["f0_corr"], ".3f"),
             _cell(r.get("f0_corr_median"), ".3f"), _cell(r.get("f0_octave_jumps"), ".3f"),
             _cell(r.get("above_base_range"), ".3f"), _cell(r.get("f0_octave_jumps_above"), ".3f"),
             _cell(r.get("f0_octave_jumps_below"), ".3f")]
            for r in report["rows"]]
    return tables.markdown_table(headers, rows, align="lllrrrrrrrrr")


def index_table(report: dict[str, Any]) -> str:
    from comosvc.measure import tables

    headers = ["system", "index ratio", "n", "nearest = target", "margin", "F0 corr", "reconstruction L1 to ratio 0",
               "blend ms / audio s (wall)", "blend ms / audio s (CPU)"]
    blend = report["blend_per_audio_second"]
    zero = {"wall": 0.0, "cpu": 0.0}
    rows = [[r["system"], f"{r['ratio']:g}", str(r["conversions"]), _cell(r["nearest_is_target"], ".2f"),
             _cell(r["margin"], "+.3f"), _cell(r["f0_corr"], ".3f"), f"{r['reconstruction_l1_to_ratio_0']:.3f}",
             f"{1000 * blend.get(format(r['ratio'], 'g'), zero)['wall']:.2f}",
             f"{1000 * blend.get(format(r['ratio'], 'g'), zero)['cpu']:.2f}"]
            for r in sorted(report["rows"], key=lambda r: (r["system"], r["ratio"]))]
    return tables.markdown_table(headers, rows, align="lrrrrrrrr")


def summary(report: dict[str, Any]) -> str:
    t, c = report["training"], report["corpus"]
    text = (f"teacher {t['teacher_train_steps']} steps ({t['teacher_train_seconds']} s), student "
            f"{t['distill_steps']} steps ({t['distill_seconds']} s); ")
    if report["protocol"] == "own-voice":
        text += (f"{c['base_singers']} base singers ({c['base_train_seconds']} s of training audio, F0 p95 at most "
                 f"{c.get('base_f0_ceiling_hz')} Hz: the top of the base's range), new singer {c['new_singer']} "
                 f"({c['new_voice_seconds']} s); ")
        for f in report["finetunes"]:
            text += (f"fine-tune ({f['start_embedding']}, row from {', '.join(f['started_from'].values()) or '-'}) "
                     f"{f['wall_seconds']} s wall, {f['cpu_seconds']} s CPU; ")
    else:
        i = report["index"]
        sizes = sorted(set(i["vectors_per_singer"].values()))
        text += (f"{c['singers']} singers ({c['train_seconds']} s of training audio); index "
                 f"{'-'.join(map(str, sizes))} vectors per singer ({'+'.join(f'{k} {d}' for k, d in i['dims'].items())} dims), "
                 f"{i['file_bytes']} bytes, built in {t['index_build_seconds']} s; ")
    floor = report["ground_truth_griffinlim"]
    text += f"conversions at key {report['settings'].get('key', '0')}; "
    text += (f"held-out {c['test_clips']} clips ({c['test_seconds']} s), their own mel through Griffin-Lim: nearest = "
             f"own singer {_cell(floor['nearest_is_target'], '.2f')}, F0 corr {_cell(floor['f0_corr'], '.3f')}; ")
    return text + f"total {report['seconds']} s"


def markdown(reports: dict[str, dict[str, Any]]) -> str:
    parts = []
    for name, report in reports.items():
        table = own_voice_table(report) if name == "own-voice" else index_table(report)
        parts.append(f"## {name}\n\n{table}\n\n{summary(report)}\n")
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    d = VoicesSettings()
    parser = argparse.ArgumentParser(
        prog="python -m comosvc.measure.voices",
        description="Fine-tune on a new synthetic voice (own-voice) and convert with the timbre index (index); "
        "score whose voice the conversions have.",
    )
    parser.add_argument("--protocol", choices=[*PROTOCOLS, "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="the test's size (numbers mean nothing)")
    parser.add_argument("--singers", type=int, help=f"synthetic singers (default {d.n_singers})")
    parser.add_argument("--new-singer", type=int, help="own-voice: the synthetic singer left out of the base (default: the last)")
    parser.add_argument("--teacher-train-steps", type=int, help=f"default {d.teacher_train_steps}")
    parser.add_argument("--distill-steps", type=int, help=f"default {d.distill_steps}")
    parser.add_argument("--finetune-teacher-steps", type=int, help=f"default {d.finetune_teacher_steps}")
    parser.add_argument("--finetune-distill-steps", type=int, help=f"default {d.finetune_distill_steps}")
    parser.add_argument("--finetune-lr", type=float, help=f"default {d.finetune_lr}")
    parser.add_argument("--new-voice-seconds", type=float, help=f"default {d.new_voice_seconds}")
    parser.add_argument("--start-embedding", nargs="+", choices=["nearest_f0", "mean"], help="default: both")
    parser.add_argument("--ratios", type=float, nargs="+",
                        help="index ratios (default 0 0.5 0.75 1); own-voice: of the conversions into the new singer")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--finetune-set", dest="finetune_overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting of the fine-tune only, e.g. finetune.train_parts=[speaker]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", help=f"key of every conversion: semitones or auto (default {d.key})")
    parser.add_argument("--threads", type=int, help=f"torch CPU threads (default {d.threads})")
    parser.add_argument("--work", type=Path, metavar="DIR",
                        help="keep the corpora, data and models here; a later own-voice run with the same base settings "
                        "and --work reuses the trained base")
    parser.add_argument("--out", type=Path, metavar="FILE.json", help="write the report here (and the tables as .md)")
    parser.add_argument("--flops", nargs="?", const="configs/comosvc.yaml", metavar="CONFIG",
                        help="only count the floating-point operations of a fine-tune's steps at CONFIG's size "
                        "(default configs/comosvc.yaml) and print them as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.flops:
        print(json.dumps(finetune_step_flops(args.flops), indent=2))
        return 0
    changes = {k: v for k, v in {
        "n_singers": args.singers, "new_singer": args.new_singer, "teacher_train_steps": args.teacher_train_steps, "distill_steps": args.distill_steps,
        "finetune_teacher_steps": args.finetune_teacher_steps, "finetune_distill_steps": args.finetune_distill_steps,
        "finetune_lr": args.finetune_lr, "new_voice_seconds": args.new_voice_seconds,
        "start_embeddings": args.start_embedding, "ratios": args.ratios, "threads": args.threads, "key": args.key,
    }.items() if v is not None}
    changes.update(overrides=args.overrides, finetune_overrides=args.finetune_overrides, seed=args.seed)
    settings = VoicesSettings.quick(**changes) if args.quick else VoicesSettings(**changes)
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    reports = run_voices(settings, protocols, args.work)
    text = markdown(reports)
    print(text, flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(reports, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
