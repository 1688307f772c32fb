"""Acceptance on the synthetic set (slow: synth + decode + a few minutes of training on CPU).

A student_xs trained with plain cross-entropy on `emodistill data synth --size default` (test split: 4 actors,
240 clips) is exported to INT8 with real calibration clips; its test accuracy must be within 1 point of the
fp32 PyTorch model, and fp32/fp16 artifacts must pass parity on real clips. The fast stand-in of the INT8
check runs in CI: tests/export/test_quantize.py (a small trained model, INT8 vs FP32 on held-out clips).
"""

import json

import pytest
import torch

from emodistill.core.checkpoint import save_checkpoint
from emodistill.export.run import main as export_main
from export_toys import train_student

pytestmark = pytest.mark.slow
student = pytest.importorskip("emodistill.student")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from emodistill.core.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, size="default", seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def trained_xs(synth_root, tmp_path_factory):
    from emodistill.core.data import DataConfig, build_datasets

    torch.manual_seed(0)
    model = student.create_student("student_xs", num_classes=8)
    pre = dict(model.config.default_preprocess, face_crop="center")
    ds = build_datasets(DataConfig(root=str(synth_root), preprocess=pre, augment=True, num_views=4), progress=False)
    train_student(model, ds["train"], epochs=10)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "xs", model, preprocess=pre,
                           class_names=ds["train"].class_names, extra={"data": {"format": "ravdess", "split": "fixed"}})


def _export(ckpt, data, out, precision, *extra):
    rc = export_main(["--model", str(ckpt), "--precision", precision, "--data", str(data),
                   "--budget", "rtx3050-laptop-4gb", "--out", str(out), "--runs", "3", *extra])
    return rc, json.loads((out / "model.json").read_text())


def test_int8_accuracy_within_one_point_of_fp32(trained_xs, synth_root, tmp_path):
    rc, side = _export(trained_xs, synth_root, tmp_path / "int8", "int8", "--calib-samples", "128")
    acc = side["accuracy"]
    assert acc["n"] == 240 and acc["pytorch_fp32"]["accuracy"] > 0.5  # the student learned something
    assert acc["drop_points"] <= 1.0, acc
    assert side["parity"]["passed"] and rc == 0


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_parity_on_real_clips(trained_xs, synth_root, tmp_path, precision):
    rc, side = _export(trained_xs, synth_root, tmp_path / precision, precision)
    assert rc == 0 and side["parity"]["passed"] and "test=240" in side["parity"]["inputs"]
    assert abs(side["accuracy"]["drop_points"]) <= 1.0
