"""A user's own 3-class set in `format: folder`, carried through every stage: data check, teacher train,
distill, export and predict. The class names (from the folder names, not RAVDESS') reach the head, the
checkpoints, the ONNX sidecar and the predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emodistill.app.cli import main as cli

CLASSES = ["angry", "happy", "sad"]


@pytest.fixture(scope="module")
def own_set(tmp_path_factory) -> Path:
    """happy / sad / angry clips of a small synthetic set, written as one folder per class."""
    from emodistill.core.data.synth import generate

    src = tmp_path_factory.mktemp("synth")
    generate(src, size="small", seed=0, workers=0, progress=False)
    out = tmp_path_factory.mktemp("own") / "my_videos"
    assert cli(["data", "convert", "--data", str(src), "--to", "folder", "--out", str(out), "--classes", "happy,sad,angry"]) == 0
    return out


def test_three_folder_classes_through_teacher_distill_export_predict(own_set, tmp_path, capsys):
    assert sorted(p.name for p in own_set.iterdir()) == CLASSES
    assert cli(["data", "check", "--data", str(own_set), "--data-format", "folder", "--no-progress", "--workers", "0"]) == 0
    assert "36 usable clips of 36 found" in capsys.readouterr().out

    data = [f"data.root={own_set}", "data.format=folder", "data.workers=0"]
    teacher = tmp_path / "teacher"
    args = ["teacher", "train", "--config", "teacher/tiny_synth"]
    for kv in [*data, f"output_dir={teacher}", "train.epochs=2", "model.overrides.num_layers=2", "train.batch_size=8"]:
        args += ["--set", kv]
    assert cli(args) == 0
    t_meta = json.loads((teacher / "best" / "checkpoint.json").read_text())
    assert t_meta["class_names"] == CLASSES and t_meta["contract"]["outputs"]["logits"] == ["batch", 3]

    student = tmp_path / "student"
    args = ["distill", "--config", "distill/demo"]
    for kv in [*data, f"teacher.checkpoint={teacher / 'best'}", f"output_dir={student}", "train.epochs=2"]:
        args += ["--set", kv]
    assert cli(args) == 0
    s_meta = json.loads((student / "best" / "checkpoint.json").read_text())
    assert s_meta["class_names"] == CLASSES
    metrics = json.loads((student / "metrics.json").read_text())
    assert metrics["test"]["num_samples"] == 6 and len(metrics["test"]["confusion"]) == 3

    onnx = tmp_path / "onnx"
    # the data layout comes from the checkpoint's recorded recipe: no --data-format needed
    assert cli(["export", "--model", str(student / "best"), "--out", str(onnx), "--data", str(own_set),
                "--budget", "rtx3050-laptop-4gb", "--runs", "3"]) == 0
    sidecar = json.loads((onnx / "model.json").read_text())
    assert sidecar["input_contract"]["class_names"] == CLASSES and sidecar["accuracy"]["n"] == 6
    assert "folder" in capsys.readouterr().out

    clip = next((own_set / "sad").glob("*.mp4"))
    assert cli(["predict", str(clip), "--model", str(onnx / "model.onnx"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["probabilities"]) == set(CLASSES) and out["prediction"] in CLASSES
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
