"""Fixtures of the export tests; the stand-in model and data live in export_toys.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # export_toys, for this conftest and the test modules
from export_toys import ToyAV, ToyClips, train_toy  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--update-perf-baseline", action="store_true", default=False,
                     help="perf tests rewrite tests/export/perf_baseline.json instead of comparing "
                          "(same as EMODISTILL_UPDATE_PERF_BASELINE=1 or `emodistill perf --update-baseline`)")


@pytest.fixture
def update_perf_baseline(request) -> bool:
    return bool(request.config.getoption("--update-perf-baseline", default=False)
                or os.environ.get("EMODISTILL_UPDATE_PERF_BASELINE") == "1")


@pytest.fixture
def toy_model():
    torch.manual_seed(0)
    return ToyAV().eval()


@pytest.fixture(scope="session")
def trained_toy():
    """(model, train clips, test clips): a ToyAV trained to high accuracy in a few seconds."""
    torch.manual_seed(0)
    train, test = ToyClips(96, seed=1), ToyClips(64, seed=2)
    return train_toy(ToyAV(), train, steps=40), train, test
