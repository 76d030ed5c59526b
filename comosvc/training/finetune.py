"""Bring a voice, get a one-step model of it: a trained teacher and student fine-tuned on new audio.

    >>> from comosvc.training.finetune import finetune
    >>> result = finetune(teacher="user/comosvc-teacher", student="user/comosvc-student",
    ...                   datasets=["generic:alice=recordings/"], out="runs/alice")
    >>> result.student   # runs/alice/student/model: the one-step model, singer "alice_<folder>"

``train/finetune.py`` wraps :func:`finetune`. In order:

1. the refusals of :mod:`~comosvc.training.finetune_checks` that need no audio read
   (the base models and their settings, the overrides, ``out``, the singer names, the
   table's room), before anything is written;
2. the data: the audio prepared into ``OUT/data`` with the base teacher's config and
   content encoders, the base's singer table and stats extended
   (:func:`comosvc.data.preprocess.preprocess` with ``base``), or a processed ``data``
   folder checked against the base; then each singer's usable seconds
   (``finetune.min_seconds``);
3. the teacher, loaded from the base weights (the table already has
   ``model.n_speakers`` rows: nothing grows), its new singers' rows started as
   ``finetune.start_embedding`` says (:mod:`~comosvc.training.speaker_rows`), the
   ``finetune.train_parts`` trained for ``finetune.teacher_steps`` in ``OUT/teacher`` (the
   embedding tables at :data:`EMBEDDING_LR_SCALE` times ``finetune.lr``), the base
   singers kept by :mod:`~comosvc.training.base_singers`; a new voice past the base's notes
   is warned of (:func:`range_warnings`);
4. the student, distilled from the fine-tuned teacher for ``finetune.distill_steps`` in
   ``OUT/student``, starting (student and EMA target) from the base student's denoiser,
   or from the teacher's without a base student, as ``train/distill.py`` starts;
5. ``OUT/teacher/model`` and ``OUT/student/model``, each with the extended table, the
   stats, the timbre index (the base's, if it has one, with the new singers' built from
   ``OUT/data``) and a model card naming the base model and the minutes of new audio; with
   ``push_to_hub=REPO`` uploaded to ``REPO-teacher`` and ``REPO-student`` (the student
   then names ``REPO-teacher`` as the teacher it was distilled from).

Each phase is a run folder as ``train/train.py`` writes one (crash-safe checkpoints,
TensorBoard logs, config.yaml); ``resume=True`` continues both from their newest
checkpoints (a finished phase is only exported again). The base models are only read.
``progress(fraction, description)``, when given, hears of each phase and each step (the app's
progress bar).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from comosvc.config import ComoSVCConfig, FinetuneConfig, TrainConfig, load_config, with_overrides
from comosvc.files import RUN_CONFIG_FILE, SINGERS_FILE
from comosvc.training.args import resolve_mixed_precision
from comosvc.training.finetune_checks import (
    FinetuneError,
    check_amount,
    check_data,
    check_out,
    check_overrides,
    check_resume,
    check_singers,
    check_student,
    check_teacher,
)

logger = logging.getLogger(__name__)

DATA, TEACHER, STUDENT, MODEL = "data", "teacher", "student", "model"  # folders under OUT


@dataclass
class FinetuneResult:
    """What :func:`finetune` made."""

    teacher: Path  # OUT/teacher/model
    student: Path  # OUT/student/model
    singers: list[str]  # the singers fine-tuned ("<dataset>_<singer>")
    minutes: float  # of their usable audio
    started_from: dict[str, str]  # new singer -> what its embedding row started as
    warnings: list[str] = dataclasses.field(default_factory=list)  # new voices past the base's notes (range_warnings)


def finetune(
    teacher: str | Path,
    out: str | Path,
    *,
    datasets: Sequence[str] = (),
    data: str | Path | None = None,
    student: str | Path | None = None,
    teacher_steps: int | None = None,
    distill_steps: int | None = None,
    continue_singer: bool = False,
    push_to_hub: str | None = None,
    resume: bool = False,
    overrides: Sequence[str] = (),
    mixed_precision: str | None = None,
    device: str | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the base ``teacher`` (and ``student``) on ``datasets`` (``"CORPUS[:NAME]=PATH"``) or a
    processed ``data`` folder; see the module docstring for the steps and ``OUT``'s layout.

    ``overrides``: ``section.key=value`` on the base teacher's config (``finetune.*``,
    ``train.*``, ``distill.*``, ``data.*``, ...; those that change its audio, content, F0,
    energy or model settings are refused). ``mixed_precision``: "no", "fp16" or "bf16" (default:
    ``accelerate launch``'s setting, else ``train.mixed_precision``). ``device``: where features
    are extracted. ``progress(fraction, description)``: told of the phases and steps (main process).
    Raises :class:`~comosvc.training.finetune_checks.FinetuneError` on bad input, before training.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from comosvc.data.preprocess import load_stats

    teacher, out = str(teacher), Path(out).expanduser()
    student = None if student is None else str(student)
    # 1. the refusals that need no audio read, before anything is written
    if bool(datasets) == (data is not None):
        raise FinetuneError("Give the new audio with --dataset CORPUS[:NAME]=PATH, or a processed folder with --data; not both.")
    base, cfg, base_student = _base_models(teacher, student, overrides, teacher_steps, distill_steps)
    check_out(out, resume, [teacher, student] + ([str(data)] if data is not None else []))
    if resume:
        check_resume(out, cfg.finetune.teacher_steps)

    # 2. the data, extending the base's singer table and stats (prepared by the main process);
    # on the CPU as the Accelerators built later see it (accelerate launch --cpu)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    report = progress if progress is not None and state.is_main_process else (lambda fraction, description: None)
    report(0.0, "preparing the audio")
    data_dir, keys = _prepare_data(state, base, cfg, out, datasets, data, continue_singer, device)
    trained, minutes = _singers_to_train(data_dir, keys, cfg)
    warnings = range_warnings(load_stats(data_dir), base.stats, [key for key in trained if key not in base.singers])
    for warning in warnings if state.is_main_process else ():
        logger.warning(warning)
    cfg = dataclasses.replace(cfg, finetune=_batch_for_every_process(cfg.finetune, data_dir, state.num_processes))
    mixed_precision = resolve_mixed_precision(mixed_precision, cfg.train)  # accelerate launch's, else the config's

    # 3. the teacher and 4. the student: the audio is about a tenth of the work, each phase its share of the steps
    share = 0.9 / max(1, cfg.finetune.teacher_steps + cfg.finetune.distill_steps)
    teacher_end = 0.1 + share * cfg.finetune.teacher_steps
    teacher_dir, started = _finetune_teacher(
        base, cfg, data_dir, out / TEACHER, trained, minutes, teacher, mixed_precision, resume,
        on_step=_phase_progress(report, 0.1, teacher_end, cfg.finetune.teacher_steps, "fine-tuning the teacher"),
    )
    teacher_name = f"{push_to_hub}-{TEACHER}" if push_to_hub else str(teacher_dir)
    student_dir = _distil_student(
        teacher_dir, base_student, cfg, data_dir, trained, out / STUDENT, minutes, teacher_name, student or teacher,
        mixed_precision, resume,
        on_step=_phase_progress(report, teacher_end, 1.0, cfg.finetune.distill_steps, "distilling the student"),
    )
    # 5. the models on the Hub
    if push_to_hub and state.is_main_process:
        _push_to_hub(push_to_hub, teacher_dir, student_dir)
    state.wait_for_everyone()
    state.destroy_process_group()  # what run.end() does after one phase (nothing on one process)
    return FinetuneResult(teacher_dir, student_dir, trained, minutes, started, warnings)


def _base_models(
    teacher: str, student: str | None, overrides: Sequence[str], teacher_steps: int | None, distill_steps: int | None
):
    """The base models, loaded and checked, and the fine-tune's config: ``(base teacher, config, base student or None)``.

    The config is the base teacher's with ``overrides`` and the step counts given; raises
    :class:`FinetuneError` on a base or an override that cannot be fine-tuned.
    """
    from comosvc.models import ComoSVC

    base = ComoSVC.from_pretrained(teacher)
    check_teacher(base, teacher)
    steps = [f"finetune.teacher_steps={teacher_steps}"] * (teacher_steps is not None)
    steps += [f"finetune.distill_steps={distill_steps}"] * (distill_steps is not None)
    cfg = with_overrides(base.config, [*overrides, *steps])
    check_overrides(base.config, cfg, teacher)
    if not cfg.finetune.train_parts:
        raise FinetuneError("finetune.train_parts is empty: name at least one of speaker, f0, condition, prior, denoiser.")
    base_student = None
    if student is not None:
        base_student = ComoSVC.from_pretrained(student)
        check_student(base_student, base, student, teacher)
    return base, cfg, base_student


def _prepare_data(state, base, cfg: ComoSVCConfig, out: Path, datasets: Sequence[str], data, continue_singer: bool,
                  device: str | None) -> tuple[Path, list[str] | set[str]]:
    """The processed data and the singer keys it brings: ``(data folder, keys)``.

    ``datasets`` are prepared into ``OUT/data`` by the main process (the base's singer table and
    stats extended) while the others wait; a processed ``data`` folder is checked against the
    base. A bad corpus is a :class:`FinetuneError`.
    """
    from comosvc.data.corpora import CorpusError, DatasetSpec

    try:
        if datasets:
            specs = [DatasetSpec.parse(text) for text in datasets]
            keys = {f"{spec.name}_{record.singer}" for spec in specs for record in spec.records()}
            check_singers(keys, base.singers, cfg.model.n_speakers, continue_singer)
            data_dir = out / DATA
            if state.is_main_process:
                from comosvc.data.preprocess import preprocess

                preprocess(cfg, specs, data_dir, device=device, base=(base.singers, base.stats))
            state.wait_for_everyone()
        else:
            data_dir = Path(data).expanduser()
            keys = _check_data_folder(data_dir, base, cfg, continue_singer)
    except CorpusError as err:
        raise FinetuneError(str(err)) from err
    return data_dir, keys


def _singers_to_train(data_dir: Path, keys, cfg: ComoSVCConfig) -> tuple[list[str], float]:
    """The singers with usable audio in ``data_dir`` and its minutes: ``(sorted keys, minutes)``.

    Refuses (:func:`check_amount`) a singer of ``keys`` with less than ``finetune.min_seconds``.
    """
    seconds = seconds_per_singer(data_dir, cfg.audio.sample_rate)
    check_amount(seconds, keys, cfg.finetune.min_seconds, data_dir / "skipped.tsv")
    trained = sorted(key for key in seconds if seconds[key] > 0)
    minutes = sum(seconds[key] for key in trained) / 60
    return trained, minutes


def range_warnings(data_stats: dict, base_stats: dict, new_singers: Sequence[str]) -> list[str]:
    """One line per new singer whose recordings reach a semitone past every base singer's notes
    (their F0 p95 above the base's highest p95, or their p5 below its lowest p5;
    :func:`comosvc.pipeline.pitch.trained_range`): the base never learned those notes, so the
    fine-tune learns them from these recordings alone, and conversions there may come out an
    octave off (docs/benchmarks.md "Your own voice")."""
    from comosvc.pipeline.pitch import past_range, trained_range

    bounds = trained_range(base_stats.get("f0", {}))
    if bounds is None:
        return []
    (low, high), out = bounds, []
    for key in new_singers:
        own = data_stats.get("f0", {}).get(key, {})
        if own.get("p95") and past_range(own["p95"], bounds)[0]:
            out.append(f"{key} sings up to {own['p95']:.0f} Hz (its F0 p95), above every base singer (up to {high:.0f} Hz): "
                       "the base never learned those notes and this fine-tune learns them from these recordings alone, so "
                       "conversions there may come out an octave low; add recordings of those notes, or convert with a lower key.")
        elif own.get("p5") and past_range(own["p5"], bounds)[1]:
            out.append(f"{key} sings down to {own['p5']:.0f} Hz (its F0 p5), below every base singer (down to {low:.0f} Hz): "
                       "the base never learned those notes and this fine-tune learns them from these recordings alone, so "
                       "conversions there may come out an octave high; add recordings of those notes, or convert with a higher key.")
    return out


def _push_to_hub(repo: str, teacher_dir: Path, student_dir: Path) -> None:
    """Upload the fine-tuned models as ``REPO-teacher`` and ``REPO-student``, saying where each went."""
    from comosvc.models import ComoSVC

    for kind, folder in ((TEACHER, teacher_dir), (STUDENT, student_dir)):
        url = ComoSVC.from_pretrained(folder).push_to_hub(f"{repo}-{kind}")
        print(f"pushed the {kind} to {url}")


def _phase_progress(report: Callable[[float, str], None], start: float, end: float, steps: int, what: str):
    """``on_step(step)`` of a phase: ``report`` told the fraction from ``start`` to ``end`` and the step."""
    report(start, what)
    return lambda step: report(start + (end - start) * min(step, steps) / max(1, steps), f"{what}: step {step}/{steps}")


def phase_config(tc: TrainConfig, ft: FinetuneConfig, steps: int, mixed_precision: str) -> TrainConfig:
    """The ``train`` or ``distill`` section of a fine-tune phase of ``steps`` steps: ``finetune``'s lr
    and batch size, a checkpoint and a validation every quarter of the steps."""
    every = max(1, steps // 4)
    return dataclasses.replace(
        tc, max_steps=steps, lr=ft.lr, min_lr=min(tc.min_lr, ft.lr), batch_size=ft.batch_size,
        checkpoint_every=every, validate_every=every, log_every=min(tc.log_every, every), mixed_precision=mixed_precision,
    )


# An embedding row moves only on the frames that use it, by about the learning rate per step
# under Adam; at finetune.lr a new singer's row and the F0 bins of notes the base never trained
# would end a fine-tune near where they started (docs/benchmarks.md "Your own voice"). They train
# at these multiples of it, without weight decay (which would also shrink the frozen base rows).
EMBEDDING_LR_SCALE = {"speaker": 300.0, "f0": 100.0}


def select_parts(model, parts: Sequence[str], rows: Sequence[int] | None = None) -> list[dict]:
    """Freeze ``model`` but ``parts`` (speaker, f0, condition, prior, denoiser); returns the optimizer's
    parameter groups: the dense parameters, then each trained embedding table with its ``lr_scale``
    (:data:`EMBEDDING_LR_SCALE`, times the phase's lr) and no weight decay
    (:func:`comosvc.training.setup.prepare_training` takes them).

    ``"f0"``: the embedding of the F0 bins (also part of ``"condition"``). ``rows``: with "speaker",
    the only rows of the singer table that train (the others get no gradient, whatever reaches them);
    None: every row.
    """
    model.requires_grad_(False)
    encoder = model.condition_encoder
    if "condition" in parts:
        for name, module in encoder.named_children():
            module.requires_grad_(name != "speaker")
    if "f0" in parts:
        encoder.f0.requires_grad_(True)
    if "speaker" in parts:
        table = encoder.speaker.weight.requires_grad_(True)
        if rows is not None:
            trains = torch.zeros(table.shape[0], 1, dtype=table.dtype, device=table.device)
            trains[list(rows)] = 1
            table.register_hook(lambda grad: grad * trains.to(grad.device, grad.dtype))
    for part in ("prior", "denoiser"):
        if part in parts:
            getattr(model, part).requires_grad_(True)
    tables = {name: getattr(encoder, name).weight for name in EMBEDDING_LR_SCALE}
    dense = [p for p in model.parameters() if p.requires_grad and all(p is not t for t in tables.values())]
    groups = [{"params": dense}] if dense else []
    return groups + [{"params": [table], "lr_scale": EMBEDDING_LR_SCALE[name], "weight_decay": 0.0}
                     for name, table in tables.items() if table.requires_grad]


def seconds_per_singer(data_dir: Path, sample_rate: int) -> dict[str, float]:
    """Usable seconds per singer key of a processed folder (both splits)."""
    from comosvc.data.preprocess import load_processed

    seconds: dict[str, float] = {}
    for split in load_processed(data_dir).values():
        columns = split.select_columns(["dataset", "singer", "start", "end"]).to_dict()
        for dataset, singer, start, end in zip(*columns.values()):
            key = f"{dataset}_{singer}"
            seconds[key] = seconds.get(key, 0.0) + (end - start) / sample_rate
    return seconds


def _batch_for_every_process(ft: FinetuneConfig, data_dir: Path, processes: int) -> FinetuneConfig:
    """``ft`` with a batch size that gives every process a batch of the few training utterances
    (the loaders drop a short last batch once there is a full one)."""
    from comosvc.data.preprocess import load_processed

    utterances = len(load_processed(data_dir, splits=("train",))["train"])
    batch_size = min(ft.batch_size, utterances // processes)
    if batch_size < 1:
        raise FinetuneError(
            f"{utterances} training utterance(s) cannot feed {processes} processes: run on at most {utterances} "
            f"(accelerate launch --num_processes {utterances}), or bring more audio."
        )
    return dataclasses.replace(ft, batch_size=batch_size)


def _check_data_folder(folder: Path, base, cfg: ComoSVCConfig, continue_singer: bool) -> list[str]:
    """Check a processed ``--data`` folder against the base teacher; returns its singers."""
    from comosvc.data.preprocess import load_stats
    from comosvc.data.singers import SingerTable

    if not (folder / RUN_CONFIG_FILE).is_file():
        raise FinetuneError(f"--data {folder} holds no processed data ({RUN_CONFIG_FILE} missing): pass the audio with --dataset.")
    singers = SingerTable.load(folder / SINGERS_FILE).to_dict()
    check_data(load_config(folder / RUN_CONFIG_FILE), singers, load_stats(folder), base, folder)
    keys = sorted(seconds_per_singer(folder, cfg.audio.sample_rate))
    check_singers(keys, base.singers, cfg.model.n_speakers, continue_singer)
    return keys


def _finetune_teacher(base, cfg, data_dir, run_dir, trained, minutes, base_name, mixed_precision, resume, on_step=None):
    """The teacher phase; returns ``(OUT/teacher/model, started_from)``."""
    from comosvc.data.preprocess import extend_stats
    from comosvc.index.build import build_index_at_end_of_training
    from comosvc.training import prepare_training
    from comosvc.training.base_singers import AnchoredTeacherLoss, base_singer_ids
    from comosvc.training.data import load_training_data
    from comosvc.training.media import SampleLogger
    from comosvc.training.speaker_rows import keep_rows, start_rows

    tc = phase_config(cfg.train, cfg.finetune, cfg.finetune.teacher_steps, mixed_precision)
    run_cfg = dataclasses.replace(cfg, train=tc)
    data = load_training_data(data_dir, tc)
    base_singers, base_stats, base_steps, base_index = dict(base.singers), base.stats, base.training_steps, base.index
    base_table = base.condition_encoder.speaker.weight.detach().clone()
    trained_ids = [data.singers[key] for key in trained]
    frozen = copy.deepcopy(base)  # the base singers' teacher (the anchor), as loaded
    model = base  # trained in place: the base folder is never written
    model.config, model.singers, model.stats = run_cfg, data.singers, extend_stats(base_stats, data.stats)
    medians = {key: data.stats.get("f0", {}).get(key, {}).get("median") for key in trained if key not in base_singers}
    started = start_rows(model, medians, base_singers, base_stats, cfg.finetune.start_embedding)
    parameters = select_parts(model, cfg.finetune.train_parts, rows=trained_ids)
    objective = AnchoredTeacherLoss(model, frozen, base_singer_ids(base_singers, trained_ids), cfg.finetune.base_anchor)
    run = prepare_training(
        objective, tc, run_dir, data.train_loader, data.val_loader,
        parameters=parameters, resume=resume, project="finetune-teacher", run_config=run_cfg,
    )
    if run.is_main_process:
        starts = ", ".join(f"{key} from {source}" for key, source in started.items()) or "none"
        print(f"fine-tuning the teacher {base_name} on {minutes:.1f} min of {', '.join(trained)} "
              f"(new rows: {starts}; training {', '.join(cfg.finetune.train_parts)}): {run.describe()}")
    samples = SampleLogger.of_data(
        run.accelerator, run_cfg, data,
        sample_fn=lambda m, batch: m.sample(batch, sampler="teacher", steps=cfg.inference.teacher_steps).mel,
    )
    summary = run.fit(after_update=on_step, on_validate=lambda step: samples(step, run.model), desc="fine-tune teacher")
    folder = run_dir / MODEL
    if run.is_main_process:
        final = run.final_model()
        keep_rows(final, base_table, trained_ids)
        final.base_model, final.finetune_minutes = base_name, round(minutes, 2)
        # the new singers' timbre index, beside the base singers' (their content vectors did not change)
        final.index = build_index_at_end_of_training(data_dir, run.accelerator.device, singers=trained, base=base_index)
        if base_steps is not None:  # the teacher's steps in all: the base's and the fine-tune's
            final.training_steps = base_steps + summary.state.step
        run.save_model(final)
        print(f"fine-tuned the teacher {summary.steps_run} steps; saved to {folder}")
    _end_phase(run)
    return folder, started


def _distil_student(teacher_dir, base_student, cfg, data_dir, trained, run_dir, minutes, teacher_name, base_name, mixed_precision, resume,
                    on_step=None):
    """The student phase; returns ``OUT/student/model``."""
    from comosvc.models import ComoSVC, ConsistencyDistiller
    from comosvc.training import prepare_training
    from comosvc.training.base_singers import WithBaseSingers, base_singer_ids
    from comosvc.training.data import load_training_data
    from comosvc.training.media import SampleLogger

    dc = phase_config(cfg.distill, cfg.finetune, cfg.finetune.distill_steps, mixed_precision)
    teacher = ComoSVC.from_pretrained(teacher_dir)
    run_cfg = dataclasses.replace(teacher.config, distill=dc)
    data = load_training_data(data_dir, dc)
    distiller = ConsistencyDistiller(teacher, dc)
    if base_student is not None:  # student and EMA target start from the base student's denoiser
        distiller.student.load_state_dict(base_student.denoiser.state_dict())
        distiller.target.load_state_dict(base_student.denoiser.state_dict())
    objective = WithBaseSingers(
        distiller, base_singer_ids(teacher.singers, [teacher.singers[key] for key in trained]), cfg.finetune.base_share
    )
    run = prepare_training(
        objective, dc, run_dir, data.train_loader, data.val_loader,
        parameters=distiller.trainable_parameters(), resume=resume, project="finetune-distill", run_config=run_cfg,
    )
    if run.is_main_process:
        start = "the base student" if base_student is not None else "the teacher"
        print(f"distilling the fine-tuned teacher, starting from {start}'s denoiser: {run.describe()}")
    samples = SampleLogger.of_data(
        run.accelerator, run_cfg, data, sample_fn=lambda d, batch: d.export().sample(batch, sampler="student", steps=1).mel,
    )

    def after_update(step: int) -> None:
        run.model.update_ema()
        if on_step is not None:
            on_step(step)

    summary = run.fit(
        after_update=after_update,
        on_validate=lambda step: samples(step, run.model),
        desc="fine-tune student",
    )
    folder = run_dir / MODEL
    if run.is_main_process:
        model = run.final_model().export(distilled_from=teacher_name, distillation_steps=summary.state.step)
        model.base_model, model.finetune_minutes = base_name, round(minutes, 2)
        model.index = teacher.index  # the singers' content vectors do not change with the denoiser
        run.save_model(model)
        print(f"distilled the student {summary.steps_run} steps; saved to {folder}")
    _end_phase(run)
    return folder


def _end_phase(run) -> None:
    """Close a phase's trackers; unlike ``run.end()``, keep the process group for the next phase."""
    for tracker in run.accelerator.trackers:
        tracker.finish()
    run.accelerator.wait_for_everyone()


def build_parser(description: str) -> argparse.ArgumentParser:
    """The command line of ``train/finetune.py``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--teacher", required=True, help="base teacher: a model folder or a Hub id")
    parser.add_argument("--student", help="base student distilled from --teacher (default: start from the teacher)")
    new = parser.add_mutually_exclusive_group(required=True)
    new.add_argument("--dataset", action="append", metavar="CORPUS[:NAME]=PATH", help="new audio, e.g. generic:alice=recordings/ (repeatable)")
    new.add_argument("--data", help="a processed folder instead (OUT/data of an earlier fine-tune)")
    parser.add_argument("--out", required=True, help="run folder: data/, teacher/, student/ (must be new or empty)")
    parser.add_argument("--teacher_steps", type=int, help="fine-tuning steps of the teacher (finetune.teacher_steps)")
    parser.add_argument("--distill_steps", type=int, help="distillation steps of the student (finetune.distill_steps)")
    parser.add_argument("--continue_singer", action="store_true", help="fine-tune singers the base table already has")
    parser.add_argument("--push_to_hub", metavar="REPO", help="upload to the Hub as REPO-teacher and REPO-student")
    parser.add_argument("--resume", action="store_true", help="continue the fine-tune in --out from its newest checkpoints")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], help="default: accelerate launch's setting, else the config's")
    parser.add_argument("--device", help="device for feature extraction, e.g. cuda (default: auto)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, e.g. finetune.lr=5e-5")
    return parser


__all__ = ["FinetuneResult", "build_parser", "finetune", "phase_config", "seconds_per_singer", "select_parts"]
