"""ConversionPipeline: a recording of singing in, the same song sung by a trained singer out.

    >>> pipe = ConversionPipeline.from_pretrained("user/comosvc-student")   # Hub id or folder
    >>> result = pipe("song.wav", singer="opensinger_0", key="auto")
    >>> save_audio("out.wav", result.audio, result.sample_rate)

What a call does, in order (timed per stage in ``result.timings``):

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
   around its cuts (``inference.crossfade_seconds``).
5. Optionally match the frame-RMS loudness envelope of the source, then
   peak-normalise: the song is scaled so its largest sample is :data:`PEAK` (0.9,
   the reference's level); with loudness matching it keeps the source's level and
   is only scaled down if it would clip.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Union

import numpy as np
import torch

from comosvc.audio import (
    MIN_SECONDS,
    EmptyAudioError,
    NonFiniteAudioError,
    TooLongError,
    TooShortError,
    load_audio,
    resample,
)
from comosvc.config import ComoSVCConfig, ConfigError, with_overrides
from comosvc.features.mel import LOG_CLAMP, MelStats
from comosvc.pipeline.chunks import Chunk, ChunkJoiner, frame_noise, join_frames, plan_chunks
from comosvc.pipeline.loudness import match_loudness, peak_normalise
from comosvc.pipeline.pitch import auto_key, parse_key, shift_f0
from comosvc.pipeline.singers import resolve_singer, singer_dataset, singer_f0_median
from comosvc.slicer import slice_audio

if TYPE_CHECKING:
    from comosvc.vocoders import Vocoder

logger = logging.getLogger(__name__)

PEAK = 0.9  # peak level of the output without loudness matching (the reference's volume peak)
CLIP_PEAK = 0.99  # with loudness matching, scale down only above this

AudioInput = Union[str, Path, bytes, np.ndarray, tuple]
# progress(fraction of the conversion done in [0, 1], what is happening)
ProgressFn = Callable[[float, str], None]
Sampler = Literal["teacher", "student"]


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
    steadier than wall time on a shared machine).
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


class StageClock:
    """Accumulates wall-clock and process CPU seconds per stage; ``total`` runs from creation.

    >>> clock = StageClock()
    >>> with clock("vocoder"):
    ...     pass
    >>> clock.wall()["vocoder"] >= 0
    True
    """

    STAGES = ("content", "f0", "acoustic", "vocoder")

    def __init__(self):
        self._wall = dict.fromkeys(self.STAGES, 0.0)
        self._cpu = dict.fromkeys(self.STAGES, 0.0)
        self._start = (time.perf_counter(), time.process_time())

    @contextmanager
    def __call__(self, stage: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._wall[stage] += time.perf_counter() - wall
            self._cpu[stage] += time.process_time() - cpu

    def wall(self) -> dict[str, float]:
        return {**self._wall, "total": time.perf_counter() - self._start[0]}

    def cpu(self) -> dict[str, float]:
        return {**self._cpu, "total": time.process_time() - self._start[1]}


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
    """

    def __init__(
        self,
        model,
        features,
        vocoder,
        config: ComoSVCConfig | None = None,
        teacher: str | None = None,
        device: str | torch.device | None = None,
    ):
        self.model = model.eval()
        self.features = features
        self.vocoder = vocoder
        self.config = config or model.config
        self.device = _device(device)
        self.teacher_source = teacher if teacher is not None else (model.distilled_from if model.distilled else None)
        self._teacher = None if model.distilled else model
        self._stats_cache: dict[str, MelStats] = {}

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
        """
        from comosvc.features.extract import FeatureExtractor
        from comosvc.models import ComoSVC
        from comosvc.vocoders import load_vocoder

        device = _device(device)
        acoustic = ComoSVC.from_pretrained(str(model), map_location=str(device))
        config = apply_overrides(acoustic.config, overrides)
        acoustic.config = config
        features = FeatureExtractor(config, device=device)
        if isinstance(vocoder, torch.nn.Module):
            voc = vocoder.to(device).eval()
        else:
            name = vocoder or config.inference.vocoder
            voc = load_vocoder(name, device=device, audio=config.audio, fallback=vocoder_fallback)
        return cls(acoustic, features, voc, config=config, teacher=teacher, device=device)

    @classmethod
    def from_config(
        cls,
        config: ComoSVCConfig,
        random_weights: bool = True,
        vocoder: str | None = None,
        device: str | torch.device | None = None,
        singers: dict[str, int] | None = None,
        stats: dict | None = None,
        distilled: bool = False,
        seed: int = 0,
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
        """
        if not random_weights:
            raise ValueError("from_config builds random weights; load trained ones with from_pretrained")
        from comosvc.features.content import WHISPER_SIZES, ContentVecEncoder, WhisperContentEncoder
        from comosvc.features.extract import FeatureExtractor
        from comosvc.models import ComoSVC
        from comosvc.vocoders import random_vocoder

        device = _device(device)
        sizes = [name for name, size in WHISPER_SIZES.items() if size["d_model"] == config.content.whisper_dim]
        if not sizes:
            raise ValueError(
                f"no random content encoder size has whisper_dim={config.content.whisper_dim}; "
                f"known: { {name: size['d_model'] for name, size in WHISPER_SIZES.items()} }"
            )
        whisper = WhisperContentEncoder.random(sizes[0], mode=config.content.whisper_mode, device=device, seed=seed)
        contentvec = ContentVecEncoder.random(sizes[0], layer=config.content.contentvec_layer, device=device, seed=seed)
        features = FeatureExtractor(config, device=device, whisper=whisper, contentvec=contentvec)

        singers = singers or {"random_0": 0}
        if stats is None:
            n_mels = config.audio.n_mels
            stats = {
                "mel": {"random": {"min": [float(np.log(LOG_CLAMP))] * n_mels, "max": [2.0] * n_mels}},
                "f0": {name: {"median": 220.0, "p5": 150.0, "p95": 400.0} for name in singers},
            }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            acoustic = ComoSVC(config, singers=singers, stats=stats, distilled=distilled)
        acoustic = acoustic.to(device).eval()

        voc = random_vocoder(vocoder or config.inference.vocoder, config.audio, seed)
        return cls(acoustic, features, voc.to(device).eval(), config=config, device=device)

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

    def check_sampler(self, sampler: str | None, steps: int | None = None) -> str:
        """Validate ``sampler``/``steps``; ``None`` picks the student of a distilled model, else the teacher."""
        sampler = sampler or ("student" if self.model.distilled else "teacher")
        if sampler not in ("teacher", "student"):
            raise ValueError(f"sampler must be 'teacher' or 'student', got {sampler!r}")
        if sampler == "student" and not self.model.distilled:
            raise ValueError(
                "This model is a diffusion teacher: it has no consistency student. Use sampler='teacher', or "
                "distil it first (train/distill.py) and load the distilled model."
            )
        if sampler == "teacher" and self._teacher is None and not self.teacher_source:
            raise ValueError(
                "This distilled model does not record its teacher (distilled_from is empty): pass "
                "teacher=<Hub id or folder of the teacher> to ConversionPipeline.from_pretrained (--teacher on the CLI)."
            )
        if steps is not None:
            if steps < 1:
                raise ValueError(f"steps must be at least 1, got {steps}")
            if sampler == "student" and steps > self.config.model.cd_steps:
                raise ValueError(f"the student samples in 1..{self.config.model.cd_steps} steps (1-4 typical), got {steps}")
        return sampler

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

    def _acoustic_model(self, sampler: str):
        return self.teacher() if sampler == "teacher" else self.model

    def _mel_stats(self, singer: str) -> MelStats:
        dataset = singer_dataset(singer, self.model.stats)
        if dataset not in self._stats_cache:
            self._stats_cache[dataset] = MelStats.from_dict(self.model.stats["mel"][dataset])
        return self._stats_cache[dataset]

    # ------------------------------------------------------------------ input

    def load(self, audio: AudioInput) -> np.ndarray:
        """Any input -> ``(N,)`` float32 at 24 kHz (the loader's :class:`AudioError` on bad input).

        ``audio``: a path or the file's bytes (:func:`comosvc.audio.load_audio`); a
        1-D array of samples at 24 kHz; or ``(sample_rate, samples)`` with samples
        ``(N,)`` or ``(N, channels)``, float or integer PCM (what Gradio gives).
        """
        sr = self.sample_rate
        max_seconds = self.config.audio.max_duration
        if isinstance(audio, (str, Path, bytes, bytearray)) or hasattr(audio, "read"):
            return load_audio(audio, sr, max_seconds=max_seconds)
        if isinstance(audio, tuple):
            if len(audio) != 2:
                raise ValueError("audio as a tuple must be (sample_rate, samples)")
            rate, samples = int(audio[0]), np.asarray(audio[1])
            if np.issubdtype(samples.dtype, np.integer):
                samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
            if samples.ndim == 2:
                samples = samples.mean(axis=1)
        else:
            rate, samples = sr, np.asarray(audio)
        if samples.ndim != 1:
            raise ValueError(f"audio samples must be mono (N,) (or (N, channels) in a (rate, samples) tuple), got {samples.shape}")
        if samples.size == 0:
            raise EmptyAudioError("The audio holds no samples.")
        samples = samples.astype(np.float32, copy=False)
        if not np.isfinite(samples).all():
            raise NonFiniteAudioError("The audio contains NaN or infinite samples.")
        duration = len(samples) / rate
        if duration < MIN_SECONDS:
            raise TooShortError(
                f"The audio lasts {duration * 1000:.1f} ms, shorter than one analysis frame ({MIN_SECONDS * 1000:.1f} ms)."
            )
        if duration > max_seconds:
            raise TooLongError(
                f"The audio lasts {duration:.1f} s, more than the maximum of {max_seconds:.0f} s. "
                "Cut it into shorter pieces or raise audio.max_duration."
            )
        return resample(samples, rate, sr)

    # ------------------------------------------------------------------ conversion

    def __call__(
        self,
        audio: AudioInput,
        singer: str,
        sampler: Sampler | None = None,
        steps: int | None = None,
        key: float | str = 0.0,
        loudness_match: bool | None = None,
        seed: int | None = None,
        progress: ProgressFn | None = None,
    ) -> ConversionResult:
        """Convert ``audio`` to the voice of ``singer``.

        Args:
            audio: a path, file bytes, ``(N,)`` samples at 24 kHz or ``(sample_rate, samples)``.
            singer: ``"<dataset>_<singer>"`` or a bare singer name when unambiguous.
            sampler: ``"teacher"`` (diffusion) or ``"student"`` (consistency); default the
                student of a distilled model, else the teacher.
            steps: sampling steps; default ``inference.teacher_steps`` / ``student_steps``.
            key: semitones (``12`` = an octave up) or ``"auto"``.
            loudness_match: give the output the source's loudness envelope; default
                ``inference.loudness_match``.
            seed: noise seed (default: random; the one used is in ``result.seed``).
            progress: called as ``progress(fraction, description)``.
        """
        clock = StageClock()
        cfg = self.config
        hop, sr, n_mels = cfg.audio.hop_length, cfg.audio.sample_rate, cfg.audio.n_mels
        warnings: list[str] = []
        report = progress or (lambda fraction, desc: None)

        singer_key = self.resolve_singer(singer)
        sampler = self.check_sampler(sampler, steps)
        key = parse_key(key)
        loudness_match = cfg.inference.loudness_match if loudness_match is None else loudness_match
        seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        model = self._acoustic_model(sampler)
        steps = steps or (cfg.inference.teacher_steps if sampler == "teacher" else cfg.inference.student_steps)

        wav = self.load(audio)
        n = len(wav)
        n_frames = -(-n // hop)
        padded = np.pad(wav, (0, n_frames * hop - n))
        pieces = slice_audio(
            wav,
            sr,
            max_seconds=cfg.inference.max_chunk_seconds,
            min_seconds=0.0,
            silence_db=cfg.inference.silence_db,
            min_silence_seconds=cfg.inference.min_silence_seconds,
        )
        common = dict(sample_rate=sr, singer=singer_key, sampler=sampler, steps=steps, seed=seed)
        if not pieces:
            warnings.append(
                f"The input is silent (no part louder than {cfg.inference.silence_db:g} dBFS), so the output is "
                "silence. If it is just very quiet, normalise it or lower inference.silence_db."
            )
            report(1.0, "silent input")
            return ConversionResult(
                audio=np.zeros(n, dtype=np.float32),
                mel=np.full((n_frames, n_mels), np.log(LOG_CLAMP), dtype=np.float32),
                f0=np.zeros(n_frames, dtype=np.float32),
                nfe=0,
                timings=clock.wall(),
                cpu_timings=clock.cpu(),
                warnings=warnings,
                key=0.0 if key == "auto" else float(key),
                **common,
            )
        margin = int(round(cfg.inference.crossfade_seconds * sr / 2))
        chunks = plan_chunks(n, pieces, hop, margin, min_samples=cfg.audio.n_fft)
        sounding = [c for c in chunks if not c.silent]

        # F0 of every sounding chunk, joined into the song's track (silent chunks: unvoiced).
        report(0.0, "F0")
        with clock("f0"):
            chunk_f0 = [
                self.features.extract_batch([padded[c.start : c.end]], features=("f0",))[0]["f0"]
                if not c.silent
                else np.zeros((c.end - c.start) // hop, dtype=np.float32)
                for c in chunks
            ]
            source_f0 = join_frames(chunks, chunk_f0, hop)
            del chunk_f0

        if key == "auto":
            target = singer_f0_median(singer_key, self.model.stats)
            if target is None:
                raise ValueError(
                    f"key='auto' needs the median F0 of {singer_key}, which the model's stats.json does not record; "
                    "pass a key in semitones instead."
                )
            semitones = auto_key(source_f0, target)
            if semitones is None:
                warnings.append("No voiced frame found in the input: the automatic key shift is 0.")
                semitones = 0.0
        else:
            semitones = float(key)
        song_f0 = shift_f0(source_f0, semitones)

        stats = self._mel_stats(singer_key)
        speaker = int(self.model.singers[singer_key])
        n_draws = model.noise_draws(sampler, steps)
        joiner = ChunkJoiner(n, hop)
        song_mel = np.full((n_frames, n_mels), np.log(LOG_CLAMP), dtype=np.float32)
        nfe = 0
        # Batches of chunks of similar length: less padding. Any order works for the joiner.
        order = sorted(sounding, key=lambda c: c.n_samples)
        size = max(1, cfg.inference.batch_size)
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        done = 0
        for batch_chunks in batches:
            wavs = [padded[c.start : c.end] for c in batch_chunks]
            with clock("content"):
                feats = self.features.extract_batch(wavs, features=("energy", "whisper", "contentvec"))
            with clock("acoustic"):
                batch, lengths = self._model_batch(batch_chunks, feats, song_f0, speaker)
                noise = [self._noise(batch_chunks, lengths, seed, k, n_mels) for k in range(n_draws)]
                out = model.sample(batch, steps=steps, sampler=sampler, noise=noise)
                nfe = out.nfe
                log_mel = stats.denormalize(out.mel.float())

            for row, (chunk, frames) in enumerate(zip(batch_chunks, lengths)):
                mel = log_mel[row, :frames]
                with clock("vocoder"):
                    chunk_wav = self.vocoder(mel[None])[0].cpu().numpy()
                joiner.add(chunk, chunk_wav)
                first = chunk.core_start // hop
                offset = first - chunk.start // hop
                song_mel[first : chunk.core_end // hop] = mel[offset : offset + (chunk.core_end - chunk.core_start) // hop].cpu().numpy()
            done += len(batch_chunks)
            report(done / len(sounding), f"{done}/{len(sounding)} chunks")

        result = joiner.result()
        if loudness_match:
            result = match_loudness(result, wav, hop=hop, window=cfg.audio.win_length)
            peak = float(np.abs(result).max())
            if peak > CLIP_PEAK:
                result = peak_normalise(result, CLIP_PEAK)
        else:
            result = peak_normalise(result, PEAK)
        return ConversionResult(
            audio=result,
            mel=song_mel,
            f0=song_f0,
            nfe=nfe,
            timings=clock.wall(),
            cpu_timings=clock.cpu(),
            warnings=warnings,
            key=semitones,
            n_chunks=len(sounding),
            chunks=chunks,
            **common,
        )

    def _model_batch(
        self, chunks: list[Chunk], feats: list[dict[str, np.ndarray]], song_f0: np.ndarray, speaker: int
    ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Pad the chunks' features to one ``(B, T_max, ...)`` batch with a mask (DESIGN.md batch contract)."""
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
            "speaker": torch.full((len(chunks),), speaker, dtype=torch.long),
            "mask": torch.arange(longest)[None] < torch.tensor(lengths)[:, None],
        }
        return batch, lengths

    def _noise(self, chunks: list[Chunk], lengths: list[int], seed: int, draw: int, n_mels: int) -> torch.Tensor:
        """Noise draw ``draw`` for a batch ``(B, T_max, n_mels)``: each row the song-frame noise of its chunk."""
        hop = self.config.audio.hop_length
        out = torch.zeros(len(chunks), max(lengths), n_mels)
        for row, (chunk, frames) in enumerate(zip(chunks, lengths)):
            out[row, :frames] = torch.from_numpy(frame_noise(seed, draw, chunk.start // hop, frames, n_mels))
        return out


# --------------------------------------------------------------------------- helpers


def apply_overrides(config: ComoSVCConfig, overrides: list[str] | None) -> ComoSVCConfig:
    """A copy of ``config`` with ``section.key=value`` overrides applied (strictly checked)."""
    new = with_overrides(config, overrides)
    if new.model != config.model or new.audio != config.audio:
        raise ConfigError(
            "Overrides cannot change the model or audio sections of a trained model (its weights fix them); "
            "change inference, f0 or content settings only."
        )
    return new


def read_singer_tables(model: str | Path) -> tuple[dict[str, int], dict[str, Any]]:
    """``(singers, stats)`` of a model folder or Hub id, without loading its weights."""
    import json

    from comosvc.models.comosvc import CONFIG_FILE, SINGERS_FILE, STATS_FILE

    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{folder} is not a ComoSVC model folder ({CONFIG_FILE} missing).")
        paths = {name: folder / name for name in (SINGERS_FILE, STATS_FILE)}
    else:
        from huggingface_hub import hf_hub_download

        paths = {}
        for name in (SINGERS_FILE, STATS_FILE):
            try:
                paths[name] = Path(hf_hub_download(str(model), name))
            except Exception as err:  # offline, missing repo or file
                if name == STATS_FILE:
                    paths[name] = None
                    continue
                raise OSError(f"Could not read {name} of the model {model!r} ({type(err).__name__}: {err}).") from err
    if paths[SINGERS_FILE] is None or not paths[SINGERS_FILE].is_file():
        raise FileNotFoundError(f"{model} has no {SINGERS_FILE}: it is not a complete ComoSVC model.")
    singers = json.loads(paths[SINGERS_FILE].read_text())
    stats_path = paths.get(STATS_FILE)
    stats = json.loads(stats_path.read_text()) if stats_path is not None and stats_path.is_file() else {}
    return singers, stats


__all__ = ["PEAK", "ConversionPipeline", "ConversionResult", "apply_overrides", "read_singer_tables"]
