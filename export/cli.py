"""`emodistill export` and `emodistill bench` subcommands."""

from __future__ import annotations

import argparse


def _export(args) -> int:
    from .run import run_export

    return run_export(args)  # errors: one line and exit 2 from the dispatcher's boundary (emodistill.core.errors)


def _bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


def register(sub) -> None:
    from .bench import add_bench_arguments
    from .run import add_export_arguments

    p = sub.add_parser("export", help="export a checkpoint to ONNX (fp32/fp16/int8) or TensorRT and check a budget",
                       description="Export a checkpoint to ONNX (fp32/fp16/int8) or a TensorRT engine, write a JSON "
                                   "sidecar, and check an RTX 3050 latency/VRAM budget (exit 3 when exceeded).",
                       epilog="Which TensorRT backend where: --trt-backend rtx (default) = TensorRT for RTX "
                              "(tensorrt-rtx, installed by default): engines for GeForce RTX targets (SM 7.5, 8.0, "
                              "8.6, 8.9, 12.0, 12.1; every RTX 3050 is 8.6), built ahead of time on any machine, "
                              "no GPU needed. --trt-backend torch-tensorrt = built on the GPU that runs it: "
                              "torch-tensorrt-rtx (pip install 'emodistill[tensorrt]') on an RTX machine, standard "
                              "torch-tensorrt (pip install 'torch-tensorrt==2.11.*') on data-center GPUs (A100, "
                              "H100/H200). Figures are labelled measured / compiled / estimated. See docs/export.md.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_export_arguments(p)
    p.set_defaults(func=_export)
    b = sub.add_parser("bench", help="teacher vs student latency: PyTorch eager vs ONNX Runtime fp32 vs int8",
                       description="Benchmark teacher and student: PyTorch eager, ONNX Runtime FP32 and INT8 at "
                                   "batch 1 and 16 (median, p95); writes bench.json and bench.md.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_bench_arguments(b)
    b.set_defaults(func=_bench)


__all__ = ["register"]
