"""The one way latency is measured and summarized: every command reports the same keys.

    time_callable(fn, warmup=3, repeats=20)              # fixed number of timed runs
    time_callable(fn, warmup=2, repeats=5, seconds=3.0)  # at least 5 runs and at least 3 s
    summarize(durations_ms)                              # figures of durations measured elsewhere

Figures (wall clock, `time.perf_counter`, in ms): `p50_ms`, `p90_ms`, `p95_ms` (numpy's linear-interpolation
percentiles), `mean_ms`, `min_ms` (the least disturbed run) and `runs` (timed runs; warm-up runs are not
counted). `cpu_time=True` adds `cpu_ms`: the median CPU time of this process per run, all threads; unlike wall
time it hardly moves when other processes compete for the cores.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

KEYS = ("p50_ms", "p90_ms", "p95_ms", "mean_ms", "min_ms", "runs")


def summarize(durations_ms: Sequence[float]) -> dict:
    """The figures of `KEYS` over `durations_ms`; NaN figures (and `runs` 0) for an empty sequence."""
    ms = np.asarray(durations_ms, dtype=np.float64)
    if ms.size == 0:
        return {**dict.fromkeys(KEYS[:-1], float("nan")), "runs": 0}
    p50, p90, p95 = np.percentile(ms, [50, 90, 95])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p95_ms": float(p95), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "runs": int(ms.size)}


def time_interleaved(fns: dict[str, Callable[[], object]], *, warmup: int = 3, repeats: int = 20,
                     seconds: float = 0.0, max_runs: int = 10_000, cpu_time: bool = False) -> dict[str, dict]:
    """Time several callables in rounds: each round runs each callable once, in order, timed on its own.

    Back-to-back runs see the same machine state, so ratios between them hold under background load.
    Rounds go on until there are at least `repeats` of them and `seconds` have passed, at most `max_runs`;
    `warmup` untimed rounds come first. -> {name: `summarize` figures (+ `cpu_ms` with `cpu_time`)}.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    n, t_end = 0, time.perf_counter() + seconds
    while (n < repeats or time.perf_counter() < t_end) and n < max_runs:
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append((time.perf_counter() - t0) * 1e3)
            cpu[name].append((time.process_time() - c0) * 1e3)
        n += 1
    out = {name: summarize(wall[name]) for name in fns}
    if cpu_time:
        for name in fns:
            out[name]["cpu_ms"] = float(np.median(cpu[name])) if cpu[name] else float("nan")
    return out


def time_callable(fn: Callable[[], object], *, warmup: int = 3, repeats: int = 20, seconds: float = 0.0,
                  max_runs: int = 10_000, cpu_time: bool = False) -> dict:
    """Wall-clock figures (`KEYS`, ms) of `fn()` after `warmup` untimed calls, over at least `repeats` calls
    and at least `seconds` (at most `max_runs`)."""
    return time_interleaved({"fn": fn}, warmup=warmup, repeats=repeats, seconds=seconds, max_runs=max_runs,
                            cpu_time=cpu_time)["fn"]


__all__ = ["KEYS", "summarize", "time_callable", "time_interleaved"]
