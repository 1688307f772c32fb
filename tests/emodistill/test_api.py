"""`emodistill.api` as a notebook user calls it: load + predict (checkpoint and its ONNX export), stream, export with a
budget, read the reports; and the errors a wrong call gets. One tiny student_xs, one fp32 export (~20 s on 1 thread)."""

import argparse
import contextlib
import io
import json
import logging

import numpy as np
import pytest
import torch

import emodistill.api as emo
from emodistill.core.checkpoint import save_checkpoint
from emodistill.core.contract import RAVDESS_CLASSES, Preprocess
from emodistill.core.data.longvideo import write_long_video
from emodistill.core.data.synth import clip_specs, make_clip
from emodistill.student import create_student

BUDGET = "rtx3050-laptop-4gb-realtime"  # one of `emodistill budgets` (made for int8: precision overridden below)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A training run folder (run/best = student_xs, random init), a 'happy' clip and a 6 s video of three clips."""
    d = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    pre = Preprocess(num_frames=8, image_size=64, clip_seconds=2.0, face_crop="center")
    save_checkpoint(d / "run" / "best", create_student("student_xs").eval(), preprocess=pre,
                    class_names=list(RAVDESS_CLASSES))
    clips = [make_clip(str(d / "data"), 0, spec) for spec in clip_specs(1, "small")[4:7]]
    write_long_video([{"label": "?", "clips": clips}], d / "long.mp4")
    return {"dir": d, "run": d / "run", "clip": clips[-1], "video": d / "long.mp4"}


@pytest.fixture(scope="module")
def exported(work):
    """export_model with a budget name, its stdout and its log records (the API logs, it does not print)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("emodistill.api")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            sidecar = emo.export_model(work["run"], out=work["dir"] / "onnx", budget=BUDGET,
                                       budget_set={"precision": "fp32"}, runs=3, parity_samples=4)
    finally:
        log.removeHandler(handler)
    return {"sidecar": sidecar, "out": work["dir"] / "onnx", "stdout": stdout.getvalue(),
            "log": "\n".join(r.getMessage() for r in records)}


def test_export_with_a_budget_returns_the_sidecar(exported):
    side, out = exported["sidecar"], exported["out"]
    assert side["format"] == "onnx" and side["precision"] == "fp32" and side["artifact"] == "model.onnx"
    assert side["budget"]["spec"]["name"] == BUDGET and side["budget"]["verdict"]["passed"] is True
    assert side["parity"]["passed"] and side["input_contract"]["class_names"] == list(RAVDESS_CLASSES)
    assert (out / "model.onnx").is_file() and (out / "verdict.txt").is_file()
    assert exported["stdout"] == ""  # the command's table went to the log
    assert "parity vs PyTorch fp32" in exported["log"] and BUDGET in exported["log"]


def test_read_report_of_an_export(exported):
    out = exported["out"]
    for where in (out, out / "model.json", out / "model.onnx"):
        assert emo.read_report(where) == exported["sidecar"]


def test_load_and_predict_checkpoint_and_onnx_agree(work, exported):
    by_ckpt = emo.load(work["run"])  # the run folder resolves to its best/
    assert by_ckpt.kind == "checkpoint" and by_ckpt.path.name == "best"
    a = emo.predict(by_ckpt, work["clip"])
    b = emo.predict(exported["out"] / "model.onnx", work["clip"])  # a path works too
    assert a["backend"] == "checkpoint" and b["backend"] == "onnx"
    assert a["prediction"] == b["prediction"] and a["prediction"] in RAVDESS_CLASSES
    pa, pb = (np.array([r["probabilities"][c] for c in RAVDESS_CLASSES]) for r in (a, b))
    np.testing.assert_allclose(pa, pb, atol=1e-4)
    assert abs(pb.sum() - 1) < 1e-5 and "budget" in b  # the artifact carries its verdict line
    assert emo.load(exported["out"]).kind == "onnx"  # an export folder -> its artifact


def test_predict_with_a_separate_audio_file(work):
    model = emo.load(work["run"] / "best" / "model.safetensors")
    paired = emo.predict(model, work["clip"], audio=work["clip"])  # any file with an audio track
    assert paired["probabilities"] == pytest.approx(emo.predict(model, work["clip"])["probabilities"], abs=1e-6)


def test_stream_on_a_short_video(work, exported, tmp_path):
    model = emo.load(exported["out"] / "model.onnx")
    result = emo.stream(model, work["video"], hop=1.0, window=2.0, out=tmp_path / "tl")
    rows = result["windows"]
    assert len(rows) == 5 and [r["start"] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(r["end"] - r["start"] == pytest.approx(2.0) for r in rows)
    assert result["backend"] == "onnx" and result["stats"]["ended_by"] == "end of stream"
    assert set(rows[0]["probabilities"]) == set(RAVDESS_CLASSES) and rows[0]["top_emotion"] in RAVDESS_CLASSES
    assert result["timing"]["hop_s"] == pytest.approx(1.0)
    assert (tmp_path / "tl" / "timeline.png").is_file()
    assert len((tmp_path / "tl" / "timeline.csv").read_text().splitlines()) == 6
    assert emo.read_report(tmp_path / "tl")["windows"] == json.loads(json.dumps(rows))


@pytest.mark.parametrize("kw, name", [({"hop": 0}, "hop"), ({"hop": -0.5}, "hop"), ({"hop": float("nan")}, "hop"),
                                      ({"window": 0.0}, "window"), ({"window": -2}, "window")])
def test_stream_rejects_a_bad_hop_or_window(work, kw, name):
    with pytest.raises(ValueError, match=rf"^{name} must be a positive number of seconds"):
        emo.stream(work["run"], work["video"], **kw)


def test_stream_window_must_be_the_models_clip_length(work):
    model = emo.load(work["run"])
    with pytest.raises(ValueError, match=r"window=3 s: .* clip length, 2 s"):
        emo.stream(model, work["video"], window=3.0)
    with pytest.raises(TypeError, match=r"'hopp'.*allowed: window, hop, out, .*face_every"):
        emo.stream(model, work["video"], hopp=1.0)


def test_export_unknown_keyword_names_it_and_the_allowed_ones(work, tmp_path):
    with pytest.raises(TypeError, match=r"'bugdet'.*allowed: .*budget_set.*int8_mode"):
        emo.export_model(work["run"], out=tmp_path / "x", bugdet=BUDGET)
    with pytest.raises(ValueError, match="precision.*'int4'"):
        emo.export_model(work["run"], out=tmp_path / "x", precision="int4")
    assert not (tmp_path / "x").exists()


def test_export_refuses_an_out_that_holds_an_export(work, exported):
    with pytest.raises(FileExistsError, match="--force"):
        emo.export_model(work["run"], out=exported["out"])


def test_export_defaults_are_the_commands(work, tmp_path, monkeypatch):
    """Keywords -> the command's Namespace: omitted ones keep export/run.py's defaults; exit 3 -> ExportError."""
    from emodistill.export import run as export_run

    seen = {}

    def fake(args):
        seen.update(vars(args))
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / "model.json").write_text('{"budget": {"verdict": {"passed": false}}}')
        return 3

    monkeypatch.setattr(export_run, "run_export", fake)
    with pytest.raises(emo.ExportError, match="exit code 3 .over budget") as e:
        emo.export_model(work["run"], out=tmp_path / "out", int8_mode="dynamic", budget_set={"max_p95_ms": 20})
    assert isinstance(e.value, RuntimeError) and e.value.code == 3
    assert e.value.sidecar == {"budget": {"verdict": {"passed": False}}}
    parser = argparse.ArgumentParser()
    export_run.add_export_arguments(parser)
    want = vars(parser.parse_args(["--model", str(work["run"] / "best"), "--out", str(tmp_path / "out")]))
    assert seen == {**want, "int8_mode": "dynamic", "overrides": ["budget.max_p95_ms=20"]}


def test_read_report_of_a_compare_folder(tmp_path):
    report = {"created": "now", "summary": {"student_accuracy": 0.9}, "models": [{"name": "Teacher"}]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert emo.read_report(tmp_path) == report == emo.read_report(tmp_path / "report.json")
    with pytest.raises(FileNotFoundError, match="no report there.*report.json, model.json, timeline.json"):
        emo.read_report(tmp_path / "nothing-here")
