"""`train.sharding: fsdp` for distillation with a live teacher, on CPU under `torchrun --nproc_per_node 2` (gloo,
FSDP2): the same numbers as DDP, exact resume after SIGKILL, a normal checkpoint, and a clear error for another
process count. The toy recipe keeps the 4 torchrun runs of this module at about 10 s each on 2 cores."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from emodistill.core.config import ConfigError, load_config
from emodistill.core.utils import REPO_ROOT

sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))  # torchrun_helpers; not tests/ itself: its emodistill/ folder
# would shadow the package in every worker process started after collection
from torchrun_helpers import (HAVE_TORCHRUN, TORCHRUN, assert_same_resumed_run, kill_after_first_state,  # noqa: E402
                             run_ok)

RUN = str(REPO_ROOT / "distill" / "run.py")


def recipe(tmp_path: Path, name: str, **sections) -> Path:
    """The toy recipe of test_run.py (toy teacher and student, four loss terms), sections merged in."""
    cfg = {"toy": {"train": 64, "val": 23, "test": 21}, "teacher": {"name": "toy_teacher"},
           "student": {"name": "toy_student"},
           "distill": {"losses": {
               "ce": {"args": {"label_smoothing": 0.1}}, "kd": {"args": {"temperature": 4.0}},
               "feat": {"loss": "feature", "weight": 0.5, "schedule": "linear", "warmup_steps": 6,
                        "args": {"key": "features"}},
               "rkd": {"weight": 0.1, "args": {"key": "pooled"}}}},
           "train": {"epochs": 3, "batch_size": 8, "eval_batch_size": 8, "lr": 0.01, "threads": 1},
           "output_dir": str(tmp_path / name)}
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"# python distill/run.py --config {path}\n" + yaml.safe_dump(cfg))
    return path


pytestmark = pytest.mark.skipif(not HAVE_TORCHRUN, reason="torchrun not installed")

# FSDP reduce-scatters where DDP all-reduces: the same sums in another order, so float rounding only
# (observed max |diff| 2.5e-7 over 6 AdamW steps at lr 0.01)
ATOL = 1e-5
COMMON = dict(toy={"train": 64, "val": 23, "test": 21},
              distill={"cache": False},  # the live teacher: outside the sharded module tree
              train={"epochs": 3, "batch_size": 8, "eval_batch_size": 8, "lr": 0.01, "threads": 1,
                     "modality_dropout": 0.2, "eval_teacher": False, "grad_accum": 2, "save_every_steps": 1})


def sharded(tmp_path: Path, name: str, sharding: str = "fsdp", sleep: float = 0.0) -> Path:
    """The module's recipe; `sleep` per clip (it changes no number) slows a run down for a kill to land in."""
    return recipe(tmp_path, name, **{**COMMON, "toy": {**COMMON["toy"], "sleep_per_item": sleep},
                                     "train": {**COMMON["train"], "sharding": sharding}})


def torchrun(cfg: Path, *extra: str) -> list[str]:
    return [TORCHRUN, "--standalone", "--nproc_per_node", "2", RUN, "--config", str(cfg), *extra]


def run2(cfg: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_ok(torchrun(cfg, *extra), REPO_ROOT, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same toy recipe trained by 2 processes under DDP and under FSDP -> {"ddp": dir, "fsdp": dir}."""
    tmp = tmp_path_factory.mktemp("sharding")
    out = {}
    for sharding in ("ddp", "fsdp"):
        run2(sharded(tmp, sharding, sharding))
        out[sharding] = tmp / sharding
    return out


def test_fsdp_matches_ddp_and_writes_a_normal_checkpoint(runs):
    from emodistill.core.checkpoint import load_weights
    from emodistill.distill.toy import create_toy

    ddp, fsdp = (load_file(str(runs[s] / "best" / "model.safetensors")) for s in ("ddp", "fsdp"))
    assert set(ddp) == set(fsdp)
    diff = max((ddp[k] - fsdp[k]).abs().max().item() for k in ddp if ddp[k].numel())
    assert diff <= ATOL, f"max |FSDP - DDP| = {diff:.3g}"
    md, mf = (json.loads((runs[s] / "metrics.json").read_text()) for s in ("ddp", "fsdp"))
    assert mf["num_processes"] == 2 and mf["best_epoch"] == md["best_epoch"]
    assert mf["test"]["accuracy"] == md["test"]["accuracy"] and mf["val"]["num_samples"] == 23
    for rd, rf in zip(md["history"], mf["history"]):
        assert rf["train_loss"] == pytest.approx(rd["train_loss"], abs=1e-5)
    # the sharded run's state is per process; its checkpoint is the single file any run writes
    state = next((runs["fsdp"] / "state").glob("step_*"))
    assert sorted(p.name for p in state.glob("tensors*")) == ["tensors.rank00000.safetensors",
                                                              "tensors.rank00001.safetensors"]
    assert {"checkpoint.json", "model.safetensors", "distill_heads.safetensors"} <= \
        {p.name for p in (runs["fsdp"] / "best").iterdir()}
    assert not list((runs["fsdp"] / "best").glob("*rank*"))
    # a toy has no checkpoint family of its own: its weights load into a fresh toy (the teacher's sharded
    # checkpoint goes through load_checkpoint in tests/teacher/test_sharding.py)
    model = create_toy("toy_student", num_classes=4)
    meta = load_weights(model, runs["fsdp"] / "best", family="student")
    assert meta["num_parameters"] == sum(p.numel() for p in model.parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, fsdp[k], rtol=0, atol=0)


def test_resume_after_sigkill_under_fsdp(runs, tmp_path):
    """Kill the whole torchrun group after a sharded state was written, resume on 2 processes: the final
    weights, AdamW moments and metrics equal the uninterrupted FSDP run's."""
    cfg = sharded(tmp_path, "cut", sleep=0.01)
    out = tmp_path / "cut"
    killed_at = kill_after_first_state(torchrun(cfg), out, REPO_ROOT, later=0.3, deadline=120)
    res = run2(cfg, "--resume")
    assert "resumed from" in res.stderr
    assert killed_at < json.loads((out / "state" / "latest.json").read_text())["state"]
    assert_same_resumed_run(runs["fsdp"], out, ("best/model.safetensors", "best/distill_heads.safetensors"))


def test_resume_on_another_process_count_names_both(runs, tmp_path, capsys):
    from emodistill.distill.run import main

    moved = tmp_path / "fsdp"
    shutil.copytree(runs["fsdp"], moved, ignore=shutil.ignore_patterns("metrics.json", "best", ".emodistill.lock"))
    cfg = sharded(tmp_path, "fsdp")
    assert main(["--config", str(cfg), "--resume"]) != 0
    err = capsys.readouterr().err
    assert "2 processes" in err and "this run has 1" in err


def test_unknown_sharding_names_the_key(tmp_path):
    from emodistill.distill.config import DistillConfig

    with pytest.raises(ConfigError, match=r"train\.sharding.*'none', 'ddp' or 'fsdp'"):
        load_config(DistillConfig, recipe(tmp_path, "x"), ["train.sharding=zero3"])
