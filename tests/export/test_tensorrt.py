"""torch-tensorrt backend (`--trt-backend torch-tensorrt`): plain refusal without torch-tensorrt/GPU, the trtexec
line, and (on a GPU) real engines. The default backend, TensorRT for RTX, is tested in test_trt_rtx.py."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from emodistill.export.run import main as export_main
from emodistill.core.utils import REPO_ROOT
from emodistill.export.onnx import compare_logits, torch_logits
from emodistill.export.tensorrt import availability, trtexec_command
from emodistill.export.wrappers import Dims, random_inputs
from export_toys import TOY_PREPROCESS

DIMS = Dims.from_preprocess(TOY_PREPROCESS)


def test_availability_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, reason = availability("int8")
    assert not ok and "no CUDA GPU" in reason
    try:
        import torch_tensorrt  # noqa: F401
    except Exception:
        assert "torch-tensorrt is not installed" in reason and "emodistill[tensorrt]" in reason


def test_export_command_says_so_plainly_and_exits_nonzero(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = export_main(["--model", str(tmp_path / "none"), "--format", "tensorrt", "--trt-backend",
                      "torch-tensorrt", "--precision", "fp16", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 5
    assert "TensorRT export is not possible on this machine" in err and "no CUDA GPU" in err
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.skipif(availability("fp16")[0], reason="torch-tensorrt and a GPU are present here")
def test_run_py_script_refuses_tensorrt_here(tmp_path):
    r = subprocess.run([sys.executable, "export/run.py", "--model", str(tmp_path), "--format", "tensorrt",
                        "--trt-backend", "torch-tensorrt", "--out", str(tmp_path / "o")], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 5 and "TensorRT export is not possible" in r.stderr


def test_trtexec_line_for_the_onnx_artifact():
    line = trtexec_command("out/model.onnx", DIMS, "int8", opt_batch=4, max_batch=16)
    assert line.startswith("trtexec --onnx=out/model.onnx --saveEngine=out/model.engine")
    assert "--minShapes=video:1x4x3x32x32,audio:1x8000" in line
    assert "--optShapes=video:4x4x3x32x32,audio:4x8000" in line
    assert "--maxShapes=video:16x4x3x32x32,audio:16x8000" in line
    assert line.endswith("--int8 --fp16")
    assert trtexec_command("m.onnx", DIMS, "fp16").endswith("--fp16")
    assert "--fp16" not in trtexec_command("m.onnx", DIMS, "fp32")


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_fully_and_matches_pytorch(trained_toy, tmp_path, precision):
    from emodistill.export.tensorrt import build_engine

    model, _, test = trained_toy
    facts, compiled = build_engine(model, DIMS, precision, tmp_path / "toy.engine", opt_batch=1, max_batch=16)
    assert (tmp_path / "toy.engine").stat().st_size > 0
    assert facts["engine"]["device_memory_bytes"] >= 0 and facts["engine"]["weights_bytes"] > 0
    assert facts["settings"]["require_full_compilation"] and facts["settings"]["use_explicit_typing"]
    batches = [{"video": test.video[i:i + 16], "audio": test.audio[i:i + 16]} for i in range(0, 64, 16)]
    ref, _ = torch_logits(model.cpu(), batches)
    with torch.no_grad():
        out = np.concatenate([compiled(b["video"].cuda(), b["audio"].cuda()).float().cpu().numpy() for b in batches])
    assert compare_logits(ref, out, precision if precision != "fp32" else "fp16")["passed"]


@pytest.mark.tensorrt
def test_int8_engine_with_model_optimizer(trained_toy, tmp_path):
    from emodistill.export.tensorrt import build_engine

    model, train, test = trained_toy
    calib = [{"video": train.video[i:i + 16], "audio": train.audio[i:i + 16]} for i in range(0, 64, 16)]
    facts, compiled = build_engine(model, DIMS, "int8", tmp_path / "toy8.engine", calib=calib)
    assert facts["int8"] and (tmp_path / "toy8.engine").exists()
    v, a = random_inputs(DIMS, 4)
    assert compiled(v.cuda(), a.cuda()).shape == (4, 4)
