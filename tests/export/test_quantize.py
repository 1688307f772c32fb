"""INT8 ONNX: static QDQ calibrated on training clips (CPU and TensorRT flavours) and dynamic quantization."""

import numpy as np
import onnx
import pytest

from export_toys import TOY_PREPROCESS
from emodistill.export.onnx import accuracy_report, compare_logits, export_onnx, make_session, session_logits, torch_logits
from emodistill.export.quantize import QuantConfig, make_reader, nodes_to_exclude, quantize_int8
from emodistill.export.wrappers import Dims

DIMS = Dims.from_preprocess(TOY_PREPROCESS)


def batches(ds, bs=16):
    return [{"video": ds.video[i:i + bs], "audio": ds.audio[i:i + bs], "label": ds.labels[i:i + bs]}
            for i in range(0, len(ds), bs)]


@pytest.fixture(scope="module")
def fp32_onnx(trained_toy, tmp_path_factory):
    model, _, _ = trained_toy
    path = tmp_path_factory.mktemp("q") / "fp32.onnx"
    export_onnx(model, DIMS, path, "fp32")
    return path


@pytest.mark.parametrize("target", ["cpu", "tensorrt"], ids=["for-ort-cpu", "for-trt"])
def test_static_int8_agrees_with_fp32_on_a_trained_model(trained_toy, fp32_onnx, tmp_path, target):
    """Fast stand-in of the acceptance check: INT8 accuracy within 1 point of fp32 on the held-out clips."""
    model, train, test = trained_toy
    out = tmp_path / "int8.onnx"
    info = quantize_int8(fp32_onnx, out, QuantConfig(target=target, calib_samples=48), make_reader(batches(train), 48))
    assert info["calibration_samples"] == 48 and info["op_counts"].get("QuantizeLinear", 0) > 5
    assert info["non_standard_domains"] == [] or target == "cpu"
    q, f = onnx.load(str(out)), onnx.load(str(fp32_onnx))
    # norms and softmax stay float ops, and every Q/DQ pair exists for a quantized Conv/MatMul/Gemm input
    count = lambda m, op: sum(n.op_type == op for n in m.graph.node)  # noqa: E731
    for op in ("LayerNormalization", "Softmax"):
        assert count(q, op) == count(f, op) > 0
    consumers: dict[str, set] = {}
    for n in q.graph.node:
        for i in n.input:
            consumers.setdefault(i, set()).add(n.op_type)
    dq_outputs = [n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert dq_outputs and all(consumers.get(o, set()) & {"Conv", "MatMul", "Gemm"} for o in dq_outputs)
    zps = [init for init in q.graph.initializer if init.name.endswith("zero_point")]
    types = {z.data_type for z in zps} - {onnx.TensorProto.INT32}  # int32: quantized biases
    if target == "tensorrt":  # symmetric int8 activations and weights: zero points 0, int8
        assert types == {onnx.TensorProto.INT8}
        assert all(not np.any(onnx.numpy_helper.to_array(z)) for z in zps)
    else:  # ORT's CPU path: uint8 activations, int8 weights
        assert types == {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    test_b = batches(test)
    ref, labels = torch_logits(model, test_b)
    logits = session_logits(make_session(out), test_b)
    assert compare_logits(ref, logits, "int8")["passed"]
    acc32 = accuracy_report(ref, labels, 4)["accuracy"]
    acc8 = accuracy_report(logits, labels, 4)["accuracy"]
    assert acc32 >= 0.9 and acc8 >= acc32 - 0.01


def test_dynamic_int8_runs_without_calibration(trained_toy, fp32_onnx, tmp_path):
    model, _, test = trained_toy
    out = tmp_path / "dyn.onnx"
    info = quantize_int8(fp32_onnx, out, QuantConfig(mode="dynamic"))
    assert info["op_counts"].get("DynamicQuantizeLinear", 0) + info["op_counts"].get("MatMulInteger", 0) > 0
    ref, _ = torch_logits(model, batches(test))
    assert compare_logits(ref, session_logits(make_session(out), batches(test)), "int8")["top1_agreement"] >= 0.9
    assert out.stat().st_size < fp32_onnx.stat().st_size


def test_static_needs_clips(fp32_onnx, tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(fp32_onnx, tmp_path / "x.onnx", QuantConfig())
    with pytest.raises(ValueError, match="at least one clip"):
        make_reader([])


def test_front_end_nodes_are_excluded_by_module_path(fp32_onnx):
    m = onnx.load(str(fp32_onnx))
    excluded = nodes_to_exclude(m, m, ("Conv", "MatMul", "Gemm"), r"aproj|conv2")
    assert excluded and all(n.op_type in ("Conv", "MatMul", "Gemm") for n in m.graph.node if n.name in excluded)
    assert len(excluded) == 2  # the audio projection MatMul and the depthwise conv


def test_symbolic_shape_failure_falls_back_to_onnx_shapes(fp32_onnx, tmp_path, monkeypatch, trained_toy):
    import onnxruntime.quantization as q

    real = q.quant_pre_process
    calls = []

    def flaky(inp, out, skip_symbolic_shape=False, **kw):
        calls.append(skip_symbolic_shape)
        if not skip_symbolic_shape:
            raise TypeError("object of type 'NoneType' has no len()")  # what ORT raises on some teacher graphs
        return real(inp, out, skip_symbolic_shape=skip_symbolic_shape, **kw)

    monkeypatch.setattr(q, "quant_pre_process", flaky)
    _, train, _ = trained_toy
    info = quantize_int8(fp32_onnx, tmp_path / "q.onnx", QuantConfig(), make_reader(batches(train), 16))
    assert calls == [False, True] and info["shape_inference"] == "onnx"
    assert info["op_counts"].get("QuantizeLinear", 0) > 5
