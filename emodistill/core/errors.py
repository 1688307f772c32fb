"""Exit codes of every `emodistill` command, and how an exception becomes one line on stderr.

    0    success
    1    the command ran and reports a failed outcome (`data check` with no usable clip or `--strict` and bad
         files), or a runtime failure outside the user's input: out of memory, a worker process died, a full
         disk or another I/O failure (the message names the path)
    2    usage, config or input error: a bad flag, config key or value, a missing / corrupt / mismatched
         file, a name that is not registered, an output that would be overwritten. Nothing was changed.
    3    over budget: the artifact was written, its latency / VRAM verdict exceeds the budget (`export`)
    4    parity or accuracy of the artifact outside tolerance (`export`)
    5    path not available on this machine: a TensorRT engine without an NVIDIA GPU of its target, the
         torch-tensorrt backend without torch-tensorrt / GPU, a training command in a runtime-only install
    70   internal error (a bug): rerun with --debug and report the traceback
    130  interrupted (Ctrl-C)

Codes follow the error's meaning, not its Python class: a class says what it is by mixing in `InputError`,
`RuntimeFailure` or `UnavailableError`; an OSError is an input error (missing file, existing output, permission)
unless its errno is a disk or device failure (ENOSPC, EDQUOT, EIO, EROFS: code 1). Anything else is a bug (70).

Expected failures (codes 1, 2 and 5) are printed as one line: `error: <file or key>: <what> (<what to do>)`.
`--debug` re-raises them so the traceback shows.
"""

from __future__ import annotations

import errno
import logging
import re
import sys
from pathlib import Path

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


class RuntimeFailure(Exception):
    """Mixin of exception classes for a failure of the run itself, not of its input (exit code 1)."""


class UnavailableError(Exception):
    """Mixin of exception classes for a path this machine cannot take (exit code 5): the message says what
    would (a GPU of the engine's target, a package) and what works here instead."""


INPUT_ERRORS = (InputError, ValueError, OSError)  # OSError: not found, exists, permission, not a directory
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}  # the machine's fault, not the input's

_writing: list[Path] = []  # folders the running command writes into (named by a disk error without a filename)


def writing_into(folder: str | Path) -> None:
    """Record that this command writes into `folder`, so that a full disk names it even when the failing write
    (a library's own file handle) does not."""
    _writing.append(Path(folder))


# top-level modules of the `train` extra: a runtime-only install (pip install emodistill) lacks them
TRAIN_MODULES = {"torch", "torchvision", "torchaudio", "transformers", "timm", "accelerate", "onnx", "onnxscript",
                 "safetensors", "tensorboard", "matplotlib", "tensorrt_rtx", "peft"}


def _missing_stack(e: BaseException) -> bool:
    return isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in TRAIN_MODULES


def _disk_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def exit_code(e: BaseException) -> int:
    """The documented exit code of an exception that ends a command."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, UnavailableError) or _missing_stack(e):
        return EXIT_UNAVAILABLE
    if isinstance(e, InputError):  # declared by its class: before RuntimeFailure, which a base may carry
        return EXIT_INPUT
    if isinstance(e, RuntimeFailure) or _disk_error(e):
        return EXIT_FAILED
    if isinstance(e, INPUT_ERRORS):
        return EXIT_INPUT
    if type(e) is RuntimeError or isinstance(e, MemoryError) or type(e).__name__ in ("OutOfMemoryError",
                                                                                       "BrokenProcessPool"):
        return EXIT_FAILED
    return EXIT_INTERNAL


def one_line(e: BaseException) -> str:
    """The exception's message as one line (indented lists joined with '; ')."""
    msg = str(e) or type(e).__name__
    if _disk_error(e):
        msg = _disk_message(e)
    if _missing_stack(e):
        extra = "rtx" if e.name.startswith("tensorrt") else "plot" if e.name.startswith("matplotlib") else "train"
        msg = (f"this command needs {e.name.split('.')[0]}, which this install does not have (the base install runs "
               f"exported ONNX models only): pip install 'emodistill[{extra}]'")
    msg = re.sub(r":\s*\n\s*", ": ", msg.strip())
    msg = re.sub(r"\s*\n\s*", "; ", msg)
    if exit_code(e) == EXIT_INTERNAL:
        return f"internal error {type(e).__name__}: {msg} (rerun with --debug for the traceback and report it)"
    return msg


def _disk_message(e: OSError) -> str:
    """`<path>: No space left on device (... free, what to do)`: the path is the failing file, else the folder
    the command was writing into."""
    import shutil

    where = Path(e.filename) if e.filename else (_writing[-1] if _writing else None)
    what = e.strerror or str(e)
    if where is None:
        return f"{what} (a runtime failure, not your input: free some space or write elsewhere)"
    free = ""
    for p in (where, *where.parents):
        if p.exists():
            free = f", {shutil.disk_usage(p).free / 2**20:.1f} MiB free there"
            break
    return f"{where}: {what} while writing{free} (free some space or choose another output folder)"


def run_guarded(func, args, debug: bool = False) -> int:
    """The error boundary of every command: run `func(args)`; an exception becomes one line on stderr and its
    documented exit code, or the traceback with `debug`."""
    _writing.clear()  # folders of an earlier command in this process (tests, the Python API) are not this one's
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
           "EXIT_INTERRUPTED", "EXIT_CODES", "InputError", "RuntimeFailure", "UnavailableError", "UnknownNameError",
           "INPUT_ERRORS", "DISK_ERRNOS", "writing_into", "exit_code", "one_line"]
