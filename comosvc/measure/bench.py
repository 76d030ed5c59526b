"""Speed of the teacher against the student: ``python -m comosvc bench``.

The same synthetic song (:func:`comosvc.data.songs.synthetic_song`, one per
requested duration) is converted by the diffusion teacher at ``N`` steps and by the
consistency student at 1, 2 and 4 steps. Runs are INTERLEAVED: every repeat runs
each system once, round-robin (the starting system rotates between repeats), so a
slow patch of a shared machine hits all systems alike; each number reported is the
median over the repeats, after untimed warm-up runs on a short clip.

What is measured (seconds of wall time; RTF = seconds of compute per second of audio):

- ``acoustic``: the acoustic model (condition encoder + prior + denoiser steps), the
  cost that sampling steps change. ``prior``: condition encoder + prior alone, once
  per system-independent job, to show what a single step cannot remove.
- end to end (``total``) and the per-stage split ``content`` (Whisper + ContentVec),
  ``f0``, ``acoustic``, ``vocoder``, as timed by the conversion pipeline.
- Whisper's encoder padded to 30 s (the reference) against unpadded, on the same
  audio, interleaved with the rest.
- ``speedup``: the teacher's median over the system's median (how many times
  cheaper than the teacher), for the acoustic model and end to end.
- the distance to the machine's limit: each stage's FLOPs (counted with
  ``FlopCounterMode`` on one more, untimed student-1 conversion; the teacher's
  acoustic model is its prior plus ``nfe`` denoiser passes), the GFLOP/s reached
  and its fraction of this machine's float32 GEMM peak
  (:func:`comosvc.measure.peak.gemm_gflops`, measured at the start of the run).

Speed does not depend on trained weights, so ``--config`` builds every network with
random weights at the config's size (``configs/comosvc.yaml`` = the default size).
Several ``--vocoder`` names measure the whole conversion once per vocoder (the
per-stage split shows what each vocoder costs next to the acoustic model). Timing
is :mod:`comosvc.measure.timer`; tables are :func:`comosvc.measure.tables.markdown_table`.

    >>> report = run_bench(BenchSettings(config="configs/tiny.yaml", seconds=[2.0], repeats=1))
    >>> print(markdown_report(report))
"""

from __future__ import annotations

import dataclasses
import json
import platform
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from comosvc.cpu_plan import bf16_instructions, cpu_flags
from comosvc.data.songs import synthetic_song
from comosvc.features.content import CONTENT_SAMPLE_RATE
from comosvc.measure.peak import fraction_of_peak, gemm_gflops
from comosvc.measure.stand_ins import StandInFeatures, copy_model, null_vocoder, random_stats
from comosvc.measure.tables import markdown_table
from comosvc.measure.timer import CPU, Job, Timer, interleave, medians, speedup, sync_device, timed
from comosvc.models.samplers import Sampler, StudentSampler, TeacherSampler
from comosvc.pipeline import ConversionPipeline
from comosvc.vocoders.parallel import one_piece

STAGES = ("content", "f0", "acoustic", "vocoder")
TEACHER = "teacher"
STUDENT = "student"


# --------------------------------------------------------------------------- systems and settings


@dataclass(frozen=True)
class System:
    """A sampler (:mod:`comosvc.models.samplers`) on a runtime: ``teacher-40``, ``student-1``, ``student-1-onnx``."""

    sampler: Sampler
    runtime: str = "torch"  # or "onnx": the exported one-step student in onnxruntime (comosvc.onnx)

    @property
    def name(self) -> str:
        return f"{self.sampler.name}-{self.sampler.steps}" + ("" if self.runtime == "torch" else f"-{self.runtime}")

    @property
    def pipeline(self) -> str:
        """The key of its pipeline in :attr:`BenchSubjects.pipelines`."""
        return self.sampler.name if self.runtime == "torch" else f"{self.sampler.name}-{self.runtime}"


def check_runtimes(runtimes: tuple[str, ...] | list[str]) -> None:
    unknown = sorted(set(runtimes) - {"torch", "onnx"})
    if unknown:
        raise ValueError(f"--runtime takes torch and/or onnx, got {unknown}")


def bench_systems(
    config,
    teacher_steps: int | None = None,
    student_steps: tuple[int, ...] | list[int] = (1, 2, 4),
    runtimes: tuple[str, ...] | list[str] = ("torch",),
) -> list[System]:
    """The teacher first (the reference of every speed-up; ``teacher_steps`` default the config's
    ``inference.teacher_steps``), then the student at each step count; with ``"onnx"`` in
    ``runtimes`` also the exported one-step student (``student-1-onnx``). Each sampler checks
    its steps when built (a :class:`ValueError` naming the range)."""
    check_runtimes(runtimes)
    teacher = TeacherSampler.from_config(config, teacher_steps)
    systems = [System(teacher)] + [System(StudentSampler.from_config(config, s)) for s in dict.fromkeys(student_steps)]
    return systems + ([System(StudentSampler.from_config(config, 1), "onnx")] if "onnx" in runtimes else [])


@dataclass
class BenchSettings:
    """What ``python -m comosvc bench`` measures; one field per command-line option."""

    model: str | None = None  # Hub id or folder of a ComoSVC model (teacher or student)
    config: str | None = None  # or a config file: random weights at its sizes
    seconds: list[float] = field(default_factory=lambda: [10.0, 30.0])
    device: str = "cpu"
    teacher_steps: int | None = None  # None: the model's inference.teacher_steps
    student_steps: list[int] = field(default_factory=lambda: [1, 2, 4])
    repeats: int = 3
    warmup: int = 1
    vocoders: list[str] = field(default_factory=list)  # each is measured in turn; none: inference.vocoder
    acoustic_only: bool = False  # skip content, F0 and vocoder: the acoustic model on ready features
    whisper: bool = True  # also time Whisper padded vs unpadded (full mode)
    overrides: list[str] = field(default_factory=list)
    seed: int = 0
    runtimes: list[str] = field(default_factory=lambda: ["torch"])  # "onnx" adds the exported one-step student
    dtype: str | None = None  # inference.dtype of every network; None: the config's ("auto")
    flops: bool = True  # count each stage's FLOPs (one extra, untimed conversion) and measure the GEMM peak
    gemm_size: int = 2048  # the square float32 matmul whose best GFLOP/s is the peak

    @property
    def config_overrides(self) -> list[str]:
        """``overrides`` plus ``inference.dtype=...`` when ``dtype`` is set."""
        return [*self.overrides, *([f"inference.dtype={self.dtype}"] if self.dtype else [])]

    def check(self) -> None:
        if (self.model is None) == (self.config is None):
            raise ValueError("give exactly one of --model ID_OR_DIR (trained weights) or --config FILE (random weights)")
        if not self.seconds or any(s <= 0 for s in self.seconds):
            raise ValueError(f"--seconds must be positive durations, got {self.seconds}")
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1, got {self.repeats}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        check_runtimes(self.runtimes)  # the steps are checked by the samplers, built with the model's config


# --------------------------------------------------------------------------- where it ran


def environment(device: str) -> dict[str, Any]:
    """Where the numbers were measured."""
    info = {
        "device": device,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }
    try:
        import os

        info["cpu_count"] = os.cpu_count()
        info["load_average"] = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on every OS
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# --------------------------------------------------------------------------- prior timing


class PriorTimer:
    """Times condition encoder + prior inside ``model.sample`` with forward hooks, summed per conversion.

    ``reset()`` before a conversion, read ``seconds`` (wall) and ``cpu_seconds``
    (process CPU) after; nothing in the model changes.
    """

    def __init__(self, model, device: str = "cpu"):
        self.timer = Timer(sync=sync_device(device))
        model.condition_encoder.register_forward_pre_hook(self._begin)
        model.prior.register_forward_hook(self._end)

    def _begin(self, module, args) -> None:  # a hook must return None: anything else replaces the inputs
        self.timer.start()

    def _end(self, module, args, output) -> None:
        self.timer.stop()

    @property
    def seconds(self) -> float:
        return self.timer.wall

    @property
    def cpu_seconds(self) -> float:
        return self.timer.cpu

    def reset(self) -> None:
        self.timer.reset()


# --------------------------------------------------------------------------- building what is measured


@dataclass
class BenchSubjects:
    """The pipelines to time, one per sampler, and what they are."""

    config: Any
    pipelines: dict[str, Any]  # System.pipeline ("teacher", "student", "student-onnx") -> ConversionPipeline
    singer: str
    notes: list[str]
    whisper: Any = None  # the WhisperContentEncoder of the pipelines (full mode)
    timers: dict[str, PriorTimer] = field(default_factory=dict)  # sampler -> its model's prior timer

    def __post_init__(self) -> None:
        device = next(iter(self.pipelines.values())).device.type
        self.timers = {  # the ONNX graph is one call: no prior hooks
            key: PriorTimer(pipe.model, device) for key, pipe in self.pipelines.items() if pipe.runtime == "torch"
        }


def _as_student(model):
    """A student exported from ``model`` without distillation steps (speed stand-in for a missing student)."""
    from comosvc.models import ConsistencyDistiller

    return ConsistencyDistiller(model).export(distillation_steps=0).eval()


def build_subjects(settings: BenchSettings, vocoder: str | None = None) -> BenchSubjects:
    """Teacher and student pipelines sharing one feature extractor and one vocoder (``vocoder``: default the config's)."""
    from comosvc.config import load_config
    from comosvc.models import ComoSVC
    from comosvc.pipeline import ConversionPipeline, apply_overrides

    device = settings.device
    notes: list[str] = []
    if settings.config is not None:
        config = load_config(settings.config, overrides=settings.config_overrides)
        if settings.acoustic_only:
            singers = {"random_0": 0}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(settings.seed)
                student = ComoSVC(config, singers=singers, stats=random_stats(config, singers), distilled=True)
            student = student.to(device).eval()
            features, vocoder = StandInFeatures(config, settings.seed), null_vocoder(config.audio).to(device)
        else:
            base = ConversionPipeline.from_config(
                config, vocoder=vocoder, device=device, distilled=True, seed=settings.seed
            )
            student, features, vocoder = base.model, base.features, base.vocoder
        teacher = copy_model(student, distilled=False)
        notes.append(f"random weights at the sizes of {settings.config} (speed does not depend on the weights)")
    else:
        if settings.acoustic_only:
            model = ComoSVC.from_pretrained(settings.model, map_location=device)
            config = apply_overrides(model.config, settings.config_overrides)
            model.config = config
            features, vocoder = StandInFeatures(config, settings.seed), null_vocoder(config.audio).to(device)
        else:
            base = ConversionPipeline.from_pretrained(
                settings.model, vocoder=vocoder, device=device, overrides=settings.config_overrides
            )
            model, features, vocoder, config = base.model, base.features, base.vocoder, base.config
        if model.distilled:
            student = model
            if model.distilled_from:
                teacher = ComoSVC.from_pretrained(model.distilled_from, map_location=device)
                teacher.config = config
            else:
                teacher = copy_model(model, distilled=False)
                notes.append("the model does not record its teacher: the teacher rows run the student's weights")
        else:
            teacher = model
            student = _as_student(model)
            notes.append("the model is a teacher: the student rows run an undistilled copy (same cost)")
    pipelines = {
        TEACHER: ConversionPipeline(teacher.eval(), features, vocoder, config=config, device=device),
        STUDENT: ConversionPipeline(student.eval(), features, vocoder, config=config, device=device),
    }
    if "onnx" in settings.runtimes:
        pipelines[f"{STUDENT}-onnx"] = _onnx_pipeline(student, features, vocoder, config, device)
        notes.append("student-1-onnx: the student exported to ONNX (comosvc.onnx) in onnxruntime, features in torch")
    singer = sorted(student.singers, key=lambda name: student.singers[name])[0]
    whisper = getattr(features, "whisper", None)
    return BenchSubjects(config, pipelines, singer, notes, whisper)


def _onnx_pipeline(student, features, vocoder, config, device: str):
    """The student (and a BigVGAN vocoder) exported to ONNX and loaded in onnxruntime; other vocoders stay in torch."""
    import tempfile

    from comosvc.onnx.export import export_onnx
    from comosvc.onnx.runtime import load_onnx
    from comosvc.pipeline import ConversionPipeline

    with tempfile.TemporaryDirectory() as folder:  # the sessions hold the graphs in memory
        export_onnx(student, folder, vocoder=one_piece(vocoder))  # not the ParallelVocoder wrapper
        onnx_student, onnx_vocoder = load_onnx(folder, device)
    onnx_student.config = config
    return ConversionPipeline(onnx_student, features, onnx_vocoder or vocoder, config=config, device=device)


# --------------------------------------------------------------------------- distance to the limit


def count_stage_flops(subjects: BenchSubjects, wav: np.ndarray, seed: int) -> dict[str, int]:
    """FLOPs of one student-1 conversion of ``wav`` per stage, plus ``prior`` and ``denoiser_step``.

    One untimed conversion under :class:`torch.utils.flop_counter.FlopCounterMode`; each
    stage's FLOPs are the counter's growth inside that stage (the pipeline's
    ``around_stage`` hook), the prior's inside the condition encoder + prior (forward
    hooks). The conversion runs on a pipeline that shares the student's networks with the
    vocoder in one piece (a :class:`~comosvc.vocoders.parallel.ParallelVocoder`'s worker
    threads would escape the thread-local counter, and its overlap is not useful work).
    F0 (parselmouth) is not torch: 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    pipe = subjects.pipelines[STUDENT]
    counting = ConversionPipeline(
        pipe.model, pipe.features, one_piece(pipe.vocoder), config=pipe.config, device=pipe.device, dtype=pipe.dtype,
        plan=dataclasses.replace(pipe.plan, vocoder_workers=1, compile=False),
    )
    mode = FlopCounterMode(display=False)
    counts = {**dict.fromkeys(STAGES, 0), "prior": 0}
    marks: list[int] = []

    @contextmanager
    def stage_flops(stage: str):
        before = mode.get_total_flops()
        try:
            yield
        finally:
            counts[stage] += mode.get_total_flops() - before

    def begin(module, args) -> None:
        marks.append(mode.get_total_flops())

    def end(module, args, output) -> None:
        counts["prior"] += mode.get_total_flops() - marks.pop()

    hooks = []
    if counting.runtime == "torch":
        hooks = [counting.model.condition_encoder.register_forward_pre_hook(begin), counting.model.prior.register_forward_hook(end)]
    request = counting.request(subjects.singer, sampler=STUDENT, steps=1, seed=seed)
    try:
        with mode:
            result = counting.convert_many(wav, [request], around_stage=stage_flops)[0]
    finally:
        for hook in hooks:
            hook.remove()
    counts["denoiser_step"] = (counts["acoustic"] - counts["prior"]) // max(int(result.nfe), 1)
    return {k: int(v) for k, v in counts.items()}


def system_flops(stage_flops: dict[str, int], nfe: int) -> dict[str, int]:
    """One system's FLOPs per stage: the acoustic model is the prior plus ``nfe`` denoiser passes."""
    out = {stage: stage_flops[stage] for stage in STAGES}
    out["acoustic"] = stage_flops["prior"] + nfe * stage_flops["denoiser_step"]
    out["total"] = sum(out[stage] for stage in STAGES)
    return out


def measure_peak(settings: BenchSettings) -> dict[str, Any] | None:
    """The GEMM peak of this machine at the current torch thread count (None on a GPU or without ``flops``)."""
    if not settings.flops or not settings.device.startswith("cpu"):
        return None
    threads = torch.get_num_threads()
    peak = {
        "gflops": gemm_gflops(threads, settings.gemm_size),
        "threads": threads,
        "size": settings.gemm_size,
        "dtype": "float32",
    }
    if bf16_instructions(cpu_flags()):  # what inference.cpu_matmul_precision=bfloat16 runs on
        peak["gflops_bfloat16"] = gemm_gflops(threads, settings.gemm_size, dtype=torch.bfloat16)
    return peak


def peak_for(peak: dict[str, Any] | None, pipeline) -> dict[str, Any] | None:
    """The peak a pipeline's stages are measured against: the bfloat16 one when its matrix products are bfloat16."""
    if peak is None or not getattr(pipeline, "bf16_matmuls", False) or "gflops_bfloat16" not in peak:
        return peak
    return {**peak, "gflops": peak["gflops_bfloat16"], "dtype": "bfloat16", "gflops_float32": peak["gflops"]}


def _limit_entry(entry: dict[str, Any], stage_flops: dict[str, int], peak: dict[str, Any] | None) -> None:
    """Add ``flops``, ``gflops_per_s`` (from wall seconds) and ``peak_fraction`` to a system's entry."""
    flops = system_flops(stage_flops, entry["nfe"])
    entry["flops"] = flops
    entry["gflops_per_s"] = {
        k: flops[k] / entry["median"][k] / 1e9 for k in flops if entry["median"].get(k, 0) > 0
    }
    if peak is not None:
        entry["peak_fraction"] = {k: fraction_of_peak(flops[k], entry["median"][k], peak["gflops"]) for k in entry["gflops_per_s"]}


# --------------------------------------------------------------------------- one duration


def _conversion_job(subjects: BenchSubjects, system: System, wav: np.ndarray, seed: int) -> Job:
    pipe = subjects.pipelines[system.pipeline]
    timer = subjects.timers.get(system.pipeline)

    def job() -> dict[str, float]:
        if timer is not None:
            timer.reset()
        result = pipe(wav, subjects.singer, sampler=system.sampler, seed=seed)
        sync_device(pipe.device.type)()
        cpu = getattr(result, "cpu_timings", None) or {}
        prior = {"prior": timer.seconds, CPU + "prior": timer.cpu_seconds} if timer is not None else {}
        return {
            **{k: float(v) for k, v in result.timings.items()},
            **{CPU + k: float(v) for k, v in cpu.items()},
            **prior,
            "nfe": float(result.nfe),
        }

    return job


def _whisper_jobs(whisper, wavs_16k: list[np.ndarray], batch_size: int) -> dict[str, Job]:
    """Whisper's encoder padded to 30 s and unpadded, on the same clips, sharing weights."""
    from comosvc.features.content import WhisperContentEncoder

    jobs = {}
    for mode in ("padded", "unpadded"):
        encoder = WhisperContentEncoder(whisper.encoder, whisper.feature_extractor, mode=mode)
        jobs[f"whisper-{mode}"] = timed(lambda enc=encoder: enc(wavs_16k, batch_size=batch_size), key="whisper")
    return jobs


def bench_duration(
    subjects: BenchSubjects, systems: list[System], seconds: float, settings: BenchSettings, peak: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Interleaved runs of every system (and Whisper padded/unpadded) on ``seconds`` of synthetic singing.

    With ``settings.flops`` each system's entry also has its FLOPs per stage (counted on
    one more, untimed conversion) and, given the GEMM ``peak``, the fraction of it reached.
    """
    from comosvc.audio import resample

    config = subjects.config
    sr, hop = config.audio.sample_rate, config.audio.hop_length
    wav = synthetic_song(seconds, sample_rate=sr, seed=settings.seed)
    short = synthetic_song(min(2.0, seconds), sample_rate=sr, seed=settings.seed + 1)
    jobs = {s.name: _conversion_job(subjects, s, wav, settings.seed) for s in systems}
    warmups = {s.name: _conversion_job(subjects, s, short, settings.seed) for s in systems} if settings.warmup else {}

    # The chunk plan of this input (what every system converts), from one student run.
    plan = subjects.pipelines[STUDENT](wav, subjects.singer, sampler=STUDENT, steps=1, seed=settings.seed)
    sounding = [c for c in plan.chunks if not c.silent]
    whisper_info = None
    if settings.whisper and subjects.whisper is not None and not settings.acoustic_only:
        padded = np.pad(wav, (0, -(-len(wav) // hop) * hop - len(wav)))
        wavs_16k = [resample(padded[c.start : c.end], sr, CONTENT_SAMPLE_RATE) for c in sounding]
        whisper_jobs = _whisper_jobs(subjects.whisper, wavs_16k, config.content.batch_size)
        jobs.update(whisper_jobs)
        if settings.warmup:
            warmups.update(_whisper_jobs(subjects.whisper, [resample(short, sr, CONTENT_SAMPLE_RATE)], 1))
    for _ in range(max(settings.warmup - 1, 0)):
        for job in warmups.values():
            job()

    runs = interleave(jobs, settings.repeats, warmups=warmups, desc=f"{seconds:g} s")
    stage_flops = count_stage_flops(subjects, wav, settings.seed) if settings.flops else None  # after the timed runs

    results = []
    teacher_median = teacher_cpu = None
    for s in systems:
        both = medians(runs[s.name])
        nfe = int(both.pop("nfe"))
        med = {k: v for k, v in both.items() if not k.startswith(CPU)}
        med_cpu = {k[len(CPU) :]: v for k, v in both.items() if k.startswith(CPU)}
        entry = {
            "name": s.name,
            "sampler": s.sampler.name,
            "steps": s.sampler.steps,
            "nfe": nfe,
            "median": med,  # wall-clock seconds
            "median_cpu": med_cpu,  # process CPU seconds (all threads)
            "rtf": {key: med[key] / seconds for key in ("acoustic", "total") if key in med},
            "runs": [{k: v for k, v in run.items() if k != "nfe"} for run in runs[s.name]],
        }
        if stage_flops is not None:
            _limit_entry(entry, stage_flops, peak)
        if s.sampler.name == TEACHER and teacher_median is None:
            teacher_median, teacher_cpu = med, med_cpu
        results.append(entry)
    for entry in results:
        keys = ("acoustic", "prior", "total")
        entry["speedup"] = {k: speedup(teacher_median[k], entry["median"][k]) for k in keys if k in entry["median"]}
        entry["speedup_cpu"] = {k: speedup(teacher_cpu[k], entry["median_cpu"][k]) for k in keys if k in entry["median_cpu"]}
    if "whisper-padded" in runs:
        whisper_info = {"clips_seconds": [round(len(w) / CONTENT_SAMPLE_RATE, 3) for w in wavs_16k]}
        for clock, prefix in (("wall", ""), ("cpu", CPU)):
            padded_s = medians(runs["whisper-padded"])[prefix + "whisper"]
            unpadded_s = medians(runs["whisper-unpadded"])[prefix + "whisper"]
            whisper_info[clock] = {"padded": padded_s, "unpadded": unpadded_s, "speedup": speedup(padded_s, unpadded_s)}
        whisper_info.update(whisper_info["wall"])  # padded / unpadded / speedup: wall clock
        whisper_info["runs"] = {mode: runs[f"whisper-{mode}"] for mode in ("padded", "unpadded")}
    return {
        "seconds": float(seconds),
        "vocoder": next(iter(subjects.pipelines.values())).vocoder_name,
        "frames": len(wav) // hop,
        "chunks": len(sounding),
        "chunk_seconds": [round((c.end - c.start) / sr, 3) for c in sounding],
        "systems": results,
        "whisper": whisper_info,
        "stage_flops": stage_flops,
    }


# --------------------------------------------------------------------------- the whole run


def run_bench(settings: BenchSettings, subjects: BenchSubjects | None = None) -> dict[str, Any]:
    """Build the pipelines (unless given) and measure every duration with every vocoder; the report dict (JSON-ready).

    Each vocoder of ``settings.vocoders`` gets pipelines of its own, built in turn
    (with ``--config`` the acoustic model has the same random weights every time).
    """
    settings.check()
    run_timer = Timer().start()
    given = subjects
    durations, vocoder_names, systems = [], [], None
    peak = measure_peak(settings)
    for vocoder in [None] if given is not None or settings.acoustic_only else settings.vocoders or [None]:
        subjects = given or build_subjects(settings, vocoder)
        config, teacher_model = subjects.config, subjects.pipelines[TEACHER].model
        systems = systems or bench_systems(config, settings.teacher_steps, settings.student_steps, settings.runtimes)
        vocoder_names.append(subjects.pipelines[STUDENT].vocoder_name)
        stage_peak = peak_for(peak, subjects.pipelines[STUDENT])
        durations += [bench_duration(subjects, systems, s, settings, stage_peak) for s in settings.seconds]
    return {
        "settings": {**asdict(settings), "teacher_steps": systems[0].sampler.steps},  # None resolved: the model's
        "environment": environment(settings.device),
        "model": {
            "source": settings.model or settings.config,
            "random_weights": settings.config is not None,
            "parameters": teacher_model.num_parameters(),
            "whisper_mode": None if settings.acoustic_only else config.content.whisper_mode,
            "vocoder": ", ".join(vocoder_names),
            "max_chunk_seconds": config.inference.max_chunk_seconds,
            "chunk_batch_size": config.inference.batch_size,
            "teacher_solver": config.model.teacher_solver,
            "dtype": str(subjects.pipelines[TEACHER].dtype).removeprefix("torch."),
            "bf16_matmuls": bool(getattr(subjects.pipelines[STUDENT], "bf16_matmuls", False)),
            "cpu_plan": str(subjects.pipelines[STUDENT].plan),
            "vocoder_workers": config.inference.vocoder_workers,
            "vocoder_overlap_frames": subjects.pipelines[STUDENT].plan.vocoder_overlap_frames,
            "compile": config.inference.compile,
            "notes": subjects.notes,
        },
        "durations": durations,
        "gemm_peak": stage_peak,
        "wall_seconds": round(run_timer.elapsed().wall, 1),
    }


# --------------------------------------------------------------------------- output


def _s(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _rtf(value: float | None) -> str:
    return "" if value is None else (f"{value:.4f}" if value < 0.01 else f"{value:.3f}")


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}x"


def _x2(entry: dict, key: str) -> str:
    """``wall / CPU`` speed-ups of one timing key."""
    wall, cpu = entry["speedup"].get(key), entry.get("speedup_cpu", {}).get(key)
    return _x(wall) + (f" / {_x(cpu)}" if cpu is not None else "")


def _s2(entry: dict, key: str) -> str:
    """``wall (CPU)`` seconds of one timing key."""
    wall, cpu = entry["median"].get(key), entry.get("median_cpu", {}).get(key)
    return _s(wall) + (f" ({_s(cpu)})" if cpu is not None else "")


def _gflop(flops: float) -> str:
    return f"{flops / 1e9:.1f}" if flops >= 1e8 else f"{flops / 1e9:.3f}"


def _limit_table(d: dict[str, Any], peak: dict[str, Any] | None, acoustic_only: bool) -> str:
    """Per system and stage: GFLOP, GFLOP/s reached (wall) and the fraction of the GEMM peak."""
    stages = ["acoustic"] if acoustic_only else ["content", "f0", "acoustic", "vocoder", "total"]
    names = {"content": "content", "f0": "F0", "acoustic": "acoustic model", "vocoder": "vocoder", "total": "end to end"}
    title = "GFLOP, GFLOP/s" + (f", % of the {peak['gflops']:.0f} GFLOP/s GEMM peak" if peak else "")
    rows = []
    for e in d["systems"]:
        row = [e["name"]]
        for k in stages:
            flops, rate = e["flops"].get(k, 0), e["gflops_per_s"].get(k)
            if not flops or rate is None:
                row.append("0 (not torch)" if k == "f0" else "")
                continue
            frac = e.get("peak_fraction", {}).get(k)
            row.append(f"{_gflop(flops)}, {rate:.1f}" + (f", {100 * frac:.0f}%" if frac is not None else ""))
        rows.append(row)
    return markdown_table([title] + [names[k] for k in stages], rows)


def _speed_table(d: dict[str, Any], acoustic_only: bool) -> str:
    """Per system of one duration: NFE, the acoustic model's seconds, RTF and speed-up, then the same
    end to end (unless ``acoustic_only``)."""
    headers = ["system", "NFE", "acoustic model, s (CPU s)", "acoustic RTF", "acoustic speed-up (wall / CPU)"]
    if not acoustic_only:
        headers += ["end to end, s (CPU s)", "end-to-end RTF", "end-to-end speed-up (wall / CPU)"]
    rows = []
    for e in d["systems"]:
        rtf = e["rtf"]
        row = [e["name"], str(e["nfe"]), _s2(e, "acoustic"), _rtf(rtf["acoustic"]), _x2(e, "acoustic")]
        if not acoustic_only:
            row += [_s2(e, "total"), _rtf(rtf["total"]), _x2(e, "total")]
        rows.append(row)
    return markdown_table(headers, rows)


def _stage_table(d: dict[str, Any]) -> str:
    """Per system of one duration: wall (CPU) seconds of each pipeline stage, the prior and end to end."""
    stages = ["content", "f0", "prior", "acoustic", "vocoder", "total"]
    names = {
        "content": "content",
        "f0": "F0",
        "prior": "cond. encoder + prior",
        "acoustic": "acoustic model",
        "vocoder": "vocoder",
        "total": "end to end",
    }
    rows = [[e["name"]] + [_s2(e, k) for k in stages] for e in d["systems"]]
    return markdown_table(["per-stage split, s (CPU s)"] + [names[k] for k in stages], rows)


def _acoustic_split_table(d: dict[str, Any]) -> str:
    """Per system of one duration: the acoustic model's wall (CPU) seconds split into condition
    encoder + prior and the denoiser steps (the rest)."""
    rows = []
    for e in d["systems"]:
        denoiser = {clock: e[clock]["acoustic"] - e[clock].get("prior", 0.0) for clock in ("median", "median_cpu") if "acoustic" in e.get(clock, {})}
        split = dict(e, median={"prior": e["median"].get("prior"), "denoiser": denoiser.get("median")},
                     median_cpu={"prior": e.get("median_cpu", {}).get("prior"), "denoiser": denoiser.get("median_cpu")})
        rows.append([e["name"], _s2(split, "prior"), _s2(split, "denoiser")])
    return markdown_table(["acoustic split, s (CPU s)", "cond. encoder + prior", "denoiser steps"], rows)


def _whisper_table(w: dict[str, Any], secs: float) -> str:
    """Whisper's encoder padded to 30 s against unpadded on the ``secs`` seconds of one duration."""
    clips = ", ".join(f"{c:g}" for c in w["clips_seconds"])
    cpu = w.get("cpu", {})
    return markdown_table(
        ["Whisper encoder", "padded to 30 s, s (CPU s)", "unpadded, s (CPU s)", "padded / unpadded (wall / CPU)"],
        [[
            f"{secs:g} s as {len(w['clips_seconds'])} chunk(s) of {clips} s",
            f"{_s(w['padded'])} ({_s(cpu.get('padded'))})",
            f"{_s(w['unpadded'])} ({_s(cpu.get('unpadded'))})",
            f"{_x(w['speedup'])} / {_x(cpu.get('speedup'))}",
        ]],
    )


def _duration_section(d: dict[str, Any], acoustic_only: bool, several_vocoders: bool, peak: dict | None) -> list[str]:
    """The markdown lines of one duration: its heading, the speed table, the stage (or acoustic)
    split, the distance to the limit (when FLOPs were counted) and Whisper (when timed)."""
    secs = d["seconds"]
    reps = len(d["systems"][0]["runs"])
    vocoder = f" with {d['vocoder']}" if several_vocoders else ""
    out = [
        f"**{secs:g} s of audio{vocoder}** ({d['frames']} frames, {d['chunks']} chunk(s); "
        f"median of {reps} interleaved run(s))",
        "",
    ]
    out += [_speed_table(d, acoustic_only), ""]
    out += [_acoustic_split_table(d) if acoustic_only else _stage_table(d), ""]
    if d.get("stage_flops") and "flops" in d["systems"][0]:
        out += [_limit_table(d, peak, acoustic_only), ""]
    if d.get("whisper"):
        out += [_whisper_table(d["whisper"], secs), ""]
    return out


def _run_facts(report: dict[str, Any]) -> list[str]:
    """The closing lines: what ran where (model, vocoder, chunks, plan, GEMM peak, device, load), then the notes."""
    m, env = report["model"], report["environment"]
    facts = [
        f"model: {m['source']}" + (" (random weights)" if m["random_weights"] else ""),
        f"{m['parameters']['total'] / 1e6:.1f}M acoustic parameters",
        f"vocoder: {m['vocoder']}",
    ]
    if m.get("whisper_mode"):
        facts.append(f"Whisper in the pipeline: {m['whisper_mode']}")
    facts.append(f"chunks of at most {m['max_chunk_seconds']:g} s, {m['chunk_batch_size']} per batch")
    if m.get("cpu_plan"):
        facts.append(f"plan: {m['cpu_plan']} ({m['vocoder_overlap_frames']} frames of vocoder overlap)")
    peak = report.get("gemm_peak")
    if peak:
        facts.append(
            f"GEMM peak {peak['gflops']:.0f} GFLOP/s ({peak['dtype']} {peak['size']}x{peak['size']} matmul, "
            f"best of 3, {peak['threads']} threads, measured in this run"
            + (f"; float32: {peak['gflops_float32']:.0f} GFLOP/s)" if "gflops_float32" in peak else ")")
        )
    dtype = f" in {m['dtype']}" if m.get("dtype") else ""
    facts.append(f"{env['device']}{dtype}, torch {env['torch']}, {env['torch_threads']} threads")
    if env.get("load_average") is not None:
        facts.append(f"load average {env['load_average']:.1f} on {env.get('cpu_count')} CPUs")
    return ["; ".join(facts) + "."] + [f"Note: {note}." for note in m.get("notes", [])]


def markdown_report(report: dict[str, Any]) -> str:
    """The report as markdown: per duration the speed table, the per-stage split and Whisper."""
    acoustic_only = report["settings"]["acoustic_only"]
    several_vocoders = len({d.get("vocoder") for d in report["durations"]}) > 1
    out = []
    for d in report["durations"]:
        out += _duration_section(d, acoustic_only, several_vocoders, report.get("gemm_peak"))
    out += _run_facts(report)
    return "\n".join(out)


def write_report(report: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """``out`` (JSON) and the markdown next to it (``.md``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown_report(report) + "\n")
    return out, md


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


__all__ = [
    "BenchSettings",
    "BenchSubjects",
    "PriorTimer",
    "System",
    "bench_duration",
    "bench_systems",
    "build_subjects",
    "count_stage_flops",
    "system_flops",
    "markdown_report",
    "run_bench",
    "write_report",
]
