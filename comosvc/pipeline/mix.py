"""A target voice as a weighted mix of a model's singers, and what a mix takes from ``stats.json``.

    >>> mix = parse_mix("alice:0.7,opencpop_female1:0.3", singers)
    >>> str(mix)                      # the normalised mix: what ConversionResult.singer says
    'm4singer_alice:0.7,opencpop_female1:0.3'
    >>> parse_mix({"alice": 7, "female1": 3}, singers) == mix
    True

A mix of one singer is that singer: ``str(mix)`` is its table key and it converts
bit for bit as a single singer always did. Weights are non-negative and are
normalised to sum 1; singers of weight 0 are left out.

Across datasets (docs/design.md, "Mixing singers"): the mel is de-normalised with the
weighted mean of the datasets' min/max bounds (:func:`blend_mel_stats`), and
``key="auto"`` aims at the weighted geometric mean of the singers' median F0s, within the
weighted geometric means of their 5th and 95th percentiles (:func:`mix_f0`, weighted means in
semitones).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from comosvc.features.mel import MelStats
from comosvc.pipeline.singers import resolve_singer, singer_dataset, singer_f0

MIX_SYNTAX = "write a mix as 'alice:0.7,bob:0.3'"


@dataclass(frozen=True)
class SingerMix:
    """Singer table keys ``"<dataset>_<singer>"`` with weights > 0 that sum to 1, in the order given."""

    keys: tuple[str, ...]
    weights: tuple[float, ...]

    @property
    def single(self) -> str | None:
        """The singer's key when the mix is one singer, else ``None``."""
        return self.keys[0] if len(self.keys) == 1 else None

    def __str__(self) -> str:
        if self.single is not None:
            return self.single
        return ",".join(f"{key}:{weight:g}" for key, weight in zip(self.keys, self.weights))

    @property
    def label(self) -> str:
        """For file names: the key of one singer, ``"a-0.7+b-0.3"`` for a mix (no ``:`` or ``,``)."""
        if self.single is not None:
            return self.single
        return "+".join(f"{key}-{weight:g}" for key, weight in zip(self.keys, self.weights))


SingerSpec = Union[str, Mapping[str, float], SingerMix]


def parse_mix(spec: SingerSpec, singers: dict[str, int]) -> SingerMix:
    """A singer name, ``"name:weight,..."`` or ``{name: weight}`` -> a :class:`SingerMix` of ``singers``' keys.

    Names resolve as :func:`~comosvc.pipeline.singers.resolve_singer` does (full key or an
    unambiguous bare name); in the text form a name without ``:weight`` weighs 1. Raises
    :class:`~comosvc.pipeline.singers.UnknownSingerError` or ``ValueError`` with a one-line
    message: unknown singer, a weight that is not a non-negative number, all weights zero,
    a singer named twice.
    """
    if isinstance(spec, SingerMix):
        unknown = [key for key in spec.keys if key not in singers]
        if unknown:
            resolve_singer(unknown[0], singers)  # raises, listing the valid singers
        return spec
    if isinstance(spec, Mapping):
        entries = [(str(name), weight) for name, weight in spec.items()]
        text = ",".join(f"{name}:{weight}" for name, weight in entries)
    elif isinstance(spec, str):
        text = spec.strip()
        if text in singers or not any(mark in text for mark in ",:"):
            return SingerMix((resolve_singer(text, singers),), (1.0,))
        entries = [_entry(part, text) for part in text.split(",")]
    else:
        raise TypeError(f"singer must be a name, 'name:weight,...' or a {{name: weight}} dict, got {type(spec).__name__}")
    if not entries:
        raise ValueError(f"The singer mix is empty: {MIX_SYNTAX}.")
    keys, weights = [], []
    for name, weight in entries:
        key = resolve_singer(name.strip(), singers)
        if key in keys:
            raise ValueError(f"Singer {key} is named twice in the mix {text!r}: give each singer once.")
        keys.append(key)
        weights.append(_weight(weight, name))
    total = math.fsum(weights)
    if total == 0:
        raise ValueError(f"The singer weights in {text!r} are all zero: give at least one singer a positive weight.")
    kept = [(key, weight / total) for key, weight in zip(keys, weights) if weight > 0]
    return SingerMix(tuple(key for key, _ in kept), tuple(weight for _, weight in kept))


def _entry(part: str, text: str) -> tuple[str, Any]:
    """One ``name[:weight]`` of a mix string -> ``(name, weight)``."""
    name, _, weight = part.rpartition(":") if ":" in part else (part, "", "1")
    if not name.strip():
        raise ValueError(f"A singer name is missing in the mix {text!r}: {MIX_SYNTAX}.")
    return name, weight


def _weight(value: Any, name: str) -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"The weight {value!r} of singer {name.strip()!r} is not a number: {MIX_SYNTAX}.") from None
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"The weight {value!r} of singer {name.strip()!r} must be a non-negative number: {MIX_SYNTAX}.")
    return weight


def mix_datasets(mix: SingerMix, stats: dict[str, Any]) -> dict[str, float]:
    """``{dataset: summed weight}`` of the mix's singers (each singer's dataset: the one whose mel stats it uses)."""
    out: dict[str, float] = {}
    for key, weight in zip(mix.keys, mix.weights):
        dataset = singer_dataset(key, stats)
        out[dataset] = out.get(dataset, 0.0) + weight
    return out


def blend_mel_stats(parts: list[tuple[MelStats, float]]) -> MelStats:
    """The weighted mean of per-dataset mel bounds (weights summing to 1).

    De-normalising is affine in the bounds, so this de-normalises a mel to the same
    weighted mean of what each dataset's bounds would give.
    """
    lo = np.sum([weight * stats.min for stats, weight in parts], axis=0)
    hi = np.sum([weight * stats.max for stats, weight in parts], axis=0)
    return MelStats(lo, hi)


def mix_f0(mix: SingerMix, stats: dict[str, Any], statistic: str = "median") -> float | None:
    """A voiced-F0 statistic (Hz; ``"median"``, ``"p5"`` or ``"p95"``) of a mix: the weighted geometric
    mean of the singers' (a weighted mean in semitones); the singer's own for one singer; ``None``
    if one singer's is not recorded."""
    values = [singer_f0(key, stats, statistic) for key in mix.keys]
    if any(value is None for value in values):
        return None
    if mix.single is not None:
        return values[0]
    return float(2.0 ** math.fsum(weight * math.log2(value) for weight, value in zip(mix.weights, values)))


def mix_f0_range(mix: SingerMix, stats: dict[str, Any]) -> tuple[float, float] | None:
    """``(p5, p95)`` Hz of a mix (:func:`mix_f0`), what ``key="auto"`` keeps a song inside; ``None``
    if a singer's is not recorded."""
    low, high = mix_f0(mix, stats, "p5"), mix_f0(mix, stats, "p95")
    return None if low is None or high is None else (low, high)


__all__ = ["MIX_SYNTAX", "SingerMix", "SingerSpec", "blend_mel_stats", "mix_datasets", "mix_f0", "mix_f0_range", "parse_mix"]
