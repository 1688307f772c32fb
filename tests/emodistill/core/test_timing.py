"""The one timing function: its keys, percentile order, warm-up not counted, time budget, interleaving."""

import math
import time

import pytest

from emodistill.core.timing import KEYS, summarize, time_callable, time_interleaved


def test_summarize_keys_and_figures():
    s = summarize([float(i) for i in range(1, 101)])  # 1..100 ms
    assert tuple(s) == KEYS
    assert s["runs"] == 100 and s["min_ms"] == 1.0 and s["mean_ms"] == pytest.approx(50.5)
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p95_ms"] == pytest.approx(95.05)


def test_summarize_empty_is_nan_not_an_error():
    s = summarize([])
    assert s["runs"] == 0 and all(math.isnan(s[k]) for k in KEYS[:-1])


def test_warmup_runs_are_not_counted_nor_timed():
    calls = []

    def fn():  # the warm-up calls are slow: were they timed, min/p50 would show it
        calls.append(1)
        if len(calls) <= 3:
            time.sleep(0.02)

    t = time_callable(fn, warmup=3, repeats=10)
    assert tuple(k for k in t) == KEYS and t["runs"] == 10 and len(calls) == 13
    assert t["min_ms"] <= t["p50_ms"] <= t["p90_ms"] <= t["p95_ms"] and t["p95_ms"] < 15
    assert t["min_ms"] <= t["mean_ms"]


def test_seconds_is_a_lower_bound_on_the_timed_span():
    calls = []
    t0 = time.perf_counter()
    t = time_callable(lambda: calls.append(time.sleep(0.001)), warmup=2, repeats=5, seconds=0.05)
    assert time.perf_counter() - t0 >= 0.05 and t["runs"] >= 5 and len(calls) == t["runs"] + 2
    assert time_callable(lambda: None, warmup=0, repeats=1, seconds=10.0, max_runs=7)["runs"] == 7


def test_interleaved_rounds_and_cpu_time():
    order = []
    out = time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=3,
                           cpu_time=True)
    assert order == ["a", "b"] * 4 and out["a"]["runs"] == out["b"]["runs"] == 3
    assert out["a"]["cpu_ms"] >= 0 and "cpu_ms" not in time_callable(lambda: None, repeats=2)


def test_a_slower_callable_times_slower():
    out = time_interleaved({"fast": lambda: None, "slow": lambda: time.sleep(0.005)}, warmup=0, repeats=5)
    assert out["slow"]["min_ms"] >= 4.5 > out["fast"]["p95_ms"]
