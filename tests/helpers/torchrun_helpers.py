"""Helpers of the 2-process (torchrun, gloo) tests of sharded training: launch, and SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
HAVE_TORCHRUN = Path(TORCHRUN).exists()


def torchrun_env() -> dict:
    # PYTHONFAULTHANDLER: a worker sent SIGABRT prints every thread's stack, which is how a hang shows its place
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it, parents before children."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        pids.append(p)
        for f in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in f.read_text().split()]
            except OSError:
                pass
    return pids


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal torchrun and every process under it: its workers run in sessions of their own, so killing
    torchrun's process group would leave them training."""
    for p in reversed(descendants(pid)):  # the workers first, then torchrun
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def run_ok(cmd: list[str], cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` to the end; fail with its stderr's tail unless it exits 0 within `timeout` seconds.

    On a timeout the workers get SIGABRT first, so the failure shows where each one hung (their faulthandler
    stacks), and only then is the whole tree killed.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or torchrun_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for p in descendants(proc.pid)[1:]:
            try:
                os.kill(p, signal.SIGABRT)
            except ProcessLookupError:
                pass
        time.sleep(3)
        kill_tree(proc.pid)
        out, err = proc.communicate()
        stacks = err[max(0, err.find("Fatal Python error")):]  # the workers' stacks come before torchrun's summary
        raise AssertionError(f"{cmd} did not end within {timeout} s; stdout: {out[-1000:]}\nstderr: {stacks[:8000]}")
    assert proc.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_after_first_state(cmd: list[str], out: Path, cwd: Path, later: float, deadline: float = 300) -> int:
    """Start `cmd`, SIGKILL it and its workers `later` seconds after `out/state/latest.json` appears -> the state
    step it was killed at; asserts the run had not finished and that nothing wrote on after the kill."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=torchrun_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + deadline
    while not (out / "state" / "latest.json").exists():
        assert proc.poll() is None, "run ended before its first state"
        assert time.time() < end
        time.sleep(0.005)
    time.sleep(later)  # land the kill later: mid-step, mid-eval or mid-write of a later state
    kill_tree(proc.pid)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the kill came after the run had finished"
    killed_at = json.loads((out / "state" / "latest.json").read_text())["state"]
    time.sleep(0.5)  # no worker survived to write on
    assert json.loads((out / "state" / "latest.json").read_text())["state"] == killed_at
    return killed_at


def assert_same_resumed_run(ref: Path, cut: Path, files: tuple[str, ...] = ("best/model.safetensors",),
                            ranks: int = 2, atol: float = 1e-6) -> None:
    """A resumed run (`cut`) ended where the uninterrupted one (`ref`) did: its `files`, every process's model and
    optimiser shards in the final state, and its test metrics and best epoch."""
    import torch
    from safetensors.torch import load_file

    for name in files:
        a, b = load_file(str(ref / name)), load_file(str(cut / name))
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=atol, msg=k)
    for rank in range(ranks):
        a, b = (load_file(str(next((d / "state").glob("step_*")) / f"tensors.rank{rank:05d}.safetensors"))
                for d in (ref, cut))
        assert set(a) == set(b) and any(k.startswith("optim.") for k in a)
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=atol, msg=k)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (ref, cut))
    assert mb["test"] == ma["test"] and mb["best_epoch"] == ma["best_epoch"]
