"""The model contract (emodistill.core.model): every registered model keeps it; the registries; checkpoints of a
family whose package was not imported fail with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import emodistill.distill.toy  # noqa: F401  (registers the toy presets)
from emodistill import student, teacher  # noqa: F401
from emodistill.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from emodistill.core.contract import Preprocess
from emodistill.core.errors import UnknownNameError
from emodistill.core.model import (AVModel, create_model, family_from_config, list_families, list_models,
                                   model_tags)

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "export"))
from export_toys import HW, N, T, ToyAV  # noqa: E402

BIG = {"teacher_lfm2_700m"}  # ~1B random parameters: the slow run only
PRESETS = [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in list_models()]
OUTPUTS = ("logits", "features", "pooled", "audio_features", "visual_features")


def build(name: str) -> tuple[AVModel, tuple[int, int, int]]:
    """(model with 5 classes, its input sizes (T, H=W, N))."""
    if name == "export_toy":
        return ToyAV(num_classes=5), (T, HW, N)
    kw = {"num_classes": 5}
    if model_tags(name).get("input_sized"):
        kw.update(frames=4, samples=256)
        return create_model(name, **kw), (4, 16, 256)
    if model_tags(name)["family"] == "teacher":
        return create_model(name, pretrained=False, **kw), ((2, 224, 16000) if name in BIG else (8, 64, 32000))
    model = create_model(name, **kw)
    pre = model.config.default_preprocess
    return model, (pre["num_frames"], pre["image_size"], int(pre["clip_seconds"] * model.config.sample_rate))


@pytest.mark.parametrize("name", [*PRESETS, "export_toy"])
def test_every_registered_model_keeps_the_contract(name):
    model, (t, s, n) = build(name)
    assert isinstance(model, AVModel) and model.family in ("student", "teacher") and model.num_classes == 5
    if name != "export_toy":
        assert model.family == model_tags(name)["role"]
    g = torch.Generator().manual_seed(0)
    video, audio = torch.rand(2, t, 3, s, s, generator=g), 0.1 * torch.randn(2, n, generator=g)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(video, audio)
        head = model.forward_head(feats)
        out = model(video, audio)
        masked = model(video, audio, modality_mask=torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
        other_audio = model(video, torch.randn_like(audio), modality_mask=torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    # forward = {logits, **forward_features, unimodal logits}, in that order
    assert list(out) == ["logits", *feats, *(k for k in head if k != "logits")]
    assert set(OUTPUTS) <= set(out) and set(head) <= {"logits", "audio_logits", "visual_logits"}
    torch.testing.assert_close(out["logits"], head["logits"], rtol=0, atol=0)
    assert out["logits"].shape == (2, 5) and out["pooled"].shape[0] == 2
    for k in ("audio_logits", "visual_logits"):
        assert k not in out or out[k].shape == (2, 5)
    dims = model.feature_dims()
    assert {"features", "audio_features", "visual_features"} <= set(dims)
    for k, d in dims.items():
        assert feats[k].shape[0] == 2 and feats[k].shape[-1] == d, k
    for k in ("features", "audio_features", "visual_features"):
        assert feats[k].ndim == 3, k
    assert out["pooled"].shape == (2, dims["features"])
    # a missing modality has no influence
    assert list(masked) == list(out)
    torch.testing.assert_close(masked["logits"][0], other_audio["logits"][0], rtol=0, atol=0)
    # counting, optimiser groups, grad checkpointing, config
    counts = model.count_parameters()
    params = list(model.parameters())
    assert counts["total"] == sum(p.numel() for p in params) == sum(v for k, v in counts.items()
                                                                     if k not in ("total", "trainable"))
    groups = model.param_groups(1e-3, weight_decay=0.05)
    ids = [id(p) for grp in groups for p in grp["params"]]
    assert len(ids) == len(set(ids)) == sum(p.requires_grad for p in params)
    assert all(grp["name"] and grp["lr"] > 0 for grp in groups)
    model.set_grad_checkpointing(True)
    model.set_grad_checkpointing(False)
    config = json.loads(json.dumps(model.get_config()))
    if name != "export_toy" and model_tags(name)["family"] in list_families():  # checkpoint families rebuild
        rebuilt = family_from_config(model.family)(config)
        assert list(rebuilt.state_dict()) == list(model.state_dict())


def test_registries():
    assert {"student_xs", "student_s", "toy_student"} <= set(list_models(role="student"))
    assert not {"teacher_tiny", "toy_teacher"} & set(list_models(role="student"))
    assert {"teacher_tiny", "toy_teacher"} <= set(list_models(role="teacher"))
    assert "toy_student" not in student.list_students()  # the toys are their own family of presets
    assert list_models(family="toy") == ["toy_student", "toy_teacher"]
    assert {"student", "teacher"} <= set(list_families())
    with pytest.raises(UnknownNameError, match="student_nope.*student_xs"):
        create_model("student_nope")
    with pytest.raises(ValueError, match="unknown part"):
        create_model("student_xs").param_groups(1e-3, lr_scale={"vision": 0.1})


def _student_checkpoint(folder: Path, **meta) -> Path:
    model = create_model("student_xs", num_classes=2)
    pre = Preprocess(num_frames=8, image_size=64, clip_seconds=2.0)
    save_checkpoint(folder, model, preprocess=pre, class_names=["a", "b"])
    if meta:
        path = folder / "checkpoint.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **meta}))
    return folder


def test_an_unregistered_family_is_a_clear_error(tmp_path):
    ck = _student_checkpoint(tmp_path / "ck", family="fancy")
    with pytest.raises(CheckpointError, match=r"model family 'fancy' is not registered.*import the package"):
        load_checkpoint(ck)


def test_loading_without_importing_the_family_names_the_package(tmp_path):
    ck = _student_checkpoint(tmp_path / "ck")
    code = ("from emodistill.core.checkpoint import CheckpointError, load_checkpoint\n"
            f"try:\n    load_checkpoint({str(ck)!r})\nexcept CheckpointError as e:\n    print('ERROR', e)\n"
            "import emodistill.student\nprint('LOADED', type(load_checkpoint(" + repr(str(ck)) + ")[0]).__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ERROR" in r.stdout and "'student' is not registered" in r.stdout and "import emodistill.student" in r.stdout
    assert "LOADED StudentModel" in r.stdout
