"""Bad checkpoints, sidecars and artifacts for `emodistill predict | export | compare`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from robustness_corpus import OLD_EXPORT, Unchanged, assert_clean_error, cli


def broken_checkpoint(src: Path, dest: Path, edit) -> Path:
    shutil.copytree(src, dest)
    edit(dest)
    return dest


def drop_key(key):
    def edit(d: Path):
        meta = json.loads((d / "checkpoint.json").read_text())
        meta.pop(key)
        (d / "checkpoint.json").write_text(json.dumps(meta))
    return edit


def truncate_weights(keep_hash: bool):
    def edit(d: Path):
        w = d / "model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
        if not keep_hash:
            meta = json.loads((d / "checkpoint.json").read_text())
            meta.pop("weights_sha256")
            (d / "checkpoint.json").write_text(json.dumps(meta))
    return edit


CHECKPOINT_CASES = {
    "no_model_key": (drop_key("model"), ["checkpoint.json", "'model'"]),
    "no_preprocess_key": (drop_key("preprocess"), ["checkpoint.json", "'preprocess'"]),
    "truncated_weights_no_hash": (truncate_weights(False), ["model.safetensors"]),
    "truncated_weights": (truncate_weights(True), ["model.safetensors", "sha256"]),
    "not_json": (lambda d: (d / "checkpoint.json").write_text("{"), ["checkpoint.json"]),
    "no_checkpoint_json": (lambda d: (d / "checkpoint.json").unlink(), ["checkpoint.json"]),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_predict_bad_checkpoint(case, checkpoint, clips, tmp_path, capsys):
    """Issue 17: checkpoint.json without `model`/`preprocess` (KeyError), truncated weights without a hash
    (SafetensorError) ended in tracebacks."""
    edit, names = CHECKPOINT_CASES[case]
    bad = broken_checkpoint(checkpoint, tmp_path / "ckpt", edit)
    with Unchanged(tmp_path):
        r = cli(capsys, "predict", clips["happy"], "--model", bad)
    assert_clean_error(r, str(bad), *names)


def test_predict_checkpoint_folder_with_a_dot(checkpoint, clips, tmp_path, capsys):
    """Issue 17 item 10: `run.v1` was refused, and the error named its parent folder."""
    dotted = tmp_path / "run.v1"
    shutil.copytree(checkpoint, dotted)
    for model in (dotted, dotted / "model.safetensors", dotted / "checkpoint.json"):
        r = cli(capsys, "predict", clips["happy"], "--model", model, "--json")
        assert r.code == 0, r.err
        assert json.loads(r.out)["backend"] == "checkpoint"


def bad_export(src: Path, dest: Path, edit) -> Path:
    shutil.copytree(src, dest)
    edit(dest)
    return dest / "model.onnx"


def set_sidecar(fn):
    def edit(d: Path):
        side = json.loads((d / "model.json").read_text())
        fn(side)
        (d / "model.json").write_text(json.dumps(side))
    return edit


EXPORT_CASES = {
    # a text file named model.onnx: the sha mismatch was found, then protobuf's DecodeError ended it
    "text_model_onnx": (lambda d: (d / "model.onnx").write_text("not a model"), ["model.onnx", "sha256"]),
    "text_model_onnx_no_sha": (lambda d: ((d / "model.onnx").write_text("not a model"),
                                          set_sidecar(lambda s: s.pop("sha256"))(d)), ["not a readable ONNX"]),
    # classes that do not match the model's outputs (once an IndexError inside predict)
    "class_list_mismatch": (set_sidecar(lambda s: s["input_contract"].update(class_names=["a", "b", "c"])),
                            ["class_names", "3 classes"]),
    "sidecar_not_json": (lambda d: (d / "model.json").write_text("{'single': 'quotes'}"), ["model.json", "JSON"]),
    "sidecar_no_contract": (lambda d: (d / "model.json").write_text("{}"), ["model.json", "preprocess"]),
    "sidecar_bad_preprocess": (set_sidecar(lambda s: s["input_contract"]["preprocess"].update(num_frames="many")),
                               ["model.json", "num_frames"]),
    "no_sidecar": (lambda d: (d / "model.json").unlink(), ["no sidecar"]),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_predict_bad_export(case, onnx_export, clips, tmp_path, capsys):
    edit, names = EXPORT_CASES[case]
    model = bad_export(onnx_export, tmp_path / "exp", edit)
    with Unchanged(tmp_path):
        r = cli(capsys, "predict", clips["happy"], "--model", model)
    assert_clean_error(r, *names)
    assert str(tmp_path / "exp") in r.err


def test_predict_bad_clip(checkpoint, tmp_path, capsys):
    for clip, names in ((tmp_path / "missing.mp4", ["missing.mp4", "not found"]),
                        (tmp_path / "text.mp4", ["text.mp4", "cannot open"])):
        if clip.name == "text.mp4":
            clip.write_text("hello")
        with Unchanged(tmp_path):
            r = cli(capsys, "predict", clip, "--model", checkpoint)
        assert_clean_error(r, *names)


def test_export_force_keeps_the_old_export_until_the_new_one_is_complete(onnx_export, checkpoint, tmp_path,
                                                                          capsys):
    """Issue 17, data loss 2: --force deleted the previous export before the new one existed."""
    out = shutil.copytree(onnx_export, tmp_path / "exp")
    for name, edit in (("truncated", truncate_weights(False)), ("incomplete", drop_key("model"))):
        bad = broken_checkpoint(checkpoint, tmp_path / name, edit)
        with Unchanged(out):
            r = cli(capsys, "export", "--model", bad, "--out", out, "--force", "--set", "budget.precision=fp32")
        assert_clean_error(r, str(bad))
    with Unchanged(out):
        r = cli(capsys, "export", "--model", checkpoint, "--out", out, "--set", "budget.precision=fp32")
    assert_clean_error(r, str(out), "--force")
    fresh = tmp_path / "fresh"
    r = cli(capsys, "export", "--model", tmp_path / "truncated", "--out", fresh, "--set", "budget.precision=fp32")
    assert_clean_error(r, "model.safetensors")
    assert not fresh.exists(), "a failed export left a folder behind"


def test_export_force_replaces_only_when_complete(onnx_export):
    """The session's export ran with --force over an older export (conftest.OLD_EXPORT): the new files replaced
    the old ones, the old engine (which the new sidecar does not describe) is gone, the user's notes stay, no
    staging folder is left, and the files have normal modes."""
    from emodistill.core.utils import sha256_file

    out = onnx_export
    side = json.loads((out / "model.json").read_text())
    assert side["sha256"] == sha256_file(out / "model.onnx") and side["format"] == "onnx"
    assert (out / "notes.md").read_text() == OLD_EXPORT["notes.md"]
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.onnx", "notes.md", "verdict.txt"]
    assert all((out / n).stat().st_mode & 0o777 == 0o666 & ~_umask() for n in ("model.onnx", "model.json"))


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_export_bad_budget_name(checkpoint, tmp_path, capsys):
    r = cli(capsys, "export", "--model", checkpoint, "--out", tmp_path / "o", "--budget", "rtx9999")
    assert_clean_error(r, "rtx9999")
    assert not (tmp_path / "o").exists()


def test_compare_bad_inputs_fail_before_decoding(checkpoint, onnx_export, dataset, tmp_path, capsys):
    text_onnx = tmp_path / "text.onnx"
    text_onnx.write_text("not a model")
    incomplete = broken_checkpoint(checkpoint, tmp_path / "incomplete", drop_key("preprocess"))
    cases = [(["--teacher", tmp_path / "nope", "--student", checkpoint], [str(tmp_path / "nope"), "does not exist"]),
             (["--teacher", checkpoint, "--student", incomplete], [str(incomplete), "'preprocess'"]),
             (["--teacher", checkpoint, "--student", checkpoint, "--onnx", text_onnx], [str(text_onnx)])]
    for args, names in cases:
        with Unchanged(dataset, tmp_path):
            r = cli(capsys, "compare", *args, "--data", dataset, "--out", tmp_path / "report", "--runs", "1")
        assert_clean_error(r, *names)
        assert not (dataset / ".emodistill_cache").exists(), "the data was decoded before the inputs were checked"


def test_debug_shows_the_traceback_and_verbose_does_not(checkpoint, clips, tmp_path, capsys):
    bad = broken_checkpoint(checkpoint, tmp_path / "ckpt", drop_key("model"))
    for argv in (["--debug", "predict", clips["happy"], "--model", bad],
                 ["predict", clips["happy"], "--model", bad, "--debug"]):
        with pytest.raises(Exception, match="'model'"):
            from emodistill.app.cli import main

            main([str(a) for a in argv])
    assert_clean_error(cli(capsys, "-v", "predict", clips["happy"], "--model", bad), "'model'")


def test_an_unexpected_exception_is_one_line_with_its_own_exit_code(capsys):
    """A bug (not an input problem) still ends in one line, with exit 70 and a pointer to --debug."""
    from emodistill.core.errors import EXIT_INTERNAL, run_guarded

    assert run_guarded(lambda args: {}["missing"], None) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error KeyError" in err and "--debug" in err and "Traceback" not in err
