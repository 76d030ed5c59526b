"""Finding a singer in a model's singer table (``singers.json``) and their stats (``stats.json``)."""

from __future__ import annotations

from typing import Any


class UnknownSingerError(ValueError):
    """The requested singer is not in the model's singer table; the message lists the valid ones."""


def _listing(names: list[str]) -> str:
    return ", ".join(sorted(names)) if names else "(none: the model has an empty singer table)"


def resolve_singer(name: str, singers: dict[str, int]) -> str:
    """``name`` -> the key ``"<dataset>_<singer>"`` of ``singers``.

    Accepts the full key or, when exactly one key ends in ``"_<name>"``, the bare
    singer name. Raises :class:`UnknownSingerError` listing the valid singers (or
    the candidates, when a bare name is ambiguous).
    """
    if name in singers:
        return name
    matches = [key for key in singers if key.endswith("_" + name)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UnknownSingerError(
            f"Singer {name!r} is ambiguous: it matches {_listing(matches)}. Pass the full name."
        )
    raise UnknownSingerError(
        f"Unknown singer {name!r}. Valid singers: {_listing(list(singers))}. "
        "(`python -m comosvc singers --model ...` lists them.)"
    )


def singer_dataset(key: str, stats: dict[str, Any]) -> str:
    """The dataset of singer ``key`` whose mel stats denormalise its mels.

    The dataset is the longest ``stats["mel"]`` name that ``key`` starts with
    followed by ``_`` (dataset names may themselves contain underscores).
    """
    datasets = [d for d in stats.get("mel", {}) if key.startswith(d + "_")]
    if not datasets:
        raise KeyError(
            f"The model's stats.json has no mel stats for the dataset of singer {key!r} "
            f"(datasets with stats: {_listing(list(stats.get('mel', {})))}). The model folder is incomplete."
        )
    return max(datasets, key=len)


def singer_f0(key: str, stats: dict[str, Any], statistic: str = "median") -> float | None:
    """A voiced-F0 statistic (Hz) of singer ``key`` from ``stats["f0"]``: ``"median"``, ``"p5"`` or
    ``"p95"``; ``None`` if not recorded."""
    entry = stats.get("f0", {}).get(key)
    if not entry or not entry.get(statistic):
        return None
    return float(entry[statistic])


__all__ = ["UnknownSingerError", "resolve_singer", "singer_dataset", "singer_f0"]
