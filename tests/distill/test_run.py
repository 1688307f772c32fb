"""distill/run.py end to end on the toy set: resume after a real kill, 2-process torchrun, baselines."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from emodistill.core.config import ConfigError, load_config
from emodistill.core.utils import REPO_ROOT

sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))  # torchrun_helpers; not tests/ itself: its emodistill/ folder
from torchrun_helpers import HAVE_TORCHRUN, TORCHRUN, run_ok  # noqa: E402

RUN = str(REPO_ROOT / "distill" / "run.py")


def recipe(tmp_path: Path, name: str, **sections) -> Path:
    cfg = {
        "toy": {"train": 64, "val": 23, "test": 21},
        "teacher": {"name": "toy_teacher"},
        "student": {"name": "toy_student"},
        "distill": {"losses": {
            "ce": {"args": {"label_smoothing": 0.1}},
            "kd": {"args": {"temperature": 4.0}},
            "feat": {"loss": "feature", "weight": 0.5, "schedule": "linear", "warmup_steps": 6,
                     "args": {"key": "features"}},
            "rkd": {"weight": 0.1, "args": {"key": "pooled"}}}},
        "train": {"epochs": 3, "batch_size": 8, "eval_batch_size": 8, "lr": 0.01, "threads": 1,
                  "modality_dropout": 0.2, "eval_teacher": False},
        "output_dir": str(tmp_path / name),
    }
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"# python distill/run.py --config {path}\n" + yaml.safe_dump(cfg))
    return path


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def final_state(out: Path) -> dict:
    latest = json.loads((out / "state" / "latest.json").read_text())["state"]
    return load_file(str(out / "state" / latest / "tensors.safetensors"))


def test_resume_after_sigkill_reproduces_uninterrupted_run(tmp_path):
    common = dict(toy={"train": 64, "val": 23, "test": 21, "sleep_per_item": 0.003},
                  train={"epochs": 4, "batch_size": 8, "eval_batch_size": 8, "lr": 0.01, "threads": 1,
                         "modality_dropout": 0.2, "eval_teacher": False, "grad_accum": 2, "save_every_steps": 3})
    full = recipe(tmp_path, "full", **common)
    subprocess.run([sys.executable, RUN, "--config", str(full)], check=True, env=env(), cwd=REPO_ROOT,
                   capture_output=True)
    cut = recipe(tmp_path, "cut", **common)
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, RUN, "--config", str(cut)], env=env(), cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "state" / "latest.json").exists():
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.005)
    time.sleep(0.3)  # land the kill somewhere later: mid-step, mid-eval or mid-write of a later state
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists(), "the kill came after the run had finished"
    killed_at = json.loads((out / "state" / "latest.json").read_text())["state"]
    resumed = subprocess.run([sys.executable, RUN, "--config", str(cut), "--resume"], env=env(), cwd=REPO_ROOT,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    a, b = final_state(tmp_path / "full"), final_state(out)
    assert killed_at < json.loads((out / "state" / "latest.json").read_text())["state"]
    assert set(a) == set(b) and any(k.startswith("optim.") for k in a)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    ma = json.loads((tmp_path / "full" / "metrics.json").read_text())
    mb = json.loads((out / "metrics.json").read_text())
    assert mb["test"]["accuracy"] == ma["test"]["accuracy"] and mb["best_epoch"] == ma["best_epoch"]
    assert len(mb["history"]) == len(ma["history"])
    for ra, rb in zip(ma["history"], mb["history"]):   # the interrupted epoch's logged means are exact too
        ra.pop("epoch_seconds"), rb.pop("epoch_seconds")
        assert rb == pytest.approx(ra, abs=1e-6)


@pytest.mark.skipif(not HAVE_TORCHRUN, reason="torchrun not installed")
def test_torchrun_two_processes_gathers_whole_split(tmp_path):
    cfg = recipe(tmp_path, "ddp", train={"epochs": 2, "batch_size": 8, "eval_batch_size": 4, "lr": 0.01,
                                         "threads": 1, "eval_teacher": True})
    run_ok([TORCHRUN, "--standalone", "--nproc_per_node", "2", RUN, "--config", str(cfg)], REPO_ROOT, timeout=300)
    m = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m["num_processes"] == 2
    # 23 and 21 clips over 2 processes with batch 4: padded shards, duplicates dropped by gather_for_metrics
    assert m["val"]["num_samples"] == 23 and m["test"]["num_samples"] == 21
    assert m["test_missing_audio"]["num_samples"] == 21
    assert m["teacher_metrics"]["test"]["num_samples"] == 21
    assert len(m["history"]) == 2 and all(r["train_loss"] > 0 for r in m["history"])
    assert (tmp_path / "ddp" / "best" / "model.safetensors").exists()


def test_ce_only_baseline_loads_no_teacher(tmp_path):
    from emodistill.distill.config import DistillConfig
    from emodistill.distill.run import train

    cfg = load_config(DistillConfig, recipe(tmp_path, "ce"), ["distill.kd=false", "train.epochs=2"])
    m = train(cfg)
    assert m["cache"] == {} and m["teacher_metrics"] == {} and m["kd"] is False
    assert {k for k in m["history"][0] if k.startswith("train_")} == {"train_ce", "train_loss"}
    assert not list((tmp_path).glob("teacher_cache*"))


def test_kd_and_ce_arms_of_a_seed_start_from_the_same_student(tmp_path):
    from emodistill.distill.config import DistillConfig
    from emodistill.distill.run import train

    tiny_steps = ["train.epochs=1", "train.lr=1e-9", "train.warmup_epochs=0"]  # weights stay at their init
    for arm, extra in (("kd", []), ("ce", ["distill.kd=false"])):
        train(load_config(DistillConfig, recipe(tmp_path, arm), [*tiny_steps, *extra]))
    kd, ce = (load_file(str(tmp_path / arm / "best" / "model.safetensors")) for arm in ("kd", "ce"))
    assert kd.keys() == ce.keys()
    for k in kd:
        torch.testing.assert_close(kd[k], ce[k], rtol=0, atol=1e-6)


def test_unlabeled_transfer_set_and_cache_vs_live(tmp_path):
    from emodistill.distill.config import DistillConfig
    from emodistill.distill.run import train

    unl = train(load_config(DistillConfig, recipe(tmp_path, "unl"), ["distill.label_fraction=0", "train.epochs=2"]))
    assert all(r["train_ce"] == 0 and r["train_kd"] > 0 for r in unl["history"])
    assert unl["cache"]["entries"] > 0
    half = train(load_config(DistillConfig, recipe(tmp_path, "half"),
                             ["distill.label_fraction=0.5", "train.epochs=1"]))
    assert 0 < half["history"][0]["train_ce"]
    assert half["cache"]["added"] == 0          # same teacher and data: the cache of the first run serves it
    live = train(load_config(DistillConfig, recipe(tmp_path, "live"), ["distill.cache=false", "train.epochs=1"]))
    cached = train(load_config(DistillConfig, recipe(tmp_path, "cached"), ["train.epochs=1"]))
    assert live["cache"] == {}
    # the same run from fp16 cached targets: the losses agree to fp16 rounding
    assert cached["history"][0]["train_kd"] == pytest.approx(live["history"][0]["train_kd"], rel=1e-2)


def test_clean_teacher_view_cached_and_live(tmp_path):
    from emodistill.distill.config import DistillConfig
    from emodistill.distill.run import train

    runs = {mode: train(load_config(DistillConfig, recipe(tmp_path, f"clean_{mode}"),
                                    ["distill.teacher_view=clean", f"distill.cache={mode == 'cached'}",
                                     "train.epochs=2"]))
            for mode in ("cached", "live")}
    assert runs["cached"]["cache"]["entries"] == 64   # one clean-clip entry per train clip, not one per view drawn
    assert runs["cached"]["history"][0]["train_kd"] == pytest.approx(runs["live"]["history"][0]["train_kd"], rel=1e-2)


def test_bad_loss_args_name_the_key(tmp_path):
    from emodistill.distill.config import DistillConfig
    from emodistill.distill.run import train

    cfg = load_config(DistillConfig, recipe(tmp_path, "bad"), ["distill.losses.kd.args.temprature=2"])
    with pytest.raises(ConfigError, match="distill.losses.kd"):
        train(cfg)
    with pytest.raises(ConfigError, match="teacher.checkpoint"):
        load_config(DistillConfig, recipe(tmp_path, "bad2"), ["teacher.name=null"])


def test_cli_registers_distill():
    from emodistill.app.cli import build_parser

    args = build_parser("distill").parse_args(["distill", "--config", "x.yaml", "--set", "a=1", "--resume"])
    assert args.resume and args.overrides == ["a=1"] and callable(args.func)
