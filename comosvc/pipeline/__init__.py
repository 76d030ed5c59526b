"""Conversion: a recording of singing -> the same song in a trained singer's voice.

:class:`ConversionPipeline` (``conversion.py``) ties the parts together; the parts
are small modules of their own: ``chunks.py`` (long songs in bounded, crossfaded
pieces; position-keyed noise), ``pitch.py`` (key shift), ``loudness.py`` (envelope
matching, peak normalisation), ``singers.py`` (singer lookup).
"""

from comosvc.pipeline.conversion import (
    PEAK,
    ConversionPipeline,
    ConversionResult,
    apply_overrides,
    read_singer_tables,
)
from comosvc.pipeline.pitch import auto_key, parse_key, shift_f0
from comosvc.pipeline.singers import UnknownSingerError, resolve_singer

__all__ = [
    "PEAK",
    "ConversionPipeline",
    "ConversionResult",
    "UnknownSingerError",
    "apply_overrides",
    "auto_key",
    "parse_key",
    "read_singer_tables",
    "resolve_singer",
    "shift_f0",
]
