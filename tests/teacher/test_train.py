"""Fine-tuning on the small synthetic set: loss goes down, the run writes a loadable, checked checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from emodistill.core.checkpoint import CheckpointError, load_checkpoint, load_weights
from emodistill.core.config import ConfigError, load_config
from emodistill.core.data import build_datasets
from emodistill.teacher import TeacherModel, create_teacher
from emodistill.teacher.train import TeacherTrainConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "teacher" / "tiny_synth.yaml"


@pytest.fixture(scope="module")
def synth_small(tmp_path_factory):
    from emodistill.core.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, size="small", seed=0, workers=0, progress=False)  # = emodistill data synth --size small
    return root


def _cfg(root, out, *extra):
    return load_config(TeacherTrainConfig, CONFIG, [f"data.root={root}", f"output_dir={out}", "data.workers=0",
                                                    *extra])


def test_config_file_runs_its_first_line_command():
    first = CONFIG.read_text().splitlines()[0]
    assert first.startswith("# ") and "teacher train --config configs/teacher/tiny_synth.yaml" in first
    cfg = load_config(TeacherTrainConfig, CONFIG)
    assert cfg.model.name == "teacher_tiny"
    real = load_config(TeacherTrainConfig, REPO / "configs" / "teacher" / "lfm2_700m_ravdess.yaml")
    assert real.model.name == "teacher_lfm2_700m"


def test_old_keys_say_where_they_moved(tmp_path):
    """Teacher recipes written before the shared `train:` section fail with the new place of each key."""
    with pytest.raises(ConfigError, match=r"'optim.lr' is now 'train.lr'.*'epochs' is now 'train.epochs'"):
        load_config(TeacherTrainConfig, None, ["data.root=x", "optim.lr=0.01", "epochs=3"])
    with pytest.raises(ConfigError, match=r"'patience' is now 'train.patience'"):
        load_config(TeacherTrainConfig, CONFIG, ["patience=3"])
    cfg = load_config(TeacherTrainConfig, CONFIG, ["train.lr=0.01", "train.patience=3"])
    assert cfg.train.lr == 0.01 and cfg.train.patience == 3 and cfg.train.encoder_lr_scale == 1.0


def test_few_steps_reduce_the_loss(synth_small, tmp_path):
    cfg = _cfg(synth_small, tmp_path)
    train = build_datasets(cfg.data, progress=False)["train"]
    batch = torch.utils.data.default_collate([train[i] for i in range(0, len(train), max(1, len(train) // 16))])
    model = create_teacher("teacher_tiny", num_classes=train.num_classes)
    opt = torch.optim.AdamW(model.param_groups(2e-3, 0.0), lr=2e-3)

    def loss_now():
        model.eval()
        with torch.no_grad():
            return F.cross_entropy(model(batch["video"], batch["audio"])["logits"], batch["label"]).item()

    before = loss_now()
    for _ in range(8):
        model.train()
        loss = F.cross_entropy(model(batch["video"], batch["audio"])["logits"], batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_now() < 0.8 * before


def test_train_script_end_to_end(synth_small, tmp_path):
    """`python teacher/train.py` (what accelerate launch runs): metrics.json, TensorBoard, checked checkpoint."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "teacher" / "train.py"), "--config", str(CONFIG),
           "--set", f"data.root={synth_small}", "--set", f"output_dir={out}", "--set", "train.epochs=2",
           "--set", "data.workers=0", "--set", "train.batch_size=8", "--set", "model.overrides.num_layers=2"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected_on"] == "val_accuracy" and 1 <= metrics["best_epoch"] <= 2
    assert len(metrics["history"]) == 2
    for split in ("val", "test", "test_missing_audio", "test_missing_video"):  # the shared final test
        assert {"accuracy", "uar", "war", "macro_f1"} <= set(metrics[split]) and metrics[split]["num_samples"] > 0
    assert list(out.rglob("events.out.tfevents*"))
    cfg = _cfg(synth_small, out)
    names = build_datasets(cfg.data, progress=False)["train"].class_names
    model, meta = load_checkpoint(out / "best", preprocess=cfg.data.preprocess, class_names=names, family="teacher")
    assert isinstance(model, TeacherModel) and len(model.backbone.layers) == 2
    assert meta["metrics"]["epoch"] == metrics["best_epoch"] and meta["train_config"]["train"]["epochs"] == 2
    assert meta["train_clips"] == len(build_datasets(cfg.data, progress=False)["train"])  # the report's regime line
    with pytest.raises(CheckpointError, match="class_names"):
        load_weights(model, out / "best", preprocess=cfg.data.preprocess, class_names=list(reversed(names)),
                     family="teacher")


def _final_state(out: Path) -> dict:
    from safetensors.torch import load_file

    latest = json.loads((out / "state" / "latest.json").read_text())["state"]
    return load_file(str(out / "state" / latest / "tensors.safetensors"))


def test_resume_after_sigkill_reproduces_uninterrupted_run(synth_small, tmp_path):
    """A teacher run killed with SIGKILL mid-training, then `--resume`d, ends with the same weights, optimiser
    state and metrics as the same run never stopped (the skeleton's state mechanism, as distillation's)."""
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(out, *extra):
        return [sys.executable, str(REPO / "teacher" / "train.py"), "--config", str(CONFIG),
                "--set", f"data.root={synth_small}", "--set", f"output_dir={out}", "--set", "train.epochs=3",
                "--set", "data.workers=0", "--set", "train.batch_size=8", "--set", "model.overrides.num_layers=2",
                "--set", "train.save_every_steps=2", "--set", "train.modality_dropout=0.2",
                "--set", "train.eval_missing=false", "--set", "train.patience=10", *extra]

    full, cut = tmp_path / "full", tmp_path / "cut"
    res = subprocess.run(cmd(full), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    proc = subprocess.Popen(cmd(cut), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (cut / "state" / "latest.json").exists():
        assert proc.poll() is None, "run ended before its first state"
        assert time.time() < deadline
        time.sleep(0.005)
    time.sleep(0.5)  # land the kill later: mid-step, mid-eval or mid-write of a later state
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "metrics.json").exists(), "the kill came after the run had finished"
    killed_at = json.loads((cut / "state" / "latest.json").read_text())["state"]
    res = subprocess.run(cmd(cut, "--resume"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stderr
    assert killed_at < json.loads((cut / "state" / "latest.json").read_text())["state"]
    a, b = _final_state(full), _final_state(cut)
    assert set(a) == set(b) and any(k.startswith("optim.") for k in a)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (full, cut))
    assert mb["test"]["accuracy"] == ma["test"]["accuracy"] and mb["best_epoch"] == ma["best_epoch"]
    for ra, rb in zip(ma["history"], mb["history"]):
        ra.pop("seconds"), rb.pop("seconds")
        assert rb == pytest.approx(ra, abs=1e-6)


def test_resume_without_state_and_with_force_are_refused(synth_small, tmp_path):
    from emodistill.teacher.train import train

    with pytest.raises(ValueError, match="give one of them"):
        train(_cfg(synth_small, tmp_path / "r"), resume=True, force=True)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text("{}")
    with pytest.raises(FileExistsError, match="no training state"):
        train(_cfg(synth_small, tmp_path / "r"), resume=True)
