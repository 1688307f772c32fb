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


def test_pipeline_check_adds_measured_host_time_to_the_model_figure(toy_model):
    from emodistill.export.budget import pipeline_check

    budget, profile = load_budget("rtx3050-laptop-4gb-realtime", ["precision=fp32"])
    v = estimated_verdict(toy_model, Dims.from_preprocess(TOY_PREPROCESS), budget, profile, "fp32")
    gpu = v.figures["p95_ms"]
    ok = pipeline_check(v.to_dict(), {"p50_ms": 2.0, "p95_ms": 3.0}, "test-cpu")
    assert ok["total_p95_ms"] == pytest.approx(3.0 + gpu) and ok["frame_budget_ms"] == 16.7
    assert ok["fits"] == (3.0 + gpu <= 16.7) and ok["model_method"] == "estimated" and ok["host_method"] == "measured"
    assert "MEASURED on test-cpu" in ok["text"] and "ESTIMATED" in ok["text"]
    slow = pipeline_check(v.to_dict(), {"p50_ms": 20.0, "p95_ms": 30.0}, "test-cpu")
    assert not slow["fits"] and "DOES NOT FIT" in slow["text"]
    v.details["pipeline"] = slow
    assert "DOES NOT FIT" in v.table()
