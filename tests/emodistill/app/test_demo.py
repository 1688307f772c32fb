"""A reduced demo (small synthetic set, 1 epoch per stage) from nothing to the comparison report."""

import importlib.util
import json
import math

from emodistill.app.demo import run_demo

HAS_TRT_RTX = importlib.util.find_spec("tensorrt_rtx") is not None  # a default dependency (x86-64 wheels)


def test_reduced_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    report = run_demo(out, size="small", epochs=1)
    roles = {e["role"] for e in report["models"]}
    assert {"teacher", "student_kd", "student_ce", "onnx_fp32", "onnx_int8"} <= roles
    if HAS_TRT_RTX:  # the demo budget names int8: an SM86 engine built here, its VRAM compiled by TensorRT
        assert (out / "export" / "tensorrt_int8" / "model.engine").stat().st_size > 0
        (engine,) = [e for e in report["models"] if e["role"] == "tensorrt_int8"]
        assert engine["rtx3050"]["labels"]["vram_mb"] == "compiled" and engine["compiled_memory"]["weights_mb"] > 0
    n_classes = len(report["data"]["class_names"])
    for e in report["models"]:
        m = e["metrics"]
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
        assert len(m["per_class_recall"]) == n_classes
        assert sum(map(sum, m["confusion"])) == report["data"]["num_samples"]
        assert e["cpu_latency"]["p50_ms"] > 0
        assert e["rtx3050"] and "error" not in e["rtx3050"], e["rtx3050"]
        assert e["rtx3050"]["mode"] in ("estimated", "measured")
    s = report["summary"]
    assert 0 <= s["teacher_student_agreement"] <= 1 and math.isfinite(s["accuracy_retained"])
    assert s["compression"] > 1 and s["flops_ratio"] > 1  # the teacher is the larger model, in FLOPs too
    t, kd = (next(e for e in report["models"] if e["role"] == r) for r in ("teacher", "student_kd"))
    assert t["rtx3050"]["latency_p50_ms"] > kd["rtx3050"]["latency_p50_ms"]  # and the slower one on the RTX
    # the semi-supervised regime: both arms the same labelled clips, only the KD arm the unlabelled ones
    reg = report["regime"]
    assert reg["student_kd"]["labelled_clips"] == reg["student_ce"]["labelled_clips"] > 0
    assert reg["student_kd"]["unlabelled_clips"] > 0 and reg["student_ce"]["unlabelled_clips"] == 0
    assert reg["teacher"]["labelled_clips"] == reg["student_kd"]["labelled_clips"] + reg["student_kd"]["unlabelled_clips"]
    rep = out / "report"
    assert (rep / "confusion.png").stat().st_size > 5000
    assert (rep / "accuracy_latency.png").stat().st_size > 5000
    md = (rep / "report.md").read_text()
    assert md.splitlines()[2].startswith("**Regime: semi-supervised distillation**") and "KD gain over CE-only" in md
    for name in ("Teacher", "Student (KD)", "Student (CE only)", "ONNX FP32", "ONNX INT8"):
        assert f"| {name} |" in md
    assert json.loads((rep / "report.json").read_text())["summary"] == s

    # a rerun skips every stage (cheap), and still returns the same report
    again = run_demo(out, size="small", epochs=1)
    assert again["summary"] == s
