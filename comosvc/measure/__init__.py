"""The measuring toolkit: one timer, one synthetic song, one markdown-table writer, stand-in weights.

- :mod:`comosvc.measure.timer`: wall and process-CPU seconds (:class:`Timer`), repeats, interleaving, medians;
- :mod:`comosvc.measure.songs`: synthetic singing (:func:`synthetic_song`, :func:`sung_phrase`, ...);
- :mod:`comosvc.measure.tables`: :func:`markdown_table`;
- :mod:`comosvc.measure.stand_ins`: :func:`random_stats`, :func:`copy_model`, stand-in features and vocoder.
"""

from comosvc.measure.songs import synthetic_song
from comosvc.measure.stand_ins import copy_model, random_stats
from comosvc.measure.tables import markdown_table
from comosvc.measure.timer import Seconds, Timer, interleave, medians, time_call

__all__ = [
    "Seconds",
    "Timer",
    "copy_model",
    "interleave",
    "markdown_table",
    "medians",
    "random_stats",
    "synthetic_song",
    "time_call",
]
