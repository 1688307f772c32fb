"""A student checkpoint written by the code before the shared training skeleton (commit 828c60b, toy recipe)
still loads, fingerprints and validates: the checkpoint format and the distill config keys are unchanged."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from emodistill.distill.cache import teacher_fingerprint
from emodistill.distill.config import DistillConfig
from emodistill.distill.toy import create_toy
from emodistill.core.checkpoint import CheckpointError, fingerprint, is_checkpoint_path, load_weights
from emodistill.core.utils import sha256_file

OLD = Path(__file__).parent / "data" / "base_828c60b_toy_student"


def test_old_checkpoint_loads_into_a_model():
    meta = json.loads((OLD / "checkpoint.json").read_text())
    assert meta["git_commit"].startswith("828c60b")
    m = meta["model"]
    model = create_toy("toy_student", num_classes=m["num_classes"], frames=m["frames"], samples=m["samples"])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    again = load_weights(model, OLD, family="student", class_names=meta["class_names"], preprocess=meta["preprocess"])
    assert again == meta
    state = load_file(str(OLD / "model.safetensors"))
    assert set(model.state_dict()) == set(state)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(CheckpointError, match="class_names"):
        load_weights(model, OLD, class_names=list(reversed(meta["class_names"])))


def test_fingerprint_is_the_recorded_sha(tmp_path):
    sha = json.loads((OLD / "checkpoint.json").read_text())["weights_sha256"]
    assert fingerprint(OLD) == fingerprint(OLD / "model.safetensors") == teacher_fingerprint(OLD) == sha
    assert sha == sha256_file(OLD / "model.safetensors")
    weights_only = tmp_path / "w"
    weights_only.mkdir()
    (weights_only / "model.safetensors").write_bytes((OLD / "model.safetensors").read_bytes())
    assert fingerprint(weights_only) == sha  # no JSON: the file's own sha256
    with pytest.raises(CheckpointError, match="neither"):
        fingerprint(tmp_path / "missing")


def test_old_recipe_in_the_checkpoint_still_validates():
    meta = json.loads((OLD / "checkpoint.json").read_text())
    cfg = DistillConfig.model_validate(meta["distill"]["config"])
    assert cfg.train.grad_accum == 2 and cfg.train.encoder_lr_scale is None
    assert is_checkpoint_path(OLD) and is_checkpoint_path(OLD / "checkpoint.json")
    assert not is_checkpoint_path(OLD.parent / "model.json")
