"""``python -m comosvc config [--config FILE] [--set section.key=value ...]``: print a whole config as YAML.

The defaults live in one place, the dataclasses of :mod:`comosvc.config`; a config
file holds only what differs from them. This prints every key with its value, after
the file and the overrides, checked as every stage checks them.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "config",
        help="print a whole config (the defaults, a file and overrides) as YAML",
        description="Print every key of a ComoSVC config with its value: the defaults (comosvc/config.py), "
        "then --config FILE, then --set overrides.",
    )
    parser.add_argument("--config", help="a config file (YAML or JSON); default: the defaults alone")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a key")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from comosvc.config import ConfigError, load_config

    try:
        config = load_config(args.config, overrides=args.set)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return 0
