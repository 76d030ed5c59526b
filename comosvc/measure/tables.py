"""Markdown tables, the one writer behind every report (bench, quality, evaluate, compare, timings).

    >>> print(markdown_table(["system", "NFE"], [["student-1", "1"]], align="lr"))
    | system | NFE |
    | --- | ---: |
    | student-1 | 1 |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

_RULES = {"l": "---", "r": "---:", "c": ":---:"}


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]], align: str | None = None) -> str:
    """A GitHub markdown table of string cells, one line per row, no trailing newline.

    ``align``: one letter per column, ``l`` (left, the default), ``r`` (right) or
    ``c`` (centre), e.g. ``"llrrr"``.
    """
    align = align or "l" * len(headers)
    if len(align) != len(headers) or set(align) - set(_RULES):
        raise ValueError(f"align needs one of l/r/c per column ({len(headers)} columns), got {align!r}")
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(_RULES[a] for a in align) + " |"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells for {len(headers)} columns: {list(row)}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


__all__ = ["markdown_table"]
