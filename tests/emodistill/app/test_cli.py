"""The `emodistill` dispatcher: every command and subcommand has --help, and start-up stays light."""

import subprocess
import sys

import pytest

from emodistill.app.cli import COMMANDS, main

SUBCOMMANDS = [["data", "synth"], ["data", "check"], ["data", "prepare"], ["student", "list"], ["student", "info"],
               ["teacher", "info"], ["teacher", "train"]]


@pytest.mark.parametrize("argv", [[c] for c in COMMANDS] + SUBCOMMANDS, ids=" ".join)
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: emodistill {' '.join(argv)}")


def test_top_level_help_lists_commands_without_importing_torch():
    code = ("import sys; from emodistill.app.cli import main\n"
            "try: main(['--help'])\n"
            "except SystemExit: pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert f"    {name}" in out
    assert "TORCH False" in out


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["nosuch"])
    assert e.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out
