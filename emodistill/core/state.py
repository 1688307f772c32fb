"""Resumable training state without pickles: safetensors for tensors, JSON for everything else.

A state is a folder `<root>/step_<N>/` holding
    tensors.safetensors   model.* (student + loss modules such as projectors), optim.<param>.<name>
    state.json            step/epoch/batch position, optimiser param groups and scalar state, scheduler
                          state, per-process RNG states (python, numpy, torch, cuda), loop bookkeeping,
                          and the sha256 of tensors.safetensors
It is written under a temporary name and renamed into place; then `<root>/latest.json` is replaced
atomically to point at it, and older states are removed. A kill at any moment leaves `latest.json`
pointing at a complete state.

A sharded run (`train.sharding: fsdp`, emodistill.core.sharding) has no process holding the whole model or
optimiser, so each process writes its own shards instead of `tensors.safetensors`:
    tensors.rank<R>.safetensors   process R's local shards of model.* and optim.* (+ its own buffers)
and `state.json` records `shards: {"processes": N, "sha256": [...]}`. Such a state resumes on N processes only
(each reads back its own file, bit for bit); the single `model.safetensors` of a checkpoint is gathered separately.
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
from .sharding import is_sharded
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


def _local(t: torch.Tensor) -> torch.Tensor:
    """A tensor as this process holds it: a DTensor's local shard, on CPU."""
    from torch.distributed.tensor import DTensor

    return (t.to_local() if isinstance(t, DTensor) else t).detach().cpu().contiguous()


def _like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`t` (a local shard read back) as a DTensor laid out as `ref`, when `ref` is one; else `t`."""
    from torch.distributed.tensor import DTensor

    if not isinstance(ref, DTensor):
        return t
    return DTensor.from_local(t.to(ref.device), ref.device_mesh, ref.placements, run_check=False, shape=ref.shape,
                              stride=ref.stride())


def _split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {f"optim.{pid}.{k}": _local(v) for pid, st in sd["state"].items() for k, v in st.items()
               if torch.is_tensor(v)}
    return tensors, _optimizer_meta(sd)


def _optimizer_meta(sd: dict) -> dict:
    """The JSON part of an optimiser state dict: param groups and non-tensor state."""
    scalars = {f"{pid}.{k}": v for pid, st in sd["state"].items() for k, v in st.items() if not torch.is_tensor(v)}
    return {"param_groups": sd["param_groups"], "scalars": scalars}


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


def state_name(position: dict) -> str:
    return f"step_{position['step']:08d}_e{position['epoch']:04d}_b{position['batch']:06d}"


def shard_file(rank: int) -> str:
    """Process `rank`'s tensor file in a sharded state."""
    return f"tensors.rank{rank:05d}.safetensors"


def new_state_folder(root: str | Path, position: dict) -> Path:
    """The temporary folder a state at `position` is written into (renamed into place by `save_state`)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{state_name(position)}.", dir=root))
    os.chmod(tmp, new_dir_mode())  # mkdtemp's 0700 would hide the state from teammates
    return tmp


def write_tensors(folder: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  rank: int | None = None) -> str:
    """model.* and optim.* tensors (this process's shards of DTensors) into `folder`: tensors.safetensors, or
    `shard_file(rank)` for a sharded state (every process its own) -> the file's sha256."""
    path = Path(folder) / (TENSORS if rank is None else shard_file(rank))
    tensors = {f"model.{k}": _local(v) for k, v in model.state_dict().items()}
    tensors.update(_split_optimizer(optimizer.state_dict())[0])
    save_file(tensors, str(path), metadata={"format": "pt"})
    _sync(path)
    return sha256_file(path)


def _sync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(path, new_file_mode())  # safetensors creates its files 0600


def save_state(root: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
               rng: list[dict], position: dict, extra: dict | None = None, keep: int = 1,
               folder: str | Path | None = None, shards: list[str] | None = None) -> Path:
    """Write a complete state folder and point `latest.json` at it. Call on the main process only.

    Sharded: every process has written its shards with `write_tensors(folder, ..., rank=R)` into `folder`
    (`new_state_folder`); `shards` are their sha256 in rank order, and `folder` is completed and renamed here."""
    root = Path(root)
    name = state_name(position)
    tmp = Path(folder) if folder is not None else new_state_folder(root, position)
    try:
        if shards is None:
            files = {"tensors_sha256": write_tensors(tmp, model, optimizer)}
        else:
            files = {"shards": {"processes": len(shards), "sha256": list(shards)}}
        meta = {"format": 1, "position": position, "optimizer": _optimizer_meta(optimizer.state_dict()),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng, "extra": extra or {}, **files}
        (tmp / STATE).write_text(json.dumps(meta))
        _sync(tmp / STATE)
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


def load_state(folder: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
               process: tuple[int, int] = (0, 1)) -> dict:
    """Restore model, optimiser and scheduler in place; return the JSON part (position, rng, extra).
    `process`: (this process's index, the process count); a sharded state fits only the count that wrote it."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / STATE).read_text())
        file, want = _tensor_file(folder, meta, process, is_sharded(model))
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise StateError(f"{folder / STATE}: unreadable ({type(e).__name__}: {e})") from None
    if not file.exists() or sha256_file(file) != want:
        raise StateError(f"{file}: sha256 does not match {STATE} (torn state)")
    tensors = load_file(str(file))
    ref = model.state_dict()
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model_sd = {k: _like(v, ref[k]) if k in ref else v for k, v in model_sd.items()}
    missing, unexpected = model.load_state_dict(model_sd, strict=False)
    if missing or unexpected:
        raise StateError(f"{folder}: model state does not fit: missing={missing[:5]} unexpected={unexpected[:5]}")
    optimizer.load_state_dict(_shards_like(_join_optimizer(tensors, meta["optimizer"]), optimizer))
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    return meta


def _tensor_file(folder: Path, meta: dict, process: tuple[int, int], sharded: bool) -> tuple[Path, str]:
    """The tensor file this process reads and its recorded sha256; a state of another layout is a StateError."""
    shards = meta.get("shards")
    if shards is None:
        if sharded:
            raise StateError(f"{folder} was written by an unsharded run (train.sharding none/ddp); this run is "
                             "sharded (fsdp): resume it with the sharding that wrote it")
        return folder / TENSORS, meta["tensors_sha256"]
    n, (index, count) = shards["processes"], process
    if n != count:
        raise StateError(f"{folder} was written by a sharded (fsdp) run on {n} processes; this run has {count}: "
                         f"resume on {n} processes (torchrun --nproc_per_node {n} ... / accelerate launch "
                         f"--num_processes {n} ...)")
    if not sharded:
        raise StateError(f"{folder} was written by a sharded (fsdp) run on {n} processes; this run is not sharded: "
                         "resume it with --set train.sharding=fsdp")
    return folder / shard_file(index), shards["sha256"][index]


def _shards_like(sd: dict, optimizer: torch.optim.Optimizer) -> dict:
    """An optimiser state dict read back from local shards, its per-parameter tensors as DTensors laid out as
    their (sharded) parameters; unchanged for unsharded parameters."""
    from torch.distributed.tensor import DTensor

    params = [p for g in optimizer.param_groups for p in g["params"]]
    for pid, st in sd["state"].items():
        p = params[pid]
        if not isinstance(p, DTensor):
            continue
        for k, v in st.items():
            if k != "step" and torch.is_tensor(v) and tuple(v.shape) == tuple(p.to_local().shape):
                st[k] = _like(v, p)
    return sd


__all__ = ["save_state", "load_state", "latest_state", "rng_state", "set_rng_state", "StateError", "state_name",
           "shard_file", "new_state_folder", "write_tensors"]
