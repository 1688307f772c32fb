"""The stream's real-time verdict on recorded per-window timings (emodistill.app.realtime)."""

import pytest

from emodistill.app.realtime import FALLS_BEHIND, KEEPS_UP, model_row, realtime_verdict

# issue 24's run: 40x faster than real time, yet "19.60 ms vs frame budget 16.70 ms -> DOES NOT FIT"
RECORDED = {"hop_s": 0.5, "realtime_factor": 0.025, "windows": 118,
            "stages": {"host": {"p50_ms": 12.0, "p95_ms": 18.16}, "model": {"p50_ms": 3.0, "p95_ms": 4.2}}}
SIDECAR_VERDICT = {"method": "estimated", "budget": "rtx3050-laptop-4gb-realtime", "profile": "rtx3050-laptop-4gb",
                   "precision": "int8", "figures": {"p50_ms": 1.2, "p95_ms": 1.44, "vram_mb": 300.0},
                   "labels": {"p50_ms": "estimated", "p95_ms": "estimated", "vram_mb": "compiled"}}


def test_per_window_work_is_judged_against_the_hop_not_a_frame():
    v = realtime_verdict(RECORDED, 2.0, "test-cpu", model_row(SIDECAR_VERDICT))
    assert v["keeps_up"] and v["verdict"] == KEEPS_UP
    assert v["work_p95_ms"] == pytest.approx(18.16 + 1.44) and v["hop_ms"] == 500
    assert v["label_latency_s"] == pytest.approx(2.0 + 0.01960)
    assert "[estimated on rtx3050-laptop-4gb]" in v["text"] and "[measured on test-cpu]" in v["text"]
    assert "frame budget" not in v["text"] and "40.0x real time" in v["text"]


def test_work_longer_than_the_hop_falls_behind():
    slow = {**RECORDED, "hop_s": 0.25, "stages": {"host": {"p95_ms": 260.0}, "model": {"p95_ms": 9.0}}}
    v = realtime_verdict(slow, 2.0, "test-cpu", model_row(SIDECAR_VERDICT))
    assert not v["keeps_up"] and v["verdict"] == FALLS_BEHIND and "FALLS BEHIND" in v["text"]
    at_limit = {**slow, "stages": {"host": {"p95_ms": 248.5}, "model": {"p95_ms": 9.0}}}
    assert realtime_verdict(at_limit, 2.0, "cpu", model_row(SIDECAR_VERDICT))["keeps_up"]  # 248.5 + 1.44 < 250


def test_without_an_export_verdict_the_model_time_here_stands_in_labelled_measured():
    v = realtime_verdict(RECORDED, 1.0, "test-cpu", model_row(None))
    assert v["model"]["label"] == "measured" and v["model"]["p95_ms"] == 4.2
    assert v["work_p95_ms"] == pytest.approx(22.36)


def test_the_model_row_carries_its_label():
    compiled = {**SIDECAR_VERDICT, "labels": {"p95_ms": "measured"}, "method": "measured"}
    assert model_row(compiled)["label"] == "measured"
    assert model_row({"method": "estimated", "figures": {"p95_ms": 2.0}})["label"] == "estimated"
    assert model_row({"figures": {}}) is None
