"""`emodistill` console script: one entry point, a subcommand per stage.

Each stage lives in its own package and contributes its subcommands through a module exposing
`register(subparsers)`; the parser it adds sets `func(args) -> int` as its default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..core.cli_args import apply_formatter
from ..core.errors import EXIT_CODES, EXIT_INPUT, run_guarded
from ..core.utils import setup_logging

# command -> (module that registers it, one-line help). Only the chosen command's module is imported, so
# `emodistill --help` and `emodistill data ...` do not pay for torch/transformers start-up.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("emodistill.core.data.cli", "synthetic data, dataset checks, cache preparation"),
    # `student` through export.cli: the export stage adds `student info --latency` (its ONNX exporter)
    "student": ("emodistill.export.cli", "student model presets: list, info (params, GFLOPs, latency)"),
    "teacher": ("emodistill.teacher.cli", "teacher model: info, fine-tuning"),
    "distill": ("emodistill.distill.cli", "distill a teacher into a student (configs/distill/*.yaml)"),
    "export": ("emodistill.export.cli", "export a checkpoint to ONNX (fp32/fp16/int8) or TensorRT and check a budget"),
    "bench": ("emodistill.app.bench", "teacher vs student latency: PyTorch eager vs ONNX Runtime fp32 vs int8"),
    "compare": ("emodistill.app.compare", "teacher vs student (vs baseline, ONNX, TensorRT) report"),
    "predict": ("emodistill.app.predict", "emotion probabilities for one clip, or a timeline over a stream"),
    "timeline": ("emodistill.app.timeline", "long test videos of known emotions, and a stream timeline's score"),
    "demo": ("emodistill.app.demo", "whole chain on synthetic data: synth, teacher, distill, export, report"),
    "distill-bench": ("emodistill.distill.bench", "epoch time: live teacher vs teacher-output cache vs CE-only"),
    "seeds": ("emodistill.distill.seeds", "KD vs CE-only over seeds (and label fractions): the gain's spread"),
    "plan": ("emodistill.app.plan", "peak GPU memory of a training recipe per GPU: does it fit your card?"),
    "calibrate": ("emodistill.export.calibrate", "how far the RTX latency estimate is from published TensorRT tables"),
    "perf": ("emodistill.export.perf", "size / FLOP / latency-ratio regression check against the baseline"),
    "gpu-check": ("emodistill.export.gpu_check", "measure the students on this machine's GPU next to the estimate"),
    "config": ("emodistill.app.configs", "list or print the packaged recipes, hardware profiles and budgets"),
    "profiles": ("emodistill.app.configs", "the packaged hardware profiles, one line each"),
    "budgets": ("emodistill.app.configs", "the packaged budgets, one line each"),
    "env": ("emodistill.app.env", "versions, native libraries, runtimes and GPUs; --check for a broken install"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser of `command` (importing its module); every other command is a help-only stub."""
    parser = argparse.ArgumentParser(
        prog="emodistill",
        description="Distill an audio-visual emotion recognizer and check that it fits an RTX 3050.",
        epilog="`emodistill COMMAND --help` explains each command's options; docs/cli.md the flags they share."
               "\n\nexit codes:\n" + "\n".join(f"  {code:>3}  {what}" for code, what in EXIT_CODES.items()),
    )
    parser.add_argument("--version", action="version", version=f"emodistill {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and a traceback instead of the one-line error (also accepted after "
                             "the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    if command is not None:
        importlib.import_module(COMMANDS[command][0]).register(sub)  # may add sibling commands too (export, student)
    for name, (_, help_text) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_text, add_help=False)
    apply_formatter(parser)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The first positional argument when it names a command (options before it take no values)."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv:  # accepted anywhere on the line; parsed as the top-level flag
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    try:
        parser = build_parser(_command_of(argv))
    except ModuleNotFoundError as e:  # a training command in the runtime-only install: one line, exit 5
        from ..core.errors import exit_code, one_line

        print(f"error: {one_line(e)}", file=sys.stderr)
        return exit_code(e)
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose or args.debug else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT
    return run_guarded(args.func, args, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
