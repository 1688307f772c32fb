"""ONNX export: one file, dynamic batch, checker, parity with PyTorch at fp32 and fp16."""

import numpy as np
import onnx
import pytest
import torch

from export_toys import TOY_PREPROCESS
from emodistill.export.onnx import (TOLERANCES, compare_logits, export_onnx, make_session, ort_latency, run_session,
                         session_logits, torch_logits)
from emodistill.export.wrappers import Dims, half_model, random_inputs

DIMS = Dims.from_preprocess(TOY_PREPROCESS)


@pytest.fixture(scope="module")
def toy_fp32(tmp_path_factory):
    from export_toys import ToyAV

    torch.manual_seed(0)
    model = ToyAV().eval()
    path = tmp_path_factory.mktemp("onnx") / "toy.onnx"
    info = export_onnx(model, DIMS, path, "fp32")
    return model, path, info


def test_single_file_opset18_dynamic_batch(toy_fp32):
    _, path, info = toy_fp32
    assert [p.name for p in path.parent.iterdir() if p.name.startswith("toy")] == ["toy.onnx"]  # no external data
    m = onnx.load(str(path))
    assert any(o.domain in ("", "ai.onnx") and o.version == 18 for o in m.opset_import)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
    # modality_mask: optional (an initializer of ones [1, 2] by the same name), for the missing-modality path
    assert dims == {"video": ["batch", 4, 3, 32, 32], "audio": ["batch", 8000], "modality_mask": ["mask_batch", 2]}
    assert [i.name for i in m.graph.initializer if i.name == "modality_mask"] == ["modality_mask"]
    assert [o.name for o in m.graph.output] == ["logits"]
    assert info["opset"] == 18 and not info["external_data"]
    # no per-node stack traces (they would make the bytes depend on the checkout's path)
    assert not any(p.key.endswith("stack_trace") for n in m.graph.node for p in n.metadata_props)


def test_fp32_parity_on_several_batch_sizes(toy_fp32):
    model, path, _ = toy_fp32
    sess = make_session(path)
    batches = [dict(zip(("video", "audio"), random_inputs(DIMS, b, seed=b))) for b in (1, 3, 8)]
    ref, _ = torch_logits(model, batches)
    res = compare_logits(ref, session_logits(sess, batches), "fp32")
    assert res["passed"] and res["n"] == 12
    assert res["max_abs_diff"] <= TOLERANCES["fp32"].bound(float(np.abs(ref).max()))
    assert res["top1_agreement"] == 1.0


def test_parity_check_can_fail(toy_fp32):
    model, path, _ = toy_fp32
    batches = [dict(zip(("video", "audio"), random_inputs(DIMS, 8)))]
    ref, _ = torch_logits(model, batches)
    res = compare_logits(ref, ref + 1e-2, "fp32")
    assert not res["passed"] and res["max_abs_diff"] == pytest.approx(1e-2)
    flipped = ref.copy()
    flipped[:, [0, 1]] = flipped[:, [1, 0]] * 10
    assert not compare_logits(ref, flipped, "int8")["passed"]


def test_fp16_export_keeps_float32_interface_and_norms(tmp_path, trained_toy):
    model, _, test = trained_toy
    path = tmp_path / "toy16.onnx"
    info = export_onnx(model, DIMS, path, "fp16")
    assert "anorm" in info["fp32_modules"] and "norm" in info["fp32_modules"]  # LayerNorm and RMSNorm kept fp32
    m = onnx.load(str(path))
    f32 = onnx.TensorProto.FLOAT
    assert all(i.type.tensor_type.elem_type == f32 for i in (*m.graph.input, *m.graph.output))
    assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer) > 5
    sess = make_session(path)
    batches = [{"video": test.video[i:i + 16], "audio": test.audio[i:i + 16]} for i in range(0, 64, 16)]
    ref, _ = torch_logits(model, batches)
    res = compare_logits(ref, session_logits(sess, batches), "fp16")
    assert res["passed"], res


def test_half_model_does_not_touch_the_original(toy_model):
    half, kept = half_model(toy_model)
    assert next(toy_model.parameters()).dtype == torch.float32
    assert half.conv.weight.dtype == torch.float16 and half.anorm.weight.dtype == torch.float32
    v, a = random_inputs(DIMS, 2)
    out = half(v.half(), a.half())["logits"]
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_ort_latency_reports_the_core_timing_keys(toy_fp32):
    _, path, _ = toy_fp32
    lat = ort_latency(make_session(path), DIMS, batch=2, seconds=0.2)
    assert lat["runs"] >= 5 and 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p95_ms"]
    assert lat["threads"] == 1 and lat["batch_size"] == 2 and lat["mean_ms"] > 0
    assert run_session(make_session(path), *random_inputs(DIMS, 2)).shape == (2, 4)
