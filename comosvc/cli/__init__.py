"""Command line: ``python -m comosvc COMMAND ...``.

Each command lives in its own module of this package and defines
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed ``argparse.Namespace`` and returning an exit code. A command
reports the errors a user can fix as one ``error: ...`` line and exit code 2;
:func:`main` does the same for a vocoder that cannot be loaded, whichever command
loads it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module that implements it
COMMANDS = {
    "convert": "comosvc.cli.convert",
    "singers": "comosvc.cli.singers",
    "bench": "comosvc.cli.bench",
    "evaluate": "comosvc.cli.evaluate",
    "export-onnx": "comosvc.cli.export_onnx",
    "stream": "comosvc.cli.stream",
    "index": "comosvc.cli.index",
    "config": "comosvc.cli.config",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comosvc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from comosvc.vocoders.base import VocoderError  # imports torch: after parsing, so --help stays quick

    try:
        return int(args.func(args) or 0)
    except VocoderError as err:  # its message says what is wrong and what to do
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
