import json

import numpy as np

from emodistill.app.report import render_markdown, write_report


def _entry(name, role, acc, n=3):
    cm = np.diag([10, 10, 10]).tolist()
    return {"name": name, "role": role, "kind": "pytorch", "precision": "fp32", "path": "x",
            "metrics": {"accuracy": acc, "uar": acc, "war": acc, "macro_f1": acc, "per_class_recall": [acc] * n,
                        "confusion": cm},
            "params": 1000, "gflops": 0.5,
            "cpu_latency": {"p50_ms": 2.0, "p90_ms": 2.8, "p95_ms": 3.0, "mean_ms": 2.2, "min_ms": 1.9, "runs": 5},
            "rtx3050": {"mode": "estimated", "passed": True, "latency_p50_ms": 0.4, "vram_mb": 300},
            "robustness": {"audio_missing": acc / 2, "video_missing": acc / 3},
            "_pred": np.zeros(4), "_true": np.zeros(4)}


def test_report_written(tmp_path):
    report = {"created": "now", "machine": {"platform": "p", "torch_threads": 2, "cuda": False},
              "data": {"root": "d", "split": "test", "num_samples": 30, "class_names": ["a", "b", "c"]},
              "budget": "rtx3050-laptop-4gb",
              "summary": {"teacher_accuracy": 0.9, "student_accuracy": 0.88, "accuracy_retained": 0.88 / 0.9,
                          "teacher_student_agreement": 0.95, "compression": 10.0, "cpu_speedup": 4.0,
                          "kd_gain_points": 3.0},
              "models": [_entry("Teacher", "teacher", 0.9), _entry("Student (KD)", "student_kd", 0.88)]}
    report["regime"] = {"teacher": {"labelled_clips": 960, "unlabelled_clips": 0},
                        "student_kd": {"label_fraction": 0.1, "labelled_clips": 96, "unlabelled_clips": 864},
                        "student_ce": {"label_fraction": 0.1, "labelled_clips": 96, "unlabelled_clips": 0,
                                       "unlabelled_available": 864}}
    report["summary"]["kd_gain_seeds"] = {"mean": 12.5, "std": 2.0, "n": 3, "kd_wins": 3, "per_seed": [1, 2, 3]}
    md = write_report(report, tmp_path)
    text = md.read_text()
    assert "97.8%** of the teacher" in text and "+3.0" in text and "| Teacher | 90.0 |" in text
    regime = text.splitlines()[2]
    assert regime.startswith("**Regime: semi-supervised distillation**") and "960 labelled train clips" in regime
    assert "96 labelled clips + 864 unlabelled" in regime and "the same 96 labelled clips" in regime
    assert "+12.5 ± 2.0** points, KD wins 3/3" in text and "864 unlabelled clips teach" in text
    assert "## Per-class recall" in text and "| 2.00 / 3.00 |" in text  # CPU p50 / p95
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "accuracy_latency.png").stat().st_size > 1000
    data = json.loads((tmp_path / "report.json").read_text())
    assert "_pred" not in data["models"][0] and data["summary"]["kd_gain_points"] == 3.0
    assert "estimated, PASS" in render_markdown(data)
