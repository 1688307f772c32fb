"""One CLI vocabulary (docs/cli.md, #26): every subcommand's --help is parsed and checked, and every retired
spelling still works, with a warning."""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

import pytest

from emodistill.app.cli import COMMANDS, build_parser, main
from emodistill.core.cli_args import DEFAULT_BUDGET, JsonSwitch, Retired

# flags that no command may show any more (their shims are hidden Retired actions)
RETIRED_FLAGS = {"--checkpoint", "--budget-set", "--eval-batch", "--batch", "--batch-sizes", "--seconds",
                 "--latency-seconds", "--measure-seconds", "--repeats", "--data-split", "--fit"}
# flags whose default is part of the vocabulary: the same in every command that has them
SHARED_DEFAULTS = ("--budget", "--threads", "--runs", "--warmup", "--set", "--json", "--json-out", "--protocol",
                   "--fold", "--seed")


def all_parsers():
    """(command path, parser) for every parser under every command, each command's module imported."""
    seen = {}
    for command in COMMANDS:
        root = build_parser(command)

        def walk(path, parser):
            if path in seen:
                return
            seen[path] = parser
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, child in action.choices.items():
                        walk(f"{path} {name}".strip(), child)

        for action in root._actions:
            if isinstance(action, argparse._SubParsersAction):
                walk(command, action.choices[command])
    return seen


PARSERS = all_parsers()


def visible(parser):
    return [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


def test_every_tool_is_a_subcommand():
    for name in ("seeds", "distill-bench", "calibrate", "perf", "timeline", "gpu-check", "budgets", "profiles", "plan",
                 "data bench", "data probe", "timeline make-long", "timeline score"):
        assert name in PARSERS, name


@pytest.mark.parametrize("path", sorted(PARSERS))
def test_help_reads_like_one_tool(path):
    parser = PARSERS[path]
    text = parser.format_help()
    assert "(default: None)" not in text
    for line in text.splitlines():
        assert line.count("(default:") <= 1, line
    required = [a for a in visible(parser) if a.required]
    for a in required:  # a required flag states no default
        assert "default" not in (a.help or "").lower(), (path, a.option_strings)
    desc = (parser.description or "").strip()
    if parser.add_help:  # help-only stubs of `emodistill --help` have none
        assert desc, f"{path}: no description"
        first = re.split(r"(?<=[.:;])\s", desc, maxsplit=1)[0]
        assert not desc.startswith("`") and len(first) <= 300, (path, first)
    for group in parser._action_groups:
        shown = [a for a in group._group_actions if a.help is not argparse.SUPPRESS
                 and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        assert len(shown) <= 11, (path, group.title, len(shown))


def test_no_retired_spelling_is_shown_and_each_flag_has_one_meaning():
    defaults = defaultdict(set)
    for path, parser in PARSERS.items():
        for a in visible(parser):
            for flag in a.option_strings:
                assert flag not in RETIRED_FLAGS, (path, flag)
                if flag == "--format":
                    assert path == "export", f"{path}: --format means the artifact kind, in export only"
                if flag == "--split":
                    assert set(a.choices) == {"train", "val", "test"}, f"{path}: --split names train/val/test"
                if flag == "--json":
                    assert a.nargs == 0 or isinstance(a, JsonSwitch), f"{path}: --json is a switch"
                if flag in SHARED_DEFAULTS and not (flag == "--budget" and path == "predict"):
                    defaults[flag].add(repr(a.default))  # predict --stream: none = the artifact's own budget
        for a in parser._actions:
            if isinstance(a, Retired):
                assert a.help is argparse.SUPPRESS
    for flag, values in defaults.items():
        assert len(values) == 1, f"{flag} has defaults {sorted(values)} in different commands"
    assert defaults["--budget"] == {repr(DEFAULT_BUDGET)}


def parse(argv):
    return build_parser(argv[0]).parse_args(argv)


@pytest.mark.parametrize("argv, dest, value", [
    (["export", "--checkpoint", "ck", "--out", "o"], "model", "ck"),
    (["export", "--model", "ck", "--out", "o", "--budget-set", "max_p50_ms=8"], "overrides", ["budget.max_p50_ms=8"]),
    (["export", "--model", "ck", "--out", "o", "--eval-batch", "4"], "batch_size", 4),
    (["export", "--model", "ck", "--out", "o", "--latency-seconds", "0.5"], "latency_seconds", 0.5),
    (["export", "--model", "ck", "--out", "o", "--measure-seconds", "12"], "measure_seconds", 12.0),
    (["bench", "--out", "o", "--batch-sizes", "1", "4"], "batch_size", [1, 4]),
    (["bench", "--out", "o", "--seconds", "0.5"], "seconds", 0.5),
    (["compare", "--teacher", "t", "--student", "s", "--data", "d", "--out", "o", "--repeats", "7"], "runs", 7),
    (["compare", "--teacher", "t", "--student", "s", "--data", "d", "--out", "o", "--data-split", "fold"],
     "protocol", "fold"),
    (["data", "check", "--data", "d", "--split", "fold"], "protocol", "fold"),
    (["data", "check", "--data", "d", "--format", "cremad"], "data_format", "cremad"),
    (["data", "check", "--data", "d", "--json", "r.json"], "json_out", "r.json"),
    (["predict", "x.mp4", "--stream", "--format", "mpegts"], "source_format", "mpegts"),
    (["student", "info", "--model", "student_xs", "--batch", "2"], "batch_size", 2),
    (["gpu-check", "--seconds", "3"], "seconds", 3.0),
    (["gpu-check", "--out", "g.json"], "out", "g.json"),
    (["calibrate", "--json", "c.json"], "json_out", "c.json"),
])
def test_an_old_spelling_still_works_and_warns(argv, dest, value, capsys):
    args = parse(argv)
    assert getattr(args, dest) == value
    assert "is deprecated" in capsys.readouterr().err


def test_the_new_spellings_do_not_warn(capsys):
    args = parse(["export", "--model", "ck", "--out", "o", "--set", "budget.max_p50_ms=8", "--batch-size", "4"])
    assert args.overrides == ["budget.max_p50_ms=8"] and args.batch_size == 4
    args = parse(["data", "check", "--data", "d", "--json"])
    assert args.json is True and args.json_out is None
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [["student", "info", "student_xs"], ["teacher", "info", "teacher_tiny"]])
def test_an_old_positional_name_still_works_and_warns(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "the positional NAME is deprecated" in out.err and "--model" in out.err
    assert main([*argv[:2], "--model", argv[2]]) == 0
    assert "deprecated" not in capsys.readouterr().err


def test_export_set_takes_budget_fields_only():
    from emodistill.core.errors import InputError
    from emodistill.export.run import budget_overrides

    args = parse(["export", "--model", "ck", "--out", "o", "--set", "budget.max_p95_ms=20"])
    assert budget_overrides(args) == ["max_p95_ms=20"]
    args = parse(["export", "--model", "ck", "--out", "o", "--set", "max_p95_ms=20"])
    with pytest.raises(InputError, match="budget fields only"):
        budget_overrides(args)


def test_a_recipe_command_takes_out_as_its_output_dir():
    args = parse(["distill", "--config", "demo", "--set", "train.epochs=1", "--out", "runs/x"])
    assert args.overrides == ["train.epochs=1", "output_dir=runs/x"]
