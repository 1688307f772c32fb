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
from typing import Any, Callable

logger = logging.getLogger(__name__)


def map_isolated(fn: Callable[..., Any], jobs: list[tuple], workers: int, *, crashed: Callable[[tuple], Any],
                 desc: str = "", progress: bool = True, initializer: Callable[[], None] | None = None) -> list:
    """[fn(*job) for job in jobs], computed by `workers` processes (0 = in this process, for tests and
    debugging); a job whose process dies gets `crashed(job)` instead."""
    from tqdm.auto import tqdm

    results: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc=desc, unit="clip", disable=not progress)
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


__all__ = ["map_isolated"]
