"""Decode vs cached-read throughput (clips/s), one process.

    emodistill data bench --data data/synth                      # demo preprocessing (8 x 64 x 64, 2 s)
    emodistill data bench --data data/synth --hd 4               # + RAVDESS-like 1280x720 30 fps AAC 48 kHz
    emodistill data bench --data data/ravdess --config configs/data/ravdess.yaml

decode = `load_clip` (PyAV decode, frame sampling, face crop, resize, resample), what a loader without
a cache does per item; cached = `ClipDataset.__getitem__` without augmentation (safetensors read +
uint8 -> float), what training does per item. The issue asks for cached >= 20x decode.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..contract import Preprocess
from .cache import build_cache, default_cache_dir
from .dataset import ClipDataset, DataConfig
from .decode import load_clip
from .names import scan_dataset

logger = logging.getLogger(__name__)


def _rate(fn, items, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    return len(items) / best


def bench(root: str, pre: Preprocess, fmt: str = "ravdess", limit: int = 64, cache_dir: str | None = None) -> dict:
    clips = scan_dataset(root, fmt).clips[:limit]
    if not clips:
        raise ValueError(f"no clips under {root}")
    report = build_cache(clips, pre, cache_dir or default_cache_dir(root), workers=2, progress=False)
    ok = {e.clip.video_path for e in report.entries}
    clips = [c for c in clips if c.video_path in ok]
    decode = _rate(lambda c: load_clip(c.video_path, c.audio_path, pre), clips)
    ds = ClipDataset(report.entries, ["?"] * 8, pre)
    ds[0]  # warm the page cache for the cached read, as in any epoch after the first
    cached = _rate(lambda i: ds[i], list(range(len(ds))), repeats=3)
    size = statistics.mean(Path(e.path).stat().st_size for e in report.entries)
    return {"root": root, "clips": len(clips), "decode_clips_per_s": decode, "cached_clips_per_s": cached,
            "speedup": cached / decode, "cache_bytes_per_clip": size,
            "preprocess": pre.model_dump(mode="json")}


def make_hd_clips(out: Path, n: int, seconds: float = 3.5) -> None:
    """RAVDESS-like clips: 1280x720 H.264 ~30 fps (the synthetic face scaled up) + stereo AAC 48 kHz."""
    import av
    import cv2

    from . import synth

    for k in range(n):
        actor = k % 24 + 1
        ident = synth.actor_identity(0, actor)
        rng = np.random.default_rng([1, k])
        small = synth.render_video(ident, "happy", "02", 0.3, rng)
        audio = synth.render_audio(ident, "happy", "02", "01", 0.3, rng)
        audio48 = np.repeat(audio, 3)
        audio48 = np.tile(audio48, int(np.ceil(seconds / synth.SECONDS)))[: int(seconds * 48000)]
        path = out / f"Actor_{actor:02d}" / f"01-01-03-02-01-01-{actor:02d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as c:
            vs = c.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "23"})
            vs.width, vs.height, vs.pix_fmt = 1280, 720, "yuv420p"
            aus = c.add_stream("aac", rate=48000, layout="stereo", options={"aac_coder": "fast"})
            for i in range(int(seconds * 30)):
                face = cv2.resize(small[int(i / 30 * synth.FPS) % len(small)], (720, 720))
                frame = np.zeros((720, 1280, 3), np.uint8) + 90
                frame[:, 280:1000] = face
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts = i
                c.mux(vs.encode(vf))
            c.mux(vs.encode(None))
            pcm = np.stack([audio48, audio48]).astype(np.float32)
            for i in range(0, pcm.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + 1024]), format="fltp",
                                                layout="stereo")
                af.sample_rate, af.pts = 48000, i
                c.mux(aus.encode(af))
            c.mux(aus.encode(None))


def _print(r: dict, title: str) -> None:
    p = r["preprocess"]
    print(f"{title}: {r['clips']} clips, T={p['num_frames']} S={p['image_size']} {p['clip_seconds']} s "
          f"crop={p['face_crop']}")
    print(f"  decode  {r['decode_clips_per_s']:9.1f} clips/s")
    print(f"  cached  {r['cached_clips_per_s']:9.1f} clips/s   ({r['cache_bytes_per_clip'] / 1024:.0f} KiB per clip)")
    print(f"  speedup {r['speedup']:9.1f}x  (target >= 20x)")


def run(args) -> int:
    """`emodistill data bench --data DIR` (arguments: emodistill.core.data.cli)."""
    from .cli import data_root

    args.root = data_root(args)
    if args.config:
        from ..config import load_config

        cfg = load_config(DataConfig, args.config, [f"root={args.root}"])
        pre, fmt = cfg.preprocess, cfg.format
    else:
        pre, fmt = Preprocess(num_frames=8, image_size=64, clip_seconds=2.0, face_crop="center"), "ravdess"
    with tempfile.TemporaryDirectory() as tmp:
        r = bench(args.root, pre, fmt, args.limit, cache_dir=str(Path(tmp) / "cache"))
        _print(r, args.root)
        if args.hd:
            hd = Path(tmp) / "hd"
            t0 = time.perf_counter()
            make_hd_clips(hd, args.hd)
            logger.info("made %d HD clips in %.1f s", args.hd, time.perf_counter() - t0)
            pre_hd = Preprocess(num_frames=16, image_size=112, clip_seconds=3.0, face_crop="haar")
            _print(bench(str(hd), pre_hd, "ravdess", args.hd, cache_dir=str(Path(tmp) / "cache_hd")),
                   f"{args.hd} generated 1280x720 30 fps H.264 + AAC 48 kHz stereo clips")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.core.data.bench`: an alias of `emodistill data bench`."""
    import sys

    from .cli import main as data_main

    return data_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
