import pytest

from emodistill.app.cli import main
from emodistill.core.inputs import random_inputs
from emodistill.student import create_student
from emodistill.student.cli import part_flops, preset_dims


def test_info_prints_params_and_flops(capsys):
    assert main(["student", "info", "--model", "student_xs"]) == 0
    out = capsys.readouterr().out
    for part in ("audio", "video", "fusion", "head", "total"):
        assert part in out
    total = create_student("student_xs").count_parameters()["total"]
    assert f"{total / 1e6:.3f}" in out
    assert "ONNX Runtime" not in out  # latency only with --latency


def test_info_latency_exports_with_the_export_stage_and_times_it(capsys):
    assert main(["student", "info", "--model", "student_xs", "--latency", "--runs", "3", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("ONNX Runtime CPU latency"))
    assert "`emodistill export` writes" in line and "3 runs after 1 warm-up" in line
    assert all(k in line for k in ("p50", "p90", "p95", "min", "CPU time"))


def test_preset_dims_follow_the_preset_and_the_overrides():
    model = create_student("student_xs")
    pre = model.config.default_preprocess
    d = preset_dims(model)
    assert (d.num_frames, d.image_size) == (pre["num_frames"], pre["image_size"])
    assert d.num_samples == round(pre["clip_seconds"] * model.config.sample_rate)
    d2 = preset_dims(model, num_frames=16, clip_seconds=4.0)
    assert d2.num_frames == 16 and d2.num_samples == 4 * model.config.sample_rate and d2.image_size == d.image_size


def test_flops_per_part_add_up_and_scale_with_input():
    model = create_student("student_xs")
    video, audio = random_inputs(preset_dims(model), 1)
    f1 = part_flops(model, video, audio)
    assert all(f1[p] > 0 for p in ("audio", "video", "fusion", "head"))
    assert sum(f1[p] for p in ("audio", "video", "fusion", "head")) == pytest.approx(f1["total"], rel=1e-6)
    video2, audio2 = random_inputs(preset_dims(model, num_frames=16, clip_seconds=4.0), 1)
    f2 = part_flops(model, video2, audio2)
    assert f2["video"] > 1.5 * f1["video"] and f2["audio"] > 1.5 * f1["audio"]
