"""A vocoder run on several CPU cores at once: the mel cut into overlapping segments, joined without seams.

On a CPU, one vocoder call with torch's intra-op threads leaves much of the second
core idle (BigVGAN's many element-wise ops split badly: on a 2-core machine 2 threads
cost 2.3x the CPU seconds of 1 thread for 1.1x the speed). :class:`ParallelVocoder`
instead cuts the log mel ``(B, T, n_mels)`` along time into ``workers`` segments (or
segments of ``segment_frames``), vocodes them at the same time in worker threads with
ONE intra-op thread each (torch releases the GIL inside its ops), and joins them.

Joins: segment ``i`` owns the frames ``[s_i, e_i)`` and is vocoded with
``overlap_frames`` of context on each side; neighbours are crossfaded (linear, over
``overlap_frames // 2`` frames centred on the boundary), so every sample used has at
least ``3/4 * overlap_frames`` frames of real context. A convolutional vocoder's
receptive field is finite, so once that context covers it the joined waveform equals
one-piece vocoding (tests/test_vocoders_parallel.py measures the difference: with the
default 32 frames it is float rounding, under 1e-6 of the peak, on generators shaped
like BigVGAN v2 and v1; 16 frames suffice for v1, v2 needs 24); with less context the
crossfade hides what is left. The output is exactly
``T * hop_length`` samples, as from the wrapped vocoder.

    >>> fast = ParallelVocoder(load_vocoder(CPU_VOCODER, device="cpu"), workers=2)
    >>> wav = fast(log_mel)            # (B, T, 100) -> (B, T * 256)

:func:`prepare_vocoder` wraps a vocoder as a :class:`~comosvc.cpu_plan.CpuPlan`
says (workers, overlap, compile); the conversion pipeline calls it once, when built.
The workers are threads started then, each with ONE torch intra-op thread of its own:
no call changes the thread count of the caller or of the process.
"""

from __future__ import annotations

import logging
import math

import torch

from comosvc.cpu_plan import VOCODER_OVERLAP_FRAMES, CpuPlan, single_thread_workers
from comosvc.vocoders.base import Vocoder

logger = logging.getLogger(__name__)

DEFAULT_OVERLAP_FRAMES = VOCODER_OVERLAP_FRAMES  # the CPU plan's (comosvc/cpu_plan.py)


def segment_bounds(n_frames: int, segments: int) -> list[tuple[int, int]]:
    """``segments`` consecutive ``[start, end)`` frame ranges covering ``n_frames`` (sizes differ by 1 at most)."""
    segments = max(1, min(segments, n_frames))
    edges = [round(i * n_frames / segments) for i in range(segments + 1)]
    return [(edges[i], edges[i + 1]) for i in range(segments)]


class WrappedVocoder(Vocoder):
    """A vocoder around another one (:attr:`inner`): the same name, rates, device and dtype."""

    def __init__(self, vocoder: Vocoder):
        super().__init__(vocoder.name, vocoder.sample_rate, vocoder.hop_length, vocoder.n_mels)
        self.inner = vocoder

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype


class ParallelVocoder(WrappedVocoder):
    """``vocoder`` run on ``workers`` threads over overlapping time segments of the mel.

    Args:
        vocoder: any :class:`~comosvc.vocoders.base.Vocoder` whose output at a sample
            depends only on nearby frames (BigVGAN, HiFi-GAN-like generators; not
            Griffin-Lim, whose phase is global).
        workers: worker threads, started here, each with one torch intra-op thread
            (:func:`~comosvc.cpu_plan.single_thread_workers`; the calling thread's count
            is left as it was).
        overlap_frames: mel frames of context on each side of a segment; the crossfade
            spans half as many frames around each join.
        segment_frames: frames owned by one segment; default ``ceil(T / workers)``
            (one segment per worker). Inputs shorter than two segments' worth of
            context are vocoded in one piece.
    """

    def __init__(
        self,
        vocoder: Vocoder,
        workers: int = 2,
        overlap_frames: int = DEFAULT_OVERLAP_FRAMES,
        segment_frames: int | None = None,
    ):
        if workers < 1:
            raise ValueError(f"vocoder workers must be >= 1, got {workers}")
        if overlap_frames < 1:
            raise ValueError(f"vocoder overlap frames must be >= 1, got {overlap_frames}")
        if segment_frames is not None and segment_frames < 1:
            raise ValueError(f"vocoder segment frames must be >= 1, got {segment_frames}")
        super().__init__(vocoder)
        self.workers = int(workers)
        self.overlap_frames = int(overlap_frames)
        self.segment_frames = segment_frames
        self._pool = single_thread_workers(self.workers, name="vocoder")

    def __getstate__(self) -> dict:  # copy/pickle without the (unpicklable) thread pool
        return {**self.__dict__, "_pool": None}

    def __setstate__(self, state: dict) -> None:  # a copy gets workers of its own
        self.__dict__.update(state)
        self._pool = single_thread_workers(self.workers, name="vocoder")

    def extra_repr(self) -> str:
        return f"workers={self.workers}, overlap_frames={self.overlap_frames}, segment_frames={self.segment_frames}"

    def plan(self, n_frames: int) -> list[tuple[int, int]]:
        """The frames each segment owns, ``[(start, end)]``; one segment when splitting does not pay."""
        per = self.segment_frames or math.ceil(n_frames / self.workers)
        # a segment must own at least overlap_frames (more than its crossfades) so its two ramps do not meet
        segments = min(math.ceil(n_frames / max(per, 1)), n_frames // self.overlap_frames)
        if segments < 2:
            return [(0, n_frames)]
        return segment_bounds(n_frames, segments)

    def _vocode_one(self, log_mel: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread: a worker starts with it on
            return self.inner.vocode(log_mel)[:, : log_mel.shape[1] * self.hop_length]

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) -> (B, T * hop_length)."""
        n_frames = log_mel.shape[1]
        bounds = self.plan(n_frames)
        if len(bounds) == 1 or self.device.type != "cpu":
            return self._vocode_one(log_mel)
        context = self.overlap_frames
        pieces = [(max(0, s - context), min(n_frames, e + context)) for s, e in bounds]
        outputs = list(self._pool.map(self._vocode_one, [log_mel[:, a:b] for a, b in pieces]))
        return self.join(outputs, pieces, bounds, n_frames)

    def join(
        self,
        outputs: list[torch.Tensor],
        pieces: list[tuple[int, int]],
        bounds: list[tuple[int, int]],
        n_frames: int,
    ) -> torch.Tensor:
        """Segment waveforms ``(B, (b - a) * hop)`` of frames ``pieces`` -> the song ``(B, n_frames * hop)``.

        Each join at frame ``j`` is a linear crossfade over ``overlap_frames // 2`` frames
        centred on ``j``; elsewhere each sample comes from the segment owning it.
        """
        hop = self.hop_length
        first = outputs[0]
        out = first.new_zeros(first.shape[0], n_frames * hop)
        weight = first.new_zeros(n_frames * hop)
        half = max(self.overlap_frames // 2, 1) * hop // 2  # half the crossfade, in samples
        for wav, (a, b), (s, e) in zip(outputs, pieces, bounds):
            lo = s * hop - half if s > 0 else 0  # where this segment's weight starts rising
            hi = e * hop + half if e < n_frames else n_frames * hop
            ramp = torch.ones(hi - lo, dtype=wav.dtype, device=wav.device)
            if s > 0:
                ramp[: 2 * half] = torch.linspace(0.0, 1.0, 2 * half + 2, dtype=wav.dtype, device=wav.device)[1:-1]
            if e < n_frames:
                ramp[-2 * half :] = torch.linspace(1.0, 0.0, 2 * half + 2, dtype=wav.dtype, device=wav.device)[1:-1]
            out[:, lo:hi] += wav[:, lo - a * hop : hi - a * hop] * ramp
            weight[lo:hi] += ramp
        return out / weight  # the ramps of a join sum to 1; exact division keeps it so in float


class CompiledVocoder(WrappedVocoder):
    """``vocoder`` whose ``vocode`` runs through :func:`torch.compile` (dynamic shapes; the first calls compile, tens of seconds)."""

    def __init__(self, vocoder: Vocoder):
        super().__init__(vocoder)
        self._compiled = torch.compile(vocoder.vocode, dynamic=True)

    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) -> (B, T * hop_length)."""
        return self._compiled(log_mel)


def one_piece(vocoder: Vocoder) -> Vocoder:
    """The vocoder inside the :class:`ParallelVocoder` / :class:`CompiledVocoder` wrappers, run in one piece."""
    while isinstance(vocoder, WrappedVocoder):
        vocoder = vocoder.inner
    return vocoder


def prepare_vocoder(vocoder: Vocoder, plan: CpuPlan) -> Vocoder:
    """``vocoder`` wrapped as ``plan`` (a :class:`~comosvc.cpu_plan.CpuPlan`) says; ``vocoder`` itself is not changed.

    Only BigVGAN (a convolutional generator, finite receptive field) is compiled or
    segmented; other vocoders (Griffin-Lim's phase is global, ONNX runs in onnxruntime)
    are returned as they are. ``plan.compile``: a :class:`CompiledVocoder`;
    ``plan.vocoder_workers`` above 1 on a CPU: a :class:`ParallelVocoder` around it.
    """
    from comosvc.vocoders.bigvgan import BigVGANVocoder

    if not isinstance(vocoder, BigVGANVocoder):
        return vocoder
    if plan.compile:
        vocoder = CompiledVocoder(vocoder)
    if plan.device == "cpu" and plan.vocoder_workers > 1:
        vocoder = ParallelVocoder(vocoder, workers=plan.vocoder_workers, overlap_frames=plan.vocoder_overlap_frames)
    return vocoder


__all__ = ["DEFAULT_OVERLAP_FRAMES", "CompiledVocoder", "ParallelVocoder", "WrappedVocoder", "one_piece", "prepare_vocoder", "segment_bounds"]
