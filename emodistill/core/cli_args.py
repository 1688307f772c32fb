"""The one CLI vocabulary (docs/cli.md): the flags every command shares, the help format, the retired spellings.

A flag means one thing in every command. The adders below are the only place a shared flag is defined, so its
spelling, type, default and help cannot drift between commands:

    --model PATH        anything loadable: checkpoint folder, model.safetensors, .onnx, .engine (or a preset name)
    --data DIR          a data set, with --data-format {ravdess,cremad,folder,manifest}
    --out DIR           where results go
    --budget NAME       a budget or hardware profile; one default everywhere (DEFAULT_BUDGET)
    --batch-size N      the batch the command runs at
    --threads N         CPU threads (ONNX Runtime / PyTorch intra-op); default 1
    --runs N --warmup N timed and untimed runs of every latency figure
    --json              print JSON to stdout; --json-out FILE writes it to a file
    --set KEY=VALUE     every override, budgets included (--set budget.max_p50_ms=8)

Old spellings (`retire`) keep working for one release: hidden from --help, and a one-line warning on stderr; the
table of them is in docs/cli.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from .utils import int_at_least

DEFAULT_BUDGET = "rtx3050-laptop-4gb"  # the smallest RTX 3050 (its profile's default budget): fits it, fits them all
DEFAULT_THREADS = 1
DEFAULT_RUNS, DEFAULT_WARMUP = 20, 3
DATA_FORMATS = ("ravdess", "cremad", "folder", "manifest")
REMOVED_IN = "0.3"



def warn_retired(old: str, new: str) -> None:
    """One stderr line per use of an old spelling (before logging is set up, so not through a logger)."""
    sys.stderr.write(f"warning: {old} is deprecated and goes in emodistill {REMOVED_IN}; use {new}\n")


class Retired(argparse.Action):
    """An old spelling: hidden from --help, warns, then stores `convert(value)` into `dest` (appends if `append`)."""

    def __init__(self, option_strings, dest, new: str, convert: Callable[[Any], Any] | None = None,
                 append: bool = False, nargs=None, **kw):
        kw.pop("help", None)
        super().__init__(option_strings, dest, nargs=nargs, help=argparse.SUPPRESS, **kw)
        self.new, self.convert, self.append = new, convert, append

    def __call__(self, parser, namespace, values, option_string=None):
        warn_retired(option_string, self.new)
        for action in parser._actions:  # the old spelling stands for a required new one (--checkpoint for --model)
            if action.dest == self.dest and action is not self:
                action.required = False
        value = self.convert(values) if self.convert else values
        if self.append:
            setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), value])
        else:
            setattr(namespace, self.dest, value)


def retire(p, old: str, dest: str, new: str, **kw) -> None:
    """Keep `old` working for one release as a hidden alias of `dest` (see Retired)."""
    p.add_argument(old, dest=dest, action=Retired, new=new, default=argparse.SUPPRESS, **kw)


class HelpFormatter(argparse.HelpFormatter):
    """Paragraphs wrapped, indented lines (commands, tables) kept as written; `(default: X)` once, and only where
    there is a default worth saying (not on a required flag, a switch, or a flag whose help already says it)."""

    def _fill_text(self, text, width, indent):
        import textwrap

        paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
        out = [p if any(line.startswith(" ") for line in p.splitlines())
               else textwrap.fill(" ".join(p.split()), width, initial_indent=indent, subsequent_indent=indent)
               for p in paragraphs]
        return "\n\n".join(out)

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (not action.option_strings or action.required or d is None or d is False or d == [] or d is argparse.SUPPRESS
                or "default" in text.lower() or action.nargs == 0):
            return text
        return text + " (default: %(default)s)"

    def _format_args(self, action, default_metavar):
        return "" if isinstance(action, JsonSwitch) else super()._format_args(action, default_metavar)

    def _format_usage(self, *args, **kw):  # the old `--json FILE` stays out of sight: `[--json]`, not `[--json [JSON]]`
        return super()._format_usage(*args, **kw).replace("--json ]", "--json]")

    def _format_action_invocation(self, action):
        return super()._format_action_invocation(action).rstrip()


def apply_formatter(parser: argparse.ArgumentParser) -> None:
    """Give `parser` and every subparser under it the one help format (one place, so no command differs)."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(c): c for c in action.choices.values()}.values():
                apply_formatter(child)


# -- the shared flags ------------------------------------------------------------------------------------------------

def add_model(p, *, required: bool = False, help: str = "checkpoint folder, model.safetensors, .onnx or .engine",
              default: str | None = None) -> None:
    p.add_argument("--model", required=required, default=default, metavar="PATH", help=help)


def add_data(p, *, required: bool = False, help: str = "dataset root", format_default: str | None = None,
             format_help: str | None = "dataset layout") -> None:
    """--data DIR, and --data-format unless `format_help` is None (a command that reads the layout elsewhere)."""
    p.add_argument("--data", required=required, default=None, metavar="DIR", help=help)
    if format_help is not None:
        p.add_argument("--data-format", choices=DATA_FORMATS, default=format_default, help=format_help)


def add_out(p, *, required: bool = False, default: str | None = None, help: str = "output folder") -> None:
    p.add_argument("--out", required=required, default=default, metavar="DIR", help=help)


def add_budget(p, *, help: str = "budget (emodistill budgets) or hardware profile (emodistill profiles: its "
                                 "default budget), by name or YAML path") -> None:
    p.add_argument("--budget", default=DEFAULT_BUDGET, metavar="NAME", help=help)


def add_batch_size(p, default: int | list[int], *, help: str = "batch size", nargs=None) -> None:
    p.add_argument("--batch-size", type=int_at_least(1), default=default, nargs=nargs, metavar="N", help=help)


def add_threads(p, *, help: str = "CPU threads (ONNX Runtime / PyTorch intra-op)") -> None:
    p.add_argument("--threads", type=int_at_least(1), default=DEFAULT_THREADS, metavar="N", help=help)


def add_runs(p, *, what: str = "of each latency figure", warmup: bool = True) -> None:
    """--runs N and (unless the command warms up for a fixed time instead) --warmup N."""
    p.add_argument("--runs", type=int_at_least(1), default=DEFAULT_RUNS, metavar="N", help=f"timed runs {what}")
    if warmup:
        p.add_argument("--warmup", type=int_at_least(0), default=DEFAULT_WARMUP, metavar="N",
                       help="untimed warm-up runs before them")


def add_json(p, *, help: str = "print JSON to stdout instead of the table", json_out: bool = False,
             retired_file: bool = False) -> None:
    """`--json` (a switch), and with `json_out` also `--json-out FILE`; `retired_file`: the old `--json FILE` works."""
    p.add_argument("--json", action=JsonSwitch if retired_file else "store_true", help=help)
    if json_out:
        p.add_argument("--json-out", metavar="FILE", default=None, help="also write the full JSON to FILE")


def add_set(p, *, help: str = "override a config value (repeatable)") -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_protocol(p) -> None:
    """The actor split protocol (--protocol, --fold), as against --split, which names train/val/test."""
    p.add_argument("--protocol", choices=["fixed", "fold"], default="fixed", help="actor split protocol")
    p.add_argument("--fold", type=int_at_least(0), default=0, metavar="K", help="fold of --protocol fold (0-5)")


def add_retired_positional(p, dest: str = "legacy_positional") -> None:
    """An old positional (`data check DIR`, `student info NAME`): still parsed, hidden; `positional_or` warns."""
    p.add_argument(dest, nargs="?", default=None, help=argparse.SUPPRESS)


def positional_or(args, flag_value, *, old: str, new: str, dest: str = "legacy_positional"):
    """The flag's value, else the retired positional's (with its warning); InputError when neither was given."""
    old_value = getattr(args, dest, None)
    if old_value is not None:
        if flag_value is not None and flag_value != old_value:
            from .errors import InputError

            raise InputError(f"both {new} {flag_value} and a positional {old_value!r} given; use {new} only")
        warn_retired(f"the positional {old}", f"{new} {old_value}")
        return old_value
    if flag_value is None:
        from .errors import InputError

        raise InputError(f"{new} is required")
    return flag_value


class JsonSwitch(argparse.Action):
    """`--json` as a switch; the old `--json FILE` still writes FILE (as --json-out FILE) with a warning."""

    def __init__(self, option_strings, dest, **kw):
        kw.setdefault("default", False)
        super().__init__(option_strings, dest, nargs="?", const=True, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        if isinstance(values, str):
            warn_retired(f"{option_string} FILE", f"--json-out {values}")
            namespace.json_out = values
            values = False
        setattr(namespace, self.dest, values)



def run_alias(register: Callable, argv: list[str] | None = None) -> int:
    """`python -m <module>` of a tool: the same parser and error handling as `emodistill <command>`, which
    `register(subparsers)` adds (so the alias and the subcommand cannot drift apart)."""
    from .errors import EXIT_INPUT, run_guarded
    from .utils import setup_logging

    parser = argparse.ArgumentParser(prog="emodistill")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    apply_formatter(parser)
    name = next(iter(sub.choices))
    args = parser.parse_args([name, *(sys.argv[1:] if argv is None else argv)])
    setup_logging()
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT
    return run_guarded(args.func, args)


def add_command_group(sub, name: str, *, help: str, description: str):
    """A command made of subcommands (`data`, `teacher`, `student`, `timeline`) -> (its parser, its subparsers);
    the command alone prints its help and exits 2."""
    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p, p.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", title="subcommands")

__all__ = ["DEFAULT_BUDGET", "DEFAULT_THREADS", "DEFAULT_RUNS", "DEFAULT_WARMUP", "DATA_FORMATS", "Retired",
           "retire", "warn_retired", "HelpFormatter", "apply_formatter", "add_model", "add_data", "add_out",
           "add_budget", "add_batch_size", "add_threads", "add_runs", "add_json", "add_set", "add_protocol",
           "add_retired_positional", "positional_or", "JsonSwitch", "run_alias", "add_command_group"]
