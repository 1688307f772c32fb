"""Prepared GPU check: measured PyTorch latency and peak memory of the student presets next to the estimate.

    emodistill gpu-check                      # on a CUDA machine (profile picked from the GPU's name)
    emodistill gpu-check --profile h200-sxm --json-out gpu_check.json
    python -m emodistill.export.gpu_check ... (an alias)
    scripts/gpu_check.sh                            # the same, with the thread settings of this repo

For student_xs and student_s (random weights: latency does not depend on them): PyTorch eager and `torch.compile`,
FP16 (norms and the log-mel front end kept fp32, as in the exports) and BF16 (whole model), batch 1 and 16;
CUDA events around each call (inputs already on the GPU), a warm-up, then median and p95 over at least `--runs` runs and 2 s;
peak memory = `torch.cuda.max_memory_allocated` during that configuration (the caching allocator's view: weights,
activations and workspaces, not the CUDA context). Each row is printed next to the roofline estimate
(export/estimate.py) for the same batch on the GPU's hardware profile (FP16 figures; BF16 runs at the FP16 tensor
rate on Ampere and later). Without a CUDA GPU it prints the estimates only and says so. About 3-5 minutes on one GPU.

Calibration row (`--calibration`, on by default in scripts/gpu_check.sh): the models of the published calibration
tables (export/calibrate.py, tests/export/data/) and the student presets, batch 1 FP16 at each table's input size,
timed the same way on the fastest runtime available (torch-tensorrt when importable, else `torch.compile`, the runtime
is written into the table's conditions). The result JSON then carries a `calibration_table` (kind "measured", the GPU's
profile, device, date) that `emodistill calibrate --table gpu_check.json` ingests as one more GPU:
leave-one-GPU-out never fits on the GPU it reports, so this GPU is predicted from the published tables only.
"""

from __future__ import annotations

import copy
import logging
import sys
import time

import torch

from emodistill.core.utils import write_json_atomic

logger = logging.getLogger(__name__)

PRESETS = ("student_xs", "student_s")
BATCHES = (1, 16)
DTYPES = ("fp16", "bf16")
MODES = ("eager", "compile")
# substring of torch.cuda.get_device_name() -> hardware profile
KNOWN = (("H200", "h200-sxm"), ("3050 Laptop", "rtx3050-laptop-4gb"), ("3050", "rtx3050-desktop-8gb"),
         ("Xavier", "jetson-agx-xavier"), ("3090", "rtx3090"), ("T4", "tesla-t4"), ("Nano", "jetson-nano"))


def pick_profile(name: str | None) -> str:
    if name:
        return name
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name()
        for key, prof in KNOWN:
            if key in dev:
                return prof
        raise ValueError(f"no hardware profile known for {dev!r}; pass --profile (configs/hardware/)")
    return "h200-sxm"


def compute_model(model: torch.nn.Module, dtype: str) -> tuple[torch.nn.Module, torch.dtype]:
    from .wrappers import half_model

    if dtype == "fp16":
        return half_model(model)[0], torch.float16
    return copy.deepcopy(model).to(torch.bfloat16).eval(), torch.bfloat16


def predicted(model: torch.nn.Module, dims, batch: int, profile) -> dict:
    """Roofline estimate at fp16 for `batch` on `profile` (inputs already on the GPU: no upload)."""
    from .estimate import count_costs, estimate
    from .wrappers import ExportWrapper, random_inputs

    m, dt = compute_model(model, "fp16")
    trace = count_costs(ExportWrapper(m, dt), random_inputs(dims, batch), "fp16", input_dtype=torch.float32)
    est = estimate(trace, profile, include_transfer=False)
    return {"p50_ms": est.p50_ms, "model_mb": est.weights_mb + est.activations_mb + est.io_mb, "kernels": est.kernels}


def measure(wrapper: torch.nn.Module, dims, batch: int, seconds: float, min_runs: int = 20) -> dict:
    from .budget import cuda_timing
    from .wrappers import random_inputs

    video, audio = (x.cuda() for x in random_inputs(dims, batch))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.no_grad():
        wrapper(video, audio)  # first call: compilation for torch.compile
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t0
    with torch.no_grad():
        timing = cuda_timing(lambda: wrapper(video, audio), seconds=seconds, warmup_s=min(1.0, seconds),
                             min_runs=min_runs)
    return {**timing, "first_call_s": first_s, "peak_mb": torch.cuda.max_memory_allocated() / 2**20}


def run(profile_name: str | None, seconds: float, presets=PRESETS, min_runs: int = 20) -> dict:
    from .wrappers import Dims, ExportWrapper
    from .perf import preset_model
    from .profiles import load_profile

    profile = load_profile(pick_profile(profile_name))
    gpu = torch.cuda.is_available()
    rows = []
    for name in presets:
        model, pre = preset_model(name)
        dims = Dims.from_preprocess(pre)
        for batch in BATCHES:
            est = predicted(model, dims, batch, profile)
            for dtype in DTYPES:
                for mode in MODES:
                    row = {"model": name, "dtype": dtype, "mode": mode, "batch": batch,
                           "predicted_p50_ms": est["p50_ms"], "predicted_model_mb": est["model_mb"]}
                    if gpu:
                        m, dt = compute_model(model, dtype)
                        wrapper = ExportWrapper(m, dt).cuda().eval()
                        if mode == "compile":
                            torch._dynamo.reset()
                            wrapper = torch.compile(wrapper)
                        try:
                            row |= measure(wrapper, dims, batch, seconds, min_runs)
                        except Exception as e:  # one failing configuration must not lose the others
                            row["error"] = f"{type(e).__name__}: {e}"
                            logger.warning("%s %s %s b%d failed: %s", name, dtype, mode, batch, e)
                        del wrapper
                        torch.cuda.empty_cache()
                    rows.append(row)
                    logger.info("%s", row)
    return {"profile": profile.name, "device": torch.cuda.get_device_name() if gpu else None, "gpu": gpu,
            "torch": torch.__version__, "seconds_per_config": seconds, "rows": rows}


def calibration_models() -> list[tuple[str, str, tuple[int, int]]]:
    """(builder, model, input H x W) of every published calibration table, then the student presets."""
    from .calibrate import load_tables

    seen: dict[tuple, None] = {}
    for t in load_tables():
        for r in t.rows:
            seen.setdefault(t.key(r), None)
    return [*seen, *(("student", p, (0, 0)) for p in PRESETS)]


def _fast_runtime(model: torch.nn.Module, example: tuple) -> tuple[torch.nn.Module, str]:
    """The fastest runtime here: torch-tensorrt FP16 when importable, else torch.compile (both on CUDA)."""
    try:
        import torch_tensorrt

        trt = torch_tensorrt.compile(model, ir="dynamo", inputs=list(example), enabled_precisions={torch.float16})
        return trt, f"torch-tensorrt {torch_tensorrt.__version__} fp16"
    except Exception as e:  # not installed, or the model does not convert: compile is the fallback, and says so
        logger.info("torch-tensorrt unavailable (%s); using torch.compile", e)
        torch._dynamo.reset()
        return torch.compile(model), f"torch.compile (inductor) fp16, torch {torch.__version__}"


def measure_calibration(profile_name: str, seconds: float, min_runs: int = 20) -> dict:
    """Measured batch-1 FP16 latency of the calibration models and the students: a calibration table."""
    import datetime

    from .budget import cuda_timing
    from .calibrate import build_model
    from .perf import preset_model
    from .wrappers import Dims, ExportWrapper, random_inputs

    rows, runtimes = [], set()
    for builder, name, hw in calibration_models():
        try:
            if builder == "student":
                model, pre = preset_model(name)
                m, dt = compute_model(model, "fp16")
                net = ExportWrapper(m, dt).cuda().eval()
                example = tuple(x.cuda() for x in random_inputs(Dims.from_preprocess(pre), 1))
            else:
                net = build_model(name, builder).half().cuda().eval()
                example = (torch.zeros(1, 3, *hw, device="cuda", dtype=torch.float16),)
            with torch.no_grad():
                fast, runtime = _fast_runtime(net, example)
                fast(*example)  # compile / build outside the timed runs
                timing = cuda_timing(lambda: fast(*example), seconds=seconds, warmup_s=min(1.0, seconds),
                                     min_runs=min_runs)
            runtimes.add(runtime)
            rows.append({"model": name, "builder": builder, "input_hw": list(hw) if builder != "student" else None,
                         "ms": timing["p50_ms"], "p95_ms": timing["p95_ms"], "runtime": runtime})
        except Exception as e:  # one model failing must not lose the others
            logger.warning("calibration %s %s failed: %s", builder, name, e)
        finally:
            torch.cuda.empty_cache()
    for r in rows:  # student rows: input sizes are the preset's own
        if r["input_hw"] is None:
            r.pop("input_hw")
    dev = torch.cuda.get_device_name()
    return {"gpu": profile_name, "kind": "measured",
            "source": {"title": f"scripts/gpu_check.sh measured on {dev}", "device": dev},
            "date_read": datetime.date.today().isoformat(),
            "conditions": {"runtime": sorted(runtimes), "precision": "fp16", "batch": 1, "transfer_included": False,
                           "timing": f"CUDA events, inputs on the GPU, p50 over >= {seconds} s after warm-up"},
            "rows": rows}


def render(result: dict) -> str:
    head = (f"device: {result['device'] or 'no CUDA GPU - estimates only'}; profile {result['profile']}; "
            f"torch {result['torch']}")
    lines = [head, f"{'model':<11} {'dtype':<5} {'mode':<8} {'batch':>5} {'p50 ms':>8} {'p95 ms':>8} "
                   f"{'peak MB':>8} {'est p50':>8} {'meas/est':>8}"]
    for r in result["rows"]:
        if "p50_ms" in r:
            meas = f"{r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['peak_mb']:>8.1f}"
            ratio = f"{r['p50_ms'] / r['predicted_p50_ms']:>8.2f}"
        else:
            meas, ratio = f"{r.get('error', '-')[:26]:>26}", f"{'-':>8}"
        lines.append(f"{r['model']:<11} {r['dtype']:<5} {r['mode']:<8} {r['batch']:>5} {meas} "
                     f"{r['predicted_p50_ms']:>8.3f} {ratio}")
    return "\n".join(lines)


def register(sub) -> None:
    """`emodistill gpu-check` (scripts/gpu_check.sh runs it, then `emodistill calibrate` with its table)."""
    from emodistill.core.cli_args import add_runs, retire

    p = sub.add_parser("gpu-check", help="measure the students on this machine's GPU next to the estimate",
                       description="Measure the students on this machine's NVIDIA GPU (PyTorch eager and "
                                   "torch.compile, FP16/BF16, batch 1 and 16) next to the roofline estimate of its "
                                   "hardware profile; with --calibration also a measured calibration table.")
    p.add_argument("--profile", default=None, metavar="NAME",
                   help="hardware profile for the estimate (none: from the GPU's name)")
    add_runs(p, what="per configuration (at least; and at least 2 s, after a 1 s warm-up)", warmup=False)
    p.add_argument("--presets", nargs="+", default=list(PRESETS), help="student presets to check")
    p.add_argument("--json-out", dest="out", metavar="FILE", default=None, help="also write the figures as JSON")
    retire(p, "--out", "out", "--json-out")
    retire(p, "--seconds", "seconds", "--runs", type=float)
    p.add_argument("--calibration", action="store_true",
                   help="also time the calibration models + students at batch 1 FP16 (a measured calibration table "
                        "for `emodistill calibrate --table FILE`)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    seconds = getattr(args, "seconds", None) or 2.0
    if not torch.cuda.is_available():
        print("no CUDA GPU is visible: printing the estimates only (run this on the GPU to measure)", file=sys.stderr)
    result = run(args.profile, seconds, args.presets, min_runs=args.runs)
    print(render(result))
    if args.calibration and result["gpu"]:
        table = measure_calibration(result["profile"], min(seconds, 1.0), min_runs=args.runs)
        result["calibration_table"] = table
        print(f"\ncalibration table ({table['conditions']['runtime']}), {len(table['rows'])} models, batch 1 fp16:")
        for r in table["rows"]:
            print(f"  {r['builder']:<12} {r['model']:<22} {r['ms']:8.3f} ms")
    if args.out:
        write_json_atomic(args.out, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.export.gpu_check`: an alias of `emodistill gpu-check`."""
    from emodistill.core.cli_args import run_alias

    return run_alias(register, argv)


if __name__ == "__main__":
    sys.exit(main())
