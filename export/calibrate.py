"""Check the roofline estimator against published TensorRT latencies on several GPU families, never on the GPU it reports.

    emodistill calibrate                          # leave-one-GPU-out table + each held-out GPU's rows
    emodistill calibrate --json-out calib.json    # also write every figure
    emodistill calibrate --table gpu_check.json   # add a measured table (emodistill gpu-check --json-out FILE)
    emodistill calibrate --write-band             # store the error band the budget verdicts use
    emodistill calibrate ...     # an alias

Reference tables (tests/export/data/*.json, one per GPU and source; each states its source - repository, path and
commit, or title and URL -, the date it was read and the exact conditions: runtime, precision, batch, input size,
whether the upload is counted): TensorRT batch-1 FP16 latencies of models that build offline from public definitions
(torchvision `get_model(weights=None)`, timm `create_model(pretrained=False)`; random weights: latency does not
depend on them). Each model is counted by export/estimate.py at the table's input size and estimated without upload
on the GPU's hardware profile (configs/hardware/), which states published specs only.

Leave-one-GPU-out: for each GPU, the shared estimator constants (EstimatorSpec: eff_tensor, eff_mem, gemm_tile)
and one per-kernel cost (kernel_overhead_us) per timing method are grid-searched on the tables of all OTHER GPUs
(objective: the mean over those GPUs of each GPU's median |error|, so a GPU with many rows does not outvote one with
few) and the held-out GPU is predicted with them. The timing method is a stated condition of each table
(`conditions.timing_method`: trtexec, host-loop or unstated; TIMING_METHODS), known before anything is predicted; a
held-out table whose method no other GPU's table has gets the one cost that best fits all the fitted-on tables.
`leave_one_gpu_out(..., by_method=False)` fits one cost for every table (the method of the first version).
Reported per held-out GPU: n, median |error|, median signed error (the bias) and Spearman.
Targets: median |error| <= 30 %, Spearman >= 0.9 on every held-out GPU. No constant is per GPU or per model; a
profile's own figures come from its spec sheet. The pooled held-out ratios published/predicted give the error band
of estimated budget verdicts (configs/hardware/calibration/leave-one-gpu-out.yaml, `--write-band`).
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emodistill.core.utils import write_json_atomic

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "export" / "data"
TARGETS = {"median_abs_pct": 30.0, "spearman": 0.9}
SHARED = ("eff_tensor", "eff_mem", "kernel_overhead_us", "gemm_tile")
FIT_GRID = {"eff_tensor": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "eff_mem": [0.5, 0.6, 0.7, 0.8, 0.9],
            "kernel_overhead_us": [2, 3, 4, 6, 8, 10, 12, 14, 16, 20], "gemm_tile": [0, 32, 64, 128]}
BAND_QUANTILES = (0.1, 0.9)  # the band covers the central 80 % of held-out published/predicted ratios
BUILDERS = ("torchvision", "timm", "student")
# How a table's latencies were timed (`conditions.timing_method`, stated in the table before anything is predicted):
# trtexec - TensorRT's own benchmark (enqueue runs ahead of the GPU, or CUDA graphs: host launch cost mostly hidden);
# host-loop - a host timer around each execute + synchronize (Python loops of torch2trt, mmdeploy: launch cost paid);
# unstated - the source does not say (measured tables of scripts/gpu_check.sh too, until they state it).
TIMING_METHODS = ("trtexec", "host-loop", "unstated")


# ---------------------------------------------------------------------------------------------------- the tables


@dataclass
class Table:
    """One GPU's latencies from one source (a published table, or a measured run of scripts/gpu_check.sh)."""

    gpu: str  # hardware profile name
    kind: str  # "published" | "measured"
    source: dict
    date_read: str
    conditions: dict
    rows: list[dict]
    path: str = ""

    def key(self, row: dict) -> tuple:
        return (row.get("builder", "torchvision"), row["model"], tuple(row.get("input_hw", (224, 224))))

    @property
    def timing_method(self) -> str:
        return self.conditions.get("timing_method", "unstated")


def _check_table(d: dict, where: str) -> None:
    """A table without its source, date, conditions or with a malformed row is refused, never guessed."""
    for k in ("gpu", "kind", "source", "date_read", "conditions", "rows"):
        if k not in d:
            raise ValueError(f"{where}: missing {k!r}")
    src = d["source"]
    if not (src.get("title") and (src.get("url") or src.get("repository") or src.get("device"))):
        raise ValueError(f"{where}: the source needs a title and a url, repository or device")
    if d["kind"] not in ("published", "measured"):
        raise ValueError(f"{where}: kind must be published or measured, not {d['kind']!r}")
    method = d["conditions"].get("timing_method", "unstated")
    if method not in TIMING_METHODS:
        raise ValueError(f"{where}: conditions.timing_method must be one of {', '.join(TIMING_METHODS)}, "
                         f"not {method!r}")
    for r in d["rows"]:
        if r.get("builder", "torchvision") not in BUILDERS or not r.get("model") or not float(r.get("ms", 0)) > 0:
            raise ValueError(f"{where}: bad row {r}")


def load_table(path: str | Path) -> Table:
    """A table file; a gpu_check.py result (its `calibration_table`) is accepted as it is written."""
    path = Path(path)
    d = json.loads(path.read_text())
    d = d.get("calibration_table", d)
    _check_table(d, str(path))
    return Table(d["gpu"], d["kind"], d["source"], d["date_read"], d["conditions"], d["rows"], str(path))


def load_tables(data_dir: str | Path | None = DATA_DIR, extra: list[str] | None = None) -> list[Table]:
    paths = sorted(Path(data_dir).glob("*.json")) if data_dir else []
    if data_dir and not paths:
        raise FileNotFoundError(f"no calibration tables in {data_dir} (they ship with the repository's tests/export/"
                                f"data; pass --data DIR)")
    return [load_table(p) for p in [*paths, *(extra or [])]]


# ---------------------------------------------------------------------------------------------------- counting


def build_model(name: str, builder: str = "torchvision") -> torch.nn.Module:
    """A model from its public definition with random weights (latency does not depend on them)."""
    torch.manual_seed(0)
    if builder == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None).eval()
    if builder == "timm":
        import timm

        return timm.create_model(name, pretrained=False).eval()
    raise ValueError(f"unknown builder {builder!r}")


def count_model(name: str, precision: str = "fp16", batch: int = 1, input_hw: tuple[int, int] = (224, 224),
                builder: str = "torchvision"):
    """Counted operators of one model at batch x 3 x H x W (random weights, meta device); `builder` "student" counts
    a student preset through its export wrapper (video + audio, the preset's own input sizes)."""
    from .estimate import count_costs

    if builder == "student":
        from .perf import preset_model
        from .wrappers import Dims, ExportWrapper, half_model, random_inputs

        model, pre = preset_model(name)
        m, dt = (half_model(model)[0], torch.float16) if precision != "fp32" else (model, torch.float32)
        return count_costs(ExportWrapper(m, dt), random_inputs(Dims.from_preprocess(pre), batch), precision,
                           input_dtype=torch.float32)
    model = build_model(name, builder)
    return count_costs(model, (torch.zeros(batch, 3, *input_hw),), precision)


def count_tables(tables: list[Table]) -> dict[tuple, object]:
    """One trace per distinct (builder, model, input size) over all tables."""
    traces: dict[tuple, object] = {}
    for t in tables:
        for r in t.rows:
            k = t.key(r)
            if k not in traces:
                traces[k] = count_model(k[1], input_hw=k[2], builder=k[0])
    return traces


# ---------------------------------------------------------------------------------------------------- statistics


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(x):
        x = np.asarray(x, float)
        order = x.argsort()
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # ties share their mean rank
            r[x == v] = r[x == v].mean()
        return r

    if len(a) < 2:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def summarize(rows: list[dict]) -> dict:
    errs = [r["error_pct"] for r in rows]
    return {"n": len(rows), "median_abs_pct": statistics.median(abs(e) for e in errs),
            "mean_abs_pct": statistics.fmean(abs(e) for e in errs), "max_abs_pct": max(abs(e) for e in errs),
            "median_signed_pct": statistics.median(errs),
            "spearman": spearman([r["published_ms"] for r in rows], [r["predicted_ms"] for r in rows])}


def meets_targets(s: dict) -> bool:
    rho = s["spearman"]
    return s["median_abs_pct"] <= TARGETS["median_abs_pct"] and not math.isnan(rho) and rho >= TARGETS["spearman"]


def weighted_quantile(values, weights, q: float) -> float:
    """Quantile of `values` where each carries `weights` (linear between the weighted mid-points)."""
    v, w = np.asarray(values, float), np.asarray(weights, float)
    order = v.argsort()
    v, w = v[order], w[order]
    cum = (np.cumsum(w) - 0.5 * w) / w.sum()
    return float(np.interp(q, cum, v))


# ---------------------------------------------------------------------------------------------------- fitting


class _Vectorized:
    """The roofline of estimate.op_time_s as numpy arrays over one trace's ops, for fast grid search of the shared
    constants. Same formula (tests check it against estimate()); the reported figures always come from estimate()."""

    def __init__(self, trace, profile):
        from .estimate import tile_utilization

        g, e = profile.gpu, profile.estimator
        clk = e.sustained_clock_fraction
        ops = trace.ops
        self.tensor = np.array([o.kind in ("gemm", "conv", "attention") for o in ops])
        fused = np.array([o.kind == "pointwise" and e.fuse_pointwise for o in ops])
        self.flops = np.array([o.flops for o in ops], float)
        self.bytes = np.array([o.weight_bytes + o.in_bytes + o.out_bytes for o in ops], float)
        self.launches = np.array([0 if f else o.launches for o, f in zip(ops, fused)], float)
        self.fused = fused

        def tpeak(o):
            if o.dtype == "int8":
                return g.peak_int8_tensor_ops
            if o.dtype in ("float16", "bfloat16"):
                return g.peak_fp16_tensor_flops if e.fp16_accumulate == "fp16" else g.peak_fp16_tensor_fp32acc_flops
            return g.peak_fp32_flops

        self.tpeak = np.array([tpeak(o) * clk if o.kind in ("gemm", "conv", "attention") else 1.0 for o in ops])
        self.cuda = g.peak_fp32_flops * clk * e.eff_cuda
        self.bw = g.memory_bandwidth_gbs * 1e9
        self.overhead_s = e.inference_overhead_us * 1e-6
        self._util: dict[int, np.ndarray] = {}
        self._ops, self._profile = ops, profile
        self._tile_utilization = tile_utilization

    def util(self, tile: int) -> np.ndarray:
        if tile not in self._util:
            p = self._profile.model_copy(update={"estimator": self._profile.estimator.model_copy(
                update={"gemm_tile": tile})})
            self._util[tile] = np.array([self._tile_utilization(o, p) if t else 1.0
                                         for o, t in zip(self._ops, self.tensor)])
        return self._util[tile]

    def p50_ms(self, eff_tensor: float, eff_mem: float, kernel_overhead_us: float, gemm_tile: int) -> float:
        peak = np.where(self.tensor, self.tpeak * eff_tensor * self.util(gemm_tile), self.cuda)
        t_c = np.divide(self.flops, peak, out=np.zeros_like(self.flops), where=self.flops > 0)
        t_m = np.where(self.fused, 0.0, self.bytes / (self.bw * eff_mem))
        t = np.maximum(t_c, t_m) + kernel_overhead_us * 1e-6 * self.launches
        return float((t.sum() + self.overhead_s) * 1e3)

    @property
    def n_launches(self) -> float:
        return float(self.launches.sum())

    def base_ms(self, eff_tensor: float, eff_mem: float, gemm_tile: int) -> float:
        """p50 without the per-kernel cost: p50_ms(..., k, ...) = base_ms(...) + k * 1e-3 * n_launches."""
        return self.p50_ms(eff_tensor, eff_mem, 0.0, gemm_tile)


def _points(tables: list[Table], traces: dict, profiles: dict) -> list[dict]:
    """One point per table row: GPU, model, published ms and the vectorized roofline of its trace."""
    vec: dict[tuple, _Vectorized] = {}
    out = []
    for t in tables:
        for r in t.rows:
            k = (t.gpu, *t.key(r))
            if k not in vec:
                vec[k] = _Vectorized(traces[t.key(r)], profiles[t.gpu])
            out.append({"gpu": t.gpu, "kind": t.kind, "model": r["model"], "builder": t.key(r)[0],
                        "input_hw": list(t.key(r)[2]), "published_ms": float(r["ms"]), "vec": vec[k],
                        "table": Path(t.path).name, "method": t.timing_method})
    return out


def grid_predictions(points: list[dict], grid: dict[str, list]) -> tuple[list[dict], np.ndarray]:
    """Predicted ms of every point under every combination of the grid: (combos, array [combo, point])."""
    keys = list(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    pred = np.array([[p["vec"].p50_ms(**c) for p in points] for c in combos])
    return combos, pred


def fit_excluding(points: list[dict], combos: list[dict], pred: np.ndarray, held_out: str) -> tuple[dict, float]:
    """Best constants on every GPU but `held_out`: minimise the mean over those GPUs of their median |error|.
    The held-out GPU's rows are not looked at (its columns are dropped before scoring)."""
    pub = np.array([p["published_ms"] for p in points])
    gpus = sorted({p["gpu"] for p in points if p["gpu"] != held_out})
    if not gpus:
        raise ValueError("leave-one-GPU-out needs tables of at least two GPUs")
    cols = {g: np.array([i for i, p in enumerate(points) if p["gpu"] == g]) for g in gpus}
    err = np.abs(pred / pub - 1) * 100  # [combo, point]
    score = np.mean([np.median(err[:, c], axis=1) for c in cols.values()], axis=0)
    best = int(np.argmin(score))
    return combos[best], float(score[best])


def base_predictions(points: list[dict], grid: dict[str, list]) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The grid without its per-kernel cost: (combos of eff_tensor / eff_mem / gemm_tile, base ms [combo, point],
    kernel launches per point). A prediction is base + kernel_overhead_us * 1e-3 * launches (ms)."""
    keys = [k for k in grid if k != "kernel_overhead_us"]
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    base = np.array([[p["vec"].base_ms(**c) for p in points] for c in combos])
    return combos, base, np.array([p["vec"].n_launches for p in points])


def _gpu_score(err: np.ndarray, gpu_of: np.ndarray, gpus: list[str]) -> np.ndarray:
    """Mean over `gpus` of each GPU's median |error| along the last axis (points)."""
    return np.mean([np.median(err[..., gpu_of == g], axis=-1) for g in gpus], axis=0)


def fit_excluding_by_method(points: list[dict], combos: list[dict], base: np.ndarray, launches: np.ndarray,
                            kernel_grid: list[float], held_out: str) -> tuple[dict, float]:
    """Best constants on every GPU but `held_out`, with one per-kernel cost per timing method: eff_tensor, eff_mem
    and gemm_tile are shared by all tables, `kernel_overhead_us` is fitted per timing method over the tables of that
    method on the other GPUs (objective as fit_excluding: the mean over those GPUs of their median |error|).
    `kernel_overhead_us` in the result is the single cost that best fits all those tables together with the same
    shared constants: it serves a table whose method no fitted-on table has. The held-out GPU's rows are dropped
    before anything is scored."""
    keep = np.array([p["gpu"] != held_out for p in points])
    gpus = sorted({p["gpu"] for p, k in zip(points, keep) if k})
    if not gpus:
        raise ValueError("leave-one-GPU-out needs tables of at least two GPUs")
    pub = np.array([p["published_ms"] for p in points])[keep]
    gpu_of = np.array([p["gpu"] for p in points])[keep]
    method_of = np.array([p["method"] for p in points])[keep]
    methods = sorted(set(method_of))
    base, launches = base[:, keep], launches[keep]
    ks = np.asarray(kernel_grid, float)
    assign = np.array(list(itertools.product(range(len(ks)), repeat=len(methods))))  # [a, method] -> index in ks
    k_point = ks[assign][:, [methods.index(m) for m in method_of]]  # [a, point]: the cost each point gets
    best = (math.inf, 0, 0)
    for c in range(len(combos)):
        pred = base[c][None, :] + k_point * 1e-3 * launches[None, :]
        score = _gpu_score(np.abs(pred / pub - 1) * 100, gpu_of, gpus)
        a = int(np.argmin(score))
        if score[a] < best[0]:
            best = (float(score[a]), c, a)
    score, c, a = best
    pooled = _gpu_score(np.abs((base[c][None, :] + ks[:, None] * 1e-3 * launches[None, :]) / pub - 1) * 100,
                        gpu_of, gpus)
    consts = {**combos[c], "kernel_overhead_us": float(ks[int(np.argmin(pooled))]),
              "kernel_overhead_us_by_method": {str(m): float(ks[assign[a, i]]) for i, m in enumerate(methods)}}
    return consts, score


# ---------------------------------------------------------------------------------------------------- evaluation


def _with(profile, consts: dict, method: str | None = None):
    """The profile with the fitted constants; with `method`, that timing method's per-kernel cost when one was
    fitted for it."""
    update = {k: v for k, v in consts.items() if k in SHARED}
    by_method = consts.get("kernel_overhead_us_by_method") or {}
    if method in by_method:
        update["kernel_overhead_us"] = by_method[method]
    return profile.model_copy(update={"estimator": profile.estimator.model_copy(update=update)})


def evaluate_gpu(points: list[dict], traces: dict, tables: list[Table], gpu: str, profile, consts: dict | None) -> dict:
    """Rows and summary of one GPU predicted by estimate() with `consts` (None: the profile's own constants)."""
    from .estimate import estimate

    rows = []
    for t in tables:
        if t.gpu != gpu:
            continue
        prof = _with(profile, consts, t.timing_method) if consts else profile
        for r in t.rows:
            est = estimate(traces[t.key(r)], prof, include_transfer=False)
            rows.append({"gpu": gpu, "model": r["model"], "builder": t.key(r)[0], "input_hw": list(t.key(r)[2]),
                         "kind": t.kind, "published_ms": float(r["ms"]), "predicted_ms": est.p50_ms,
                         "ratio": float(r["ms"]) / est.p50_ms, "error_pct": 100 * (est.p50_ms / float(r["ms"]) - 1),
                         "kernels": est.kernels, "gflops": traces[t.key(r)].flops / 1e9,
                         "table": Path(t.path).name, "timing_method": t.timing_method,
                         "kernel_overhead_us": prof.estimator.kernel_overhead_us})
    return {"gpu": gpu, "constants": consts, "rows": rows, "summary": summarize(rows),
            "targets_met": meets_targets(summarize(rows))}


def band_from(held_rows: list[dict], quantiles=BAND_QUANTILES) -> dict:
    """The error band of an estimate: quantiles of published/predicted over the held-out rows of every GPU, each GPU
    weighted equally (1/n per row), so the band says where a GPU the constants were not fitted on falls."""
    per_gpu = {}
    for r in held_rows:
        per_gpu.setdefault(r["gpu"], []).append(r["ratio"])
    ratios = [x for g in per_gpu for x in per_gpu[g]]
    weights = [1 / len(per_gpu[g]) for g in per_gpu for _ in per_gpu[g]]
    lo, hi = (weighted_quantile(ratios, weights, q) for q in quantiles)
    return {"ratio_low": round(lo, 4), "ratio_high": round(hi, 4), "quantiles": list(quantiles),
            "n_rows": len(ratios), "gpus": sorted(per_gpu)}


def leave_one_gpu_out(tables: list[Table], traces: dict | None = None, grid: dict | None = None,
                      by_method: bool = True) -> dict:
    """For each GPU: constants fitted on the others, that GPU's rows predicted with them, and the pooled band.
    `by_method`: the per-kernel cost is fitted per timing method (fit_excluding_by_method); False: one cost for all
    tables (fit_excluding, the method before 2026-12-03)."""
    from .profiles import load_profile

    traces = traces if traces is not None else count_tables(tables)
    grid = grid or FIT_GRID
    gpus = sorted({t.gpu for t in tables})
    profiles = {g: load_profile(g) for g in gpus}
    points = _points(tables, traces, profiles)
    if by_method:
        combos, base, launches = base_predictions(points, grid)
        fit = lambda held: fit_excluding_by_method(points, combos, base, launches, grid["kernel_overhead_us"], held)
    else:
        combos, pred = grid_predictions(points, grid)
        fit = lambda held: fit_excluding(points, combos, pred, held)
    folds = []
    for g in gpus:
        consts, train_score = fit(g)
        fold = evaluate_gpu(points, traces, tables, g, profiles[g], consts)
        fold["fit_on"] = [x for x in gpus if x != g]
        fold["fit_score_mean_median_abs_pct"] = train_score
        folds.append(fold)
    all_consts, all_score = fit("")
    shipped = [evaluate_gpu(points, traces, tables, g, profiles[g], None) for g in gpus]
    held_rows = [r for f in folds for r in f["rows"]]
    return {"folds": folds, "band": band_from(held_rows), "grid": grid, "targets": TARGETS,
            "by_method": by_method, "all_targets_met": all(f["targets_met"] for f in folds),
            "fit_on_all": {"constants": all_consts, "mean_median_abs_pct": all_score},
            "shipped": shipped, "tables": [{"gpu": t.gpu, "kind": t.kind, "source": t.source,
                                            "date_read": t.date_read, "conditions": t.conditions,
                                            "n": len(t.rows), "file": Path(t.path).name,
                                            "timing_method": t.timing_method} for t in tables]}


# ---------------------------------------------------------------------------------------------------- output


def _kernel_text(c: dict, methods: list[str] | None = None) -> str:
    """'kernel 14 us', or per timing method 'kernel trtexec 4 / host-loop 14 us (others 8)'; with `methods`, only
    the costs those methods get."""
    by = c.get("kernel_overhead_us_by_method")
    if not by:
        return f"kernel {c['kernel_overhead_us']:g} us"
    shown = [m for m in (methods or by) if m in by]
    text = " / ".join(f"{m} {by[m]:g}" for m in shown)
    missing = [m for m in (methods or []) if m not in by]
    if missing or not methods:
        text += f"{' / ' if text else ''}{'/'.join(missing) or 'other methods'} {c['kernel_overhead_us']:g} (pooled)"
    return f"kernel {text} us"


def render(result: dict, rows: bool = True) -> str:
    lines = ["leave-one-GPU-out: shared constants fitted on the other GPUs, reported on the held-out one"
             + (" (per-kernel cost fitted per timing method)" if result.get("by_method") else ""), "",
             f"{'held-out GPU':<20} {'n':>3} {'median |err|':>12} {'bias':>8} {'Spearman':>9}  constants fitted on the others"]
    methods_of = {}
    for x in result["tables"]:
        methods_of.setdefault(x["gpu"], []).append(x.get("timing_method", "unstated"))
    for f in result["folds"]:
        s = f["summary"]
        c = f["constants"]
        used = sorted(set(methods_of.get(f["gpu"], [])))
        lines.append(f"{f['gpu']:<20} {s['n']:>3} {s['median_abs_pct']:>10.1f} % {s['median_signed_pct']:>+7.1f}% "
                     f"{s['spearman']:>9.3f}  eff_tensor {c['eff_tensor']}, eff_mem {c['eff_mem']}, "
                     f"{_kernel_text(c, used)}, tile {c['gemm_tile']}{'' if f['targets_met'] else '  NOT MET'}")
    b = result["band"]
    t = result["targets"]
    lines += ["", f"targets on every held-out GPU: median |error| <= {t['median_abs_pct']:g} %, Spearman >= "
                  f"{t['spearman']:g} -> {'MET' if result['all_targets_met'] else 'NOT MET'}",
              f"error band (published / predicted, {b['quantiles'][0]:.0%}-{b['quantiles'][1]:.0%} of {b['n_rows']} "
              f"held-out rows, GPUs weighted equally): x{b['ratio_low']:.2f} .. x{b['ratio_high']:.2f}",
              f"fitted on all GPUs: {result['fit_on_all']['constants']} (mean of per-GPU median |error| "
              f"{result['fit_on_all']['mean_median_abs_pct']:.1f} %)", "",
              "with the constants each profile ships (EstimatorSpec defaults unless the profile states them):"]
    for s in result["shipped"]:
        m = s["summary"]
        lines.append(f"  {s['gpu']:<20} n={m['n']:>2}  median |error| {m['median_abs_pct']:5.1f} %  bias "
                     f"{m['median_signed_pct']:+6.1f} %  Spearman {m['spearman']:.3f}")
    if rows:
        lines += ["", f"{'held-out GPU':<18} {'model':<22} {'input':>9} {'published':>10} {'predicted':>10} {'error':>8} "
                      f"{'kernels':>7}  timing"]
        for f in result["folds"]:
            for r in f["rows"]:
                hw = "x".join(map(str, r["input_hw"]))
                lines.append(f"{r['gpu']:<18} {r['model']:<22} {hw:>9} {r['published_ms']:>8.2f}ms "
                             f"{r['predicted_ms']:>8.2f}ms {r['error_pct']:>+7.1f}% {r['kernels']:>7d}  "
                             f"{r.get('timing_method', '')}")
    lines += ["", "sources:"] + [f"  {x['gpu']} ({x['kind']}, {x.get('timing_method', 'unstated')}, {x['n']} rows, "
                                 f"read {x['date_read']}): "
                                 f"{x['source'].get('repository') or x['source'].get('device', '')} "
                                 f"{x['source'].get('path', '')} {x['source'].get('url', '')}".rstrip()
                                 for x in result["tables"]]
    return "\n".join(lines)


def band_record(result: dict) -> dict:
    """What the budget verdicts load (configs/hardware/calibration/leave-one-gpu-out.yaml): the band and where
    it comes from."""
    return {"what": "error band of ESTIMATED latencies: the true latency is expected within [estimate x ratio_low, "
                    "estimate x ratio_high]",
            "generated_by": "emodistill calibrate --write-band",
            "date": datetime.date.today().isoformat(), **result["band"],
            "fit": ("eff_tensor, eff_mem, gemm_tile shared; kernel_overhead_us per timing method (conditions."
                    "timing_method of each table), all fitted on the other GPUs only" if result.get("by_method") else
                    "eff_tensor, eff_mem, kernel_overhead_us, gemm_tile shared, fitted on the other GPUs only"),
            "per_gpu": {f["gpu"]: {"n": f["summary"]["n"], "median_abs_pct": round(f["summary"]["median_abs_pct"], 1),
                                   "median_signed_pct": round(f["summary"]["median_signed_pct"], 1),
                                   "spearman": round(f["summary"]["spearman"], 3),
                                   "timing_methods": sorted({r.get("timing_method", "unstated") for r in f["rows"]})}
                        for f in result["folds"]},
            "sources": [f"{x['gpu']}: {x['source'].get('repository') or x['source'].get('title')} "
                        f"{x['source'].get('path', '')}".strip() for x in result["tables"]]}


def write_band(result: dict, path: str | Path | None = None) -> Path:
    import yaml

    from .budget import BAND_FILE

    path = Path(path or BAND_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ("# Written by `emodistill calibrate --write-band` (export/calibrate.py); do not edit by\n"
            "# hand. Leave-one-GPU-out result over the published tables in tests/export/data/ (docs/export.md).\n")
    path.write_text(head + yaml.safe_dump(band_record(result), sort_keys=False, width=118))
    return path


def register(sub) -> None:
    """`emodistill calibrate`: the leave-one-GPU-out evaluation of the estimate over the published tables."""
    from emodistill.core.cli_args import add_json, retire

    p = sub.add_parser("calibrate", help="how far the RTX latency estimate is from published TensorRT tables",
                       description="Find out how far to trust the RTX latency estimate: predict each published "
                                   "TensorRT table's GPU from the other GPUs' tables only (leave-one-GPU-out) and "
                                   "print the errors; --write-band stores the error band budget verdicts use.")
    p.add_argument("--data", default=str(DATA_DIR), metavar="DIR", help="folder of reference tables (*.json)")
    p.add_argument("--table", action="append", default=[], metavar="FILE",
                   help="an extra table file, e.g. the --json-out FILE of `emodistill gpu-check` (repeatable)")
    add_json(p, help="print every figure as JSON instead of the tables", json_out=True, retired_file=True)
    p.add_argument("--no-rows", action="store_true", help="print the summary only")
    p.add_argument("--write-band", nargs="?", const="", default=None, metavar="PATH",
                   help="store the error band for budget verdicts (none given: "
                        "configs/hardware/calibration/leave-one-gpu-out.yaml)")
    retire(p, "--fit", "fit", "nothing (the leave-one-GPU-out fit always runs)", nargs=0, convert=lambda v: True)
    p.set_defaults(func=_run)


def _run(args) -> int:
    tables = load_tables(args.data, args.table)
    result = leave_one_gpu_out(tables)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(render(result, rows=not args.no_rows))
    if args.json_out:
        write_json_atomic(args.json_out, result)
    if args.write_band is not None:
        print(f"\nband written to {write_band(result, args.write_band or None)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.export.calibrate`: an alias of `emodistill calibrate`."""
    from emodistill.core.cli_args import run_alias

    return run_alias(register, argv)


if __name__ == "__main__":
    sys.exit(main())
