"""`emodistill export`, and `emodistill student` with the export stage's `info --latency`.

The student stage registers `student list|info` (params, GFLOPs); `--latency` needs the ONNX exporter, which a
stage before export may not import, so this module adds the option to the student's `info` parser and runs it.
"""

from __future__ import annotations

from emodistill.core.cli_args import add_runs, add_threads


def _student_info(args) -> int:
    """`student info NAME [--latency]`: the student's table, then the fp32 ONNX artifact timed on ONNX Runtime."""
    import tempfile
    from pathlib import Path

    from emodistill.student.cli import info_model, print_info

    from .onnx import export_onnx, make_session, ort_latency

    model, dims = info_model(args)
    print_info(args, model, dims)
    if not args.latency:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.name}.onnx"
        export_onnx(model, dims, path, "fp32")
        lat = ort_latency(make_session(path, threads=args.threads), dims, args.batch_size, seconds=0.0,
                          warmup=args.warmup, min_runs=args.runs, max_runs=args.runs, cpu_time=True)
    print(f"ONNX Runtime CPU latency of the fp32 ONNX file `emodistill export` writes (batch {args.batch_size}, "
          f"{args.threads} threads, {lat['runs']} runs after {args.warmup} warm-up): p50 {lat['p50_ms']:.2f} ms, "
          f"p90 {lat['p90_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms, min {lat['min_ms']:.2f} ms; "
          f"CPU time per run {lat['cpu_ms']:.2f} ms")
    return 0


def register_student(sub) -> None:
    """`student list|info` from the student stage, with --latency (and its options) added to `info`."""
    from emodistill.student.cli import register

    info = register(sub)
    g = info.add_argument_group("latency (export stage)")
    g.add_argument("--latency", action="store_true",
                   help="export to ONNX (fp32, opset 18, as `emodistill export`) and time ONNX Runtime on CPU")
    add_threads(g, help="ONNX Runtime intra-op threads")
    add_runs(g, what="(p50, p90, p95, min reported)")
    info.set_defaults(func=_student_info)


def _export(args) -> int:
    from .run import run_export

    return run_export(args)  # errors: one line and exit 2 from the dispatcher's boundary (emodistill.core.errors)


def register(sub) -> None:
    """`export` and `student` (the dispatcher imports this module for either)."""
    from .run import add_export_arguments

    p = sub.add_parser("export", help="export a checkpoint to ONNX (fp32/fp16/int8) or TensorRT and check a budget",
                       description="Turn a trained checkpoint into what ships: an ONNX file (fp32/fp16/int8) or a "
                                   "TensorRT engine, with a JSON sidecar, checked against an RTX 3050 latency/VRAM "
                                   "budget (exit 3 when it does not fit).",
                       epilog="Which TensorRT backend where: --trt-backend rtx (default) = TensorRT for RTX "
                              "(tensorrt-rtx, installed by default): engines for GeForce RTX targets (SM 7.5, 8.0, "
                              "8.6, 8.9, 12.0, 12.1; every RTX 3050 is 8.6), built ahead of time on any machine, "
                              "no GPU needed. --trt-backend torch-tensorrt = built on the GPU that runs it: "
                              "torch-tensorrt-rtx (pip install 'emodistill[tensorrt]') on an RTX machine, standard "
                              "torch-tensorrt (pip install 'torch-tensorrt==2.11.*') on data-center GPUs (A100, "
                              "H100/H200). Figures are labelled measured / compiled / estimated. See docs/export.md.")
    add_export_arguments(p)
    p.set_defaults(func=_export)
    register_student(sub)


__all__ = ["register", "register_student"]
