import numpy as np
import pytest
import torch

from student import create_student
from student.cli import OUTPUTS, dummy_inputs, export_onnx


def _round_trip(model, tmp_path):
    import onnxruntime as ort

    model.eval()
    video, audio = dummy_inputs(model, 2)
    path = export_onnx(model, tmp_path / "student.onnx", video, audio)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(OUTPUTS)
    for batch in (1, 3):  # dynamic batch: other sizes than the traced one
        video, audio = dummy_inputs(model, batch)
        video = torch.rand_like(video)
        with torch.no_grad():
            ref = model(video, audio)
        outs = sess.run(None, {"video": video.numpy(), "audio": audio.numpy()})
        for name, got in zip(OUTPUTS, outs):
            assert got.shape == tuple(ref[name].shape), name
            assert np.abs(got - ref[name].numpy()).max() < 1e-4, name


def test_onnx_round_trip_xs_with_roi(tmp_path):
    # roi_topk puts TopK + GatherElements in the graph, as in student_s
    _round_trip(create_student("student_xs", roi_topk=8), tmp_path)


@pytest.mark.slow
def test_onnx_round_trip_s(tmp_path):
    _round_trip(create_student("student_s"), tmp_path)
