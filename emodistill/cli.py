"""`emodistill` console script: one entry point, a subcommand per stage.

Each stage lives in its own package and contributes its subcommands through a module exposing
`register(subparsers)`; the parser it adds sets `func(args) -> int` as its default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .utils import setup_logging

# (module, what it adds). Modules are imported lazily so `emodistill --help` stays fast.
COMMAND_MODULES = [
    "emodistill.data.cli",   # data synth | data check
    "student.cli",           # student info
    "teacher.cli",           # teacher info | teacher train
    "distill.cli",           # distill
    "export.cli",            # export | bench
    "emodistill.compare",    # compare
    "emodistill.predict",    # predict
    "emodistill.demo",       # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emodistill",
        description="Distill an audio-visual emotion recognizer and check that it fits an RTX 3050.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"emodistill {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (name == e.name or name.startswith(e.name + ".")):  # stage not built here
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
