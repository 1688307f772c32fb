"""`emodistill export` end to end on a student_xs checkpoint: artifact, sidecar, verdict and exit codes."""

import json
import subprocess
import sys

import pytest
import torch

from emodistill.core.checkpoint import save_checkpoint
from emodistill.export.run import main as export_main
from emodistill.core.contract import RAVDESS_CLASSES
from emodistill.core.utils import REPO_ROOT, sha256_file

student = pytest.importorskip("emodistill.student")


@pytest.fixture(scope="module")
def xs_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = student.create_student("student_xs")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "xs", model,
                           preprocess=model.config.default_preprocess, class_names=RAVDESS_CLASSES)


FAST = ["--runs", "3", "--parity-samples", "8", "--batch-size", "8"]


def test_fp32_export_sidecar_and_budget_pass(xs_checkpoint, tmp_path, capsys):
    out = tmp_path / "fp32"
    rc = export_main(["--model", str(xs_checkpoint / "model.safetensors"), "--format", "onnx",
                   "--precision", "fp32", "--budget", "rtx3050-desktop-8gb", "--out", str(out), *FAST])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model.json", "verdict.txt"}
    side = json.loads((out / "model.json").read_text())
    assert side["sha256"] == sha256_file(out / "model.onnx") and side["size_bytes"] == (out / "model.onnx").stat().st_size
    c = side["input_contract"]
    assert c["inputs"][0] == {"name": "video", "shape": ["batch", 8, 3, 64, 64], "dtype": "float32",
                              "layout": "B,T,C,H,W", "range": [0.0, 1.0], "color": "RGB"}
    assert c["inputs"][1]["shape"] == ["batch", 32000] and c["sample_rate"] == 16000
    assert (c["frame_count"], c["frame_size"], c["clip_seconds"]) == (8, [64, 64], 2.0)
    assert c["class_names"] == RAVDESS_CLASSES and c["outputs"][0]["shape"] == ["batch", 8]
    assert "normalisation" in c and c["preprocess"]["num_frames"] == 8
    assert side["precision"] == "fp32" and side["export"]["opset"] == 18
    assert {"torch", "onnx", "onnxruntime"} <= set(side["versions"])
    assert side["parity"]["passed"] and side["parity"]["max_abs_diff"] < 1e-3
    assert side["ort_cpu_latency"][0]["p50_ms"] > 0
    verdict = side["budget"]["verdict"]
    assert verdict["method"] == "estimated" and verdict["passed"]
    assert side["trtexec"].startswith("trtexec --onnx=")
    assert "ESTIMATED" in printed and "PASS" in printed and "parity vs PyTorch fp32" in printed
    # a second run refuses to overwrite
    rc = export_main(["--model", str(xs_checkpoint), "--out", str(out), *FAST])
    assert rc == 2 and "refusing to overwrite" in capsys.readouterr().err


def test_int8_export_exceeding_the_budget_exits_3_with_a_table(xs_checkpoint, tmp_path, capsys):
    out = tmp_path / "int8"
    rc = export_main(["--model", str(xs_checkpoint), "--precision", "int8", "--budget",
                   "rtx3050-laptop-4gb-realtime", "--set", "budget.max_p50_ms=0.05", "--out", str(out),
                   "--calib-samples", "8", *FAST])
    printed = capsys.readouterr().out
    assert rc == 3, printed
    assert "EXCEEDED" in printed and "over by" in printed and "p50_ms" in printed
    side = json.loads((out / "model.json").read_text())
    rows = {r["figure"]: r for r in side["budget"]["verdict"]["rows"]}
    assert not rows["p50_ms"]["ok"] and rows["p50_ms"]["over_by"] > 0 and rows["vram_mb"]["ok"]
    assert side["quantization"]["calibration_samples"] == 8
    assert side["quantization"]["config"]["target"] == "cpu"
    assert len(side["quantization"]["excluded_nodes"]) >= 1  # the log-mel DFT conv / mel matmul stay float
    # int8 weights (the float front end's DFT basis and norms aside) make it well under the fp32 weights
    assert side["size_bytes"] < 0.7 * 4 * side["source_checkpoint"]["num_parameters"]
    assert not (out / ".model-fp32.onnx").exists()


def test_budget_precision_mismatch_and_force(xs_checkpoint, tmp_path, capsys):
    rc = export_main(["--model", str(xs_checkpoint), "--precision", "fp32",
                   "--budget", "rtx3050-laptop-4gb-realtime", "--out", str(tmp_path / "x")])
    assert rc == 2 and "is for int8" in capsys.readouterr().err
    from emodistill.export.run import _prepare_out

    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "model.json").write_text("{}")
    with pytest.raises(FileExistsError):
        _prepare_out(tmp_path / "y", force=False)
    _prepare_out(tmp_path / "y", force=True)
    assert (tmp_path / "y" / "model.json").exists()  # --force replaces only once the new export is complete


def test_run_py_and_cli_registration(capsys):
    r = subprocess.run([sys.executable, "export/run.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--budget" in r.stdout and "--precision" in r.stdout
    import argparse

    from emodistill.export.cli import register

    parser = argparse.ArgumentParser(prog="emodistill")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--model", "c", "--out", "o", "--precision", "int8"])
    assert args.func.__name__ == "_export" and args.format == "onnx" and args.budget == "rtx3050-laptop-4gb"
    args = parser.parse_args(["student", "info", "--model", "student_xs", "--latency", "--runs", "3"])
    assert args.func.__name__ == "_student_info" and args.latency and args.runs == 3 and args.threads == 1
    assert "bench" not in parser._subparsers._group_actions[0].choices  # a top-layer command (emodistill.app.bench)
    for cmd in (["export"], ["student", "info"]):  # every option has a help string
        with pytest.raises(SystemExit):
            parser.parse_args([*cmd, "--help"])
        text = capsys.readouterr().out
        assert "(default:" in text or "default" in text
