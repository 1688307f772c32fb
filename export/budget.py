"""Budget verdicts: does a model fit a latency/VRAM budget on an RTX 3050 profile?

MEASURED on a CUDA machine: CUDA events around each call (input upload included when the budget says so),
warm-up, at least `seconds` (default 10) of runs, median and p95; VRAM = drop in free device memory
(`torch.cuda.mem_get_info`) from before the model was loaded to after the runs (the caching allocator keeps
its peak), plus the CUDA context (NVML's per-process figure when pynvml is present, else the profile's
stated context size), or the TensorRT engine's own device memory + weights when an engine is given.
ESTIMATED everywhere else: the roofline model of export/estimate.py on the profile's figures.
COMPILED: TensorRT's own figures for the target, from building the engine (device memory = weights + activations +
persistent memory from the builder's accounting); the VRAM figure adds the CUDA context and the I/O buffers.
Every figure carries its label (`Verdict.labels`); the verdict says which and on what device.

Uncertainty of ESTIMATED latencies: the estimate is shown with the leave-one-GPU-out error band of
export/calibrate.py (configs/hardware/calibration/leave-one-gpu-out.yaml: the published/predicted ratios on GPUs the
constants were not fitted on), and each latency figure is called PASS (the whole band is within the limit), FAIL
(the whole band is over it) or TOO CLOSE TO CALL (the limit falls inside the band). `Verdict.call` is the overall
call: FAIL if any figure fails, else TOO CLOSE TO CALL if any is too close, else PASS. `passed` keeps its meaning
(every point figure within its limit; `export` exits 3 when it is false), so a too-close verdict is said, not
hidden in an exit code either way. VRAM figures and MEASURED verdicts have no band: PASS or FAIL.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from emodistill.core.timing import summarize
from emodistill.core.utils import CONFIG_DIR

from .estimate import count_costs, estimate
from .wrappers import Dims, ExportWrapper, half_model, random_inputs
from .profiles import Budget, HardwareProfile

logger = logging.getLogger(__name__)

FIGURES = (("p50_ms", "max_p50_ms", "ms"), ("p95_ms", "max_p95_ms", "ms"), ("vram_mb", "max_vram_mb", "MB"))
BANDED = ("p50_ms", "p95_ms")  # estimated latency figures carry the calibration band
BAND_FILE = CONFIG_DIR / "hardware" / "calibration" / "leave-one-gpu-out.yaml"
PASS, FAIL, TOO_CLOSE = "PASS", "FAIL", "TOO CLOSE TO CALL"


def load_band(path: str | Path | None = None) -> dict:
    """The leave-one-GPU-out error band (ratio_low, ratio_high and its provenance) written by
    `emodistill calibrate --write-band`."""
    import yaml

    return yaml.safe_load(Path(path or BAND_FILE).read_text())


def banded_call(value: float, limit: float | None, ratio_low: float, ratio_high: float) -> tuple[str, float, float]:
    """(call, low, high) of an estimate `value` whose truth lies in [value * ratio_low, value * ratio_high]."""
    low, high = value * ratio_low, value * ratio_high
    if limit is None or high <= limit:
        return PASS, low, high
    if low > limit:
        return FAIL, low, high
    return TOO_CLOSE, low, high


def overall_call(rows: list[dict]) -> str:
    calls = [r.get("call", PASS if r["ok"] else FAIL) for r in rows]
    return FAIL if FAIL in calls else TOO_CLOSE if TOO_CLOSE in calls else PASS


def apply_band(rows: list[dict], band: dict, labels: dict | None = None, method: str = "estimated") -> list[dict]:
    """Add low/high/call to each estimated latency row (others: PASS/FAIL from the point value)."""
    for r in rows:
        label = (labels or {}).get(r["figure"], method)
        if r["figure"] in BANDED and label == "estimated":
            r["call"], lo, hi = banded_call(r["value"], r["limit"], band["ratio_low"], band["ratio_high"])
            r["low"], r["high"] = round(lo, 4), round(hi, 4)
        else:
            r["call"] = PASS if r["ok"] else FAIL
    return rows


@dataclass
class Verdict:
    method: str  # "measured" | "estimated"
    device: str
    budget: str
    profile: str
    batch_size: int
    precision: str
    figures: dict
    rows: list[dict]
    passed: bool
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    labels: dict = field(default_factory=dict)  # figure -> measured | compiled | estimated (default: method)
    call: str = ""  # PASS | FAIL | TOO CLOSE TO CALL ("" = from `passed`: PASS or FAIL)
    band: dict = field(default_factory=dict)  # the error band of estimated latencies, with its provenance

    def label(self, figure: str) -> str:
        return self.labels.get(figure, self.method)

    def to_dict(self) -> dict:
        return asdict(self) | {"labels": {r["figure"]: self.label(r["figure"]) for r in self.rows}}

    def table(self) -> str:
        how = (f"latency {self.label('p50_ms').upper()}, VRAM {self.label('vram_mb').upper()}" if self.labels
               else self.method.upper())
        call = self.call or ("PASS" if self.passed else "EXCEEDED")
        head = (f"budget {self.budget} on {self.profile} (batch {self.batch_size}, {self.precision}): "
                f"{how} on {self.device} -> {call}")
        lines = [head, f"  {'figure':<10} {'limit':>10} {'value':>10} {'margin':>22}  status    source"]
        for r in self.rows:
            limit = "-" if r["limit"] is None else f"{r['limit']:.2f}"
            if r["limit"] is None:
                margin = "no limit"
            elif r["ok"]:
                margin = f"{r['limit'] - r['value']:.2f} {r['unit']} to spare"
            else:
                margin = f"over by {r['over_by']:.2f} {r['unit']} (+{r['over_pct']:.1f}%)"
            status = "TOO CLOSE" if r.get("call") == TOO_CLOSE else "ok" if r["ok"] else "EXCEEDED"
            band = f"  band {r['low']:.2f}-{r['high']:.2f} {r['unit']}" if "low" in r else ""
            lines.append(f"  {r['figure']:<10} {limit:>10} {r['value']:>10.2f} {margin:>22}  "
                         f"{status:<8}  {self.label(r['figure'])}{band}")
        if self.band:
            b = self.band
            lines.append(f"  band: estimated latency x{b['ratio_low']:.2f} .. x{b['ratio_high']:.2f} (central "
                         f"{b['quantiles'][1] - b['quantiles'][0]:.0%} of published/predicted on GPUs the estimator "
                         f"was not fitted on, leave-one-GPU-out over {', '.join(b.get('gpus', []))}; docs/export.md)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def judge(figures: dict, budget: Budget, profile: HardwareProfile) -> list[dict]:
    """One row per figure: limit, value, whether it fits and by how much it is over."""
    rows = []
    for fig, key, unit in FIGURES:
        limit = getattr(budget, key)
        value = float(figures[fig])
        rows.append(_row(fig, limit, value, unit))
    board = profile.gpu.memory_gb * 1024
    rows.append(_row("vram_board", board, float(figures["vram_mb"]), "MB"))
    return rows


def _row(fig: str, limit: float | None, value: float, unit: str) -> dict:
    ok = limit is None or value <= limit
    over = 0.0 if ok else value - limit
    return {"figure": fig, "limit": limit, "value": round(value, 4), "unit": unit, "ok": ok,
            "over_by": round(over, 4), "over_pct": round(100 * over / limit, 2) if limit else 0.0}


def _compute_model(model: torch.nn.Module, precision: str) -> tuple[torch.nn.Module, torch.dtype]:
    if precision == "fp32":
        return model, torch.float32
    return half_model(model)[0], torch.float16


def estimated_verdict(model: torch.nn.Module, dims: Dims, budget: Budget, profile: HardwareProfile,
                      precision: str) -> Verdict:
    m, dt = _compute_model(model, precision)
    trace = count_costs(ExportWrapper(m, dt), random_inputs(dims, budget.batch_size), precision,
                        input_dtype=torch.float32)
    est = estimate(trace, profile, include_transfer=budget.include_transfer)
    figures = {"p50_ms": est.p50_ms, "p95_ms": est.p95_ms, "vram_mb": est.vram_mb}
    band = load_band()
    rows = apply_band(judge(figures, budget, profile), band)
    call = overall_call(rows)
    details = {"estimate": est.to_dict(), "params": trace.params, "flops": trace.flops,
               "gemm_flops": trace.gemm_flops, "ops": len(trace.ops), "by_kind": trace.by_kind(),
               "assumptions": profile.estimator.model_dump() | {"vram": profile.vram.model_dump()}}
    return Verdict("estimated", f"roofline model of {profile.name}", budget.name, profile.name, budget.batch_size,
                   precision, figures, rows, all(r["ok"] for r in rows), details,
                   ["ESTIMATED: no CUDA device here; roofline over counted ops with the profile's stated "
                    "efficiency factors (export/estimate.py)"], call=call, band=band)


def cuda_timing(run: Callable[[], object], seconds: float = 10.0, warmup_s: float = 2.0, min_runs: int = 20) -> dict:
    """`emodistill.core.timing` figures (ms) of `run()` timed with CUDA events (GPU time, not the host's clock)
    after a warm-up; runs for at least `seconds` and `min_runs`."""
    n = 0
    t_end = time.perf_counter() + warmup_s
    while n < 10 or time.perf_counter() < t_end:
        run()
        n += 1
    torch.cuda.synchronize()
    times = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < t_end:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return {**summarize(times), "seconds": seconds, "warmup_runs": n}


def _nvml_process_mb() -> float | None:
    try:
        import os

        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            if p.pid == os.getpid() and p.usedGpuMemory:
                return p.usedGpuMemory / 2**20
    except Exception:  # pynvml absent or not permitted (containers): fall back to mem_get_info deltas
        return None
    return None


def measured_verdict(model: torch.nn.Module, dims: Dims, budget: Budget, profile: HardwareProfile, precision: str,
                     runner: Callable[[torch.Tensor, torch.Tensor], object] | None = None,
                     engine_vram_mb: float | None = None, seconds: float = 10.0, min_runs: int = 20,
                     what: str = "") -> Verdict:
    """Measure on the current CUDA device. `runner(video, audio)` runs the artifact (default: the PyTorch model
    at `precision`; int8 without a runner is measured as fp16 eager, an upper bound, and says so)."""
    if not torch.cuda.is_available():
        raise RuntimeError("measured verdict needs a CUDA device; none is visible (use the estimated verdict)")
    notes = []
    dev = torch.device("cuda")
    torch.cuda.init()
    torch.cuda.synchronize()
    free0, total = torch.cuda.mem_get_info()
    if runner is None:
        eager_prec = "fp16" if precision == "int8" else precision
        if precision == "int8":
            notes.append("no INT8 runtime on this device for this artifact: measured the fp16 PyTorch model "
                         "(an upper bound for INT8)")
        m, dt = _compute_model(model, eager_prec)
        wrapper = ExportWrapper(m, dt).to(dev).eval()
        runner = wrapper
        what = what or f"PyTorch eager CUDA {eager_prec}"
    video, audio = random_inputs(dims, budget.batch_size)
    video, audio = video.pin_memory(), audio.pin_memory()
    dv, da = video.to(dev), audio.to(dev)

    @torch.no_grad()
    def run():
        if budget.include_transfer:
            return runner(video.to(dev, non_blocking=True), audio.to(dev, non_blocking=True))
        return runner(dv, da)

    timing = cuda_timing(run, seconds=seconds, min_runs=min_runs)
    torch.cuda.synchronize()
    free1, _ = torch.cuda.mem_get_info()
    delta_mb = (free0 - free1) / 2**20
    nvml = _nvml_process_mb()
    if engine_vram_mb is not None:
        vram = engine_vram_mb + profile.vram.cuda_context_mb
        notes.append(f"VRAM = TensorRT engine device memory + weights ({engine_vram_mb:.1f} MB) + stated CUDA "
                     f"context ({profile.vram.cuda_context_mb:.0f} MB)")
    elif nvml is not None:
        vram = nvml
        notes.append("VRAM = NVML per-process usage (includes the CUDA context)")
    else:
        vram = delta_mb + profile.vram.cuda_context_mb
        notes.append(f"VRAM = mem_get_info delta ({delta_mb:.1f} MB) + stated CUDA context "
                     f"({profile.vram.cuda_context_mb:.0f} MB)")
    name = torch.cuda.get_device_name(dev)
    if "3050" not in name:
        notes.append(f"measured on {name}, not on the {profile.name} the budget names: latency is this GPU's")
    figures = {"p50_ms": timing["p50_ms"], "p95_ms": timing["p95_ms"], "vram_mb": vram}
    rows = judge(figures, budget, profile)
    details = {"timing": timing, "runtime": what, "mem_get_info_delta_mb": delta_mb, "nvml_mb": nvml,
               "device_total_mb": total / 2**20}
    ok = all(r["ok"] for r in rows)
    return Verdict("measured", name, budget.name, profile.name, budget.batch_size, precision, figures, rows,
                   ok, details, ["MEASURED with CUDA events"] + notes, call=PASS if ok else FAIL)


def with_compiled_vram(v: Verdict, budget: Budget, profile: HardwareProfile, device_bytes: int, io_bytes: int,
                       what: str = "TensorRT engine") -> Verdict:
    """Replace the VRAM figure by a compiled one: the engine's device memory (from TensorRT's build accounting)
    + the profile's CUDA context + the I/O buffers at the budget's batch size; re-judge and label it."""
    mb = 2**-20
    v.figures["vram_mb"] = profile.vram.cuda_context_mb + (device_bytes + io_bytes) * mb
    v.labels = {"p50_ms": v.method, "p95_ms": v.method, "vram_mb": "compiled", "vram_board": "compiled"}
    v.rows = judge(v.figures, budget, profile)
    if v.band:  # estimated latency keeps its band; the compiled VRAM figure is a plain PASS/FAIL
        apply_band(v.rows, v.band, v.labels, v.method)
        v.call = overall_call(v.rows)
        v.passed = v.call != FAIL
    else:
        v.passed = all(r["ok"] for r in v.rows)
        v.call = PASS if v.passed else FAIL
    v.notes = [n for n in v.notes if not n.startswith("VRAM = ")]
    v.details["compiled_vram"] = {"engine_device_mb": device_bytes * mb, "io_buffers_mb": io_bytes * mb,
                                  "cuda_context_mb": profile.vram.cuda_context_mb}
    v.notes.append(f"VRAM COMPILED: {what} device memory {device_bytes * mb:.1f} MB (TensorRT's weights + activations "
                   f"+ persistent memory) + CUDA context {profile.vram.cuda_context_mb:.0f} MB (profile) + I/O buffers "
                   f"{io_bytes * mb:.2f} MB (batch {budget.batch_size})")
    return v


def make_verdict(model: torch.nn.Module, dims: Dims, budget: Budget, profile: HardwareProfile, precision: str,
                 mode: str = "auto", **measure_kw) -> Verdict:
    """`mode` auto: measured when CUDA is visible, else estimated. The estimate is attached to a measurement."""
    if mode == "measured" or (mode == "auto" and torch.cuda.is_available()):
        v = measured_verdict(model, dims, budget, profile, precision, **measure_kw)
        v.details["estimate_for_reference"] = estimated_verdict(model, dims, budget, profile, precision).figures
        return v
    return estimated_verdict(model, dims, budget, profile, precision)


__all__ = ["Verdict", "judge", "banded_call", "apply_band", "overall_call", "load_band", "BAND_FILE",
           "estimated_verdict", "measured_verdict", "make_verdict", "with_compiled_vram", "cuda_timing"]
