"""The parts of the streaming loop (emodistill/app/stream.py): opening a source, the contract's frame grid, the face
tracker and the audio ring buffer. Each holds at most one window of data."""

from __future__ import annotations

import os

import av
import cv2
import numpy as np

from ..core.data.decode import DETECT_WIDTH, DecodeError, detect_face

TRACK_MIN_SCORE = 0.4   # normalised cross-correlation below this = the tracked face is lost


def open_source(source: str, fmt: str | None = None):
    """PyAV container for a file, `-` / `pipe:` (stdin), a device or a URL; DecodeError says why not."""
    target = "pipe:0" if source in ("-", "pipe:") else source
    if fmt is None and source.startswith("/dev/video"):
        fmt = "v4l2"
    if "://" not in target and not target.startswith(("pipe:", "/dev/")) and not os.path.exists(target):
        raise FileNotFoundError(f"stream source not found: {source}")
    try:
        return av.open(target, format=fmt, timeout=(10.0, 10.0))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(f"cannot open stream source {source} ({type(e).__name__}: {e})") from e


class GridSampler:
    """Resamples (possibly variable-rate) frames onto t_j = (j + 0.5) * step: grid point t_j takes the frame on
    screen at t_j, the last one with a timestamp <= t_j. For a constant-rate clip this is the frame index
    floor((j + 0.5) * n / T) that `decode.read_video` picks, so a window that coincides with a clip sees what
    training saw."""

    def __init__(self, step: float):
        self.step, self.next_j, self.prev = step, 0, None  # prev = (t, frame)

    def _due(self, limit: float) -> bool:
        return (self.next_j + 0.5) * self.step < limit

    def push(self, t: float, frame) -> list[tuple[int, object]]:
        out = []
        if self.prev is not None:
            while self._due(t):
                out.append((self.next_j, self.prev[1]))
                self.next_j += 1
        self.prev = (t, frame)
        return out

    def flush(self, end: float) -> list[tuple[int, object]]:
        """Grid frames up to `end` (the last frame's time + its duration) from the last frame."""
        out = []
        while self.prev is not None and self._due(end):
            out.append((self.next_j, self.prev[1]))
            self.next_j += 1
        return out


class FaceTracker:
    """Haar detection (decode.detect_face) on every `every`-th frame and on every frame while no face is
    tracked; in between, template matching of the last detected face around its last position. A failed
    scheduled detection keeps the track; a match score below TRACK_MIN_SCORE loses it."""

    def __init__(self, every: int, detector: str = "haar"):
        self.every, self.calls, self.box, self.template = max(1, every), 0, None, None
        self.detector = detector  # emodistill.core.data.faces: "haar" (decode.detect_face) or "retinaface"

    def _detect(self, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        if self.detector == "haar":
            return detect_face(rgb[None])
        from ..core.data.faces import detect_faces

        found = detect_faces(rgb, self.detector)  # best first
        return tuple(int(v) for v in found[0][:4]) if found else None

    def update(self, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        """-> face (x, y, w, h) in source pixels, or None."""
        h, w = rgb.shape[:2]
        s = min(1.0, DETECT_WIDTH / w)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if s < 1.0:
            grey = cv2.resize(grey, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_AREA)
        scheduled = self.calls % self.every == 0
        self.calls += 1
        if scheduled or self.box is None:
            face = self._detect(rgb)
            if face is not None:
                x, y, bw, bh = (int(round(v * s)) for v in face)
                self.box, self.template = face, grey[y:y + bh, x:x + bw].copy()
                return self.box
        if self.box is None or self.template is None or self.template.size == 0:
            return None
        x, y, bw, bh = (int(round(v * s)) for v in self.box)
        th, tw = self.template.shape
        x0, y0 = max(0, x - bw // 2), max(0, y - bh // 2)
        region = grey[y0:y + bh + bh // 2, x0:x + bw + bw // 2]
        score, mx, my = -1.0, 0, 0
        if region.shape[0] >= th and region.shape[1] >= tw:
            _, score, _, (mx, my) = cv2.minMaxLoc(cv2.matchTemplate(region, self.template, cv2.TM_CCOEFF_NORMED))
        if not np.isfinite(score) or score < TRACK_MIN_SCORE:
            self.box = None
            return None
        self.box = (int((x0 + mx) / s), int((y0 + my) / s), self.box[2], self.box[3])
        return self.box


class AudioRing:
    """Mono samples at the contract rate, indexed from the first video frame; keeps only what windows still need."""

    def __init__(self, rate: int, max_gap_s: float = 10.0):
        self.rate, self.buf, self.start, self.done = rate, np.zeros(0, np.float32), 0, False
        self.max_gap = int(max_gap_s * rate)  # a larger jump is a timestamp discontinuity: samples go on in order
        self.next_index: int | None = None   # where the next decoded samples go

    @property
    def end(self) -> int:
        return self.start + self.buf.size

    def add(self, samples: np.ndarray, t: float | None) -> None:
        """Append; `t` (seconds since the first video frame) resyncs after gaps or overlaps larger than 50 ms."""
        at = self.end if self.next_index is None else self.next_index
        if t is not None and (self.next_index is None or abs(round(t * self.rate) - at) > 0.05 * self.rate):
            if self.next_index is None or abs(round(t * self.rate) - at) <= self.max_gap:
                at = int(round(t * self.rate))
        if self.buf.size == 0 and self.next_index is None:
            self.start = at
        if at > self.end:      # a gap: silence
            self.buf = np.concatenate([self.buf, np.zeros(at - self.end, np.float32)])
        elif at < self.end:    # an overlap: keep what is there
            samples = samples[self.end - at:]
        if at < self.start:
            samples, at = samples[self.start - at:], self.start
        self.buf = np.concatenate([self.buf, np.clip(samples, -1.0, 1.0).astype(np.float32)])  # as read_audio
        self.next_index = self.end

    def window(self, s0: int, n: int) -> tuple[np.ndarray, float]:
        """Samples [s0, s0 + n) zero-padded where missing -> (audio [n], share actually present)."""
        out = np.zeros(n, np.float32)
        a, b = max(s0, self.start), min(s0 + n, self.end)
        if b > a:
            out[a - s0:b - s0] = self.buf[a - self.start:b - self.start]
        return out, max(0, b - a) / n

    def drop_before(self, index: int) -> None:
        if index > self.start:
            cut = min(index - self.start, self.buf.size)
            self.buf, self.start = self.buf[cut:], self.start + cut


__all__ = ["open_source", "GridSampler", "FaceTracker", "AudioRing", "TRACK_MIN_SCORE"]
