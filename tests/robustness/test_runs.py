"""Training runs and their files: `emodistill distill | teacher train` reruns, recipes with bad names, training
state and weight indexes that point outside their folder, file modes of everything written atomically."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import yaml
from robustness_corpus import Unchanged, assert_clean_error, cli, toy_recipe


def finished_run(folder: Path, with_state: bool = False) -> Path:
    (folder / "best").mkdir(parents=True)
    (folder / "best" / "checkpoint.json").write_text('{"better": true}')
    (folder / "metrics.json").write_text('{"test": {"accuracy": 0.99}}')
    if with_state:
        (folder / "state").mkdir()
        (folder / "state" / "latest.json").write_text('{"state": "step_00000001_e0000_b000000"}')
    return folder


@pytest.mark.parametrize("with_state", [False, True], ids=["finished", "resumable"])
def test_distill_refuses_a_finished_run_folder(with_state, tmp_path, capsys):
    """Issue 17, data loss 3: a new distill into an existing run folder replaced a better best/ and metrics.json."""
    out = finished_run(tmp_path / "run", with_state)
    recipe = toy_recipe(tmp_path / "toy.yaml", out)
    with Unchanged(tmp_path):
        r = cli(capsys, "distill", "--config", recipe)
    assert_clean_error(r, str(out), "--force", *(["--resume"] if with_state else []))


def test_teacher_train_refuses_a_finished_run_folder(dataset, tmp_path, capsys):
    out = finished_run(tmp_path / "teacher")
    with Unchanged(tmp_path):
        r = cli(capsys, "teacher", "train", "--config", "configs/teacher/tiny_synth.yaml", "--set",
                f"data.root={dataset}", "--set", f"output_dir={out}")
    assert_clean_error(r, str(out), "--force")


def test_distill_force_moves_the_old_run_aside(toy_run, tmp_path, capsys):
    out = finished_run(tmp_path / "run")
    recipe = toy_recipe(tmp_path / "toy.yaml", out)
    r = cli(capsys, "distill", "--config", recipe, "--force")
    assert r.code == 0, r.err
    (old,) = out.glob("replaced-*")
    assert json.loads((old / "metrics.json").read_text()) == {"test": {"accuracy": 0.99}}
    assert (old / "best" / "checkpoint.json").read_text() == '{"better": true}'
    assert json.loads((out / "metrics.json").read_text())["student"] == "toy_student"


def test_resume_of_a_moved_run_does_not_warn_about_its_config(toy_run, tmp_path, capsys, caplog):
    """Issue 17: resuming a moved run warned that the config differs (output_dir was in the hash)."""
    cfg = yaml.safe_load(toy_run.read_text())
    moved = shutil.copytree(cfg["output_dir"], tmp_path / "moved")
    with caplog.at_level(logging.INFO):
        r = cli(capsys, "distill", "--config", toy_run, "--resume", "--set", f"output_dir={moved}",
                "--set", "train.epochs=2")
    assert r.code == 0, r.err
    assert "resumed from" in caplog.text
    assert "config differs" not in caplog.text


@pytest.mark.parametrize("key,value,named", [
    ("student.name", "student_xxl", ["student.name", "student_xxl"]),
    ("distill.losses.kd.loss", "kld", ["distill.losses.kd", "kld"]),
    ("distill.losses.fancy.weight", "1.0", ["distill.losses.fancy", "'fancy'"]),
])
def test_distill_bad_names_fail_before_the_data_is_decoded(key, value, named, dataset, tmp_path, capsys):
    """Issue 17: an unknown student.name or loss name raised KeyError after the data was decoded."""
    recipe = toy_recipe(tmp_path / "r.yaml", tmp_path / "out", toy=None, teacher={"name": "toy_teacher"},
                        data={"root": str(dataset), "workers": 0,
                              "preprocess": {"num_frames": 4, "image_size": 32, "face_crop": "center"}})
    with Unchanged(dataset):  # no cache written: nothing was decoded
        r = cli(capsys, "distill", "--config", recipe, "--set", f"{key}={value}", "--set", "distill.kd=false")
    assert_clean_error(r, *named)
    assert not (tmp_path / "out").exists()


def test_teacher_unknown_model_fails_before_the_data_is_decoded(dataset, tmp_path, capsys):
    with Unchanged(dataset):
        r = cli(capsys, "teacher", "train", "--config", "configs/teacher/tiny_synth.yaml", "--set",
                f"data.root={dataset}", "--set", f"output_dir={tmp_path / 'out'}", "--set", "model.name=teacher_huge")
    assert_clean_error(r, "model.name", "teacher_huge")


def test_resume_never_follows_a_state_path_out_of_its_folder(toy_run, tmp_path, capsys):
    """Issue 17 item 8: latest.json pointing at ../../other-run/... was loaded."""
    other = Path(yaml.safe_load(toy_run.read_text())["output_dir"])
    target = json.loads((other / "state" / "latest.json").read_text())["state"]
    out = tmp_path / "run"
    (out / "state").mkdir(parents=True)
    rel = os.path.relpath(other / "state" / target, out / "state")
    (out / "state" / "latest.json").write_text(json.dumps({"state": rel}))
    recipe = toy_recipe(tmp_path / "toy.yaml", out, train={**yaml.safe_load(toy_run.read_text())["train"],
                                                          "epochs": 2})
    with Unchanged(tmp_path, other):
        r = cli(capsys, "distill", "--config", recipe, "--resume")
    assert_clean_error(r, str(out / "state" / "latest.json"), "step_")


def test_weight_index_never_points_out_of_its_folder(tmp_path):
    """Issue 17 item 8: teacher/weights.py joined weight_map names unchecked."""
    from emodistill.teacher.weights import resolve_sources

    folder = tmp_path / "lfm2"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (tmp_path / "elsewhere.safetensors").write_bytes(b"not yours")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"model.embed.weight": "../elsewhere.safetensors"}}))
    with pytest.raises(Exception, match=r"weight_map\['model.embed.weight'\] = '../elsewhere.safetensors'"):
        resolve_sources({"lfm2": str(folder)})


def test_files_written_atomically_get_normal_modes(tmp_path, checkpoint):
    """Issue 17 item 9: every atomically written file was 0600 (mkstemp), whatever the umask."""
    import torch

    from emodistill.core.state import save_state
    from emodistill.core.utils import write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        for f in ("model.safetensors", "checkpoint.json"):
            assert (checkpoint / f).stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "a.json", 0o640)  # a replaced file keeps the mode its owner gave it
        write_json_atomic(tmp_path / "a.json", {"x": 2})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
        model = torch.nn.Linear(2, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        folder = save_state(tmp_path / "state", model=model, optimizer=opt, scheduler=None, rng=[],
                            position={"step": 1, "epoch": 0, "batch": 1})
        assert folder.stat().st_mode & 0o777 == 0o755
        assert all(f.stat().st_mode & 0o777 == 0o644 for f in folder.iterdir())
        os.umask(0o002)
        write_json_atomic(tmp_path / "b.json", {})
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)
