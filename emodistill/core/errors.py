"""Exit codes of every `emodistill` command, and how an exception becomes one line on stderr.

    0    success
    1    the command ran and reports a failed outcome (`data check` with no usable clip or `--strict` and bad
         files), or a runtime failure outside the user's input (out of memory, a worker process died)
    2    usage, config or input error: a bad flag, config key or value, a missing / corrupt / mismatched
         file, a name that is not registered, an output that would be overwritten. Nothing was changed.
    3    over budget: the artifact was written, its latency / VRAM verdict exceeds the budget (`export`)
    4    parity or accuracy of the artifact outside tolerance (`export`)
    5    path not available on this machine (TensorRT without torch-tensorrt / GPU)
    70   internal error (a bug): rerun with --debug and report the traceback
    130  interrupted (Ctrl-C)

Expected failures (codes 1 and 2) are printed as one line: `error: <file or key>: <what> (<what to do>)`.
`--debug` re-raises them so the traceback shows.
"""

from __future__ import annotations

import logging
import re
import sys

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_BUDGET, EXIT_PARITY, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
EXIT_INTERNAL, EXIT_INTERRUPTED = 70, 130

EXIT_CODES = {EXIT_OK: "success", EXIT_FAILED: "failed outcome or runtime failure",
              EXIT_INPUT: "usage, config or input error (nothing changed)", EXIT_BUDGET: "over budget (export)",
              EXIT_PARITY: "parity/accuracy outside tolerance (export)",
              EXIT_UNAVAILABLE: "not available on this machine (TensorRT)", EXIT_INTERNAL: "internal error (a bug)",
              EXIT_INTERRUPTED: "interrupted"}


class InputError(Exception):
    """Mixin of exception classes whose message is about the user's input (exit code 2); the message names the
    file, key or value and what to do. Classes keep their historic base too (e.g. CheckpointError(RuntimeError))."""


class UnknownNameError(InputError, KeyError):
    """A name (preset, loss, format, budget) that is not registered; the message lists what is."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


INPUT_ERRORS = (InputError, ValueError, OSError)  # OSError: not found, exists, permission, not a directory


def exit_code(e: BaseException) -> int:
    """The documented exit code of an exception that ends a command."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, INPUT_ERRORS):
        return EXIT_INPUT
    if type(e) is RuntimeError or isinstance(e, MemoryError) or type(e).__name__ in ("OutOfMemoryError",
                                                                                       "BrokenProcessPool"):
        return EXIT_FAILED
    return EXIT_INTERNAL


def one_line(e: BaseException) -> str:
    """The exception's message as one line (indented lists joined with '; ')."""
    msg = str(e) or type(e).__name__
    msg = re.sub(r":\s*\n\s*", ": ", msg.strip())
    msg = re.sub(r"\s*\n\s*", "; ", msg)
    if exit_code(e) == EXIT_INTERNAL:
        return f"internal error {type(e).__name__}: {msg} (rerun with --debug for the traceback and report it)"
    return msg


def run_guarded(func, args, debug: bool = False) -> int:
    """The error boundary of every command: run `func(args)`; an exception becomes one line on stderr and its
    documented exit code, or the traceback with `debug`."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the boundary: no command ends in a traceback unless asked to
        if debug:
            raise
        code = exit_code(e)
        print(f"error: {one_line(e)}", file=sys.stderr)
        if code == EXIT_INTERNAL:
            logging.getLogger("emodistill").debug("internal error", exc_info=e)
        return code


__all__ = ["run_guarded", "EXIT_OK", "EXIT_FAILED", "EXIT_INPUT", "EXIT_BUDGET", "EXIT_PARITY", "EXIT_UNAVAILABLE", "EXIT_INTERNAL",
           "EXIT_INTERRUPTED", "EXIT_CODES", "InputError", "UnknownNameError", "INPUT_ERRORS", "exit_code",
           "one_line"]
