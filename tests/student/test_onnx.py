"""The student exports with the export stage's exporter (the one ONNX path) and ONNX Runtime matches PyTorch."""

import numpy as np
import pytest
import torch

from emodistill.core.inputs import random_inputs
from emodistill.export.onnx import export_onnx, make_session
from emodistill.student import create_student
from emodistill.student.cli import preset_dims


def _round_trip(model, tmp_path):
    model.eval()
    dims = preset_dims(model)
    path = tmp_path / "student.onnx"
    export_onnx(model, dims, path, "fp32")  # runs onnx.checker too
    sess = make_session(path)
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    for batch in (1, 3):  # dynamic batch: other sizes than the traced one
        video, audio = random_inputs(dims, batch, seed=batch)
        with torch.no_grad():
            ref = model(video, audio)["logits"].numpy()
        got = sess.run(None, {"video": video.numpy(), "audio": audio.numpy()})[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4


def test_onnx_round_trip_xs_with_roi(tmp_path):
    # roi_topk puts TopK + GatherElements in the graph, as in student_s
    _round_trip(create_student("student_xs", roi_topk=8), tmp_path)


@pytest.mark.slow
def test_onnx_round_trip_s(tmp_path):
    _round_trip(create_student("student_s"), tmp_path)
