"""A streamed conversion against the offline conversion of the same input: level, mel distance, clicks.

    >>> live = StreamingConverter(pipe, "opensinger_0", block_seconds=0.5)
    >>> streamed = stream_all(live, wav)
    >>> quality = compare_with_offline(streamed, pipe(wav, "opensinger_0").audio, block_joins(live))
    >>> quality.mel_l1, quality.clicks
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from comosvc.streaming import StreamingConverter


@dataclass
class StreamQuality:
    """How a streamed conversion compares with the offline conversion of the same input.

    ``gain``: least-squares gain that brings the stream to the offline level (offline
    peak-normalises the song); ``mel_l1``: mean absolute difference of the natural-log
    mels (nats per bin) over frames at least ``guard`` samples from any join;
    ``mel_l1_joins``: the same over the frames near the joins; ``offline_mel_spread``:
    the mean absolute deviation of the offline log mel from its own mean (what a
    distance of "nothing in common" is of the order of); ``join_step``: the largest
    ``|x[n + 1] - x[n]|`` of the scaled stream at and inside the joins' crossfades;
    ``signal_step``: the largest such step of the scaled stream away from the joins;
    ``offline_step``: the largest step of the offline conversion.
    """

    gain: float
    mel_l1: float
    mel_l1_joins: float
    offline_mel_spread: float
    join_step: float
    signal_step: float
    offline_step: float
    joins: list[int] = field(default_factory=list)

    @property
    def clicks(self) -> bool:
        """A join steps further than the signal anywhere else: an audible click."""
        return self.join_step > self.signal_step


def block_joins(converter: StreamingConverter) -> list[int]:
    """Song sample positions where one block's output meets the next (after a run)."""
    return [t.start for t in converter.timings[1:]]


def compare_with_offline(
    streamed: np.ndarray,
    offline: np.ndarray,
    joins: list[int],
    audio=None,
    crossfade: int = 0,
    guard: int | None = None,
) -> StreamQuality:
    """Compare a streamed conversion ``(N,)`` with the offline one ``(N,)`` (both 24 kHz).

    ``joins``: song positions of the block joins (:func:`block_joins`); ``crossfade``:
    samples faded after each join (:attr:`~comosvc.streaming.StreamingConverter.crossfade`); ``guard``:
    samples on each side of a join (plus the crossfade) left out of the "away from
    the joins" numbers, default one n_fft. ``audio``: the
    :class:`~comosvc.config.AudioConfig` of the mel (default the project's).
    """
    from comosvc.config import AudioConfig
    from comosvc.features.mel import LOG_CLAMP, MelSpectrogram

    audio = audio or AudioConfig()
    streamed = np.asarray(streamed, dtype=np.float64)
    offline = np.asarray(offline, dtype=np.float64)
    if streamed.shape != offline.shape or streamed.ndim != 1:
        raise ValueError(f"streamed {streamed.shape} and offline {offline.shape} must both be (N,) and equally long")
    guard = audio.n_fft if guard is None else guard
    gain = float(np.dot(streamed, offline) / max(np.dot(streamed, streamed), 1e-12))
    scaled = streamed * gain

    near = np.zeros(len(scaled), dtype=bool)  # samples near a join
    for join in joins:
        near[max(0, join - guard) : join + crossfade + guard] = True
    mel = MelSpectrogram(audio)
    log_s = mel(torch.from_numpy(scaled.astype(np.float32))).numpy()
    log_o = mel(torch.from_numpy(offline.astype(np.float32))).numpy()
    n_frames = min(len(log_s), len(log_o))
    centres = np.minimum(np.arange(n_frames) * audio.hop_length + audio.hop_length // 2, len(scaled) - 1)
    frame_near = near[centres]
    floor = float(np.log(LOG_CLAMP))
    diff = np.abs(np.maximum(log_s[:n_frames], floor) - np.maximum(log_o[:n_frames], floor)).mean(axis=1)

    steps = np.abs(np.diff(scaled))
    at_join = np.zeros(len(steps), dtype=bool)
    for join in joins:  # the steps into, across and out of each crossfade
        at_join[max(0, join - 1) : join + crossfade + 1] = True
    away = ~near[:-1]
    return StreamQuality(
        gain=gain,
        mel_l1=float(diff[~frame_near].mean()) if (~frame_near).any() else float("nan"),
        mel_l1_joins=float(diff[frame_near].mean()) if frame_near.any() else float("nan"),
        offline_mel_spread=float(np.abs(log_o - log_o.mean()).mean()),
        join_step=float(steps[at_join].max()) if at_join.any() else 0.0,
        signal_step=float(steps[away].max()) if away.any() else 0.0,
        offline_step=float(np.abs(np.diff(offline)).max()) if len(offline) > 1 else 0.0,
        joins=list(joins),
    )


__all__ = ["StreamQuality", "block_joins", "compare_with_offline"]
