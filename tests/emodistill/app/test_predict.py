"""`emodistill predict`: the same answer through a checkpoint and its ONNX export; contract mismatches refused."""

import json
import shutil

import numpy as np
import pytest
import torch

from emodistill.core.checkpoint import save_checkpoint
from emodistill.app.cli import main
from emodistill.core.contract import Preprocess
from emodistill.core.contract import RAVDESS_CLASSES
from emodistill.core.data.synth import clip_specs, make_clip
from emodistill.app.predictor import ContractError, Predictor
from emodistill.student import create_student


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(clip, checkpoint dir, model.onnx) for a student_xs exported with `emodistill export`."""
    d = tmp_path_factory.mktemp("predict")
    clip = make_clip(str(d / "data"), 0, clip_specs(1, "small")[6])  # a 'happy' clip of actor 1
    torch.manual_seed(0)
    model = create_student("student_xs").eval()
    pre = Preprocess(num_frames=8, image_size=64, clip_seconds=2.0, face_crop="center")
    ckpt = save_checkpoint(d / "ckpt", model, preprocess=pre, class_names=list(RAVDESS_CLASSES))
    rc = main(["export", "--model", str(ckpt), "--format", "onnx", "--precision", "fp32", "--out",
               str(d / "onnx"), "--runs", "3", "--parity-samples", "4", "--set",
               "budget.precision=fp32"])
    assert rc in (0, 3)  # 3 = exported fine, over the budget (a random-init model is not judged here)
    return clip, ckpt, d / "onnx" / "model.onnx"


def test_checkpoint_and_onnx_agree(exported):
    clip, ckpt, onnx_path = exported
    by_ckpt, by_onnx = Predictor(ckpt)(clip), Predictor(onnx_path)(clip)
    assert by_ckpt["backend"] == "checkpoint" and by_onnx["backend"] == "onnx"
    assert by_ckpt["prediction"] == by_onnx["prediction"]
    p1 = np.array([by_ckpt["probabilities"][c] for c in RAVDESS_CLASSES])
    p2 = np.array([by_onnx["probabilities"][c] for c in RAVDESS_CLASSES])
    np.testing.assert_allclose(p1, p2, atol=1e-4)
    assert abs(p1.sum() - 1) < 1e-5


def test_cli_json(exported, capsys):
    clip, ckpt, onnx_path = exported
    assert main(["predict", clip, "--model", str(onnx_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["probabilities"]) == set(RAVDESS_CLASSES) and out["prediction"] in RAVDESS_CLASSES


def _copy_with_sidecar(onnx_path, dest, edit):
    dest.mkdir()
    shutil.copy(onnx_path, dest / "model.onnx")
    side = json.loads(onnx_path.with_suffix(".json").read_text())
    edit(side)
    (dest / "model.json").write_text(json.dumps(side))
    return dest / "model.onnx"


def test_mismatched_contract_is_rejected(exported, tmp_path, capsys):
    clip, _, onnx_path = exported

    def sixteen_frames(side):
        side["input_contract"]["preprocess"]["num_frames"] = 16

    bad = _copy_with_sidecar(onnx_path, tmp_path / "frames", sixteen_frames)
    with pytest.raises(ContractError, match=r"video input: model takes \[8, 3, 64, 64\].*\[16, 3, 64, 64\]"):
        Predictor(bad)
    assert main(["predict", clip, "--model", str(bad)]) == 2  # input error (3 is over budget)
    assert "does not match its sidecar" in capsys.readouterr().err

    def other_export(side):
        side["sha256"] = "0" * 64

    with pytest.raises(ContractError, match="sha256"):
        Predictor(_copy_with_sidecar(onnx_path, tmp_path / "sha", other_export))


def test_requested_contract_is_checked(exported):
    _, _, onnx_path = exported
    with pytest.raises(ContractError, match="num_frames: model expects 8, you asked for 16"):
        Predictor(onnx_path, expect={"num_frames": 16})


def test_missing_sidecar_is_an_error(exported, tmp_path):
    _, _, onnx_path = exported
    shutil.copy(onnx_path, tmp_path / "lonely.onnx")
    with pytest.raises(ContractError, match="no sidecar"):
        Predictor(tmp_path / "lonely.onnx")


def test_onnx_missing_modality_path_matches_checkpoint(exported):
    """The export's optional `modality_mask` input (default: both present) is the student's missing-modality path."""
    clip, ckpt, onnx_path = exported
    by_ckpt, by_onnx = Predictor(ckpt), Predictor(onnx_path)
    assert by_ckpt.supports_mask and by_onnx.supports_mask
    video, audio = by_onnx.load(clip)
    np.testing.assert_allclose(by_onnx.probs(video, audio, np.ones((1, 2), np.float32)),
                               by_onnx.probs(video, audio), atol=1e-6)
    for mask in ([[1.0, 0.0]], [[0.0, 1.0]]):
        m = np.array(mask, np.float32)
        np.testing.assert_allclose(by_ckpt.probs(video, audio, m), by_onnx.probs(video, audio, m), atol=1e-4)
        assert np.abs(by_onnx.probs(video, audio, m) - by_onnx.probs(video, audio)).max() > 1e-4


HEAVY = ("torch", "torchvision", "torchaudio", "transformers", "timm", "accelerate")
NO_TORCH = r"""
import sys
from emodistill.app.cli import main
rc = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print("HEAVY", ",".join(heavy) or "none", "RC", rc)
""" % (HEAVY,)


@pytest.mark.parametrize("stream", [False, True], ids=["clip", "stream"])
def test_predict_on_an_onnx_export_imports_no_torch(exported, stream, tmp_path):
    """Issue 24: the runtime path (ONNX file + sidecar) imports none of the training stack."""
    import os
    import subprocess
    import sys

    clip, _, onnx_path = exported
    argv = ["predict", str(clip), "--model", str(onnx_path)] + (["--stream", "--out", str(tmp_path / "s")] if stream
                                                                  else ["--json"])
    p = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert "HEAVY none RC 0" in p.stdout, p.stdout[-2000:]
    if stream:
        assert (tmp_path / "s" / "timeline.json").exists()


def test_runtime_probabilities_are_the_onnx_graph_on_the_decoded_clip(exported):
    """The runtime's answer is today's: the contract's decode, the ONNX graph on CPU, a softmax (to 1e-6)."""
    import onnxruntime as ort

    from emodistill.core.data.decode import load_clip

    clip, _, onnx_path = exported
    pred = Predictor(onnx_path)
    video, audio, _ = load_clip(clip, None, pred.preprocess)
    video = np.ascontiguousarray(video.transpose(0, 3, 1, 2), dtype=np.float32)[None] / 255.0
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    logits = sess.run(None, dict(zip(names, (video, audio[None].astype(np.float32)))))[0][0]
    want = np.exp(logits - logits.max())
    want /= want.sum()
    got = pred(clip)["probabilities"]
    np.testing.assert_allclose([got[c] for c in RAVDESS_CLASSES], want, rtol=0, atol=1e-6)
