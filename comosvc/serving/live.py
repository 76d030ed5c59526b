"""One visitor's live stream: microphone pieces in, the student's conversion out, block by block.

The Live tab streams with the library's defaults (:mod:`comosvc.streaming`): blocks of half a
second, 1 s of past context and 0.1 s of lookahead; latency = block + lookahead.

    session = LiveSession.start(pipe, "opensinger_0", key=0.0, rate=48000)
    out = session.push(piece)           # microphone samples at 48 kHz -> converted float32 at 24 kHz
    live_status(session)                # the tab's latency line
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comosvc.audio import to_mono_float32

LIVE_BLOCK_SECONDS = 0.5
LIVE_CONTEXT_SECONDS = 1.0
LIVE_LOOKAHEAD_SECONDS = 0.1


@dataclass
class LiveSession:
    """The converter, the microphone-rate resampler and the options they were made with
    (other options need a new session: :meth:`serves`)."""

    converter: object  # comosvc.streaming.StreamingConverter
    resampler: object  # comosvc.streaming.StreamResampler
    options: tuple  # (singer, key, microphone rate)

    @classmethod
    def start(cls, pipe, singer: str, key: float | str, rate: int) -> "LiveSession":
        """A new stream of ``pipe``'s student to ``singer`` at ``key`` (semitones or "auto") from a
        microphone at ``rate`` Hz. Raises ValueError / KeyError with a message for a visitor (a teacher
        model, an unknown singer)."""
        from comosvc.streaming import StreamingConverter, StreamResampler

        converter = StreamingConverter(
            pipe, singer, block_seconds=LIVE_BLOCK_SECONDS, context_seconds=LIVE_CONTEXT_SECONDS,
            lookahead_seconds=LIVE_LOOKAHEAD_SECONDS, key=key, seed=0,
        )
        return cls(converter, StreamResampler(int(rate), pipe.sample_rate), (singer, key, int(rate)))

    def serves(self, singer: str, key: float | str, rate: int) -> bool:
        """Whether this session was started with these options."""
        return self.options == (singer, key, int(rate))

    @property
    def sample_rate(self) -> int:
        return int(self.converter.sample_rate)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """A microphone piece (integer PCM or float, mono or ``(N, channels)``) -> the converted samples ready
        now, float32 at :attr:`sample_rate` (often empty: the output comes in whole blocks)."""
        return self.converter.push(self.resampler(to_mono_float32(samples)))

    def slowest_recent_block(self, blocks: int = 3) -> float | None:
        """Compute seconds of the slowest of the last ``blocks`` blocks; None before the first."""
        timings = self.converter.timings[-blocks:]
        return max(timing.seconds for timing in timings) if timings else None

    def keeps_up(self, blocks: int = 3) -> bool | None:
        """Whether the last ``blocks`` blocks each converted faster than they last; None before the first."""
        slowest = self.slowest_recent_block(blocks)
        return None if slowest is None else slowest < self.converter.block_seconds


def live_latency_text(block: float = LIVE_BLOCK_SECONDS, lookahead: float = LIVE_LOOKAHEAD_SECONDS) -> str:
    """The Live tab's latency line (Markdown): block + lookahead."""
    return (f"**Latency** {1000 * (block + lookahead):.0f} ms (block {1000 * block:.0f} ms + lookahead "
            f"{1000 * lookahead:.0f} ms), plus the time each block takes to convert and the network.")


def live_status(session: LiveSession) -> str:
    """The latency line, and whether the last blocks converted faster than real time."""
    text = live_latency_text(session.converter.block_seconds, session.converter.lookahead_seconds)
    slowest = session.slowest_recent_block()
    if slowest is not None:
        text += f" Last blocks took up to {1000 * slowest:.0f} ms to convert"
        text += " (keeping up)." if session.keeps_up() else " (**slower than real time**)."
    return text
