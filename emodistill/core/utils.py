"""Small shared helpers: logging, seeding, provenance (versions, git commit), atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

logger = logging.getLogger("emodistill")



def _checkout_root() -> Path | None:
    """The repository when running from a checkout (editable install), None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "teacher" / "__init__.py").is_file() else None


def _config_dir() -> Path:
    """The packaged recipes, profiles and budgets: `emodistill.configs` (the repository's configs/ folder)."""
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("emodistill.configs")))
    except ModuleNotFoundError:  # a checkout on PYTHONPATH without the install's package mapping
        if REPO_ROOT is None:
            raise
        return REPO_ROOT / "configs"


REPO_ROOT = _checkout_root()
CONFIG_DIR = _config_dir()


def setup_logging(level: int | str = logging.INFO) -> None:
    """Configure the root logger once for CLI entry points (library code only logs)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Versions of the packages that decide numerics and file formats."""
    import importlib.metadata as md

    out = {}
    for pkg in ("emodistill", "torch", "transformers", "timm", "accelerate", "onnx", "onnxruntime", "av", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def git_commit() -> str | None:
    """The checkout's commit (with '-dirty' when the tree has changes), or None for an installed wheel (whose
    folder may sit inside some other repository) and outside git."""
    if REPO_ROOT is None:
        return None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any) -> str:
    """Hash of a JSON-able object, independent of dict order (for cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def new_file_mode(path: str | os.PathLike | None = None) -> int:
    """The mode a plainly created file would get: an existing file's own mode, else 0o666 minus the umask."""
    if path is not None and os.path.exists(path):
        return stat.S_IMODE(os.stat(path).st_mode)
    return 0o666 & ~_umask()


def new_dir_mode() -> int:
    """The mode a plainly created folder would get (0o777 minus the umask)."""
    return 0o777 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the same folder; rename it onto `path` only if the block succeeds.

    A kill at any moment leaves either the old file or the new one, never a torn one. The file gets the mode a
    plain `open(path, "w")` would give it (the replaced file's mode, else the umask's), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing or malformed one raises an error naming the file (and the line)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: {what} is not valid JSON ({e})") from None


RUN_FILES = ("metrics.json", "best", "state")  # what a training run writes into its output_dir


def check_run_folder(out: str | os.PathLike, *, resume: bool = False, force: bool = False,
                     can_resume: bool = True) -> list[str]:
    """The run files already in `out`. Raises FileExistsError (saying which flag to use) when there are some and
    neither --resume (continue them) nor --force (move them aside, start over) was given."""
    out = Path(out)
    found = [n for n in RUN_FILES if (out / n).exists()]
    resumable = (out / "state" / "latest.json").exists()
    if not found or force or (resume and resumable):
        return found
    if resume:
        raise FileExistsError(f"--resume: {out} holds {', '.join(found)} but no training state "
                              f"(state/latest.json) to continue; pass --force to start over (the old files are "
                              f"moved to {out}/replaced-<UTC time>/) or choose another output_dir")
    how = "--resume to continue it, or --force to start over" if can_resume and resumable else "--force to start over"
    raise FileExistsError(f"{out} already holds a run ({', '.join(found)}); pass {how} (the old files are moved to "
                          f"{out}/replaced-<UTC time>/), or choose another output_dir")


def move_aside(out: str | os.PathLike, names: list[str]) -> Path | None:
    """Move `out/<name>` for each name into `out/replaced-<UTC time>/` (nothing is deleted); -> that folder."""
    import datetime as _dt

    out = Path(out)
    names = [n for n in names if (out / n).exists()]
    if not names:
        return None
    dest = out / f"replaced-{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        os.replace(out / n, dest / n)
    logger.warning("--force: moved the previous run's %s to %s", ", ".join(names), dest)
    return dest


def finish_distributed(accelerator) -> None:
    """End an accelerate run: wait for every process, close the trackers, then tear the process group down.

    A gloo group still alive at interpreter exit can abort a rank ("terminate called without an active
    exception") after the work is done, which torchrun reports as a failed run.
    """
    import torch.distributed as dist

    accelerator.wait_for_everyone()
    accelerator.end_training()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one) and the logical core count, for reports."""
    import platform

    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"


def lazy_exports(package: str, table: dict[str, list[str]]):
    """Module-level `__getattr__`, `__dir__` and `__all__` for a package whose names load on first use.

    `table` maps a submodule to the names it provides: `from emodistill.export import export_onnx` imports `emodistill.export.onnx`
    only then, so `emodistill --help` and the data workers do not pay for torch, onnx or onnxruntime.
        __getattr__, __dir__, __all__ = lazy_exports(__name__, {"onnx": ["export_onnx"]})
    """
    import importlib

    if any("." in mod for mod in table):  # a relative path out of the package would hide a layer crossing from
        raise ValueError(f"{package}: lazy exports name direct submodules only, got {sorted(table)}")  # import-linter
    where = {name: mod for mod, names in table.items() for name in names}
    names = sorted(where)

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f".{where[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return names

    return __getattr__, __dir__, names


def int_at_least(lo: int):
    """argparse type: an integer >= `lo` (a value out of range is a usage error naming the flag and the range)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{value} is out of range (must be an integer >= {lo})")
        return value

    parse.__name__ = f"int >= {lo}"
    return parse


def float_above(lo: float, *, inclusive: bool = False):
    """argparse type: a finite number > `lo` (>= with `inclusive`)."""
    import argparse
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < lo or (value == lo and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be a number {'>=' if inclusive else '>'} "
                                             f"{lo:g})")
        return value

    parse.__name__ = f"number {'>=' if inclusive else '>'} {lo:g}"
    return parse
