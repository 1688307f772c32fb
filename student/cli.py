"""`emodistill student info NAME`: parameters and GFLOPs per part, optionally ONNX Runtime CPU latency.

    emodistill student info student_s --latency
    emodistill student list
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .model import PARTS, StudentModel, create_student, list_students

logger = logging.getLogger(__name__)

OUTPUTS = ("logits", "features", "pooled", "audio_features", "visual_features")


def dummy_inputs(model: StudentModel, batch: int = 1, num_frames: int | None = None, image_size: int | None = None,
                 clip_seconds: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (video [B,T,3,H,W] in [0,1], audio [B,N]) at the preset's default sizes unless given."""
    pre = model.config.default_preprocess
    t = num_frames or pre["num_frames"]
    s = image_size or pre["image_size"]
    n = int(round((clip_seconds or pre["clip_seconds"]) * model.config.sample_rate))
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, t, 3, s, s, generator=g), 0.1 * torch.randn(batch, n, generator=g)


def _sdpa_cpu_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(q, k, v)


def count_flops(model: nn.Module, video: torch.Tensor, audio: torch.Tensor) -> dict[str, float]:
    """Forward FLOPs (torch.utils.flop_counter: 2 per multiply-add) per part and total, in eval mode.

    The CPU SDPA kernel has no formula in torch's counter; it gets the standard attention count here.
    """
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False, custom_mapping=mapping) as fc, torch.no_grad():
        model(video, audio)
    model.train(was_training)
    counts = fc.get_flop_counts()
    root = type(model).__name__
    out = {p: float(sum(counts.get(f"{root}.{p}", {}).values())) for p in PARTS}
    for key in ("audio", "visual"):  # the unimodal heads count with the head, as their parameters do
        out["head"] += float(sum(counts.get(f"{root}.unimodal.{key}", {}).values()))
    out["total"] = float(fc.get_total_flops())
    return out


class OnnxWrapper(nn.Module):
    """The student with a tuple output (ONNX graphs return positional outputs, named by `OUTPUTS`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(video, audio)
        return tuple(out[k] for k in OUTPUTS)


@contextlib.contextmanager
def _quiet_export():
    """The dynamo exporter prints progress to stdout and logs every ONNX IR pass at INFO; keep them at debug."""
    loggers = [logging.getLogger(n) for n in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    buf = io.StringIO()
    try:
        for lg in loggers:
            lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        logger.debug("onnx export output:\n%s", buf.getvalue())


def export_onnx(model: nn.Module, path: str | Path, video: torch.Tensor, audio: torch.Tensor,
                dynamic_batch: bool = True) -> Path:
    """torch.onnx.export(dynamo=True, opset 18) of the eval-mode student; inputs video, audio; outputs OUTPUTS."""
    path = Path(path)
    model = model.eval()
    dyn = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dyn = {"video": {0: batch}, "audio": {0: batch}}
    with _quiet_export():
        torch.onnx.export(OnnxWrapper(model).eval(), (video, audio), str(path), dynamo=True, opset_version=18,
                          input_names=["video", "audio"], output_names=list(OUTPUTS), dynamic_shapes=dyn,
                          external_data=False, verbose=False)
    return path


def onnx_latency(path: str | Path, video: torch.Tensor, audio: torch.Tensor, threads: int = 2, runs: int = 50,
                 warmup: int = 5) -> dict[str, float]:
    """ONNX Runtime CPU latency in ms (median, p90, min wall time) over `runs` after `warmup` runs.

    `cpu_ms` is the median CPU time of this process per run (all threads): unlike wall time it hardly moves
    when other processes compete for the cores; with 1 thread it approximates the latency on an idle machine.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {"video": video.numpy(), "audio": audio.numpy()}
    for _ in range(warmup):
        sess.run(None, feed)
    times, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "min_ms": times[0],
            "cpu_ms": statistics.median(cpu)}


def cmd_info(args: argparse.Namespace) -> int:
    overrides = {"fusion": args.fusion} if args.fusion else {}
    model = create_student(args.name, **overrides).eval()
    video, audio = dummy_inputs(model, args.batch, args.num_frames, args.image_size, args.clip_seconds)
    params = model.count_parameters()
    flops = count_flops(model, video, audio)
    print(f"{args.name}: fusion={model.config.fusion} video {tuple(video.shape)} audio {tuple(audio.shape)} "
          f"(batch {args.batch}); features {model.feature_dims()}")
    print(f"{'part':<8} {'params (M)':>11} {'GFLOPs':>9}")
    for part in (*PARTS, "total"):
        print(f"{part:<8} {params[part] / 1e6:>11.3f} {flops[part] / 1e9 / args.batch:>9.3f}")
    print("(GFLOPs per clip: torch.utils.flop_counter forward count, 2 FLOPs per multiply-add)")
    if args.latency:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            path = export_onnx(model, Path(tmp) / f"{args.name}.onnx", video, audio)
            logger.info("exported %s in %.1f s", path.name, time.perf_counter() - t0)
            lat = onnx_latency(path, video, audio, args.threads, args.runs, args.warmup)
        print(f"ONNX Runtime CPU latency (batch {args.batch}, {args.threads} threads, {args.runs} runs after "
              f"{args.warmup} warm-up): median {lat['median_ms']:.2f} ms, p90 {lat['p90_ms']:.2f} ms, "
              f"min {lat['min_ms']:.2f} ms; CPU time per run {lat['cpu_ms']:.2f} ms")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for name in list_students():
        print(name)
    return 0


def register(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("student", help="student model presets: list, info (params, GFLOPs, latency)",
                       formatter_class=fmt)
    ssub = p.add_subparsers(dest="student_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    lp = ssub.add_parser("list", help="list registered student presets", formatter_class=fmt)
    lp.set_defaults(func=cmd_list)
    ip = ssub.add_parser("info", help="params and GFLOPs per part (audio, video, fusion, head), optional "
                         "ONNX Runtime CPU latency", formatter_class=fmt)
    ip.add_argument("name", help="student preset, e.g. student_xs or student_s")
    ip.add_argument("--num-frames", type=int, default=None,
                    help="frames per clip; None = the preset's default_preprocess")
    ip.add_argument("--image-size", type=int, default=None, help="frame side in pixels; None = the preset's")
    ip.add_argument("--clip-seconds", type=float, default=None, help="audio seconds at 16 kHz; None = the preset's")
    ip.add_argument("--batch", type=int, default=1, help="batch size of the dummy input")
    ip.add_argument("--fusion", default=None,
                    help="fusion mode instead of the preset's (lfm2, gated, film, ...); None = the preset's")
    ip.add_argument("--latency", action="store_true", help="export to ONNX (opset 18) and time ONNX Runtime on CPU")
    ip.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ip.add_argument("--runs", type=int, default=50, help="timed runs (median reported)")
    ip.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs")
    ip.set_defaults(func=cmd_info)


__all__ = ["register", "dummy_inputs", "count_flops", "export_onnx", "onnx_latency", "OnnxWrapper", "OUTPUTS"]
