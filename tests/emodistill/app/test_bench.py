"""`emodistill bench`: JSON + markdown with every runtime and batch size, failures recorded not fatal."""

import argparse
import json
import sys
from pathlib import Path

import torch

from emodistill.app.bench import add_bench_arguments, run_bench

sys.path.insert(0, str(Path(__file__).parents[2] / "export"))  # the export tests' stand-in model
from export_toys import TOY_PREPROCESS, ToyAV  # noqa: E402


def args_for(tmp_path, *extra):
    p = argparse.ArgumentParser()
    add_bench_arguments(p)
    return p.parse_args(["--out", str(tmp_path), "--teacher", "toy-teacher", "--student", "toy-student",
                         "--runs", "3", "--warmup", "1", "--batch-size", "1", "4", "--calib-samples", "8", "--no-pipeline", *extra])


def test_bench_writes_json_and_markdown_for_teacher_and_student(tmp_path, capsys):
    torch.manual_seed(0)
    args = args_for(tmp_path)
    args.loaded = {"teacher": (ToyAV(dim=64), TOY_PREPROCESS), "student": (ToyAV(dim=16), TOY_PREPROCESS)}
    assert run_bench(args) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [m["role"] for m in report["models"]] == ["teacher", "student"]
    for m in report["models"]:
        got = {(r["runtime"], r["batch_size"]) for r in m["rows"] if "p50_ms" in r}
        assert got == {(rt, b) for rt in ("pytorch-eager-cpu", "onnxruntime-fp32-cpu", "onnxruntime-int8-cpu")
                       for b in (1, 4)}
        assert all(r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p95_ms"] for r in m["rows"])
        assert set(m["files"]) == {"onnx-fp32", "onnx-int8"}
    assert report["models"][0]["params"] > report["models"][1]["params"]
    md = (tmp_path / "bench.md").read_text()
    assert "## teacher" in md and "## student" in md and "student vs teacher" in md
    assert md.count("| onnxruntime-int8-cpu |") == 6  # 2 batch sizes x (teacher, student, comparison)
    assert "bench.md" in capsys.readouterr().out


def test_a_failing_runtime_is_recorded_and_the_bench_goes_on(tmp_path):
    class NoExport(ToyAV):
        def forward(self, video, audio, modality_mask=None):
            if float(video.sum()) > -1:  # data-dependent control flow: the exporter refuses it
                return super().forward(video, audio, modality_mask)
            return super().forward(video, audio, modality_mask)

    args = args_for(tmp_path, "--no-int8")
    args.teacher = None
    args.loaded = {"student": (NoExport(), TOY_PREPROCESS)}
    assert run_bench(args) == 0  # eager rows exist
    rows = json.loads((tmp_path / "bench.json").read_text())["models"][0]["rows"]
    assert any(r["runtime"] == "pytorch-eager-cpu" and "p50_ms" in r for r in rows)
    assert any(r["runtime"] == "onnxruntime-fp32" and "export failed" in r["error"] for r in rows)
    assert "error: export failed" in (tmp_path / "bench.md").read_text()


def test_pipeline_row_times_every_stage_of_the_student(tmp_path, capsys):
    from emodistill.core.data.synth import clip_specs, make_clip

    torch.manual_seed(0)
    video = make_clip(str(tmp_path / "clips"), 0, clip_specs(1, "small")[0])
    args = args_for(tmp_path, "--no-int8", "--batch-size", "1")
    args.teacher, args.no_pipeline, args.pipeline_video = None, False, video
    args.loaded = {"student": (ToyAV(dim=16), TOY_PREPROCESS)}
    assert run_bench(args) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["models"][0]["rows"]
    row = next(r for r in rows if r["runtime"] == "pipeline-onnxruntime-fp32-cpu")
    assert row["runs"] >= 1 and 0 < row["p50_ms"] <= row["p90_ms"] <= row["p95_ms"] and row["realtime_factor"] > 0
    assert {"decode", "face", "preprocess", "audio", "model", "host"} <= set(row["stages"])
    assert "Pipeline row" in (tmp_path / "bench.md").read_text()
