"""`train.sharding: fsdp` for teacher fine-tuning: the wrapping policy (fast), and under `torchrun --nproc_per_node 2`
on CPU (gloo, FSDP2; slow, about 30 s a run on 2 cores): the same weights as DDP, a checkpoint that
`load_checkpoint` reads, exact resume after SIGKILL. Distillation's sharded runs are tested fast on the toys
(tests/distill/test_sharding.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from emodistill.core.sharding import effective_sharding, layer_units

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "teacher" / "tiny_synth.yaml"
sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))  # torchrun_helpers; not tests/ itself: its emodistill/ folder
# would shadow the package in every worker process started after collection
from torchrun_helpers import TORCHRUN, assert_same_resumed_run, kill_after_first_state, run_ok  # noqa: E402

ATOL = 1e-5  # FSDP's reduce-scatter vs DDP's all-reduce: the same sums in another order (observed <= 3e-7)
# parameters whose gradient is zero in exact arithmetic (a key bias under softmax, a conv bias before BatchNorm)
# get AdamW steps of pure rounding noise, normalised to about lr each, in either layout; the BatchNorm mean
# follows that bias. They are checked against the bound of those steps instead.
GAUGE = ("self_attn.k_proj.bias", "conv.depthwise_conv.bias", "conv.norm.running_mean")


def test_wrapping_policy_units_are_the_layers():
    from emodistill.teacher import create_teacher

    with torch.device("meta"):
        model = create_teacher("teacher_tiny", num_classes=8)
    names = {m: n for n, m in model.named_modules()}
    units = [names[u] for u in layer_units(model)]
    assert units[:2] == ["vision.model.encoder.layers.0", "vision.model.encoder.layers.1"]
    assert "audio.model.layers.0" in units and "backbone.layers.0" in units
    assert all(not any(u.startswith(v + ".") for v in units) for u in units)  # outermost lists only
    assert effective_sharding("none", 2) == "ddp" and effective_sharding("fsdp", 1) == "none"
    assert effective_sharding("fsdp", 2) == "fsdp" and effective_sharding("ddp", 1) == "ddp"


@pytest.fixture(scope="module")
def synth_small(tmp_path_factory):
    from emodistill.core.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, size="small", seed=0, workers=0, progress=False)
    return root


def _cmd(root: Path, out: Path, sharding: str, *extra: str) -> list[str]:
    sets = [f"data.root={root}", f"output_dir={out}", "train.epochs=2", "data.workers=0", "train.batch_size=8",
            "model.overrides.num_layers=2", "train.save_every_steps=2", "train.modality_dropout=0.2",
            "train.eval_missing=false", "train.patience=10", f"train.sharding={sharding}"]
    return [TORCHRUN, "--standalone", "--nproc_per_node", "2", str(REPO / "teacher" / "train.py"),
            "--config", str(CONFIG), *[a for s in sets for a in ("--set", s)], *extra]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_ok(cmd, cwd, timeout=600)


@pytest.fixture(scope="module")
def runs(synth_small, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher_sharding")
    for sharding in ("ddp", "fsdp"):
        _run(_cmd(synth_small, tmp / sharding, sharding), tmp)
    return {"ddp": tmp / "ddp", "fsdp": tmp / "fsdp", "root": synth_small}


@pytest.mark.slow
def test_fsdp_matches_ddp_and_loads_with_load_checkpoint(runs):
    from emodistill.core.checkpoint import load_checkpoint
    from emodistill.core.config import load_config
    from emodistill.core.data import build_datasets
    from emodistill.teacher.train import TeacherTrainConfig

    ddp, fsdp = (load_file(str(runs[s] / "best" / "model.safetensors")) for s in ("ddp", "fsdp"))
    assert set(ddp) == set(fsdp)
    md, mf = (json.loads((runs[s] / "metrics.json").read_text()) for s in ("ddp", "fsdp"))
    assert mf["best_epoch"] == md["best_epoch"] and mf["test"]["accuracy"] == md["test"]["accuracy"]
    steps = 2 * 64 // (2 * 8)  # epochs x optimiser steps per epoch
    for k in ddp:
        bound = 2 * steps * 2e-3 if k.endswith(GAUGE) else ATOL  # 2 x steps x the peak lr (train.lr 2e-3)
        torch.testing.assert_close(fsdp[k].double(), ddp[k].double(), rtol=0, atol=bound, msg=k)
    for rd, rf in zip(md["history"], mf["history"]):
        assert rf["train_loss"] == pytest.approx(rd["train_loss"], abs=1e-5)
    cfg = load_config(TeacherTrainConfig, CONFIG, [f"data.root={runs['root']}", "data.workers=0"])
    names = build_datasets(cfg.data, progress=False)["train"].class_names
    model, meta = load_checkpoint(runs["fsdp"] / "best", preprocess=cfg.data.preprocess, class_names=names,
                                  family="teacher")
    assert meta["train_config"]["train"]["sharding"] == "fsdp" and len(model.backbone.layers) == 2
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, fsdp[k], rtol=0, atol=0)


@pytest.mark.slow
def test_resume_after_sigkill_under_fsdp(runs, tmp_path):
    cut = tmp_path / "cut"
    killed_at = kill_after_first_state(_cmd(runs["root"], cut, "fsdp"), cut, tmp_path, later=0.5, deadline=300)
    res = _run(_cmd(runs["root"], cut, "fsdp", "--resume"), tmp_path)
    assert "resumed from" in res.stderr
    assert killed_at < json.loads((cut / "state" / "latest.json").read_text())["state"]
    assert_same_resumed_run(runs["fsdp"], cut)
