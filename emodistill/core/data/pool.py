"""Decode work in a process pool where one file that kills its process is blamed alone.

A worker that dies (a segfault inside a codec, the OOM killer) breaks the whole `ProcessPoolExecutor`:
the unfinished items are then redone one process each, so only the file that kills its own process is
reported, and no file is ever decoded in the calling process (which a crashing codec would take down).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing as mp
import sys
import time
from typing import Any, Callable

logger = logging.getLogger(__name__)


class _FinalLine:
    """A progress bar where the stream is no terminal (CI logs, `2>&1 | cat`): nothing while it runs (no
    carriage-return redraws piling up on one line), one line when it closes."""

    def __init__(self, total: int, desc: str, unit: str, file):
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.n, self.t0, self.closed = 0, time.perf_counter(), False

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        if self.closed or not self.total:
            return
        self.closed = True
        dt = time.perf_counter() - self.t0
        print(f"{self.desc or 'progress'}: {self.n}/{self.total} {self.unit}s in {dt:.1f} s", file=self.file,
              flush=True)


def progress_bar(total: int, desc: str = "", unit: str = "clip", enabled: bool = True, file=None):
    """A tqdm bar on a terminal; elsewhere one final line (`_FinalLine`); nothing when not `enabled`.
    Both have update() and close()."""
    from tqdm.auto import tqdm

    file = file if file is not None else sys.stderr
    try:
        tty = file.isatty() or tqdm.__module__.startswith("tqdm.notebook")  # a notebook draws its own widget
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    if enabled and not tty:
        return _FinalLine(total, desc, unit, file)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=file)


def map_isolated(fn: Callable[..., Any], jobs: list[tuple], workers: int, *, crashed: Callable[[tuple], Any],
                 desc: str = "", progress: bool = True, initializer: Callable[[], None] | None = None) -> list:
    """[fn(*job) for job in jobs], computed by `workers` processes (0 = in this process, for tests and
    debugging); a job whose process dies gets `crashed(job)` instead."""
    results: list = [None] * len(jobs)
    bar = progress_bar(len(jobs), desc, "clip", progress)
    if workers <= 0:
        for i, job in enumerate(jobs):
            results[i] = fn(*job)
            bar.update()
        bar.close()
        return results
    ctx = mp.get_context("forkserver")  # no fork of a parent that may hold torch/OpenMP threads
    done = [False] * len(jobs)
    try:
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer) as pool:
            futs = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
            for fut in cf.as_completed(futs):
                with contextlib.suppress(cf.process.BrokenProcessPool):
                    results[futs[fut]] = fut.result()
                    done[futs[fut]] = True
                    bar.update()
    except cf.process.BrokenProcessPool:
        pass
    pending = [i for i, d in enumerate(done) if not d]
    if pending:
        logger.error("a %s worker died; retrying %d items one process each", desc or "decode", len(pending))
    for i in pending:
        try:
            with cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=initializer) as pool:
                results[i] = pool.submit(fn, *jobs[i]).result()
        except cf.process.BrokenProcessPool:
            results[i] = crashed(jobs[i])
        bar.update()
    bar.close()
    return results


__all__ = ["map_isolated", "progress_bar"]
