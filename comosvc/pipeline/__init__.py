"""Conversion: a recording of singing -> the same song in a trained singer's voice.

:class:`ConversionPipeline` (``conversion.py``) ties the parts together; the parts
are small modules of their own: ``chunks.py`` (long songs in bounded, crossfaded
pieces; position-keyed noise), ``pitch.py`` (key shift), ``loudness.py`` (envelope
matching, peak normalisation), ``singers.py`` (singer lookup), ``mix.py`` (mixes of singers).

``read_singer_tables`` lives in :mod:`comosvc.models.folder` (beside the model whose
files it reads); it is re-exported here for older imports.
"""

from typing import Any

from comosvc.pipeline.conversion import (
    PEAK,
    ConversionPipeline,
    ConversionRequest,
    ConversionResult,
    StageClock,
    apply_overrides,
)
from comosvc.pipeline.mix import SingerMix, parse_mix
from comosvc.pipeline.pitch import auto_key, parse_key, shift_f0
from comosvc.pipeline.singers import UnknownSingerError, resolve_singer


def __getattr__(name: str) -> Any:
    if name == "read_singer_tables":  # lazy: comosvc.models imports diffusers
        from comosvc.models.folder import read_singer_tables

        return read_singer_tables
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PEAK",
    "ConversionPipeline",
    "ConversionRequest",
    "ConversionResult",
    "SingerMix",
    "StageClock",
    "UnknownSingerError",
    "apply_overrides",
    "auto_key",
    "parse_key",
    "parse_mix",
    "read_singer_tables",
    "resolve_singer",
    "shift_f0",
]
