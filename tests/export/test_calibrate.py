"""The estimator against published TensorRT latencies of several GPUs (leave-one-GPU-out), the error band, and the
tile-quantization term."""

import json
import math

import pytest
import torch
from torch import nn

from emodistill.export import calibrate as C
from emodistill.export.calibrate import (DATA_DIR, TARGETS, TIMING_METHODS, Table, band_from, base_predictions,
                                         fit_excluding, fit_excluding_by_method, grid_predictions, leave_one_gpu_out,
                                         load_table, load_tables, spearman, weighted_quantile)
from emodistill.export.estimate import count_costs, estimate, tile_utilization
from emodistill.export.profiles import load_profile

pytest.importorskip("torchvision")


def test_every_table_states_its_source_date_and_conditions():
    tables = load_tables()
    assert len({t.gpu for t in tables}) >= 3
    # at least three GPU generations (compute capability majors: Maxwell 5, Volta/Turing 7, Ampere 8)
    assert len({load_profile(t.gpu).gpu.compute_capability.split(".")[0] for t in tables}) >= 3
    for t in tables:
        assert t.kind == "published" and t.source["title"] and (t.source.get("url") or t.source.get("repository"))
        assert t.date_read and t.conditions["batch"] == 1 and "fp16" in t.conditions["precision"]
        assert t.conditions["input"] and "transfer_included" in t.conditions
        assert all(r["ms"] > 0 and r["builder"] in ("torchvision", "timm") for r in t.rows)
        # how it was timed is stated in every table (known before anything is predicted)
        assert t.conditions["timing_method"] in TIMING_METHODS and t.timing_method == t.conditions["timing_method"]
    # a per-method cost can be fitted on other GPUs only if a method is timed on at least two GPUs
    for method in ("trtexec", "host-loop"):
        assert len({t.gpu for t in tables if t.timing_method == method}) >= 2


def test_a_table_without_its_source_is_refused(tmp_path):
    d = json.loads(next(DATA_DIR.glob("*.json")).read_text())
    d["source"] = {"title": "somewhere"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="source"):
        load_table(bad)


def test_a_table_with_an_unknown_timing_method_is_refused(tmp_path):
    d = json.loads(next(DATA_DIR.glob("*.json")).read_text())
    d["conditions"]["timing_method"] = "stopwatch"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="timing_method"):
        load_table(bad)


def test_a_gpu_check_result_is_ingested_as_a_measured_table(tmp_path):
    table = {"gpu": "h200-sxm", "kind": "measured", "source": {"title": "gpu_check on H200", "device": "NVIDIA H200"},
             "date_read": "2026-12-03", "conditions": {"precision": "fp16", "batch": 1},
             "rows": [{"model": "resnet18", "builder": "torchvision", "input_hw": [224, 224], "ms": 0.3},
                      {"model": "student_xs", "builder": "student", "ms": 0.9}]}
    f = tmp_path / "gpu_check.json"
    f.write_text(json.dumps({"rows": [], "calibration_table": table}))
    t = load_table(f)
    assert t.kind == "measured" and t.gpu == "h200-sxm" and len(t.rows) == 2
    assert t.key(t.rows[1]) == ("student", "student_xs", (224, 224))


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


def _toy_trace(width: int):
    net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
    return count_costs(net, (torch.zeros(1, 3, 32, 32),), "fp16")


def _toy_tables(scale: dict[str, float]):
    """Three GPUs, three toy models each; published ms = `scale[gpu]` x a made-up figure."""
    traces = {("torchvision", f"toy{w}", (32, 32)): _toy_trace(w) for w in (8, 32, 128)}
    tables = [Table(g, "published", {"title": "test", "url": "-"}, "2026-12-03", {}, [
        {"model": f"toy{w}", "builder": "torchvision", "input_hw": [32, 32], "ms": s * (0.05 + w / 400)}
        for w in (8, 32, 128)], f"{g}.json") for g, s in scale.items()]
    return tables, traces


GRID = {"eff_tensor": [0.3, 0.6], "eff_mem": [0.5, 0.8], "kernel_overhead_us": [2, 14], "gemm_tile": [0, 64]}


def test_the_fit_never_sees_the_held_out_gpu():
    gpus = {"jetson-agx-xavier": 1.0, "rtx3090": 0.3, "tesla-t4": 0.5}
    tables, traces = _toy_tables(gpus)
    profiles = {g: load_profile(g) for g in gpus}
    points = C._points(tables, traces, profiles)
    combos, pred = grid_predictions(points, GRID)
    for held in gpus:
        best, _ = fit_excluding(points, combos, pred, held)
        # any change of the held-out GPU's published figures leaves its fitted constants unchanged
        wild = [dict(p, published_ms=p["published_ms"] * (50 if p["gpu"] == held else 1)) for p in points]
        assert fit_excluding(wild, combos, pred, held)[0] == best
    # ...while the same change on a GPU it is fitted on does move them (the test can fail)
    wild = [dict(p, published_ms=p["published_ms"] * (50 if p["gpu"] == "rtx3090" else 1)) for p in points]
    assert fit_excluding(wild, combos, pred, "tesla-t4")[0] != fit_excluding(points, combos, pred, "tesla-t4")[0]


def test_leave_one_gpu_out_reports_each_gpu_on_constants_fitted_on_the_others():
    tables, traces = _toy_tables({"jetson-agx-xavier": 1.0, "rtx3090": 0.3, "tesla-t4": 0.5})
    res = leave_one_gpu_out(tables, traces, GRID)
    assert [f["gpu"] for f in res["folds"]] == ["jetson-agx-xavier", "rtx3090", "tesla-t4"]
    for f in res["folds"]:
        assert f["gpu"] not in f["fit_on"] and len(f["fit_on"]) == 2 and f["summary"]["n"] == 3
        # the reported figures are estimate() with the fold's constants, not the vectorized copy
        prof = load_profile(f["gpu"])
        prof = prof.model_copy(update={"estimator": prof.estimator.model_copy(update=f["constants"])})
        r = f["rows"][0]
        assert r["predicted_ms"] == pytest.approx(estimate(traces[("torchvision", r["model"], (32, 32))], prof,
                                                           include_transfer=False).p50_ms)
    assert res["band"]["n_rows"] == 9 and res["band"]["ratio_low"] <= res["band"]["ratio_high"]
    assert "NOT MET" in C.render(res) or "MET" in C.render(res)


def _method_tables(methods: dict[str, str], truth: dict[str, float], consts: dict):
    """Toy tables whose published figures ARE the estimator's, with the per-kernel cost `truth[method]` of each
    GPU's timing method and the shared `consts`."""
    traces = {("torchvision", f"toy{w}", (32, 32)): _toy_trace(w) for w in (8, 32, 128)}
    tables = []
    for g, m in methods.items():
        prof = load_profile(g)
        prof = prof.model_copy(update={"estimator": prof.estimator.model_copy(
            update={**consts, "kernel_overhead_us": truth[m]})})
        rows = [{"model": f"toy{w}", "builder": "torchvision", "input_hw": [32, 32],
                 "ms": estimate(traces[("torchvision", f"toy{w}", (32, 32))], prof, include_transfer=False).p50_ms}
                for w in (8, 32, 128)]
        tables.append(Table(g, "published", {"title": "test", "url": "-"}, "2026-12-03", {"timing_method": m}, rows,
                            f"{g}.json"))
    return tables, traces


def test_the_per_method_fit_recovers_each_methods_cost_from_the_other_gpus():
    consts = {"eff_tensor": 0.6, "eff_mem": 0.8, "gemm_tile": 0}
    methods = {"jetson-agx-xavier": "host-loop", "jetson-nano": "host-loop", "rtx3090": "trtexec",
               "jetson-agx-orin": "trtexec", "tesla-t4": "unstated"}
    tables, traces = _method_tables(methods, {"trtexec": 2, "host-loop": 14, "unstated": 8}, consts)
    res = leave_one_gpu_out(tables, traces, GRID | {"kernel_overhead_us": [2, 8, 14]})
    folds = {f["gpu"]: f for f in res["folds"]}
    for g in ("jetson-agx-xavier", "rtx3090"):  # the method is timed on another GPU: its cost is recovered exactly
        f = folds[g]
        assert {k: f["constants"][k] for k in consts} == consts
        assert f["constants"]["kernel_overhead_us_by_method"][methods[g]] == (14 if methods[g] == "host-loop" else 2)
        assert f["summary"]["median_abs_pct"] == pytest.approx(0, abs=1e-6)
        assert {r["kernel_overhead_us"] for r in f["rows"]} == {14 if methods[g] == "host-loop" else 2}
    # T4's method is on no other GPU: it gets the one cost that best fits all the other tables, not its own 8 us
    t4 = folds["tesla-t4"]
    assert "unstated" not in t4["constants"]["kernel_overhead_us_by_method"]
    assert {r["kernel_overhead_us"] for r in t4["rows"]} == {t4["constants"]["kernel_overhead_us"]}
    assert "unstated" in res["fit_on_all"]["constants"]["kernel_overhead_us_by_method"]
    # one cost for all methods cannot fit both 2 and 14 us
    single = leave_one_gpu_out(tables, traces, GRID | {"kernel_overhead_us": [2, 8, 14]}, by_method=False)
    assert max(f["summary"]["median_abs_pct"] for f in single["folds"]) > 1


def test_the_per_method_fit_never_sees_the_held_out_gpu():
    methods = {"jetson-agx-xavier": "host-loop", "jetson-nano": "host-loop", "rtx3090": "trtexec",
               "jetson-agx-orin": "trtexec"}
    tables, traces = _method_tables(methods, {"trtexec": 2, "host-loop": 14}, {"eff_tensor": 0.6, "eff_mem": 0.8,
                                                                              "gemm_tile": 0})
    profiles = {g: load_profile(g) for g in methods}
    points = C._points(tables, traces, profiles)
    combos, base, launches = base_predictions(points, GRID)
    ks = GRID["kernel_overhead_us"]
    for held in methods:
        best, _ = fit_excluding_by_method(points, combos, base, launches, ks, held)
        wild = [dict(p, published_ms=p["published_ms"] * (50 if p["gpu"] == held else 1)) for p in points]
        assert fit_excluding_by_method(wild, combos, base, launches, ks, held)[0] == best
    wild = [dict(p, published_ms=p["published_ms"] * (50 if p["gpu"] == "rtx3090" else 1)) for p in points]
    assert (fit_excluding_by_method(wild, combos, base, launches, ks, "jetson-agx-orin")[0]
            != fit_excluding_by_method(points, combos, base, launches, ks, "jetson-agx-orin")[0])


def test_vectorized_roofline_equals_estimate():
    trace = _toy_trace(64)
    for name in ("jetson-agx-xavier", "rtx3090", "jetson-nano"):
        prof = load_profile(name)
        for consts in ({"eff_tensor": 0.3, "eff_mem": 0.5, "kernel_overhead_us": 2, "gemm_tile": 0},
                       {"eff_tensor": 0.8, "eff_mem": 0.9, "kernel_overhead_us": 14, "gemm_tile": 64}):
            p = prof.model_copy(update={"estimator": prof.estimator.model_copy(update=consts)})
            v = C._Vectorized(trace, prof)
            assert v.p50_ms(**consts) == pytest.approx(estimate(trace, p, include_transfer=False).p50_ms, rel=1e-9)
            # the per-kernel cost is linear: base + cost x launches (what the per-method fit relies on)
            shared = {k: consts[k] for k in ("eff_tensor", "eff_mem", "gemm_tile")}
            assert v.base_ms(**shared) + consts["kernel_overhead_us"] * 1e-3 * v.n_launches == pytest.approx(
                v.p50_ms(**consts), rel=1e-9)


def test_band_arithmetic_weights_each_gpu_equally():
    assert weighted_quantile([1, 2, 3], [1, 1, 1], 0.5) == pytest.approx(2.0)
    # two GPUs: one with 4 rows at ratio 1.0, one with a single row at 2.0 -> each holds half the weight
    rows = [{"gpu": "a", "ratio": 1.0}] * 4 + [{"gpu": "b", "ratio": 2.0}]
    band = band_from(rows, (0.1, 0.9))
    assert band["ratio_low"] == pytest.approx(1.0) and band["ratio_high"] == pytest.approx(2.0)
    # weighted mid-points: the last 1.0 sits at (1 - 0.125) / 2 = 0.4375, the 2.0 at (2 - 0.5) / 2 = 0.75;
    # the median interpolates between them: 1 + (0.5 - 0.4375) / (0.75 - 0.4375) = 1.2
    assert weighted_quantile([1.0] * 4 + [2.0], [0.25] * 4 + [1.0], 0.5) == pytest.approx(1.2)
    assert band["gpus"] == ["a", "b"] and band["n_rows"] == 5


def test_the_stored_band_states_its_provenance():
    from emodistill.export.budget import load_band

    b = load_band()
    assert 0 < b["ratio_low"] < 1 < b["ratio_high"]
    assert len(b["gpus"]) >= 3 and set(b["per_gpu"]) == set(b["gpus"]) and b["sources"]
    assert "calibrate" in b["generated_by"]


@pytest.mark.slow
def test_the_stored_band_is_what_leave_one_gpu_out_gives():
    """Counts every model of every table (about 1-2 minutes on 2 CPU cores)."""
    from emodistill.export.budget import load_band

    res = leave_one_gpu_out(load_tables())
    stored = load_band()
    assert res["band"]["ratio_low"] == pytest.approx(stored["ratio_low"], abs=1e-3)
    assert res["band"]["ratio_high"] == pytest.approx(stored["ratio_high"], abs=1e-3)
    for f in res["folds"]:
        assert f["summary"]["median_abs_pct"] == pytest.approx(stored["per_gpu"][f["gpu"]]["median_abs_pct"], abs=0.1)
    assert TARGETS["median_abs_pct"] == 30.0


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
