"""The rows of the singer embedding table in a fine-tune: where new singers start, which rows keep.

A base singer's audio is not at hand when a new voice is fine-tuned, so a new singer's
row starts from what the base model itself carries (``finetune.start_embedding``):

- ``"mean"`` (the default): the mean of the base singers' rows, an average trained voice,
  near no one base singer, so that moving it moves none of them;
- ``"nearest_f0"``: the row of the base singer whose F0 median (stats.json) is nearest
  in semitones to the new singer's: a trained voice of the same register, so the first
  samples already sound like a singer of that range; ``"mean"`` where a median is missing.

Only the rows of the singers in the new data receive gradients, and the table trains
without weight decay (:func:`~comosvc.training.finetune.select_parts`); the exported model
still gets every other row back from the base model (:func:`keep_rows`), whatever an
optimizer did to them: the base singers sound as they did.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch

logger = logging.getLogger(__name__)

MEAN = "the mean of the base singers' rows"


def nearest_by_f0(median: float | None, base_f0: dict[str, dict], base_singers: dict[str, int]) -> str | None:
    """The base singer whose F0 median is nearest to ``median`` in semitones; None when either is unknown."""
    medians = {key: v.get("median") for key, v in base_f0.items() if key in base_singers}
    medians = {key: m for key, m in medians.items() if m}
    if not median or not medians:
        return None
    return min(sorted(medians), key=lambda key: abs(math.log2(medians[key] / median)))


@torch.no_grad()
def start_rows(
    model,
    new: dict[str, float | None],
    base_singers: dict[str, int],
    base_stats: dict,
    method: str,
) -> dict[str, str]:
    """Set the row of each new singer of ``model`` (``new``: key -> its F0 median, None if unknown).

    Returns, per new singer, what its row started from (a base singer key or :data:`MEAN`).
    A base model without singers leaves the rows as they are.
    """
    table = model.condition_encoder.speaker.weight
    base_ids = sorted(base_singers.values())
    if not base_ids:
        return {key: "its untrained row" for key in new}
    mean = table[base_ids].mean(0)
    started = {}
    for key, median in new.items():
        source = nearest_by_f0(median, base_stats.get("f0", {}), base_singers) if method == "nearest_f0" else None
        table[model.singers[key]] = table[base_singers[source]] if source is not None else mean
        started[key] = source or MEAN
    return started


@torch.no_grad()
def keep_rows(model, base_table: torch.Tensor, trained_ids: Iterable[int]) -> None:
    """Put ``base_table``'s rows back into ``model`` for every id not in ``trained_ids``."""
    table = model.condition_encoder.speaker.weight
    keep = torch.ones(table.shape[0], dtype=torch.bool)
    keep[list(trained_ids)] = False
    table[keep.to(table.device)] = base_table.to(table.device, table.dtype)[keep.to(base_table.device)]


__all__ = ["MEAN", "keep_rows", "nearest_by_f0", "start_rows"]
