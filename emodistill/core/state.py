"""Resumable training state without pickles: safetensors for tensors, JSON for everything else.

A state is a folder `<root>/step_<N>/` holding
    tensors.safetensors   model.* (student + loss modules such as projectors), optim.<param>.<name>
    state.json            step/epoch/batch position, optimiser param groups and scalar state, scheduler
                          state, per-process RNG states (python, numpy, torch, cuda), loop bookkeeping,
                          and the sha256 of tensors.safetensors
It is written under a temporary name and renamed into place; then `<root>/latest.json` is replaced
atomically to point at it, and older states are removed. A kill at any moment leaves `latest.json`
pointing at a complete state.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import InputError
from .utils import new_dir_mode, new_file_mode, sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

LATEST = "latest.json"
TENSORS = "tensors.safetensors"
STATE = "state.json"


class StateError(InputError, RuntimeError):
    """A training state that is missing, torn or does not fit the run."""


def rng_state() -> dict:
    """This process's RNG states as JSON-able lists."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {"python": [py_state[0], list(py_state[1]), py_state[2]],
           "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
           "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("optim."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = t
    for name, v in meta["scalars"].items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_state(root: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
               rng: list[dict], position: dict, extra: dict | None = None, keep: int = 1) -> Path:
    """Write a complete state folder and point `latest.json` at it. Call on the main process only."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{position['step']:08d}_e{position['epoch']:04d}_b{position['batch']:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    os.chmod(tmp, new_dir_mode())  # mkdtemp's 0700 would hide the state from teammates
    try:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        opt_tensors, opt_meta = _split_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        save_file(tensors, str(tmp / TENSORS), metadata={"format": "pt"})
        meta = {"format": 1, "position": position, "optimizer": opt_meta,
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng, "extra": extra or {}, "tensors_sha256": sha256_file(tmp / TENSORS)}
        (tmp / STATE).write_text(json.dumps(meta))
        for f in (tmp / TENSORS, tmp / STATE):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(f, new_file_mode())  # safetensors creates its files 0600
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    write_json_atomic(root / LATEST, {"state": name})
    states = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in states[:-keep]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step_*"):  # temp folders of killed writers
        shutil.rmtree(stale, ignore_errors=True)
    return final


def latest_state(root: str | Path) -> Path | None:
    """The folder `latest.json` points at, or None when there is no state."""
    p = Path(root) / LATEST
    if not p.exists():
        return None
    try:
        name = json.loads(p.read_text())["state"]
    except (ValueError, KeyError, TypeError) as e:
        raise StateError(f"{p}: unreadable ({type(e).__name__}: {e}); delete it to start over, or restore it") from None
    # only a state folder of this root: a path from the JSON is never followed elsewhere ("../other-run/...")
    if not isinstance(name, str) or not name.startswith("step_") or Path(name).name != name:
        raise StateError(f"{p}: 'state' must name a step_* folder beside it, got {name!r}")
    d = Path(root) / name
    if not (d / STATE).exists():
        raise StateError(f"{p} points at {d}, which is incomplete")
    return d


def load_state(folder: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> dict:
    """Restore model, optimiser and scheduler in place; return the JSON part (position, rng, extra)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / STATE).read_text())
        want = meta["tensors_sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise StateError(f"{folder / STATE}: unreadable ({type(e).__name__}: {e})") from None
    if not (folder / TENSORS).exists() or sha256_file(folder / TENSORS) != want:
        raise StateError(f"{folder / TENSORS}: sha256 does not match {STATE} (torn state)")
    tensors = load_file(str(folder / TENSORS))
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(model_sd, strict=False)
    if missing or unexpected:
        raise StateError(f"{folder}: model state does not fit: missing={missing[:5]} unexpected={unexpected[:5]}")
    optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    return meta


__all__ = ["save_state", "load_state", "latest_state", "rng_state", "set_rng_state", "StateError"]
