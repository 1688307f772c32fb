import pytest

from emodistill.app.cli import main
from student import create_student
from student.cli import count_flops, dummy_inputs


def test_info_prints_params_and_flops(capsys):
    assert main(["student", "info", "student_xs"]) == 0
    out = capsys.readouterr().out
    for part in ("audio", "video", "fusion", "head", "total"):
        assert part in out
    total = create_student("student_xs").count_parameters()["total"]
    assert f"{total / 1e6:.3f}" in out


def test_flops_per_part_add_up_and_scale_with_input():
    model = create_student("student_xs")
    video, audio = dummy_inputs(model, 1)
    f1 = count_flops(model, video, audio)
    assert all(f1[p] > 0 for p in ("audio", "video", "fusion", "head"))
    assert sum(f1[p] for p in ("audio", "video", "fusion", "head")) == pytest.approx(f1["total"], rel=1e-6)
    video2, audio2 = dummy_inputs(model, 1, num_frames=16, clip_seconds=4.0)
    f2 = count_flops(model, video2, audio2)
    assert f2["video"] > 1.5 * f1["video"] and f2["audio"] > 1.5 * f1["audio"]
