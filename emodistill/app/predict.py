"""`emodistill predict`: emotion probabilities for one clip, or (--stream) a timeline over a long video or stream.

The model and its input contract: `emodistill.app.predictor`; the stream: `emodistill.app.timeline`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..core.utils import int_at_least
from .predictor import Predictor
from .timeline import add_stream_arguments, stream_command, stream_options

logger = logging.getLogger(__name__)

DEFAULT_MODEL = Path("outputs/demo/export/onnx_fp32/model.onnx")


def _run(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else DEFAULT_MODEL
    if not args.model and not model.exists():
        raise FileNotFoundError(f"no --model given and the demo's {DEFAULT_MODEL} does not exist; "
                                "run `emodistill demo` first or pass --model")
    expect = {k: v for k, v in (("num_frames", args.num_frames), ("image_size", args.image_size)) if v is not None}
    if args.stream:
        stream_options(args)  # out-of-range flags fail before the model is loaded
    predictor = Predictor(model, expect)  # errors: one line, exit 2 (emodistill.core.errors)
    if args.stream:
        return stream_command(predictor, args)
    result = predictor(args.clip, args.wav)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['clip']}: {result['prediction']}  ({result['backend']}: {result['model']})")
        for name, p in result["probabilities"].items():
            print(f"  {name:>10s} {p:6.1%} {'#' * int(round(40 * p))}")
        if "budget" in result:
            print(f"budget: {result['budget']}")
    return 0


def register(sub) -> None:
    from ..core.cli_args import add_json, add_model

    p = sub.add_parser("predict", help="emotion probabilities for one clip, or a timeline over a stream",
                       description="Say which emotion a clip shows, with a trained checkpoint or an exported model; "
                                   "with --stream, a timeline over a long video, a camera or a network stream.\n\n"
                                   "The clip is decoded exactly as in training (the contract comes from the "
                                   "checkpoint or the export sidecar). Running an ONNX file imports numpy, PyAV, "
                                   "OpenCV and ONNX Runtime only, never torch.")
    p.add_argument("clip", metavar="SOURCE", help="video file (.mp4): full audio-visual, or video-only with --wav; "
                   "with --stream also a long video, '-' (stdin), a device or a URL")
    add_model(p, help=f"checkpoint folder / .safetensors, .onnx (with its sidecar) or TensorRT engine "
                      f"(none: {DEFAULT_MODEL} from `emodistill demo`)")
    p.add_argument("--wav", help="audio file to pair with a video-only clip")
    add_json(p, help="print JSON instead of a table")
    p.add_argument("--num-frames", type=int_at_least(1), help="refuse the model unless its contract uses this many frames")
    p.add_argument("--image-size", type=int_at_least(1), help="refuse the model unless its contract uses this frame size")
    add_stream_arguments(p)
    p.set_defaults(func=_run)


__all__ = ["register", "DEFAULT_MODEL"]
