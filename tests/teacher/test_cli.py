"""`emodistill teacher info`: parameter counts of the real preset without downloading anything."""

import argparse

import pytest

from emodistill.teacher import cli


def _parse(argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_info_real_preset_counts_offline(capsys):
    args = _parse(["teacher", "info", "--model", "teacher_lfm2_700m"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    lfm2 = next(line for line in out.splitlines() if line.strip().startswith("lfm2"))
    millions = float(lfm2.split("M")[-2].split()[-1])
    assert 235 < millions < 245  # first 6 of LFM2-700M's 16 layers
    assert "LiquidAI/LFM2-700M" in out and "nvidia/parakeet-ctc-0.6b" in out


def test_info_overrides_and_json(capsys):
    args = _parse(["teacher", "info", "--model", "teacher_lfm2_700m", "--set", "num_layers=16", "--json"])
    assert args.func(args) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["config"]["num_layers"] == 16
    assert 640e6 < info["parameters"]["backbone"] < 645e6  # all 16 layers, without the 65536 x 1536 embedding


def test_info_unknown_name():
    args = _parse(["teacher", "info", "--model", "teacher_nope"])
    with pytest.raises(ValueError, match="teacher_tiny"):
        args.func(args)
