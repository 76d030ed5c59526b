"""``python -m comosvc singers --model ID_OR_DIR``: list the singers a model can convert to."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "singers",
        help="list the singers of a model",
        description="List the target singers of a ComoSVC model, with their median F0 and training hours when known.",
    )
    parser.add_argument("--model", required=True, help="Hugging Face Hub id or local folder of a ComoSVC model")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from comosvc.models.folder import read_singer_tables

    try:
        singers, stats = read_singer_tables(args.model)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = []
    for name, singer_id in sorted(singers.items(), key=lambda item: item[1]):
        f0 = stats.get("f0", {}).get(name, {}).get("median")
        seconds = stats.get("durations", {}).get(name)
        rows.append({"singer": name, "id": singer_id, "f0_median_hz": f0, "hours": None if seconds is None else seconds / 3600})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("The model has no singers.")
        return 0
    width = max(len("singer"), *(len(r["singer"]) for r in rows))
    print(f"{'singer':<{width}}  {'id':>4}  {'F0 median':>10}  {'hours':>6}")
    for r in rows:
        f0 = f"{r['f0_median_hz']:.1f} Hz" if r["f0_median_hz"] is not None else "-"
        hours = f"{r['hours']:.2f}" if r["hours"] is not None else "-"
        print(f"{r['singer']:<{width}}  {r['id']:>4}  {f0:>10}  {hours:>6}")
    return 0
