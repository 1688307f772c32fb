"""Long test videos of known emotions: clips of a RAVDESS-format set concatenated into one .mp4.

Each segment is `per_segment` clips of one emotion (different actors/statements where possible); the segments
cycle through the classes in a shuffled order. The result is H.264 + AAC mono, encoded while the clips are read
(the long video is never held in memory), with `<out>.segments.json`: per segment its time span and label, per
clip its path and span. Every clip's audio is cut or padded to its video length so both stay aligned.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import av
import numpy as np

from ..utils import write_json_atomic
from .names import parse_name
from .splits import assign_splits

logger = logging.getLogger(__name__)


def pick_segments(root: str | Path, minutes: float, per_segment: int = 3, split: str = "test",
                  clip_seconds: float = 2.0, seed: int = 0) -> list[dict]:
    """[{label, clips: [path, ...]}] covering about `minutes` of `split` clips (synthetic / RAVDESS names)."""
    root = Path(root)
    files = sorted(root.rglob("*.mp4"))
    if not files:
        raise FileNotFoundError(f"no .mp4 clips under {root} (make some with `emodistill data synth`)")
    meta = {f: parse_name(f) for f in files}
    splits = assign_splits({m.actor for m in meta.values()})
    by_class: dict[str, list[Path]] = defaultdict(list)
    for f, m in meta.items():
        if splits[m.actor] == split and m.modality == "av":
            by_class[m.emotion].append(f)
    if not by_class:
        raise ValueError(f"no full audio-visual {split} clips under {root}")
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation(v)) for c, v in by_class.items()}
    n_segments = max(1, int(round(minutes * 60 / (clip_seconds * per_segment))))
    order: list[str] = []
    while len(order) < n_segments:
        order += [str(c) for c in rng.permutation(sorted(pools))]
    segments = []
    for label in order[:n_segments]:
        pool = pools[label]
        clips = [pool[(len(segments) * per_segment + k) % len(pool)] for k in range(per_segment)]
        segments.append({"label": label, "clips": [str(c) for c in clips]})
    return segments


def write_long_video(segments: list[dict], out: str | Path, fps: int = 15, sample_rate: int = 16000) -> dict:
    """Concatenate the segments' clips into `out` (H.264 + AAC); -> the manifest also written as .segments.json."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame_no, sample_no = 0, 0
    manifest = {"video": out.name, "fps": fps, "sample_rate": sample_rate, "segments": []}
    with av.open(str(out), "w", format="mp4") as dst:
        vs = dst.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "20", "g": str(fps)})
        aus = dst.add_stream("aac", rate=sample_rate, layout="mono")
        for seg in segments:
            entry = {"label": seg["label"], "start": frame_no / fps, "clips": []}
            for clip in seg["clips"]:
                start = frame_no / fps
                with av.open(clip) as src:
                    for frame in src.decode(video=0):
                        if frame_no == 0:
                            vs.width, vs.height, vs.pix_fmt = frame.width, frame.height, "yuv420p"
                        vf = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                        vf.pts = frame_no
                        frame_no += 1
                        dst.mux(vs.encode(vf))
                pcm = _clip_audio(clip, sample_rate, int(round(frame_no / fps * sample_rate)) - sample_no)
                for i in range(0, pcm.size, 1024):
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[None, i:i + 1024]), format="fltp",
                                                    layout="mono")
                    af.sample_rate, af.pts = sample_rate, sample_no + i
                    dst.mux(aus.encode(af))
                sample_no += pcm.size
                entry["clips"].append({"path": clip, "start": start, "end": frame_no / fps})
            entry["end"] = frame_no / fps
            manifest["segments"].append(entry)
        dst.mux(vs.encode(None))
        dst.mux(aus.encode(None))
    manifest["seconds"] = frame_no / fps
    write_json_atomic(out.with_suffix(".segments.json"), manifest)
    logger.info("wrote %s: %d segments, %.1f s", out, len(segments), manifest["seconds"])
    return manifest


def _clip_audio(path: str, rate: int, n: int) -> np.ndarray:
    """The clip's audio as float32 mono at `rate`, cut or zero-padded to exactly n samples."""
    from .decode import read_audio

    audio, _ = read_audio(path, rate)
    audio = np.zeros(0, np.float32) if audio is None else audio
    return np.pad(audio[:n], (0, max(0, n - audio.size))).astype(np.float32)


__all__ = ["pick_segments", "write_long_video"]
