"""The estimator against torch2trt's published Jetson AGX Xavier latencies, and the tile-quantization term."""

import math

import pytest
import torch
from torch import nn

from emodistill.export.calibrate import FIT, HELD_OUT, PUBLISHED, TARGETS, evaluate, count_model, spearman
from emodistill.export.estimate import count_costs, tile_utilization
from emodistill.export.profiles import load_profile

pytest.importorskip("torchvision")


def test_split_is_fixed_disjoint_and_covers_every_model():
    assert set(FIT).isdisjoint(HELD_OUT) and len(FIT) + len(HELD_OUT) == len(PUBLISHED) == 29
    assert FIT[:3] == ("alexnet", "squeezenet1_1", "resnet34") and HELD_OUT[:2] == ("squeezenet1_0", "resnet18")


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


@pytest.mark.perf
def test_held_out_half_meets_the_targets():
    """Shared constants (fitted on FIT only) on the models they were not fitted on."""
    profile = load_profile("jetson-agx-xavier")
    traces = {name: count_model(name) for name in HELD_OUT}
    held = evaluate(traces, profile, halves=("held-out",))["held_out"]
    assert held["n"] == len(HELD_OUT)
    assert held["median_abs_pct"] <= TARGETS["median_abs_pct"] and held["spearman"] >= TARGETS["spearman"], held


def test_tile_and_wave_quantization_by_hand():
    prof = load_profile("jetson-agx-xavier")  # 8 SMs, gemm_tile 64
    conv = nn.Conv2d(64, 32, 3, padding=1)
    (op,) = count_costs(conv, (torch.zeros(1, 64, 7, 7),), "fp16").ops
    assert op.gemm_shape == (49, 32, 1)
    # one 64x64 tile (49 x 32 used) on one of 8 SMs
    assert tile_utilization(op, prof) == pytest.approx(49 * 32 / (8 * 64 * 64))
    (big,) = count_costs(nn.Linear(512, 512, bias=False), (torch.zeros(1024, 512),), "fp16").ops
    assert big.gemm_shape == (1024, 512, 1)
    tiles = 16 * 8
    assert tile_utilization(big, prof) == pytest.approx(1024 * 512 / (math.ceil(tiles / 8) * 8 * 64 * 64)) == 1.0


def test_concatenation_launches_one_copy_per_input():
    class Cat(nn.Module):
        def forward(self, x):
            return torch.cat([x * 2, x * 3, x * 4], 1)

    ops = [o for o in count_costs(Cat(), (torch.zeros(1, 4),), "fp32").ops if o.op == "cat"]
    assert len(ops) == 1 and ops[0].launches == 3
