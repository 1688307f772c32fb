"""Budget verdicts: pass/fail rows, the table, and the estimated/measured label."""

import pytest
import torch

from export_toys import TOY_PREPROCESS
from emodistill.export.budget import estimated_verdict, judge, make_verdict, measured_verdict
from emodistill.export.profiles import load_budget
from emodistill.export.wrappers import Dims

DIMS = Dims.from_preprocess(TOY_PREPROCESS)


def test_estimated_verdict_passes_a_generous_budget(toy_model):
    budget, profile = load_budget("rtx3050-desktop-8gb", ["max_p50_ms=50", "max_p95_ms=80", "max_vram_mb=2000"])
    v = estimated_verdict(toy_model, DIMS, budget, profile, "fp16")
    assert v.method == "estimated" and v.passed
    assert "ESTIMATED" in v.table() and "PASS" in v.table()
    assert v.details["params"] == sum(p.numel() for p in toy_model.parameters())
    assert 0 < v.figures["p50_ms"] < v.figures["p95_ms"]
    # context + workspace are part of the VRAM figure
    assert v.figures["vram_mb"] > profile.vram.cuda_context_mb + profile.vram.workspace_mb


def test_exceeded_figures_say_which_and_by_how_much(toy_model):
    budget, profile = load_budget("rtx3050-laptop-4gb", ["max_p50_ms=0.001", "max_vram_mb=10"])
    v = estimated_verdict(toy_model, DIMS, budget, profile, "fp32")
    assert not v.passed
    rows = {r["figure"]: r for r in v.rows}
    assert not rows["p50_ms"]["ok"] and rows["p50_ms"]["over_by"] == pytest.approx(v.figures["p50_ms"] - 0.001, abs=1e-3)
    assert not rows["vram_mb"]["ok"] and rows["vram_mb"]["over_pct"] > 100
    assert rows["p95_ms"]["ok"]  # the profile's default p95 limit is generous
    table = v.table()
    assert "EXCEEDED" in table and "over by" in table and "p50_ms" in table and "vram_mb" in table


def test_bigger_batch_costs_more(toy_model):
    b1, prof = load_budget("rtx3050-desktop-8gb")
    b16, _ = load_budget("rtx3050-desktop-8gb", ["batch_size=16"])
    v1 = estimated_verdict(toy_model, DIMS, b1, prof, "fp16")
    v16 = estimated_verdict(toy_model, DIMS, b16, prof, "fp16")
    assert v16.figures["p50_ms"] > v1.figures["p50_ms"] and v16.figures["vram_mb"] > v1.figures["vram_mb"]


def test_judge_flags_a_model_larger_than_the_board():
    budget, profile = load_budget("rtx3050-laptop-4gb", ["max_vram_mb=100000"])
    rows = {r["figure"]: r for r in judge({"p50_ms": 1, "p95_ms": 1, "vram_mb": 5000}, budget, profile)}
    assert rows["vram_mb"]["ok"] and not rows["vram_board"]["ok"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_without_cuda_auto_is_estimated_and_measured_refuses(toy_model):
    budget, profile = load_budget("rtx3050-desktop-8gb")
    assert make_verdict(toy_model, DIMS, budget, profile, "fp32", "auto").method == "estimated"
    with pytest.raises(RuntimeError, match="CUDA"):
        measured_verdict(toy_model, DIMS, budget, profile, "fp32")


@pytest.mark.gpu
def test_measured_verdict_on_cuda(toy_model):
    budget, profile = load_budget("rtx3050-desktop-8gb")
    v = measured_verdict(toy_model, DIMS, budget, profile, "fp16", seconds=1.0)
    assert v.method == "measured" and v.details["timing"]["runs"] >= 20
    assert v.figures["vram_mb"] > 0 and "MEASURED" in v.table()


def test_band_calls_by_hand():
    from emodistill.export.budget import FAIL, PASS, TOO_CLOSE, banded_call

    # estimate 10 ms, truth expected in [7, 16] ms
    assert banded_call(10.0, 20.0, 0.7, 1.6) == (PASS, pytest.approx(7.0), pytest.approx(16.0))
    assert banded_call(10.0, 16.0, 0.7, 1.6)[0] == PASS  # the band's top exactly at the limit still fits
    assert banded_call(10.0, 12.0, 0.7, 1.6)[0] == TOO_CLOSE  # point estimate fits, the band does not
    assert banded_call(10.0, 8.0, 0.7, 1.6)[0] == TOO_CLOSE  # point estimate over, the band's bottom fits
    assert banded_call(10.0, 6.9, 0.7, 1.6)[0] == FAIL
    assert banded_call(10.0, None, 0.7, 1.6)[0] == PASS


def test_an_estimate_near_its_limit_is_too_close_to_call(toy_model):
    from emodistill.export.budget import TOO_CLOSE

    budget, profile = load_budget("rtx3050-desktop-8gb", ["max_vram_mb=2000"])
    p50 = estimated_verdict(toy_model, DIMS, budget, profile, "fp16").figures["p50_ms"]
    near, _ = load_budget("rtx3050-desktop-8gb", [f"max_p50_ms={p50 * 0.95:.6f}", "max_p95_ms=1000",
                                                  "max_vram_mb=2000"])
    v = estimated_verdict(toy_model, DIMS, near, profile, "fp16")
    rows = {r["figure"]: r for r in v.rows}
    assert not rows["p50_ms"]["ok"] and rows["p50_ms"]["call"] == TOO_CLOSE  # over by the point value, inside the band
    assert v.call == TOO_CLOSE and not v.passed  # the point value is over: export still exits 3, and says why
    b = v.band
    assert rows["p50_ms"]["low"] == pytest.approx(p50 * b["ratio_low"], rel=1e-3)
    assert rows["p50_ms"]["high"] == pytest.approx(p50 * b["ratio_high"], rel=1e-3)
    assert "TOO CLOSE TO CALL" in v.table() and "band" in v.table()
    assert v.to_dict()["call"] == TOO_CLOSE


def test_generous_and_hopeless_budgets_are_pass_and_fail(toy_model):
    from emodistill.export.budget import FAIL, PASS

    ok, profile = load_budget("rtx3050-desktop-8gb", ["max_p50_ms=50", "max_p95_ms=80", "max_vram_mb=2000"])
    assert estimated_verdict(toy_model, DIMS, ok, profile, "fp16").call == PASS
    bad, _ = load_budget("rtx3050-desktop-8gb", ["max_p50_ms=0.001"])
    v = estimated_verdict(toy_model, DIMS, bad, profile, "fp16")
    assert v.call == FAIL and not v.passed and "-> FAIL" in v.table()
