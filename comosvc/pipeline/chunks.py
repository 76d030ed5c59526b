"""Long songs in bounded pieces: chunk planning, crossfade joining, position-keyed noise.

A song of ``N`` samples is cut at silences (:func:`comosvc.slicer.slice_audio`
gives its sounding pieces) into chunks that each *own* a core ``[core_start,
core_end)`` of the output. Long silences become chunks of their own that are not
converted at all (their output is zeros), so a chunk the model sees holds at most
one sounding piece plus a little context. The model sees every chunk with
``margin`` extra samples of context on each side; neighbouring chunks therefore
overlap by ``2 * margin`` samples around each cut, and there the output fades
linearly from one chunk to the next (the weights sum to 1 at every sample).

All chunk edges are multiples of the hop (256 samples), so frame ``j`` of a chunk
is frame ``start // hop + j`` of the song. That lets the diffusion noise be drawn
per song frame (:func:`frame_noise`): a frame gets the same noise whichever chunk
it falls in, and chunked and unchunked conversion sample the same trajectories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Frames per independently seeded noise block (any value works; it only sets granularity).
NOISE_BLOCK_FRAMES = 64


@dataclass(frozen=True)
class Chunk:
    """One piece of a song; sample indices at the song's rate (24 kHz).

    ``[start, end)`` is fed to the model (the core plus context); ``[core_start,
    core_end)`` is the part of the output this chunk owns outside the crossfades.
    """

    start: int
    end: int
    core_start: int
    core_end: int
    silent: bool = False  # no sounding piece in the core: not converted, output zeros

    @property
    def n_samples(self) -> int:
        return self.end - self.start


def plan_chunks(
    n_samples: int, pieces: list[tuple[int, int]], hop: int, margin: int, min_samples: int = 0
) -> list[Chunk]:
    """Chunks covering ``[0, ceil(n_samples / hop) * hop)`` from the sounding ``pieces``.

    ``pieces`` are sorted, non-overlapping sample ranges of sound (the slicer's
    output). A silence between two pieces that is long enough to hold two
    crossfades becomes a silent chunk; a shorter one is cut in the middle. Leading
    and trailing silence likewise. Cuts are snapped to hop multiples and cuts that
    would leave a core shorter than ``2 * margin + hop`` (or ``min_samples``) are
    dropped, so crossfades never overlap each other and every chunk is long enough
    for the features (one n_fft). ``margin`` is rounded up to whole hops. The last
    chunk ends at the padded length: callers zero-pad the song to whole hops.
    """
    if n_samples <= 0:
        return []
    padded = math.ceil(n_samples / hop) * hop
    min_core = _min_core(hop, margin, min_samples)
    cuts: list[int] = []
    ends = [0] + [end for _, end in pieces]
    starts = [start for start, _ in pieces] + [padded]
    for gap_start, gap_end in zip(ends, starts):
        if gap_end - gap_start >= 2 * min_core or gap_start == 0 or gap_end == padded:
            cuts += [gap_start, gap_end]  # its own (silent) chunk; too-short edge chunks are dropped below
        else:
            cuts.append((gap_start + gap_end) // 2)
    return split_at(n_samples, cuts, hop, margin, pieces, min_samples)


def _min_core(hop: int, margin: int, min_samples: int) -> int:
    margin = math.ceil(margin / hop) * hop
    return max(2 * margin + hop, math.ceil(min_samples / hop) * hop)


def split_at(
    n_samples: int,
    cuts: list[int],
    hop: int,
    margin: int,
    pieces: list[tuple[int, int]] | None = None,
    min_samples: int = 0,
) -> list[Chunk]:
    """Chunks cut at ``cuts`` (sample indices, snapped to hops; see :func:`plan_chunks`).

    A chunk is ``silent`` when ``pieces`` is given and its core overlaps none of them.
    """
    padded = math.ceil(n_samples / hop) * hop
    margin = math.ceil(margin / hop) * hop
    min_core = _min_core(hop, margin, min_samples)
    bounds = [0]
    for cut in sorted(cuts):
        snapped = _snap(cut, hop)
        if snapped - bounds[-1] >= min_core and padded - snapped >= min_core:
            bounds.append(snapped)
    bounds.append(padded)
    chunks = []
    for core_start, core_end in zip(bounds[:-1], bounds[1:]):
        silent = pieces is not None and not any(
            _snap(s, hop) < core_end and _snap(e, hop) > core_start for s, e in pieces
        )
        chunks.append(
            Chunk(
                start=max(0, core_start - margin),
                end=min(padded, core_end + margin),
                core_start=core_start,
                core_end=core_end,
                silent=silent,
            )
        )
    return chunks


def _snap(sample: int, hop: int) -> int:
    return int(round(sample / hop)) * hop


def fade_in(n: int) -> np.ndarray:
    """A linear fade-in ``(n,)`` float32 sampled at sample centres, ``(k + 0.5) / n``: it and its
    mirror image sum to exactly 1, so a crossfade keeps the level."""
    return (np.arange(n, dtype=np.float32) + 0.5) / n


def crossfade_weights(chunk: Chunk) -> np.ndarray:
    """Per-sample weights ``(chunk.n_samples,)`` of ``chunk`` in the joined output.

    Linear ramps over ``[core_start - m, core_start + m)`` and ``[core_end - m,
    core_end + m)`` (``m`` = the context margin on that side); 1 elsewhere. The
    ramps of two neighbours are mirror images, so they sum to exactly 1.
    """
    weights = np.ones(chunk.n_samples, dtype=np.float32)
    left = chunk.core_start - chunk.start
    if left > 0:
        weights[: 2 * left] = fade_in(2 * left)
    right = chunk.end - chunk.core_end
    if right > 0:
        weights[-2 * right :] *= fade_in(2 * right)[::-1]
    return weights


class ChunkJoiner:
    """Accumulates converted chunks into one ``(n_samples,)`` float32 song with crossfades."""

    def __init__(self, n_samples: int, hop: int):
        self.n_samples = n_samples
        self._buffer = np.zeros(math.ceil(n_samples / hop) * hop, dtype=np.float32)

    def add(self, chunk: Chunk, wav: np.ndarray) -> None:
        """Add the converted samples of ``chunk``; ``wav`` may be shorter (zero-padded) or longer (cut)."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)[: chunk.n_samples]
        weights = crossfade_weights(chunk)[: len(wav)]
        self._buffer[chunk.start : chunk.start + len(wav)] += weights * wav

    def result(self) -> np.ndarray:
        """The joined song, exactly ``n_samples`` long."""
        return self._buffer[: self.n_samples].copy()


def core_frames(chunk: Chunk, values: np.ndarray, hop: int) -> np.ndarray:
    """The frames of ``chunk``'s core out of its per-frame array ``(T_chunk, ...)``: song frames
    ``core_start // hop .. core_end // hop``."""
    offset = (chunk.core_start - chunk.start) // hop
    return values[offset : offset + (chunk.core_end - chunk.core_start) // hop]


def join_frames(chunks: list[Chunk], frames: list[np.ndarray], hop: int) -> np.ndarray:
    """Per-frame arrays ``(T_i, ...)`` of the chunks -> one ``(T, ...)`` array for the song.

    Each song frame is taken from the chunk that owns it (its core); no blending.
    """
    return np.concatenate([core_frames(chunk, values, hop) for chunk, values in zip(chunks, frames)], axis=0)


class SongJoiner:
    """The converted song, built chunk by chunk in any order.

    Audio ``(n_samples,)`` is crossfaded (:class:`ChunkJoiner`); the log mel
    ``(ceil(n_samples / hop), n_mels)`` takes each frame from the chunk that owns it,
    and frames of chunks never added (silence) stay ``fill``.
    """

    def __init__(self, n_samples: int, hop: int, n_mels: int, fill: float):
        self.hop = hop
        self.audio = ChunkJoiner(n_samples, hop)
        self.mel = np.full((math.ceil(n_samples / hop), n_mels), fill, dtype=np.float32)

    def add(self, chunk: Chunk, wav: np.ndarray, mel: np.ndarray) -> None:
        """Add one converted chunk: ``wav`` ``(N_chunk,)`` and its log mel ``(T_chunk, n_mels)``."""
        self.audio.add(chunk, wav)
        self.mel[chunk.core_start // self.hop : chunk.core_end // self.hop] = core_frames(chunk, mel, self.hop)


def length_batches(chunks: list[Chunk], size: int) -> list[list[Chunk]]:
    """``chunks`` in batches of at most ``size``, of similar length (less padding), shortest first."""
    order = sorted(chunks, key=lambda c: c.n_samples)
    size = max(1, size)
    return [order[i : i + size] for i in range(0, len(order), size)]


def frame_noise(seed: int, stream: int, start_frame: int, n_frames: int, n_mels: int) -> np.ndarray:
    """Standard normal noise ``(n_frames, n_mels)`` float32 for song frames ``start_frame ...``.

    Frame ``f`` of stream ``stream`` always gets the same values for a given seed,
    whatever range is asked for: noise is drawn in blocks of
    :data:`NOISE_BLOCK_FRAMES` frames, block ``b`` from the generator seeded with
    ``(seed, stream, b)``. Use one stream per noise draw of a sampler (the initial
    noise, then one per re-noising step). Memory is proportional to the range asked.
    """
    if n_frames <= 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    first = start_frame // NOISE_BLOCK_FRAMES
    last = (start_frame + n_frames - 1) // NOISE_BLOCK_FRAMES
    blocks = [
        np.random.default_rng([seed, stream, block]).standard_normal((NOISE_BLOCK_FRAMES, n_mels), dtype=np.float32)
        for block in range(first, last + 1)
    ]
    noise = np.concatenate(blocks, axis=0)
    offset = start_frame - first * NOISE_BLOCK_FRAMES
    return noise[offset : offset + n_frames]


__all__ = [
    "Chunk",
    "ChunkJoiner",
    "NOISE_BLOCK_FRAMES",
    "SongJoiner",
    "core_frames",
    "crossfade_weights",
    "frame_noise",
    "join_frames",
    "length_batches",
    "plan_chunks",
    "split_at",
]
