"""Live conversion with the one-step student: samples in as they come, converted samples out.

    >>> pipe = ConversionPipeline.from_pretrained("user/comosvc-student")
    >>> live = StreamingConverter(pipe, "opensinger_0", block_seconds=0.5, lookahead_seconds=0.1)
    >>> for piece in microphone():              # (n,) float32 at 24 kHz, any n
    ...     speaker.play(live.push(piece))      # converted samples ready now (often none)
    >>> speaker.play(live.flush())              # the tail: in total, as many samples as went in

The song is converted in blocks of ``block_seconds`` (whole hops of 256 samples).
Block ``k`` owns output samples ``[k B, (k + 1) B)`` and is converted as soon as
the input reaches ``(k + 1) B + L`` (``L`` = ``lookahead_seconds``), from a window
``[k B - C, (k + 1) B + L)`` (``C`` = ``context_seconds``, less at the start) run
through the pipeline's own stages: F0 and content features of the window
(:meth:`~comosvc.pipeline.ConversionPipeline.chunk_features`), the student
(:meth:`~comosvc.pipeline.ConversionPipeline.acoustic`, its noise keyed to song
frames by :func:`~comosvc.pipeline.chunks.frame_noise`, so a frame gets the same
noise wherever the blocks fall), and the vocoder over the whole window's mel
(:meth:`~comosvc.pipeline.ConversionPipeline.vocode`: the context and lookahead
frames give it context on both sides; only the block's samples are kept).
Each block is rendered ``crossfade_seconds`` past its end (into the lookahead),
and that tail is faded linearly into the next block's first samples, so the joins
do not click. A window quieter than ``inference.silence_db`` everywhere is not
converted (zeros out, as offline conversion leaves long silences).

Latency: output sample ``n`` is the conversion of input sample ``n``; it comes out
of the :meth:`~StreamingConverter.push` that brings the input to ``n +``
:attr:`~StreamingConverter.latency_samples` at the latest (the first sample of a
block exactly then). So a player that plays the output exactly ``block +
lookahead`` seconds behind the input (:attr:`~StreamingConverter.latency_seconds`)
never runs dry, given compute faster than real time, and no smaller delay would do.

Level: offline conversion peak-normalises the whole song to 0.9, which cannot be
done live (the loudest moment may come later). The stream applies a fixed
``gain`` (default 1: the vocoder's own level) and clips to [-1, 1].
:func:`comosvc.measure.streaming.compare_with_offline` therefore scales the stream by a least-squares gain
before comparing.

Key: semitones, or ``"auto"``: the offline ``"auto"`` shift
(:func:`~comosvc.pipeline.pitch.auto_key`: median onto the singer's, within the singer's
range) of the source's voiced F0 *so far* (the current window included), so the shift
settles as the song goes on and may differ from the offline ``"auto"`` (of the whole
song) in the first blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from comosvc.pipeline.clock import Timer, sync_device
from comosvc.pipeline.chunks import Chunk, fade_in
from comosvc.pipeline.pitch import parse_key, shift_f0

if TYPE_CHECKING:
    from comosvc.pipeline import ConversionPipeline

# voiced source F0 frames remembered for key="auto" (about 10 minutes at 93.75 frames/s)
AUTO_KEY_HISTORY_FRAMES = 60_000


class StreamingError(ValueError):
    """A streaming setting that cannot work; the message says what to use instead."""


class _FramesFrom:
    """A per-frame array known from song frame ``first`` on, indexed with song frames (``values[a:b]``).

    What :meth:`ConversionPipeline.acoustic` reads the conditioning F0 from: it slices
    ``f0[chunk.start // hop : ...]`` with song frames, and a stream only has the window's.
    """

    def __init__(self, values: np.ndarray, first: int):
        self.values, self.first = values, first

    def __getitem__(self, index: slice) -> np.ndarray:
        return self.values[index.start - self.first : index.stop - self.first]


@dataclass
class BlockTiming:
    """One converted block: its song position (samples), length (samples) and compute seconds."""

    start: int
    n_samples: int
    seconds: float
    skipped: bool = False  # silent window: not converted, zeros out


class StreamingConverter:
    """Converts a stream of 24 kHz samples block by block with the distilled student (module docstring).

    Args:
        pipe: a :class:`~comosvc.pipeline.ConversionPipeline` of a distilled student.
        singer: target singer, ``"<dataset>_<singer>"`` or an unambiguous bare name; or a mix of
            singers (``"alice:0.7,bob:0.3"`` or ``{"alice": 0.7, "bob": 0.3}``, :mod:`comosvc.pipeline.mix`).
        block_seconds: the output comes in blocks this long (rounded to whole hops; at least 4 hops).
        context_seconds: past input the features and the student see before each block.
        lookahead_seconds: future input they see after it (part of the latency).
        key: semitones or ``"auto"`` (running median, see the module docstring).
        seed: noise seed; with the same seed offline conversion draws the same noise per frame.
        steps: student steps (1 = one network evaluation per block); default ``inference.student_steps``.
        crossfade_seconds: length of the linear fade at each join; at most the lookahead minus
            a hop (the tail is rendered inside the lookahead).
        gain: fixed output gain (no peak normalisation is possible live).
        sampler: ``"student"`` or ``None`` (with ``steps``), or a
            :class:`~comosvc.models.samplers.StudentSampler`; the teacher is refused.
        index_ratio: in [0, 1], how far each block's content moves towards the singer's timbre
            index (:mod:`comosvc.index`, as in offline conversion); 0 = no index.
    """

    def __init__(
        self,
        pipe: ConversionPipeline,
        singer: str,
        block_seconds: float = 0.5,
        context_seconds: float = 1.0,
        lookahead_seconds: float = 0.1,
        key: float | str = 0.0,
        seed: int = 0,
        steps: int | None = None,
        crossfade_seconds: float = 0.02,
        gain: float = 1.0,
        sampler=None,
        index_ratio: float = 0.0,
    ):
        if not pipe.model.distilled:
            raise StreamingError(
                "Live conversion runs the one-step distilled student only, and this model is a diffusion "
                "teacher (tens of network evaluations per block would not keep up). Distil it first "
                "(train/distill.py) and stream the distilled model."
            )
        name = getattr(sampler, "name", sampler)
        if name not in (None, "student"):
            raise StreamingError(
                f"Live conversion runs the distilled student only (sampler='student'), not sampler={name!r}: "
                "the teacher's many steps would not keep up. Use offline conversion for the teacher."
            )
        self.pipe = pipe
        self._sync = sync_device(pipe.device)  # block times count queued GPU work
        self.request = pipe.request(singer, sampler=sampler or "student", steps=steps, key=parse_key(key), seed=seed,
                                    index_ratio=index_ratio)
        audio = pipe.config.audio
        self.sample_rate, self.hop = audio.sample_rate, audio.hop_length
        self.n_fft = audio.n_fft
        for name, value in (("block_seconds", block_seconds), ("context_seconds", context_seconds),
                            ("lookahead_seconds", lookahead_seconds), ("crossfade_seconds", crossfade_seconds)):
            if not (math.isfinite(value) and value >= 0):
                raise StreamingError(f"{name} must be a number of seconds >= 0, got {value}")
        self.block = self._hops(block_seconds)
        self.context = self._hops(context_seconds)
        self.lookahead = self._hops(lookahead_seconds)
        if self.block < 4 * self.hop:
            raise StreamingError(
                f"block_seconds={block_seconds} is too short: a block needs at least 4 hops "
                f"({4 * self.hop / self.sample_rate:.3f} s); 0.25-1 s is typical."
            )
        self.crossfade = int(round(crossfade_seconds * self.sample_rate))
        if self.crossfade > max(0, self.lookahead - self.hop):
            raise StreamingError(
                f"crossfade_seconds={crossfade_seconds} does not fit in lookahead_seconds={lookahead_seconds}: "
                "each block's fade-out tail is rendered from its lookahead, leaving the vocoder a hop of "
                f"context. Use a crossfade of at most {max(0, self.lookahead - self.hop) / self.sample_rate:.3f} s "
                "or a longer lookahead."
            )
        self.gain = float(gain)
        self.silence = 10.0 ** (pipe.config.inference.silence_db / 20.0)
        self.timings: list[BlockTiming] = []
        self.warnings: list[str] = []
        self.key_semitones = 0.0 if self.request.key == "auto" else float(self.request.key)
        self._buffer = np.zeros(0, dtype=np.float32)  # input samples from song position _buffer_start on
        self._buffer_start = 0
        self._received = 0  # input samples pushed so far
        self._next_block = 0  # song position of the next block to convert
        self._tail = np.zeros(0, dtype=np.float32)  # the last block rendered past its end, to fade out
        self._voiced: list[np.ndarray] = []  # voiced source F0 (Hz) of converted blocks, for key="auto"
        self._flushed = False

    def _hops(self, seconds: float) -> int:
        return int(round(seconds * self.sample_rate / self.hop)) * self.hop

    # ------------------------------------------------------------------ what it is

    @property
    def block_seconds(self) -> float:
        """The block length actually used (whole hops)."""
        return self.block / self.sample_rate

    @property
    def context_seconds(self) -> float:
        return self.context / self.sample_rate

    @property
    def lookahead_seconds(self) -> float:
        return self.lookahead / self.sample_rate

    @property
    def latency_samples(self) -> int:
        """``block + lookahead`` in samples: how far behind the input the output can play without running dry."""
        return self.block + self.lookahead

    @property
    def latency_seconds(self) -> float:
        """``block_seconds + lookahead_seconds`` (compute time comes on top)."""
        return self.block_seconds + self.lookahead_seconds

    @property
    def received(self) -> int:
        """Input samples pushed so far."""
        return self._received

    # ------------------------------------------------------------------ streaming

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add input samples ``(n,)`` float at 24 kHz (any ``n``, also 0); return the converted samples ready now.

        The returned array is a whole number of blocks (often empty); concatenated over all
        calls and :meth:`flush` it is the converted song, sample ``i`` for input sample ``i``.
        """
        if self._flushed:
            raise StreamingError("This stream was flushed; start a new StreamingConverter for the next one.")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise StreamingError(f"push() takes mono samples of shape (n,), got {samples.shape}")
        if not np.all(np.isfinite(samples)):
            raise StreamingError("push() got NaN or infinite samples; pass finite float samples in [-1, 1].")
        self._buffer = np.concatenate([self._buffer, samples])
        self._received += len(samples)
        out = []
        while self._received >= self._next_block + self.block + self.lookahead:
            out.append(self._convert_block(self.block, end_of_song=False))
        return _joined(out)

    def flush(self) -> np.ndarray:
        """Convert what is left (the input ends here); the output then totals exactly the input's length."""
        if self._flushed:
            return np.zeros(0, dtype=np.float32)
        out = []
        while self._next_block < self._received:
            out.append(self._convert_block(min(self.block, self._received - self._next_block), end_of_song=True))
        self._flushed = True
        return _joined(out)

    # ------------------------------------------------------------------ one block

    def _convert_block(self, n_samples: int, end_of_song: bool) -> np.ndarray:
        """Convert the block at ``_next_block`` (``n_samples`` long) and return its finished samples."""
        timer = Timer(sync=self._sync).start()
        start = self._next_block
        window_start = max(0, start - self.context)
        if end_of_song:  # the song's end, padded to whole hops as offline conversion pads it
            window_end = -(-self._received // self.hop) * self.hop
        else:
            window_end = start + self.block + self.lookahead
        wav = self._input(window_start, window_end)
        rendered_length = n_samples + self.crossfade  # the tail fades into the next block
        if np.max(np.abs(wav), initial=0.0) < self.silence:
            rendered = np.zeros(rendered_length, dtype=np.float32)
            skipped = True
        else:
            rendered = self._render(wav, window_start, start)[start - window_start :][:rendered_length]
            rendered = np.pad(rendered, (0, rendered_length - len(rendered)))
            skipped = False
        block = rendered[:n_samples].copy()
        fade = min(len(self._tail), n_samples)
        if fade:
            ramp = fade_in(fade)
            block[:fade] = self._tail[:fade] * (1 - ramp) + block[:fade] * ramp
        self._tail = rendered[n_samples:]
        self._next_block = start + n_samples
        self._drop_input_before(max(0, self._next_block - self.context))
        out = np.clip(block * self.gain, -1.0, 1.0).astype(np.float32)
        self.timings.append(BlockTiming(start, n_samples, timer.stop().wall, skipped))
        return out

    def _input(self, start: int, end: int) -> np.ndarray:
        """Input samples ``[start, end)`` of the song, zero-padded past what was received and to one n_fft."""
        wav = self._buffer[start - self._buffer_start : end - self._buffer_start]
        length = max(end - start, self.n_fft)
        length = -(-length // self.hop) * self.hop
        return np.pad(wav, (0, length - len(wav)))

    def _drop_input_before(self, position: int) -> None:
        drop = position - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start = position

    @torch.no_grad()
    def _render(self, wav: np.ndarray, window_start: int, block_start: int) -> np.ndarray:
        """One window ``(N,)`` (whole hops) starting at song sample ``window_start`` -> its converted samples ``(N,)``."""
        pipe, request = self.pipe, self.request
        source_f0 = pipe.features.extract_batch([wav], features=("f0",))[0]["f0"]
        first = (block_start - window_start) // self.hop
        f0 = self._key_shift(source_f0, source_f0[first : first + self.block // self.hop])
        feats = pipe.chunk_features([wav])
        chunk = Chunk(start=window_start, end=window_start + len(wav), core_start=window_start,
                      core_end=window_start + len(wav))
        frames = _FramesFrom(f0, window_start // self.hop)
        mels, _ = pipe.acoustic([chunk], feats, frames, request.singer, request.seed, request.sampler, request.index_ratio)
        return pipe.vocode(mels[0])[: len(wav)]

    def _key_shift(self, source_f0: np.ndarray, block_f0: np.ndarray) -> np.ndarray:
        """The window's conditioning F0 ``(T,)`` Hz: fixed semitones, or "auto" from the running median of the
        voiced F0 of the blocks so far and this window (``block_f0``: this block's own frames, remembered)."""
        if self.request.key != "auto":
            return shift_f0(source_f0, self.key_semitones)
        window_voiced = source_f0[source_f0 > 0]
        _, semitones, warnings = self.pipe.key_shift(np.concatenate([*self._voiced, window_voiced]),
                                                     self.request.singer, "auto")
        if not warnings:  # nothing voiced yet: keep the previous shift
            self.key_semitones = semitones
        elif not self.warnings:
            self.warnings.append("No voiced frame yet: the automatic key shift stays 0 until the singing starts.")
        self._voiced.append(block_f0[block_f0 > 0])
        while sum(len(v) for v in self._voiced) > AUTO_KEY_HISTORY_FRAMES:
            self._voiced.pop(0)
        return shift_f0(source_f0, self.key_semitones)


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def stream_all(converter: StreamingConverter, wav: np.ndarray, push_sizes: list[int] | None = None) -> np.ndarray:
    """Push ``wav`` ``(N,)`` through ``converter`` (in ``push_sizes`` pieces, cycled; default one block each),
    flush, and return the ``(N,)`` converted samples."""
    sizes = push_sizes or [converter.block]
    out, position, k = [], 0, 0
    while position < len(wav):
        size = max(1, int(sizes[k % len(sizes)]))
        out.append(converter.push(wav[position : position + size]))
        position += size
        k += 1
    out.append(converter.flush())
    return np.concatenate(out)


# --------------------------------------------------------------------------- input at other rates


class StreamResampler:
    """Resamples a stream of pieces from ``rate_in`` to ``rate_out`` Hz without clicks at the piece joins.

    A microphone gives 44.1 or 48 kHz in pieces; resampling each piece on its own would
    put edge artefacts at every join. This keeps its state between pieces: a low-pass
    FIR (when downsampling; ``scipy.signal.lfilter`` with carried state) and linear
    interpolation at the carried fractional position. Good enough for a live monitor;
    offline conversion uses the polyphase resampler of :func:`comosvc.audio.resample`.
    """

    def __init__(self, rate_in: int, rate_out: int, taps: int = 63):
        from scipy.signal import firwin

        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self.step = self.rate_in / self.rate_out  # input samples per output sample
        self._fir = firwin(taps, 0.9 * min(1.0, 1.0 / self.step)) if self.step > 1 else None
        self._zi = np.zeros(taps - 1) if self._fir is not None else None
        self._last = 0.0  # the previous piece's last (filtered) sample, input position -1
        self._position = 0.0  # next output sample's input position, relative to the current piece

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Input piece ``(n,)`` at ``rate_in`` -> ``(m,)`` float32 at ``rate_out`` (m about ``n / step``)."""
        from scipy.signal import lfilter

        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        if self.rate_in == self.rate_out or len(x) == 0:
            return x.astype(np.float32)
        if self._fir is not None:
            x, self._zi = lfilter(self._fir, 1.0, x, zi=self._zi)
        padded = np.concatenate([[self._last], x])  # index 0 = input position -1
        positions = np.arange(self._position, len(x) - 1 + 1e-9, self.step)
        out = np.interp(positions + 1, np.arange(len(padded)), padded)
        self._position = (positions[-1] + self.step - len(x)) if len(positions) else self._position - len(x)
        self._last = float(x[-1])
        return out.astype(np.float32)


__all__ = [
    "AUTO_KEY_HISTORY_FRAMES",
    "BlockTiming",
    "StreamResampler",
    "StreamingConverter",
    "StreamingError",
    "stream_all",
]
