"""ConversionPipeline: a recording of singing in, the same song sung by a trained singer out.

    >>> pipe = ConversionPipeline.from_pretrained("user/comosvc-student")   # Hub id or folder
    >>> result = pipe("song.wav", singer="opensinger_0", key="auto")
    >>> save_audio("out.wav", result.audio, result.sample_rate)
    >>> teacher, student = pipe.convert_many("song.wav", [pipe.request("opensinger_0", sampler=name)
    ...                                                   for name in ("teacher", "student")])

What a call does, in order (timed per stage in ``result.timings``); each phase is
a method of its own (:meth:`~ConversionPipeline.load`, :meth:`~ConversionPipeline.plan_chunks`,
:meth:`~ConversionPipeline.song_f0`, :meth:`~ConversionPipeline.key_shift`,
:meth:`~ConversionPipeline.chunk_features`, :meth:`~ConversionPipeline.acoustic`,
:meth:`~ConversionPipeline.vocode`, :class:`~comosvc.pipeline.chunks.SongJoiner`,
:func:`~comosvc.pipeline.loudness.finish_loudness`) that a streaming converter can reuse:

1. Load the input (any file :func:`comosvc.audio.load_audio` reads, or samples) as
   24 kHz mono and pad it to whole hops.
2. Slice it at silences (:func:`comosvc.slicer.slice_audio`, at most
   ``inference.max_chunk_seconds`` of sound per chunk, ``inference.silence_db``)
   and plan chunks (:mod:`comosvc.pipeline.chunks`): long silences are not
   converted, each sounding chunk gets a little context on both sides.
3. **f0**: F0 of every sounding chunk (small: one float per frame), joined into one
   track for the song; key shift in semitones, or ``"auto"`` = the target singer's
   median voiced F0 (``stats.json``) over the source's.
4. Batches of ``inference.batch_size`` chunks of similar length, one batch at a time
   (memory stays bounded, whatever the song's length):
   **content** (Whisper, ContentVec, and the source mel for the energy), **acoustic**
   (condition encoder + prior + ``steps`` denoiser passes of the teacher or the
   student; the noise is drawn per song frame, so a frame gets the same noise
   whichever chunk it is in), denormalise with the target singer's dataset mel
   stats, **vocoder**; each chunk is added to the output with a linear crossfade
   around its cuts (``inference.crossfade_seconds``). On a CPU the vocoder can run on
   several cores (``inference.vocoder_workers``, :mod:`comosvc.vocoders.parallel`).
5. Optionally match the frame-RMS loudness envelope of the source, then
   peak-normalise: the song is scaled so its largest sample is :data:`PEAK` (0.9,
   the reference's level); with loudness matching it keeps the source's level and
   is only scaled down if it would clip.

:meth:`~ConversionPipeline.convert_many` runs these phases once for several requests
(:meth:`~ConversionPipeline.request`: singer, sampler, key, loudness, seed) of the same
input, e.g. the teacher and the student in an A/B: loading, chunking, the F0 and each
batch's content features are computed once and shared; the key shift, the acoustic
model, the vocoder, the joining and phase 5 run per request, batch by batch (memory
stays bounded). ``pipe(...)`` is its one-request case.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Sequence, Union

import numpy as np
import torch

from comosvc.audio import audio_from_samples, load_audio
from comosvc.config import ComoSVCConfig, ConfigError, with_overrides
from comosvc.features.mel import LOG_CLAMP, MelStats
from comosvc.pipeline.clock import StageClock, StageHook, sync_device
from comosvc.pipeline import chunks as chunking
from comosvc.pipeline.chunks import Chunk, SongJoiner, frame_noise, join_frames, length_batches
from comosvc.pipeline.loudness import PEAK, finish_loudness
from comosvc.pipeline.mix import SingerMix, SingerSpec, blend_mel_stats, mix_datasets, mix_f0, mix_f0_range, parse_mix
from comosvc.pipeline.pitch import auto_key, notes_beyond_range, parse_key, shift_f0
from comosvc.pipeline.singers import resolve_singer
from comosvc.cpu_plan import CpuPlan
from comosvc.precision import cast_module, resolve_dtype
from comosvc.slicer import slice_audio
from comosvc.vocoders.parallel import prepare_vocoder

if TYPE_CHECKING:
    from comosvc.models.samplers import Sampler
    from comosvc.vocoders import Vocoder

logger = logging.getLogger(__name__)

AudioInput = Union[str, Path, bytes, np.ndarray, tuple]
Runtime = Literal["torch", "onnx"]  # what runs the acoustic model and the vocoder (comosvc.onnx)
RUNTIMES = ("torch", "onnx")
# progress(fraction of the conversion done in [0, 1], what is happening)
ProgressFn = Callable[[float, str], None]


@dataclass
class ConversionResult:
    """One converted song.

    ``audio`` ``(N,)`` float32 at ``sample_rate`` (24 kHz), exactly as long as the
    input (after resampling to 24 kHz); ``mel`` ``(T, n_mels)`` the unnormalised log
    mel that was vocoded, ``T = ceil(N / hop)`` (the input is padded to whole hops);
    ``f0`` ``(T,)`` Hz, the conditioning F0 after the key shift (0 = unvoiced);
    ``nfe`` denoiser network evaluations per chunk (the sampler's cost; the prior runs
    once per chunk); ``timings`` wall-clock seconds per stage: ``content`` (Whisper,
    ContentVec and the source mel/energy), ``f0``, ``acoustic``, ``vocoder`` and
    ``total`` (end to end, including loading, slicing and joining);
    ``cpu_timings`` the same stages in CPU seconds of this process (all threads;
    steadier than wall time on a shared machine). From :meth:`ConversionPipeline.convert_many`
    ``content`` and ``f0`` are the shared seconds (computed once for all requests),
    ``acoustic`` and ``vocoder`` this request's own, and ``total`` the cost it would have
    alone: the call's total less the other requests' acoustic and vocoder seconds.
    """

    audio: np.ndarray
    sample_rate: int
    mel: np.ndarray
    f0: np.ndarray
    nfe: int
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    cpu_timings: dict[str, float] = field(default_factory=dict)
    singer: str = ""
    sampler: str = ""
    steps: int = 0
    key: float = 0.0  # semitones applied (the computed shift when key="auto")
    seed: int = 0
    n_chunks: int = 0  # chunks converted (silent chunks are not)
    chunks: list[Chunk] = field(default_factory=list)  # the plan, in samples (see comosvc.pipeline.chunks)


@dataclass(frozen=True)
class ConversionRequest:
    """The options of one conversion, resolved and checked (:meth:`ConversionPipeline.request`)."""

    singer: SingerMix  # table keys "<dataset>_<singer>" and weights; str() = the key of one singer
    sampler: Sampler  # a TeacherSampler or StudentSampler (comosvc.models.samplers), checked once
    key: float | str  # semitones, or "auto"
    loudness_match: bool
    seed: int
    index_ratio: float = 0.0  # in [0, 1]: how far the content moves towards the singer's timbre index (comosvc.index)


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


class ConversionPipeline:
    """Feature extractor + acoustic model (teacher and/or student) + vocoder.

    Build it with :meth:`from_pretrained` (a trained model) or :meth:`from_config`
    (random weights, for speed measurements). ``model`` is a
    :class:`~comosvc.models.ComoSVC` holding the condition encoder, the prior and
    one denoiser: a teacher, or a distilled student. A student pipeline loads the
    teacher from ``teacher`` (default ``model.distilled_from``) the first time
    ``sampler="teacher"`` is asked for, and shares the condition encoder and prior
    with it when their weights are identical (they are frozen in distillation).

    Every network (the acoustic model and a lazily loaded teacher, the vocoder, the
    content encoders of ``features``) is cast once, here, to ``dtype``: default
    ``inference.dtype`` resolved for the device (:mod:`comosvc.precision`: float16 on
    CUDA, float32 on the CPU). What the stages hand each other stays float32.
    """

    def __init__(
        self,
        model,
        features,
        vocoder,
        config: ComoSVCConfig | None = None,
        teacher: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        plan: CpuPlan | None = None,
    ):
        self.config = config or model.config
        self.device = _device(device)
        self.dtype = dtype or resolve_dtype(self.config.inference.dtype, self.device)
        # the CPU plan (matrix precision, vocoder workers, compile), decided once, here
        self.plan = plan or CpuPlan.resolve(self.config.inference, self.device, self.dtype)
        # the networks as the plan runs them: new modules where it changes something, the ones passed in untouched
        self.model = self.planned(model).eval()
        self.features = _planned_features(features, self.planned)
        self.vocoder = prepare_vocoder(self.planned(vocoder), self.plan)
        self.teacher_source = teacher if teacher is not None else (model.distilled_from if model.distilled else None)
        self._teacher = None if model.distilled else self.model
        self._stats_cache: dict[str, MelStats] = {}
        # why Griffin-Lim makes the audio instead of the vocoder asked for (from_pretrained's vocoder_fallback)
        self.vocoder_fallback: str | None = None
        self.runtime: Runtime = getattr(model, "runtime", "torch")  # "onnx" for a comosvc.onnx OnnxStudent

    def planned(self, network):
        """``network`` in this pipeline's dtype, as its plan runs it (new modules where the plan changes
        something; a network already so is returned as it is)."""
        return self.plan.apply(cast_module(network, self.dtype))

    @property
    def bf16_matmuls(self) -> bool:
        """Whether the networks run their large matrix products in bfloat16 (the CPU plan)."""
        return self.plan.bf16_matmuls

    def __repr__(self) -> str:
        kind = "student" if self.model.distilled else "teacher"
        source = getattr(self.model, "name_or_path", None) or "in memory"
        return (
            f"{type(self).__name__}({kind} {source!r}, vocoder {self.vocoder_name!r}, device {self.device}, "
            f"dtype {str(self.dtype).removeprefix('torch.')}, plan [{self.plan}])"
        )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        vocoder: "str | Vocoder | None" = None,
        teacher: str | None = None,
        device: str | torch.device | None = None,
        overrides: list[str] | None = None,
        vocoder_fallback: bool = True,
        dtype: torch.dtype | None = None,
        runtime: Runtime = "torch",
    ) -> "ConversionPipeline":
        """Load a model (Hub id or folder), its content encoders and a vocoder.

        Args:
            model: a ComoSVC teacher or distilled student (``ComoSVC.save_pretrained`` layout).
            vocoder: Hub id, folder or :data:`~comosvc.vocoders.GRIFFINLIM` (or a ready
                :class:`~comosvc.vocoders.Vocoder`); default ``inference.vocoder``.
                With ``vocoder_fallback``, an unreachable neural vocoder falls back to
                Griffin-Lim with a logged warning instead of failing.
            teacher: where to load the teacher from for ``sampler="teacher"`` with a
                distilled model; default the model's ``distilled_from``.
            device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
            overrides: ``section.key=value`` changes to the model's config, e.g.
                ``["inference.max_chunk_seconds=5", "f0.method=fcpe"]``. Model sizes
                cannot change (the weights fix them).
            dtype: the precision of every network; default ``inference.dtype`` (e.g.
                ``overrides=["inference.dtype=bfloat16"]``) resolved for ``device`` by
                :func:`~comosvc.precision.resolve_dtype`, which refuses a half dtype on a CPU;
                a dtype passed here is used as given.
            runtime: ``"torch"``, or ``"onnx"``: ``model`` is a folder written by
                ``python -m comosvc export-onnx`` (:mod:`comosvc.onnx`); the one-step student
                and its exported vocoder run in onnxruntime, the feature extractors in torch
                (``vocoder`` given, or none exported: that vocoder runs in torch).
        """
        from comosvc.features.extract import FeatureExtractor

        device = _device(device)
        acoustic, exported_vocoder = _load_acoustic(model, device, runtime, teacher)
        config = apply_overrides(acoustic.config, overrides)
        acoustic.config = config
        dtype = dtype or resolve_dtype(config.inference.dtype, device)  # a refused dtype or plan fails before the big loads
        plan = CpuPlan.resolve(config.inference, device, dtype)
        features = FeatureExtractor(config, device=device, dtype=dtype)
        fell_back = None
        if vocoder is None and exported_vocoder is not None:
            voc = exported_vocoder
        elif isinstance(vocoder, torch.nn.Module):
            voc = vocoder.to(device).eval()
        else:
            voc, fell_back = _load_vocoder(vocoder or config.inference.vocoder, device, config, vocoder_fallback)
        pipe = cls(acoustic, features, voc, config=config, teacher=teacher, device=device, dtype=dtype, plan=plan)
        pipe.vocoder_fallback = fell_back
        return pipe

    @classmethod
    def from_config(
        cls,
        config: ComoSVCConfig,
        vocoder: str | None = None,
        device: str | torch.device | None = None,
        singers: dict[str, int] | None = None,
        stats: dict | None = None,
        distilled: bool = False,
        seed: int = 0,
        dtype: torch.dtype | None = None,
    ) -> "ConversionPipeline":
        """A pipeline with random weights everywhere, built in memory (no download).

        For speed measurements (speed does not depend on the weights): the acoustic
        model at ``config.model`` sizes (``distilled=True`` makes it a student), the
        content encoders at the size that matches ``content.whisper_dim`` (1024:
        whisper-medium's encoder and HuBERT-base; 64: the tiny test size), and a
        random vocoder from :func:`~comosvc.vocoders.random_vocoder` (``vocoder``: default
        ``inference.vocoder``; ``"nvidia/bigvgan_base_24khz_100band"`` for v1 base; or
        :data:`~comosvc.vocoders.GRIFFINLIM`).
        ``singers``/``stats`` default to one singer ``"random_0"`` with plausible stats.
        ``dtype``: as in :meth:`from_pretrained`.
        """
        from comosvc.models import ComoSVC
        from comosvc.vocoders import random_vocoder

        device = _device(device)
        dtype = dtype or resolve_dtype(config.inference.dtype, device)
        features = _random_features(config, device, seed, dtype)
        singers = singers or {"random_0": 0}
        if stats is None:
            stats = random_stats(config, singers)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            acoustic = ComoSVC(config, singers=singers, stats=stats, distilled=distilled)
        acoustic = acoustic.to(device).eval()

        voc = random_vocoder(vocoder or config.inference.vocoder, config.audio, seed)
        return cls(acoustic, features, voc.to(device).eval(), config=config, device=device, dtype=dtype)

    # ------------------------------------------------------------------ what the model offers

    @property
    def sample_rate(self) -> int:
        return self.config.audio.sample_rate

    @property
    def singers(self) -> dict[str, int]:
        """The singer table ``{"<dataset>_<singer>": id}``."""
        return self.model.singers

    @property
    def vocoder_name(self) -> str:
        return getattr(self.vocoder, "name", type(self.vocoder).__name__)

    @property
    def samplers(self) -> list[str]:
        """Samplers this pipeline can run: ``"student"`` for a distilled model, ``"teacher"`` when a teacher is at hand."""
        out = ["student"] if self.model.distilled else []
        if self._teacher is not None or self.teacher_source:
            out.insert(0, "teacher")
        return out

    def resolve_singer(self, singer: str) -> str:
        """``"<dataset>_<singer>"`` or an unambiguous bare name -> the table key (else :class:`UnknownSingerError`)."""
        return resolve_singer(singer, self.model.singers)

    def resolve_mix(self, singer: SingerSpec) -> SingerMix:
        """A singer or a mix (``"alice:0.7,bob:0.3"``, ``{"alice": 0.7, "bob": 0.3}``) -> a checked, normalised
        :class:`~comosvc.pipeline.mix.SingerMix` (:func:`~comosvc.pipeline.mix.parse_mix`; one-line errors).
        The ONNX runtime converts to one singer only."""
        mix = parse_mix(singer, self.model.singers)
        if self.runtime == "onnx" and mix.single is None:
            from comosvc.onnx.runtime import ONNX_ONE_SINGER

            raise ValueError(ONNX_ONE_SINGER)
        return mix

    def resolve_sampler(self, sampler: Sampler | str | None = None, steps: int | None = None) -> Sampler:
        """A sampler object this pipeline can run (:func:`comosvc.models.samplers.resolve_sampler`).

        ``sampler``: a :class:`~comosvc.models.samplers.TeacherSampler` /
        :class:`~comosvc.models.samplers.StudentSampler`, or ``"teacher"``/``"student"`` with
        ``steps`` (default ``inference.teacher_steps`` / ``student_steps``); ``None`` picks the
        student of a distilled model, else the teacher. A distilled model's teacher is loaded
        from ``teacher``. An ONNX export runs the one-step student only.
        """
        if self.runtime == "onnx":
            return self.model.resolve_sampler(sampler, steps)
        from comosvc.models.samplers import resolve_sampler  # lazy: comosvc.models imports diffusers

        return resolve_sampler(
            sampler, steps, self.config, self.model.distilled, teacher_source=self.teacher_source, loads_teacher=True
        )

    def teacher(self):
        """The teacher model, loaded on first use for a distilled pipeline."""
        if self._teacher is None:
            from comosvc.models import ComoSVC

            logger.info("loading the teacher from %s", self.teacher_source)
            try:
                teacher = ComoSVC.from_pretrained(str(self.teacher_source), map_location=str(self.device))
            except Exception as err:
                raise ValueError(
                    f"Could not load the teacher {self.teacher_source!r} for sampler='teacher' ({err}). "
                    "Pass teacher=<Hub id or folder> (--teacher), or use sampler='student'."
                ) from err
            if teacher.distilled:
                raise ValueError(f"{self.teacher_source} is itself a distilled student, not a teacher")
            teacher = self.planned(teacher)
            if teacher.singers != self.model.singers:
                raise ValueError(
                    f"The teacher {self.teacher_source} has a different singer table than the student; "
                    "pass the teacher this student was distilled from."
                )
            # sample with this pipeline's inference settings (steps, chunking), keep the teacher's sizes
            teacher.config = dataclasses.replace(teacher.config, inference=copy.deepcopy(self.config.inference))
            for part in ("condition_encoder", "prior"):  # frozen in distillation: share them when identical
                mine, theirs = getattr(self.model, part).state_dict(), getattr(teacher, part).state_dict()
                if mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine):
                    setattr(teacher, part, getattr(self.model, part))
            self._teacher = teacher.eval()
        return self._teacher

    def _acoustic_model(self, sampler: Sampler):
        return self.teacher() if sampler.name == "teacher" else self.model

    def _mel_stats(self, singer: SingerSpec) -> MelStats:
        """The mel bounds that de-normalise ``singer``'s mels: its dataset's, or for a mix of singers from
        several datasets the weighted mean of theirs (:func:`~comosvc.pipeline.mix.blend_mel_stats`)."""
        datasets = mix_datasets(self.resolve_mix(singer), self.model.stats)
        for dataset in datasets:
            if dataset not in self._stats_cache:
                self._stats_cache[dataset] = MelStats.from_dict(self.model.stats["mel"][dataset])
        if len(datasets) == 1:
            return self._stats_cache[next(iter(datasets))]
        return blend_mel_stats([(self._stats_cache[dataset], weight) for dataset, weight in datasets.items()])

    # ------------------------------------------------------------------ 1. input

    def load(self, audio: AudioInput) -> np.ndarray:
        """Any input -> ``(N,)`` float32 at 24 kHz (the loader's :class:`AudioError` on bad input).

        ``audio``: a path or the file's bytes (:func:`comosvc.audio.load_audio`); a
        1-D array of samples at 24 kHz; or ``(sample_rate, samples)`` with samples
        ``(N,)`` or ``(N, channels)``, float or integer PCM (what Gradio gives).
        Samples are checked like a file (:func:`comosvc.audio.audio_from_samples`).
        """
        sr = self.sample_rate
        max_seconds = self.config.audio.max_duration
        if isinstance(audio, (str, Path, bytes, bytearray)) or hasattr(audio, "read"):
            return load_audio(audio, sr, max_seconds=max_seconds)
        if isinstance(audio, tuple):
            if len(audio) != 2:
                raise ValueError("audio as a tuple must be (sample_rate, samples)")
            rate, samples = int(audio[0]), np.asarray(audio[1])
        else:
            rate, samples = sr, np.asarray(audio)
            if samples.ndim != 1:
                raise ValueError(
                    f"audio samples must be mono (N,) (or (N, channels) in a (rate, samples) tuple), got {samples.shape}"
                )
        return audio_from_samples(samples, rate, sr, max_seconds=max_seconds)

    def request(
        self,
        singer: SingerSpec,
        sampler: Sampler | str | None = None,
        steps: int | None = None,
        key: float | str = 0.0,
        loudness_match: bool | None = None,
        seed: int | None = None,
        index_ratio: float = 0.0,
    ) -> ConversionRequest:
        """The options of a call resolved (config defaults, a random seed) and checked, before any audio is read.

        ``sampler``/``steps``: as :meth:`resolve_sampler` takes them (the one place they are checked).
        A distilled pipeline loads its teacher here for the teacher sampler, so that error comes first too.
        ``index_ratio`` > 0 needs the model's timbre index for every singer of the mix (:meth:`timbre_index`).
        """
        inference = self.config.inference
        singer_key = self.resolve_mix(singer)
        sampler = self.resolve_sampler(sampler, steps)
        key = parse_key(key)
        self._acoustic_model(sampler)
        self.timbre_index(singer_key, index_ratio)
        return ConversionRequest(
            singer=singer_key,
            sampler=sampler,
            key=key,
            loudness_match=inference.loudness_match if loudness_match is None else loudness_match,
            seed=int(np.random.default_rng().integers(2**31)) if seed is None else int(seed),
            index_ratio=float(index_ratio),
        )

    def timbre_index(self, singer: SingerSpec, index_ratio: float):
        """The model's :class:`~comosvc.index.TimbreIndex` to blend ``singer`` with at ``index_ratio``; ``None`` at
        ratio 0. One-line errors: a ratio outside [0, 1], no index for the model or one of the singers, the ONNX runtime."""
        from comosvc.index import check_ratio, index_for

        if self.runtime == "onnx" and check_ratio(index_ratio) > 0:
            raise ValueError("The ONNX runtime converts without a timbre index: use the torch runtime (--runtime torch) "
                             "for an index ratio above 0.")
        model = getattr(self.model, "name_or_path", None)
        return index_for(getattr(self.model, "index", None), self.resolve_mix(singer).keys, index_ratio, model)

    # ------------------------------------------------------------------ 2. chunks

    def plan_chunks(self, wav: np.ndarray) -> list[Chunk]:
        """Chunks of the song ``(N,)`` cut at its silences (:mod:`comosvc.pipeline.chunks`); ``[]`` when all is silence."""
        cfg = self.config
        pieces = slice_audio(
            wav,
            cfg.audio.sample_rate,
            max_seconds=cfg.inference.max_chunk_seconds,
            min_seconds=0.0,
            silence_db=cfg.inference.silence_db,
            min_silence_seconds=cfg.inference.min_silence_seconds,
        )
        if not pieces:
            return []
        margin = int(round(cfg.inference.crossfade_seconds * cfg.audio.sample_rate / 2))
        return chunking.plan_chunks(len(wav), pieces, cfg.audio.hop_length, margin, min_samples=cfg.audio.n_fft)

    def pad_to_hops(self, wav: np.ndarray) -> np.ndarray:
        """``wav`` zero-padded to whole hops, ``(ceil(N / hop) * hop,)``: what the chunks index."""
        hop = self.config.audio.hop_length
        return np.pad(wav, (0, -(-len(wav) // hop) * hop - len(wav)))

    # ------------------------------------------------------------------ 3. F0 and key

    def song_f0(self, padded: np.ndarray, chunks: list[Chunk]) -> np.ndarray:
        """F0 ``(T,)`` Hz of the whole song from its sounding chunks (silent chunks: unvoiced, 0)."""
        hop = self.config.audio.hop_length
        per_chunk = [
            self.features.extract_batch([padded[c.start : c.end]], features=("f0",))[0]["f0"]
            if not c.silent
            else np.zeros((c.end - c.start) // hop, dtype=np.float32)
            for c in chunks
        ]
        return join_frames(chunks, per_chunk, hop)

    def key_shift(
        self, source_f0: np.ndarray, singer: SingerSpec, key: float | str
    ) -> tuple[np.ndarray, float, list[str]]:
        """``(shifted F0 (T,) Hz, semitones, warnings)``; ``key="auto"`` moves the source's median
        voiced F0 onto ``singer``'s, kept within the singer's 5th..95th percentiles (``stats.json``;
        :func:`~comosvc.pipeline.pitch.auto_key`); for a mix, the weighted geometric means of the
        singers' (:func:`~comosvc.pipeline.mix.mix_f0`)."""
        if key != "auto":
            return shift_f0(source_f0, float(key)), float(key), []
        mix = self.resolve_mix(singer)
        target = mix_f0(mix, self.model.stats)
        if target is None:
            raise ValueError(
                f"key='auto' needs the median F0 of {mix}, which the model's stats.json does not record; "
                "pass a key in semitones instead."
            )
        semitones = auto_key(source_f0, target, mix_f0_range(mix, self.model.stats))
        if semitones is None:
            return shift_f0(source_f0, 0.0), 0.0, ["No voiced frame found in the input: the automatic key shift is 0."]
        return shift_f0(source_f0, semitones), semitones, []

    # ------------------------------------------------------------------ 4. per batch of chunks

    def chunk_features(self, wavs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Content features of a batch of chunks ``(N_i,)``: energy, Whisper, ContentVec, one dict each."""
        return self.features.extract_batch(wavs, features=("energy", "whisper", "contentvec"))

    def acoustic(
        self,
        chunks: list[Chunk],
        feats: list[dict[str, np.ndarray]],
        f0: np.ndarray,
        singer: SingerSpec,
        seed: int,
        sampler: Sampler,
        index_ratio: float = 0.0,
    ) -> tuple[list[torch.Tensor], int]:
        """A batch of chunks -> ``([log mel (T_i, n_mels) per chunk], nfe)``.

        ``f0`` ``(T,)`` Hz is the song's conditioning F0; the noise is keyed to song
        frames (``seed``, ``sampler.noise_draws`` draws); ``sampler`` is a sampler object
        (:meth:`resolve_sampler`); the mel is denormalised with ``singer``'s dataset stats.
        ``index_ratio`` > 0 moves the batch's Whisper and ContentVec frames that far towards
        their neighbours in ``singer``'s timbre index (:meth:`~comosvc.index.TimbreIndex.blend_batch`).

        Precision (:attr:`dtype`): the batch goes in float32; the condition encoder casts
        the content features to the model's dtype (F0 and energy stay float32: they
        become bins), the sampler's arithmetic stays float32 around the denoiser
        network (:func:`~comosvc.precision.float32_io`), and the mels come out float32.
        """
        model = self._acoustic_model(sampler)
        n_mels = self.config.audio.n_mels
        batch, lengths = self._model_batch(chunks, feats, f0, singer)
        index = self.timbre_index(singer, index_ratio)
        if index is not None:  # on the pipeline's device: one matrix product per chunk of frames
            batch = index.blend_batch({k: v.to(self.device) for k, v in batch.items()}, self.resolve_mix(singer), index_ratio)
        noise = [self._noise(chunks, lengths, seed, k, n_mels) for k in range(sampler.noise_draws)]
        out = model.sample(batch, sampler=sampler, noise=noise)
        log_mel = self._mel_stats(singer).denormalize(out.mel.float())
        return [log_mel[row, :frames] for row, frames in enumerate(lengths)], out.nfe

    def vocode(self, log_mel: torch.Tensor) -> np.ndarray:
        """One chunk's log mel ``(T, n_mels)`` float32 -> its samples ``(N,)`` float32 (the vocoder
        casts the mel to its own dtype, :attr:`~comosvc.vocoders.Vocoder.dtype`)."""
        return self.vocoder(log_mel[None])[0].float().cpu().numpy()

    def _convert_chunks(
        self,
        padded: np.ndarray,
        n_samples: int,
        chunks: list[Chunk],
        f0s: list[np.ndarray],
        requests: Sequence[ConversionRequest],
        clock: StageClock,
        report: ProgressFn,
    ) -> tuple[list[SongJoiner], list[int]]:
        """Over the sounding chunks, batch by batch: the content features once, then for each request
        (its conditioning F0 in ``f0s``) the acoustic model and the vocoder, joined into its song."""
        sounding = [c for c in chunks if not c.silent]
        cfg = self.config
        songs = [SongJoiner(n_samples, cfg.audio.hop_length, cfg.audio.n_mels, fill=float(np.log(LOG_CLAMP))) for _ in requests]
        nfes, done = [0] * len(requests), 0
        for batch in length_batches(sounding, cfg.inference.batch_size):
            with clock("content"):
                feats = self.chunk_features([padded[c.start : c.end] for c in batch])
            for i, (request, f0, song) in enumerate(zip(requests, f0s, songs)):
                with clock.serving(i):
                    with clock("acoustic"):
                        mels, nfes[i] = self.acoustic(
                            batch, feats, f0, request.singer, request.seed, request.sampler, request.index_ratio
                        )
                    for chunk, mel in zip(batch, mels):
                        with clock("vocoder"):
                            wav = self.vocode(mel)
                        song.add(chunk, wav, mel.cpu().numpy())
                fraction = (done + len(batch) * (i + 1) / len(requests)) / len(sounding)
                report(fraction, f"{done + len(batch)}/{len(sounding)} chunks")
            done += len(batch)
        return songs, nfes

    # ------------------------------------------------------------------ conversion

    def __call__(
        self,
        audio: AudioInput,
        singer: SingerSpec,
        sampler: Sampler | str | None = None,
        steps: int | None = None,
        key: float | str = 0.0,
        loudness_match: bool | None = None,
        seed: int | None = None,
        progress: ProgressFn | None = None,
        index_ratio: float = 0.0,
    ) -> ConversionResult:
        """Convert ``audio`` to the voice of ``singer``.

        Args:
            audio: a path, file bytes, ``(N,)`` samples at 24 kHz or ``(sample_rate, samples)``.
            singer: ``"<dataset>_<singer>"`` or a bare singer name when unambiguous; or a mix,
                ``"alice:0.7,bob:0.3"`` or ``{"alice": 0.7, "bob": 0.3}`` (:mod:`comosvc.pipeline.mix`).
            sampler: ``"teacher"`` (diffusion) or ``"student"`` (consistency), or a sampler
                object (:class:`~comosvc.models.samplers.TeacherSampler`,
                :class:`~comosvc.models.samplers.StudentSampler`: it carries its steps); default
                the student of a distilled model, else the teacher.
            steps: sampling steps with a name; default ``inference.teacher_steps`` / ``student_steps``.
            key: semitones (``12`` = an octave up) or ``"auto"``.
            loudness_match: give the output the source's loudness envelope; default
                ``inference.loudness_match``.
            seed: noise seed (default: random; the one used is in ``result.seed``).
            progress: called as ``progress(fraction, description)``.
            index_ratio: in [0, 1], how far each frame's content vectors move towards their nearest
                neighbours in the singer's timbre index (:mod:`comosvc.index`); 0 (default) = no index.

        The options are checked first (:meth:`request`), then the conversion is the
        one-request case of :meth:`convert_many`.
        """
        request = self.request(singer, sampler, steps, key, loudness_match, seed, index_ratio)
        return self.convert_many(audio, [request], progress)[0]

    def convert_many(
        self,
        audio: AudioInput,
        requests: Sequence[ConversionRequest],
        progress: ProgressFn | None = None,
        around_stage: StageHook | None = None,
    ) -> list[ConversionResult]:
        """Convert ``audio`` for each of ``requests`` (built by :meth:`request`); one result per request, in order.

        The work that does not depend on a request is done once: loading, chunking, the F0
        and, per batch of chunks, the content features; then each request's key shift,
        acoustic model, vocoder, joining and loudness (per batch: the features once, then
        each request's acoustic model and vocoder, so memory stays bounded). Each result
        equals what ``pipe(audio, ...)`` gives for that request alone; its ``timings`` hold
        the shared ``content`` and ``f0`` seconds, its own ``acoustic`` and ``vocoder``
        seconds, and as ``total`` the cost it would have alone (the call's total less the
        other requests' acoustic and vocoder seconds). ``around_stage(stage)``: a context
        manager entered inside each stage block (:class:`~comosvc.pipeline.clock.StageClock`),
        for a measurement that needs to see the stages (the bench counts FLOPs per stage).
        """
        if not requests or not all(isinstance(r, ConversionRequest) for r in requests):
            raise ValueError("convert_many takes a non-empty list of requests: build each with pipe.request(singer, ...)")
        clock = StageClock(sync_device(self.device), requests=len(requests), around=around_stage)
        report = progress or (lambda fraction, desc: None)
        # 1. load
        wav = self.load(audio)
        # 2. plan chunks (an all-silent input is not converted)
        chunks = self.plan_chunks(wav)
        if not chunks:
            report(1.0, "silent input")
            return [self._silent_result(len(wav), request, clock, i) for i, request in enumerate(requests)]
        padded = self.pad_to_hops(wav)
        # 3. F0 of the song (shared), key shift per request
        report(0.0, "F0")
        with clock("f0"):
            source_f0 = self.song_f0(padded, chunks)
        shifted = [self.key_shift(source_f0, request.singer, request.key) for request in requests]
        for f0, _, warnings in shifted:  # notes no singer of the model was trained on
            beyond = notes_beyond_range(f0, self.model.stats.get("f0", {}))
            warnings.extend([beyond] if beyond else [])
        f0s = [f0 for f0, _, _ in shifted]
        # 4. per batch of chunks: content once, then each request's acoustic model and vocoder, joined with crossfades
        songs, nfes = self._convert_chunks(padded, len(wav), chunks, f0s, requests, clock, report)
        # 5. loudness, per request
        cfg = self.config.audio
        outs = [
            finish_loudness(song.audio.result(), wav, request.loudness_match, cfg.hop_length, cfg.win_length)
            for request, song in zip(requests, songs)
        ]
        return [
            ConversionResult(
                audio=out,
                mel=song.mel,
                f0=f0,
                nfe=nfe,
                timings=clock.wall(i),
                cpu_timings=clock.cpu(i),
                warnings=warnings,
                key=semitones,
                n_chunks=sum(not c.silent for c in chunks),
                chunks=chunks,
                **self._result_fields(request),
            )
            for i, (request, out, song, nfe, (f0, semitones, warnings)) in enumerate(zip(requests, outs, songs, nfes, shifted))
        ]

    def _result_fields(self, request: ConversionRequest) -> dict:
        return dict(
            sample_rate=self.sample_rate,
            singer=str(request.singer),
            sampler=request.sampler.name,
            steps=request.sampler.steps,
            seed=request.seed,
        )

    def _silent_result(
        self, n_samples: int, request: ConversionRequest, clock: StageClock, index: int = 0
    ) -> ConversionResult:
        """Silence out for a silent input, with a warning that says what to do if it was only quiet."""
        silence_db = self.config.inference.silence_db
        n_frames = -(-n_samples // self.config.audio.hop_length)
        return ConversionResult(
            audio=np.zeros(n_samples, dtype=np.float32),
            mel=np.full((n_frames, self.config.audio.n_mels), np.log(LOG_CLAMP), dtype=np.float32),
            f0=np.zeros(n_frames, dtype=np.float32),
            nfe=0,
            timings=clock.wall(index),
            cpu_timings=clock.cpu(index),
            warnings=[
                f"The input is silent (no part louder than {silence_db:g} dBFS), so the output is "
                "silence. If it is just very quiet, normalise it or lower inference.silence_db."
            ],
            key=0.0 if request.key == "auto" else float(request.key),
            **self._result_fields(request),
        )

    def _model_batch(
        self, chunks: list[Chunk], feats: list[dict[str, np.ndarray]], song_f0: np.ndarray, singer: SingerSpec
    ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Pad the chunks' features to one ``(B, T_max, ...)`` batch with a mask (the model batch of docs/design.md).

        One singer: ``speaker`` ``(B,)``; a mix of K singers: ``speaker`` ``(B, K)`` ids and
        ``speaker_weights`` ``(B, K)``.
        """
        hop = self.config.audio.hop_length
        lengths = [(c.end - c.start) // hop for c in chunks]
        longest = max(lengths)

        def stack(name: str) -> torch.Tensor:
            rows = []
            for item, frames in zip(feats, lengths):
                value = torch.from_numpy(np.asarray(item[name][:frames], dtype=np.float32))
                rows.append(torch.nn.functional.pad(value, (0, 0) * (value.ndim - 1) + (0, longest - frames)))
            return torch.stack(rows)

        f0 = torch.zeros(len(chunks), longest)
        for row, (chunk, frames) in enumerate(zip(chunks, lengths)):
            start = chunk.start // hop
            f0[row, :frames] = torch.from_numpy(song_f0[start : start + frames])
        batch = {
            "whisper": stack("whisper"),
            "contentvec": stack("contentvec"),
            "energy": stack("energy"),
            "f0": f0,
            "mask": torch.arange(longest)[None] < torch.tensor(lengths)[:, None],
            **self._speaker_batch(singer, len(chunks)),
        }
        return batch, lengths

    def _speaker_batch(self, singer: SingerSpec, batch_size: int) -> dict[str, torch.Tensor]:
        """The singer keys of the model batch: ``speaker`` ``(B,)``, or ``speaker``/``speaker_weights`` ``(B, K)``."""
        mix = self.resolve_mix(singer)
        ids = [int(self.model.singers[key]) for key in mix.keys]
        if mix.single is not None:
            return {"speaker": torch.full((batch_size,), ids[0], dtype=torch.long)}
        return {
            "speaker": torch.tensor([ids] * batch_size, dtype=torch.long),
            "speaker_weights": torch.tensor([list(mix.weights)] * batch_size, dtype=torch.float32),
        }

    def _noise(self, chunks: list[Chunk], lengths: list[int], seed: int, draw: int, n_mels: int) -> torch.Tensor:
        """Noise draw ``draw`` for a batch ``(B, T_max, n_mels)``: each row the song-frame noise of its chunk."""
        hop = self.config.audio.hop_length
        out = torch.zeros(len(chunks), max(lengths), n_mels)
        for row, (chunk, frames) in enumerate(zip(chunks, lengths)):
            out[row, :frames] = torch.from_numpy(frame_noise(seed, draw, chunk.start // hop, frames, n_mels))
        return out


# --------------------------------------------------------------------------- helpers


def _planned_features(features, as_planned: Callable):
    """``features`` with its content encoders as ``as_planned`` makes them (:meth:`ConversionPipeline.planned`): a
    shallow copy when that changes an encoder, so another pipeline sharing ``features`` keeps its own numerics."""
    encoders = {name: getattr(features, name, None) for name in ("whisper", "contentvec")}
    planned = {name: as_planned(enc) for name, enc in encoders.items() if enc is not None}
    if all(planned[name] is encoders[name] for name in planned):
        return features
    view = copy.copy(features)
    for name, encoder in planned.items():
        setattr(view, name, encoder)
    return view


def random_stats(config, singers: dict[str, int]) -> dict:
    """Plausible ``stats.json`` content for random-weight models: one dataset ``"random"``, 220 Hz singers.

    Mel min/max per bin (``config.audio.n_mels`` bins, natural-log mel) and F0
    median/p5/p95 in Hz per singer of ``singers``.
    """
    n_mels = config.audio.n_mels
    return {
        "mel": {"random": {"min": [float(np.log(LOG_CLAMP))] * n_mels, "max": [2.0] * n_mels}},
        "f0": {name: {"median": 220.0, "p5": 150.0, "p95": 400.0} for name in singers},
    }


def _random_features(config: ComoSVCConfig, device: torch.device, seed: int, dtype: torch.dtype):
    """A :class:`~comosvc.features.extract.FeatureExtractor` with random content encoders of ``content.whisper_dim``."""
    from comosvc.features.content import WHISPER_SIZES, ContentVecEncoder, WhisperContentEncoder
    from comosvc.features.extract import FeatureExtractor

    sizes = [name for name, size in WHISPER_SIZES.items() if size["d_model"] == config.content.whisper_dim]
    if not sizes:
        raise ValueError(
            f"no random content encoder size has whisper_dim={config.content.whisper_dim}; "
            f"known: { {name: size['d_model'] for name, size in WHISPER_SIZES.items()} }"
        )
    content = config.content
    whisper = WhisperContentEncoder.random(sizes[0], mode=content.whisper_mode, device=device, seed=seed, dtype=dtype)
    contentvec = ContentVecEncoder.random(sizes[0], layer=content.contentvec_layer, device=device, seed=seed, dtype=dtype)
    return FeatureExtractor(config, device=device, whisper=whisper, contentvec=contentvec, dtype=dtype)


def _load_vocoder(name: str, device: torch.device, config: ComoSVCConfig, fallback: bool):
    """``(vocoder, None)``; with ``fallback``, ``(Griffin-Lim, why)`` when ``name``'s files cannot be reached."""
    from comosvc.vocoders import GRIFFINLIM, VocoderNotFoundError, load_vocoder

    try:
        return load_vocoder(name, device=device, audio=config.audio), None
    except VocoderNotFoundError as err:
        if not fallback:
            raise
        logger.warning("%s\nFalling back to the Griffin-Lim vocoder (low quality).", err)
        return load_vocoder(GRIFFINLIM, device=device, audio=config.audio), str(err)


def _load_acoustic(model: str | Path, device: torch.device, runtime: str, teacher: str | None):
    """``(acoustic model, exported vocoder or None)`` of a model folder / Hub id (torch) or an ONNX export folder."""
    from comosvc.onnx.files import is_onnx_export

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if runtime == "torch":
        if is_onnx_export(model):
            raise ValueError(f"{model} is an ONNX export: run it with runtime='onnx' (--runtime onnx)")
        from comosvc.models import ComoSVC

        return ComoSVC.from_pretrained(str(model), map_location=str(device)), None
    if not is_onnx_export(model):
        raise ValueError(
            f"{model} is not an ONNX export. Export the distilled student first "
            f"(python -m comosvc export-onnx --model {model} --out DIR) and pass DIR, or use runtime='torch'."
        )
    if teacher is not None:
        raise ValueError("The ONNX runtime runs the one-step student only: drop the teacher, or use runtime='torch'.")
    from comosvc.onnx.runtime import load_onnx

    return load_onnx(model, device)


def apply_overrides(config: ComoSVCConfig, overrides: list[str] | None) -> ComoSVCConfig:
    """A copy of ``config`` with ``section.key=value`` overrides applied (strictly checked).

    The model and audio sections and ``content.whisper_mode`` are fixed by training: a model
    converts in the Whisper mode it was trained with (its content features differ between modes).
    """
    new = with_overrides(config, overrides)
    if new.model != config.model or new.audio != config.audio:
        raise ConfigError(
            "Overrides cannot change the model or audio sections of a trained model (its weights fix them); "
            "change inference, f0 or content settings only."
        )
    trained, asked = config.content.whisper_mode, new.content.whisper_mode
    if asked != trained:
        raise ConfigError(
            f"This model was trained with content.whisper_mode={trained}; the override asks for {asked}. "
            f"A model must convert in the Whisper mode it was trained with: drop the override, or retrain "
            f"with content.whisper_mode={asked} (configs/cpu.yaml trains unpadded)."
        )
    return new


__all__ = [
    "PEAK",
    "random_stats",
    "ConversionPipeline",
    "ConversionRequest",
    "ConversionResult",
    "StageClock",
    "apply_overrides",
]
