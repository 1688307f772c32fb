"""TensorRT for RTX: real SM86 engines built here (no GPU needed), sidecar facts, compiled memory, clear errors."""

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from emodistill.core.checkpoint import save_checkpoint
from emodistill.core.contract import RAVDESS_CLASSES
from emodistill.export.onnx import export_onnx
from emodistill.export.profiles import load_profile
from emodistill.export.quantize import QuantConfig, make_reader, quantize_int8
from emodistill.export.run import main as export_main
from emodistill.export.wrappers import Dims
from export_toys import TOY_PREPROCESS, ToyAV, ToyClips

trt = pytest.importorskip("tensorrt_rtx")
from emodistill.export.trt_rtx import EngineBuildError, build_engine, parse_memory, sm_target  # noqa: E402

DIMS = Dims.from_preprocess(TOY_PREPROCESS)
FAST = ["--runs", "3", "--parity-samples", "8", "--batch-size", "8", "--calib-samples", "8"]


def init_bytes(path) -> int:
    return sum(numpy_helper.to_array(i).nbytes for i in onnx.load(str(path)).graph.initializer)


@pytest.fixture(scope="module")
def toy_onnx(tmp_path_factory):
    """fp32, fp16 and TensorRT-style INT8 QDQ ONNX of a ToyAV (INT8 calibrated on toy clips)."""
    d = tmp_path_factory.mktemp("toy")
    torch.manual_seed(0)
    model = ToyAV().eval()
    export_onnx(model, DIMS, d / "fp32.onnx", "fp32")
    export_onnx(model, DIMS, d / "fp16.onnx", "fp16")
    clips = ToyClips(32, seed=1)
    calib = [{"video": clips.video[i:i + 16], "audio": clips.audio[i:i + 16]} for i in range(0, 32, 16)]
    quantize_int8(d / "fp32.onnx", d / "int8.onnx", QuantConfig(target="tensorrt"), make_reader(calib))
    n_bytes = 4 * sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    return d, n_bytes


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_toy_engine_for_sm86_with_compiled_memory(toy_onnx, precision):
    d, fp32_bytes = toy_onnx
    engine = d / f"{precision}.engine"
    facts = build_engine(d / f"{precision}.onnx", engine, "8.6", "test", opt_batch=1, max_batch=16)
    data = engine.read_bytes()
    assert facts["tensorrt_rtx"] == trt.__version__ and facts["target"] == "SM86"
    assert facts["compute_capability"] == "8.6"
    assert facts["engine_bytes"] == len(data) > 0 and facts["engine_sha256"] == hashlib.sha256(data).hexdigest()
    assert facts["profile_shapes"]["video"] == {"min": [1, 4, 3, 32, 32], "opt": [1, 4, 3, 32, 32],
                                                "max": [16, 4, 3, 32, 32]}
    mem = facts["memory"]
    assert set(mem) >= {"weights_bytes", "activation_bytes", "scratch_bytes", "device_persistent_bytes",
                        "host_persistent_bytes"}
    assert mem["activation_bytes"] > 0
    # TensorRT's weight memory is the graph's weights at the graph's dtypes: 4 bytes per fp32 parameter,
    # about half for fp16 (norms stay fp32), int8 GEMM/conv weights + float scales and biases for INT8
    expected = {"fp32": fp32_bytes, "fp16": init_bytes(d / "fp16.onnx"), "int8": init_bytes(d / "int8.onnx")}[precision]
    assert mem["weights_bytes"] == pytest.approx(expected, rel=0.1)
    ratio = mem["weights_bytes"] / fp32_bytes
    assert {"fp32": 0.95 < ratio < 1.05, "fp16": 0.45 < ratio < 0.6, "int8": 0.2 < ratio < 0.35}[precision]


def test_unparseable_node_is_named(tmp_path):
    """ONNX Runtime's default INT8 bias (int32 DequantizeLinear) does not parse: the error names the node."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    inits = [numpy_helper.from_array(np.arange(4, dtype=np.int32), "b_q"),
             numpy_helper.from_array(np.array(0.1, dtype=np.float32), "b_s")]
    nodes = [helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b"], name="head.bias_DequantizeLinear"),
             helper.make_node("Add", ["x", "b"], ["y"], name="add")]
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                                opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(EngineBuildError, match=r"node 'head\.bias_DequantizeLinear' \(DequantizeLinear") as e:
        build_engine(path, tmp_path / "bad.engine", "8.6", "test")
    assert "Int32" in str(e.value) and not (tmp_path / "bad.engine").exists()


def test_compute_capability_errors_name_the_profile():
    assert sm_target("8.6", "p") == "SM86"
    with pytest.raises(ValueError, match="'my-gpu' has no gpu.compute_capability"):
        sm_target(None, "my-gpu")
    with pytest.raises(ValueError, match="'h200-sxm': compute capability 9.0 is not a TensorRT for RTX target"):
        sm_target(load_profile("h200-sxm").gpu.compute_capability, "h200-sxm")
    for name in ("rtx3050-laptop-4gb", "rtx3050-laptop-6gb", "rtx3050-desktop-6gb", "rtx3050-desktop-8gb"):
        assert load_profile(name).gpu.compute_capability == "8.6"


def test_export_refuses_a_profile_without_compute_capability(tmp_path, capsys):
    prof = load_profile("rtx3050-laptop-4gb").model_dump()
    prof["gpu"]["compute_capability"] = None
    prof["name"] = "no-cc"
    (tmp_path / "no-cc.yaml").write_text(json.dumps(prof))  # JSON is YAML
    rc = export_main(["--model", str(tmp_path / "none"), "--format", "tensorrt", "--budget",
                      str(tmp_path / "no-cc.yaml"), "--out", str(tmp_path / "out")])
    assert rc == 2 and "'no-cc' has no gpu.compute_capability" in capsys.readouterr().err  # input error
    assert not (tmp_path / "out").exists()


def test_memory_lines_are_parsed():
    lines = ["[MemUsageChange] foo", "Total Weights Memory: 2894592 bytes", "Total Activation Memory: 3 MiB",
             "Max Scratch Memory: 1024 bytes", "Total Device Persistent Memory: 0 bytes"]
    assert parse_memory(lines) == {"weights_bytes": 2894592, "activation_bytes": 3 * 2**20, "scratch_bytes": 1024,
                                   "device_persistent_bytes": 0}


@pytest.fixture(scope="module")
def xs(tmp_path_factory):
    """A student_xs checkpoint (random weights) and its fp32 ONNX export through the CLI."""
    student = pytest.importorskip("emodistill.student")
    torch.manual_seed(0)
    model = student.create_student("student_xs")
    root = tmp_path_factory.mktemp("xs")
    ckpt = save_checkpoint(root / "ckpt", model, preprocess=model.config.default_preprocess,
                           class_names=RAVDESS_CLASSES)
    assert export_main(["--model", str(ckpt), "--format", "onnx", "--budget", "rtx3050-laptop-4gb",
                        "--out", str(root / "onnx"), *FAST]) == 0
    return ckpt, root, model


@pytest.mark.parametrize("precision", ["fp32", "int8", "fp16"])
def test_student_xs_engine_through_the_cli(xs, precision, capsys):
    ckpt, root, model = xs
    out = root / f"trt_{precision}"
    reuse = ["--onnx", str(root / "onnx" / "model.onnx")] if precision != "fp16" else []
    rc = export_main(["--model", str(ckpt), "--format", "tensorrt", "--precision", precision, "--budget",
                      "rtx3050-laptop-4gb", "--out", str(out), *reuse, *FAST])
    text = capsys.readouterr().out
    assert rc == 0, text
    side = json.loads((out / "model.json").read_text())
    eng = side["export"]["engine"]
    data = (out / "model.engine").read_bytes()
    assert side["format"] == "tensorrt" and side["precision"] == precision
    assert side["sha256"] == eng["engine_sha256"] == hashlib.sha256(data).hexdigest()
    assert eng["tensorrt_rtx"] == trt.__version__ == side["versions"]["tensorrt_rtx"]
    assert eng["target"] == "SM86" and eng["engine_bytes"] == len(data)
    assert side["onnx_artifact"]["sha256"] and side["parity"]["passed"]
    if precision == "int8":  # TensorRT-friendly QDQ: symmetric activations, float biases
        cfg = side["quantization"]["config"]
        assert cfg["target"] == "tensorrt" and side["quantization"]["op_counts"]["QuantizeLinear"] > 0
    # weights = parameters + buffers (the log-mel front end's DFT basis and filterbank stay fp32 everywhere)
    fp32_bytes = 4 * sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    share = {"fp32": (0.97, 1.03), "fp16": (0.5, 0.75), "int8": (0.3, 0.6)}[precision]
    assert share[0] < eng["memory"]["weights_bytes"] / fp32_bytes < share[1], eng["memory"]["weights_bytes"] / fp32_bytes
    v = side["budget"]["verdict"]
    assert v["labels"] == {"p50_ms": "estimated", "p95_ms": "estimated", "vram_mb": "compiled",
                           "vram_board": "compiled"}
    device = sum(eng["memory"][k] for k in ("weights_bytes", "activation_bytes", "device_persistent_bytes"))
    assert v["figures"]["vram_mb"] == pytest.approx(300 + device / 2**20, abs=1.0)  # + context + I/O (< 1 MB)
    assert "VRAM COMPILED" in text and "compiled" in (out / "verdict.txt").read_text()


def test_predict_on_an_engine_without_a_gpu_says_so(xs, monkeypatch, capsys):
    from emodistill.app.cli import main as cli_main

    _, root, _ = xs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = cli_main(["predict", "clip.mp4", "--model", str(root / "trt_int8" / "model.engine")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1
    assert "running a TensorRT engine needs an NVIDIA GPU" in err
