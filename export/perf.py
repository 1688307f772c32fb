"""Latency regression figures of the student presets, compared with a committed baseline.

Deterministic figures (same on every machine): parameters, counted FLOPs, the roofline estimate of latency and
VRAM on RTX 3050 profiles, and the fp32 ONNX file size. A figure more than 2% above its baseline is a regression.
Measured figure: ONNX Runtime CPU latency (1 thread, batch 1) of student_xs divided by the latency of a fixed
reference workload (a MatMul+Relu chain built here) timed in the same run: fastest of back-to-back pairs per
repeat, median over repeats;
a ratio more than 25% above the baseline's is a regression. Figures below their baseline pass (and say so).

    emodistill perf                      # compare with tests/export/perf_baseline.json
    emodistill perf --update-baseline    # rewrite it (sorted keys, one figure per line: `git diff` shows
                                               # exactly which figure moved); --full adds student_s's ONNX size
    pytest tests/export -m perf                # the same checks as tests (CI runs them at this small size)
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from emodistill.core.utils import REPO_ROOT

logger = logging.getLogger(__name__)

# the regression baseline lives with the tests of a checkout (an installed wheel passes --baseline FILE)
BASELINE = REPO_ROOT / "tests" / "export" / "perf_baseline.json" if REPO_ROOT else Path("perf_baseline.json")
DET_TOL = 0.02
RATIO_TOL = 0.25
PRESETS = ("student_xs", "student_s")
# (profile, batch, precision) combinations estimated for every preset
ESTIMATES = (("rtx3050-laptop-4gb", 1, "fp16"), ("rtx3050-laptop-4gb", 1, "int8"), ("rtx3050-desktop-8gb", 16, "fp16"))
REF_LAYERS, REF_ROWS, REF_DIM = 8, 64, 512  # ~ the student_xs ONNX latency on one x86 core


def preset_model(name: str, **overrides) -> tuple[torch.nn.Module, dict]:
    """A student preset with fixed random weights and its preset-level preprocess."""
    from emodistill.student import create_student

    torch.manual_seed(0)
    model = create_student(name, **overrides).eval()
    return model, dict(model.config.default_preprocess)


def model_figures(key: str, model: torch.nn.Module, preprocess: dict, onnx_dir: str | Path | None = None) -> dict:
    """Deterministic figures of one model under `key.` prefixes; `onnx_dir` also exports and sizes fp32 ONNX."""
    from .budget import estimated_verdict
    from .estimate import count_costs
    from .onnx import export_onnx, onnx_model_size
    from .wrappers import Dims, ExportWrapper, random_inputs
    from .profiles import load_budget

    dims = Dims.from_preprocess(preprocess)
    trace = count_costs(ExportWrapper(model), random_inputs(dims, 1), "fp32")
    out = {f"{key}.params": trace.params, f"{key}.gflops": round(trace.flops / 1e9, 6),
           f"{key}.gemm_gflops": round(trace.gemm_flops / 1e9, 6)}
    for profile, batch, prec in ESTIMATES:
        budget, prof = load_budget(profile, [f"batch_size={batch}"])
        v = estimated_verdict(model, dims, budget, prof, prec)
        tag = f"{key}.est.{profile}.b{batch}.{prec}"
        out[f"{tag}.p50_ms"] = round(v.figures["p50_ms"], 4)
        out[f"{tag}.vram_mb"] = round(v.figures["vram_mb"], 3)
        e = v.details["estimate"]  # the model's own share, without the fixed CUDA context and workspace
        out[f"{tag}.model_vram_mb"] = round(e["weights_mb"] + e["activations_mb"] + e["io_mb"], 4)
    if onnx_dir is not None:
        path = Path(onnx_dir) / f"{key}-fp32.onnx"
        export_onnx(model, dims, path, "fp32")
        out[f"{key}.onnx_bytes"] = onnx_model_size(path)
    return out


def reference_onnx(path: str | Path, layers: int = REF_LAYERS) -> Path:
    """The fixed reference workload: `layers` x (MatMul [64,512]x[512,512] + Relu), fixed weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "x"
    for i in range(layers):
        w = numpy_helper.from_array((rng.standard_normal((REF_DIM, REF_DIM)) / np.sqrt(REF_DIM)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [REF_ROWS, REF_DIM])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [REF_ROWS, REF_DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return Path(path)


def latency_ratio(model_onnx: str | Path, reference: str | Path, dims=None, repeats: int = 7, pairs: int = 10) -> dict:
    """Median over `repeats` of (fastest model run / fastest reference run) among `pairs` back-to-back runs.

    Back-to-back pairs see the same machine state; the fastest of a block is the run least disturbed by other
    processes (CI runners, shared cores); the median over repeats drops a block a burst of load ruined.
    """
    from emodistill.core.timing import time_interleaved

    from .onnx import make_session
    from .wrappers import random_inputs

    sm, sr = make_session(model_onnx, threads=1), make_session(reference, threads=1)
    if dims is None:
        shapes = {i.name: [d if isinstance(d, int) else 1 for d in i.shape] for i in sm.get_inputs()}
        feed_m = {k: np.random.default_rng(0).random(s, dtype=np.float32) for k, s in shapes.items()}
    else:
        v, a = random_inputs(dims, 1)
        feed_m = {"video": v.numpy(), "audio": a.numpy()}
    rin = sr.get_inputs()[0]
    feed_r = {rin.name: np.random.default_rng(1).random(rin.shape, dtype=np.float32)}
    fns = {"model": lambda: sm.run(None, feed_m), "reference": lambda: sr.run(None, feed_r)}
    blocks = [time_interleaved(fns, warmup=10 if i == 0 else 0, repeats=pairs) for i in range(repeats)]
    best_m, best_r = [b["model"]["min_ms"] for b in blocks], [b["reference"]["min_ms"] for b in blocks]
    ratios = [m / r for m, r in zip(best_m, best_r)]
    return {"ratio": float(np.median(ratios)), "model_ms": float(np.median(best_m)),
            "reference_ms": float(np.median(best_r)), "ratios": [round(r, 4) for r in ratios]}


def collect(full: bool = False, measure: bool = True, workdir: str | Path | None = None) -> dict:
    """All figures: deterministic ones for PRESETS (ONNX size for student_xs, and student_s with `full`), plus the
    measured ONNX Runtime ratio of student_xs."""
    from .wrappers import Dims

    figures: dict = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for name in PRESETS:
            model, pre = preset_model(name)
            with_onnx = name == "student_xs" or full
            figures |= model_figures(name, model, pre, tmp if with_onnx else None)
            if measure and name == "student_xs":
                ref = reference_onnx(Path(tmp) / "reference.onnx")
                r = latency_ratio(Path(tmp) / f"{name}-fp32.onnx", ref, Dims.from_preprocess(pre))
                figures[f"{name}.ort_ratio"] = round(r["ratio"], 4)
                logger.info("%s ORT %.2f ms vs reference %.2f ms: ratio %.3f (repeats %s)", name,
                            r["model_ms"], r["reference_ms"], r["ratio"], r["ratios"])
    return figures


def compare(baseline: dict, current: dict, det_tol: float = DET_TOL, ratio_tol: float = RATIO_TOL) -> tuple[list, list]:
    """(regressions, notes). Keys starting with '_' are comments; figures missing on either side are notes."""
    regressions, notes = [], []
    for key in sorted(current):
        if key.startswith("_"):
            continue
        if key not in baseline:
            notes.append(f"{key}: {current[key]} is new (not in the baseline; run --update-baseline)")
            continue
        base, cur = float(baseline[key]), float(current[key])
        tol = ratio_tol if key.endswith("ort_ratio") else det_tol
        growth = (cur - base) / base if base else (0.0 if cur == base else float("inf"))
        line = f"{key}: {base:g} -> {cur:g} ({growth:+.1%}, limit +{tol:.0%})"
        if growth > tol:
            regressions.append(line)
        elif growth < -tol:
            notes.append(line + " improved: update the baseline to lock it in")
    for key in sorted(set(baseline) - set(current)):
        if not key.startswith("_"):
            notes.append(f"{key}: not computed in this run (baseline {baseline[key]})")
    return regressions, notes


def load_baseline(path: str | Path = BASELINE) -> dict:
    return json.loads(Path(path).read_text())


def write_baseline(figures: dict, path: str | Path = BASELINE, merge: bool = True) -> None:
    """Sorted keys, one figure per line (a `git diff` names each figure that moved)."""
    path = Path(path)
    old = load_baseline(path) if merge and path.exists() else {}
    data = {**old, **figures,
            "_about": "emodistill perf --update-baseline [--full] rewrites this; see docs/export.md"}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def register(sub) -> None:
    """`emodistill perf`: the deterministic size / FLOP / latency-ratio figures against the stored baseline."""
    p = sub.add_parser("perf", help="size / FLOP / latency-ratio regression check against the baseline",
                       description="Check that nothing got bigger or slower: the students' parameter counts, FLOPs, "
                                   "ONNX sizes and a measured latency ratio against the stored baseline (exit 1 on "
                                   "a regression).")
    p.add_argument("--update-baseline", action="store_true", help="rewrite the baseline with this run's figures")
    p.add_argument("--full", action="store_true", help="also export student_s to measure its ONNX size (slow)")
    p.add_argument("--no-measure", action="store_true", help="skip the measured ONNX Runtime ratio")
    p.add_argument("--baseline", default=str(BASELINE), metavar="FILE", help="baseline JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    torch.set_num_threads(1)
    figures = collect(full=args.full, measure=not args.no_measure)
    if args.update_baseline:
        write_baseline(figures, args.baseline)
        print(f"wrote {len(figures)} figures to {args.baseline}")
        return 0
    regressions, notes = compare(load_baseline(args.baseline), figures)
    for n in notes:
        print("note:", n)
    for r in regressions:
        print("REGRESSION:", r)
    print(f"{len(figures)} figures, {len(regressions)} regressions")
    return 1 if regressions else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.export.perf`: an alias of `emodistill perf`."""
    from emodistill.core.cli_args import run_alias

    return run_alias(register, argv)


if __name__ == "__main__":
    sys.exit(main())
