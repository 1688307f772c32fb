"""Issue 25 (hardening, round 2): checks before the work starts, and exit codes by meaning.

Each case was seen on main a17e19d: a wrong value passing preflight and failing after the data was decoded, an
internal error (70) on ordinary input, or the wrong exit code. The cases that a user can type as one command are
also rows of docs/errors.md (test_documented_errors.py); these need a data set, a patched writer or a teacher.
"""

from __future__ import annotations

import errno
import json

import pytest
from robustness_corpus import Unchanged, assert_clean_error, cli, toy_recipe

PRE = {"num_frames": 4, "image_size": 32, "face_crop": "center"}


def data_recipe(tmp_path, dataset, **sections):
    """A distill recipe over the corpus's clips: decoding them would write <dataset>/.emodistill_cache."""
    return toy_recipe(tmp_path / "r.yaml", tmp_path / "out", toy=None,
                      data={"root": str(dataset), "workers": 0, "preprocess": PRE}, **sections)


@pytest.fixture(scope="module")
def toy_teacher_4(tmp_path_factory):
    """A (random) toy teacher checkpoint of 4 classes: the corpus's RAVDESS data has 8."""
    import torch

    import emodistill.distill.toy  # noqa: F401  (registers the toys)
    from emodistill.core.checkpoint import save_checkpoint
    from emodistill.core.contract import Preprocess
    from emodistill.core.model import create_model

    torch.manual_seed(0)
    model = create_model("toy_teacher", num_classes=4, frames=4, samples=8000)
    return save_checkpoint(tmp_path_factory.mktemp("t4") / "best", model, preprocess=Preprocess(**PRE, clip_seconds=0.5),
                           class_names=[f"class{i}" for i in range(4)])


def test_a_student_as_teacher_fails_before_the_data_is_decoded(checkpoint, dataset, tmp_path, capsys):
    """a17e19d: `--set teacher.checkpoint=<a student>` passed preflight; the family check came after decoding."""
    recipe = data_recipe(tmp_path, dataset)
    with Unchanged(dataset):
        r = cli(capsys, "distill", "--config", recipe, "--set", f"teacher.checkpoint={checkpoint}")
    assert_clean_error(r, "teacher.checkpoint", "'student' checkpoint, not a teacher")
    assert not (tmp_path / "out").exists()


def test_a_teacher_of_other_classes_fails_before_the_data_is_decoded(toy_teacher_4, dataset, tmp_path, capsys):
    recipe = data_recipe(tmp_path, dataset)
    with Unchanged(dataset):
        r = cli(capsys, "distill", "--config", recipe, "--set", f"teacher.checkpoint={toy_teacher_4}")
    assert_clean_error(r, "teacher.checkpoint", "4 classes", "8")


def test_a_misspelt_loss_argument_fails_before_the_data_is_decoded(dataset, tmp_path, capsys):
    """a17e19d: `LogitKD.__init__() got an unexpected keyword argument`, after the clips were decoded."""
    recipe = data_recipe(tmp_path, dataset)
    with Unchanged(dataset):
        r = cli(capsys, "distill", "--config", recipe, "--set", "distill.losses.kd.args.temprature=2")
    assert_clean_error(r, "distill.losses.kd.args.temprature", "did you mean 'temperature'?")


def test_a_wrongly_typed_model_option_in_a_recipe_fails_before_the_data_is_decoded(dataset, tmp_path, capsys):
    recipe = data_recipe(tmp_path, dataset, student={"name": "student_xs"})
    with Unchanged(dataset):
        r = cli(capsys, "distill", "--config", recipe, "--set", "distill.kd=false",
                "--set", "student.overrides.video_dim=three")
    assert_clean_error(r, "student.overrides", "video_dim", "'three' is not a valid int")


@pytest.mark.parametrize("hop", ["0", "-1", "-0.25"])
def test_stream_hop_must_be_positive(hop, onnx_export, clips, tmp_path, capsys):
    """a17e19d: --hop 0 and --hop -1 exited 0, silently streaming every 0.25 s."""
    r = cli(capsys, "predict", clips["happy"], "--model", onnx_export / "model.onnx", "--stream", "--hop", hop,
            "--out", tmp_path / "s")
    assert_clean_error(r, "--hop", "must be > 0")
    assert not (tmp_path / "s").exists()


def test_a_full_disk_is_a_runtime_failure_naming_the_folder(checkpoint, tmp_path, capsys, monkeypatch):
    """a17e19d: `error: [Errno 28] No space left on device`, exit 2 (an input error), no path named."""
    import onnx

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full)
    monkeypatch.setattr(onnx, "save", full)
    out = tmp_path / "export"
    r = cli(capsys, "export", "--model", checkpoint, "--format", "onnx", "--out", out, "--parity-samples", "2",
            "--runs", "3", "--batch-size", "2")
    assert_clean_error(r, str(out), "No space left on device", "free some space", code=1)
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".emodistill")]


def test_exit_codes_follow_the_meaning():
    from emodistill.core.errors import InputError, RuntimeFailure, UnavailableError, exit_code
    from emodistill.export.tensorrt import TensorRTUnavailable
    from emodistill.export.trt_rtx import EngineMismatch, EngineRuntimeError, EngineUnavailable

    assert exit_code(OSError(errno.ENOSPC, "full")) == 1
    assert exit_code(OSError(errno.EROFS, "read-only")) == 1
    assert exit_code(FileNotFoundError(errno.ENOENT, "missing")) == 2
    assert exit_code(PermissionError(errno.EACCES, "denied")) == 2
    assert exit_code(EngineUnavailable("no GPU")) == 5 and exit_code(TensorRTUnavailable("no trt")) == 5
    assert exit_code(EngineMismatch("sha")) == 2
    assert exit_code(EngineRuntimeError("execution failed")) == 1
    assert exit_code(type("E", (RuntimeFailure, TypeError), {})("x")) == 1
    assert exit_code(type("E", (UnavailableError, ValueError), {})("x")) == 5
    assert exit_code(type("E", (InputError, RuntimeError), {})("x")) == 2
    assert exit_code(TypeError("a bug")) == 70


def test_predict_refuses_a_sidecar_of_other_classes(onnx_export, clips, tmp_path, capsys):
    """The sidecar's class list against the ONNX output width (the engine case is in docs/errors.md)."""
    import shutil

    d = tmp_path / "edited"
    shutil.copytree(onnx_export, d)
    side = json.loads((d / "model.json").read_text())
    side["input_contract"]["class_names"] = side["input_contract"]["class_names"][:3]
    (d / "model.json").write_text(json.dumps(side))
    r = cli(capsys, "predict", clips["happy"], "--model", d / "model.onnx")
    assert_clean_error(r, "3 classes", "8")


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--parity-samples", "-1"),
                                        ("--latency-seconds", "-1"), ("--max-batch", "0"), ("--threads", "0")])
def test_export_option_ranges_are_usage_errors(flag, value, checkpoint, tmp_path, capsys):
    """a17e19d: --eval-batch 0, --latency-seconds -1 and --max-batch 0 exported (exit 0); --parity-samples -1
    failed after the export with `Trying to create tensor with negative dimension` (exit 1)."""
    r = cli(capsys, "export", "--model", checkpoint, "--out", tmp_path / "e", flag, value)
    assert r.code == 2 and "Traceback" not in r.err, r.err[-2000:]
    assert f"argument {flag}: {value} is out of range" in r.err
    assert not (tmp_path / "e").exists()
