"""`emodistill bench`: teacher vs student, PyTorch eager vs ONNX Runtime FP32 vs INT8, batch 1 and 16.

    emodistill bench --teacher runs/teacher --student runs/distill/student_xs --data data/synth --out bench/
    emodistill bench --teacher teacher_tiny --student student_xs --out bench/    # presets: random weights
    python -m emodistill.app.bench ...                                             # the same (an alias)

A model is a checkpoint folder or a preset name (random weights: latency only, said in the report). Each
runtime is timed for `--runs` runs per batch size after `--warmup` untimed ones (`emodistill.core.timing`: wall clock, CPU; p50,
p90, p95, mean, min); the same thread count for PyTorch and ONNX Runtime. INT8 is static QDQ calibrated on
training clips (`--data`) or, without data, on random inputs (fine for latency, not for accuracy). A runtime
that fails (e.g. a teacher op the ONNX exporter cannot take) is recorded with its error and the bench goes on.
Writes bench.json and bench.md. A cross-stage command (teacher, student, export, the streaming pipeline), so it
lives in the top layer.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..core.timing import time_callable
from ..core.utils import float_above, int_at_least

logger = logging.getLogger(__name__)


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    from ..core.cli_args import add_batch_size, add_data, add_out, add_runs, add_threads, retire

    g = p.add_argument_group("models and data")
    g.add_argument("--teacher", default=None, metavar="PATH",
                   help="teacher checkpoint folder or preset name (e.g. teacher_tiny)")
    g.add_argument("--student", default="student_xs", metavar="PATH", help="student checkpoint folder or preset name")
    add_out(g, required=True, help="output folder (bench.json, bench.md, the ONNX files)")
    add_data(g, help="dataset root: INT8 calibration on its training clips", format_help=None)
    g.add_argument("--calib-samples", type=int_at_least(1), default=32, help="clips for INT8 calibration")
    g = p.add_argument_group("what to time")
    add_batch_size(g, [1, 16], nargs="+", help="batch sizes to time")
    add_runs(g, what="per runtime and batch size")
    add_threads(g, help="CPU threads for PyTorch and ONNX Runtime")
    g.add_argument("--no-int8", action="store_true", help="skip the INT8 rows")
    g.add_argument("--pipeline-video", help="video for the student's pipeline row (`predict --stream`: decode, "
                   "face, preprocess, audio, model per window; none: 10 synthetic clips in a row)")
    g.add_argument("--no-pipeline", action="store_true", help="skip the pipeline row")
    retire(p, "--batch-sizes", "batch_size", "--batch-size", type=int_at_least(1), nargs="+")
    retire(p, "--seconds", "seconds", "--runs / --warmup", type=float_above(0))


def _timing_kw(args) -> dict:
    """--runs/--warmup, or the retired --seconds (at least 5 runs and that long, as before)."""
    if getattr(args, "seconds", None):
        return {"warmup": 2, "repeats": 5, "seconds": args.seconds}
    return {"warmup": args.warmup, "repeats": args.runs, "seconds": 0.0, "max_runs": args.runs}


def default_preprocess(model: torch.nn.Module) -> dict | None:
    cfg = getattr(model, "config", None)
    pre = getattr(cfg, "default_preprocess", None) or getattr(model, "default_preprocess", None)
    return dict(pre) if isinstance(pre, dict) else None


def resolve_model(role: str, ref: str, fallback_pre: dict | None = None) -> tuple[torch.nn.Module, dict, str]:
    """(model in eval mode, preprocess dict, description) for a checkpoint folder or a preset name."""
    from ..core.checkpoint import load_checkpoint
    from ..core.contract import Preprocess

    if Path(ref).exists():
        import emodistill.student, emodistill.teacher  # noqa: E401,F401  (register the model families load_checkpoint rebuilds)
        model, meta = load_checkpoint(ref)
        return model, meta["preprocess"], f"checkpoint {ref}"
    if role == "student":
        from emodistill.student import create_student

        model = create_student(ref)
    else:
        from emodistill.teacher import create_teacher

        model = create_teacher(ref, pretrained=False)
    pre = default_preprocess(model) or fallback_pre or {}
    return model.eval(), Preprocess(**pre).model_dump(mode="json"), f"preset {ref} (random weights: latency only)"


def _calib_batches(args, pre: dict, dims, n: int) -> tuple[list[dict], str]:
    from emodistill.core.inputs import random_inputs

    if args.data:
        from ..core.data import DataConfig, build_datasets

        ds = build_datasets(DataConfig(root=args.data, preprocess=pre, augment=False, num_views=1))["train"]
        idx = [int(i) for i in np.linspace(0, len(ds) - 1, min(n, len(ds))).round()]
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx), batch_size=8)
        return [{"video": b["video"], "audio": b["audio"]} for b in loader], f"{args.data} train split"
    return [dict(zip(("video", "audio"), random_inputs(dims, 8, s))) for s in range(max(1, n // 8))], "random inputs"


def bench_model(args, role: str, ref: str, out: Path, fallback_pre: dict | None = None,
                loaded: tuple[torch.nn.Module, dict] | None = None) -> dict:
    """Time one model on every runtime; `loaded` = (model, preprocess) skips resolving `ref` (API use)."""
    from emodistill.export.onnx import export_onnx, make_session, onnx_model_size
    from emodistill.export.quantize import QuantConfig, make_reader, quantize_int8
    from emodistill.core.inputs import Dims, random_inputs
    from emodistill.export.wrappers import ExportWrapper

    if loaded is not None:
        model, pre, source = loaded[0].eval(), loaded[1], f"in-memory {type(loaded[0]).__name__}"
    else:
        model, pre, source = resolve_model(role, ref, fallback_pre)
    dims = Dims.from_preprocess(pre)
    entry = {"role": role, "model": ref, "source": source, "preprocess": pre,
             "params": sum(p.numel() for p in model.parameters()), "rows": [], "files": {}}
    wrapper = ExportWrapper(model).eval()
    inputs = {b: random_inputs(dims, b, seed=b) for b in args.batch_size}

    def add(runtime: str, fn_for_batch: Callable[[int], Callable[[], object]]):
        for b in args.batch_size:
            try:
                row = time_callable(fn_for_batch(b), **_timing_kw(args))
            except Exception as e:  # one failing runtime must not end the bench
                logger.warning("%s %s batch %d failed: %s", role, runtime, b, e)
                row = {"error": f"{type(e).__name__}: {e}"}
            entry["rows"].append({"runtime": runtime, "batch_size": b, **row})
            logger.info("%s %s batch %d: %s", role, runtime, b, row)

    def eager(b):
        v, a = inputs[b]
        return lambda: wrapper(v, a)

    with torch.no_grad():
        add("pytorch-eager-cpu", eager)
    paths = {"fp32": out / f"{role}-fp32.onnx", "int8": out / f"{role}-int8.onnx"}
    try:
        export_onnx(model, dims, paths["fp32"], "fp32")
        entry["files"]["onnx-fp32"] = {"path": paths["fp32"].name, "bytes": onnx_model_size(paths["fp32"])}
    except Exception as e:
        logger.warning("%s ONNX export failed: %s", role, e)
        entry["rows"].append({"runtime": "onnxruntime-fp32", "error": f"export failed: {type(e).__name__}: {e}"})
        return entry
    if not args.no_int8:
        try:
            calib, src = _calib_batches(args, pre, dims, args.calib_samples)
            quantize_int8(paths["fp32"], paths["int8"], QuantConfig(), make_reader(calib, args.calib_samples))
            entry["files"]["onnx-int8"] = {"path": paths["int8"].name, "bytes": onnx_model_size(paths["int8"]),
                                           "calibration": src}
        except Exception as e:
            logger.warning("%s INT8 quantization failed: %s", role, e)
            entry["rows"].append({"runtime": "onnxruntime-int8", "error": f"{type(e).__name__}: {e}"})
    for prec in ("fp32", "int8"):
        if f"onnx-{prec}" not in entry["files"]:
            continue
        sess = make_session(paths[prec], threads=args.threads)

        def ort(b, sess=sess):
            v, a = inputs[b]
            feed = {"video": v.numpy(), "audio": a.numpy()}
            return lambda: sess.run(None, feed)

        add(f"onnxruntime-{prec}-cpu", ort)
    if role == "student" and not getattr(args, "no_pipeline", False):
        try:
            from .timeline import pipeline_bench

            entry["rows"].append(pipeline_bench(paths["fp32"], pre, getattr(args, "pipeline_video", None),
                                                out / "pipeline"))
        except Exception as e:  # the whole-pipeline row must not end the bench either
            logger.warning("student pipeline row failed: %s", e)
            entry["rows"].append({"runtime": "pipeline-onnxruntime-fp32-cpu", "batch_size": 1,
                                  "error": f"{type(e).__name__}: {e}"})
    return entry


def _markdown(report: dict) -> str:
    t = report["timing"]
    per_row = (f"{t['seconds']} s (>= {t['repeats']} runs)" if t["seconds"] else f"{t['repeats']} runs") + \
        f" per row after {t['warmup']} warm-up runs"
    lines = ["# emodistill bench", "",
             f"CPU threads: {report['threads']}; {per_row}; wall clock, "
             f"median and p95 in ms. torch {report['versions'].get('torch')}, onnxruntime "
             f"{report['versions'].get('onnxruntime')}.", ""]
    for m in report["models"]:
        lines += [f"## {m['role']}: {m['model']}", "", f"{m['source']}; {m['params'] / 1e6:.2f} M parameters; "
                  f"input {m['preprocess']['num_frames']} x {m['preprocess']['image_size']}^2 frames + "
                  f"{m['preprocess']['clip_seconds']} s audio. Files: " +
                  (", ".join(f"{k} {v['bytes'] / 2**20:.2f} MB" for k, v in m["files"].items()) or "none"), "",
                  "| runtime | batch | p50 ms | p95 ms | runs | vs eager (p50) |", "|---|---|---|---|---|---|"]
        eager = {r["batch_size"]: r.get("p50_ms") for r in m["rows"] if r["runtime"] == "pytorch-eager-cpu"}
        for r in m["rows"]:
            if "error" in r:
                lines.append(f"| {r['runtime']} | {r.get('batch_size', '-')} | error: {r['error'][:80]} | | | |")
                continue
            base = eager.get(r["batch_size"]) if "stages" not in r else None
            speed = f"{base / r['p50_ms']:.2f}x" if base else "-"
            lines.append(f"| {r['runtime']} | {r['batch_size']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                         f"{r['runs']} | {speed} |")
        for r in (r for r in m["rows"] if "stages" in r):
            lines += ["", f"Pipeline row: one window per row run (`predict --stream`, hop {r['hop_s']:g} s, "
                      f"{r['video']}); p50 ms per stage: " + ", ".join(
                          f"{k} {v['p50_ms']:.2f}" for k, v in r["stages"].items() if k not in ("total", "host"))
                      + f"; {r['windows_per_s']:.1f} windows/s, real-time factor {r['realtime_factor']:.3f}."]
        lines.append("")
    roles = {m["role"]: m for m in report["models"]}
    if "teacher" in roles and "student" in roles:
        lines += ["## student vs teacher (p50 speed-up)", "", "| runtime | batch | teacher ms | student ms | speed-up |",
                  "|---|---|---|---|---|"]
        t_rows = {(r["runtime"], r.get("batch_size")): r for r in roles["teacher"]["rows"] if "p50_ms" in r}
        for r in roles["student"]["rows"]:
            t = t_rows.get((r["runtime"], r.get("batch_size")))
            if t and "p50_ms" in r:
                lines.append(f"| {r['runtime']} | {r['batch_size']} | {t['p50_ms']:.2f} | {r['p50_ms']:.2f} | "
                             f"{t['p50_ms'] / r['p50_ms']:.1f}x |")
        lines.append("")
    return "\n".join(lines)


def run_bench(args) -> int:
    from ..core.utils import versions, write_json_atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    report = {"threads": args.threads, "timing": _timing_kw(args), "batch_sizes": args.batch_size,
              "versions": versions(), "cuda": torch.cuda.is_available(), "models": []}
    loaded = getattr(args, "loaded", {})  # role -> (model, preprocess), for API callers and tests
    student_pre = None
    if args.student:
        report["models"].append(bench_model(args, "student", args.student, out, loaded=loaded.get("student")))
        student_pre = report["models"][-1]["preprocess"]
    if args.teacher:  # a preset teacher sees the student's clips
        report["models"].insert(0, bench_model(args, "teacher", args.teacher, out, student_pre,
                                               loaded=loaded.get("teacher")))
    write_json_atomic(out / "bench.json", report)
    md = _markdown(report)
    (out / "bench.md").write_text(md + "\n")
    print(md)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    failed = [r for m in report["models"] for r in m["rows"] if "error" in r]
    return 0 if not failed or len(failed) < sum(len(m["rows"]) for m in report["models"]) else 1


def register(sub) -> None:
    b = sub.add_parser("bench", help="teacher vs student latency: PyTorch eager vs ONNX Runtime fp32 vs int8",
                       description="See how much faster the student is than the teacher on this CPU: PyTorch eager, ONNX Runtime FP32 and INT8 at "
                                   "batch 1 and 16 (p50, p95), and the student's whole streaming pipeline; writes "
                                   "bench.json and bench.md.")
    add_bench_arguments(b)
    b.set_defaults(func=run_bench)


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.app.bench ...`: the same as `emodistill bench ...`."""
    from ..core.utils import setup_logging

    from ..core.cli_args import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m emodistill.app.bench", description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter)
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    return run_bench(args)


if __name__ == "__main__":
    import sys

    sys.exit(main())


__all__ = ["add_bench_arguments", "run_bench", "bench_model", "resolve_model", "register", "main"]
