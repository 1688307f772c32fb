"""`emodistill env`: the environment as a table to paste into a bug report, and a health check of the stack.

In the spirit of `accelerate env` and `python -m torch.utils.collect_env`, but every row also says whether that piece
works: a broken piece is a FAIL line with the reason and the fix, never a traceback. `--check` exits 1 when a
required piece fails, so `.ci/run` can stop seconds after the install with the cause named.

Required pieces are the runtime dependencies in the installed package metadata (their versions must satisfy the pins
in pyproject.toml) and the native libraries of torch, torchvision, torchaudio, ONNX Runtime and TensorRT for RTX.
Optional extras and GPUs are reported but never fail the check.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import platform
import sys
from dataclasses import asdict, dataclass

OK, FAIL, WARN, INFO = "ok", "FAIL", "warn", "info"

# distribution name -> module to import, where they differ
IMPORT_NAMES = {
    "opencv-python-headless": "cv2", "pyyaml": "yaml", "av": "av", "tensorrt-rtx": "tensorrt_rtx",
    "torch-tensorrt-rtx": "torch_tensorrt", "nvidia-ml-py": "pynvml", "pytest-timeout": "pytest_timeout",
    "import-linter": "importlinter",
}


@dataclass
class Row:
    section: str
    name: str
    value: str
    status: str = INFO
    fix: str = ""          # what to run or do when status is FAIL/warn
    required: bool = False


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _requirements() -> tuple[list, dict[str, list]]:
    """(runtime requirements that apply here, extra name -> its requirements) from the installed metadata."""
    from packaging.requirements import Requirement

    runtime, extras = [], {}
    for line in md.requires("emodistill") or []:
        req = Requirement(line)
        marker = str(req.marker) if req.marker else ""
        if "extra ==" in marker:
            name = marker.split("extra ==")[1].split()[0].strip().strip("\"')")
            if req.marker.evaluate({"extra": name}):  # the extra's platform markers (tensorrt-rtx: x86-64)
                extras.setdefault(name, []).append(req)
        elif req.marker is None or req.marker.evaluate():
            runtime.append(req)
    return runtime, extras


def _pin_fix(reqs: list) -> str:
    """A pip line that reinstalls these requirements as pinned."""
    return "pip install " + " ".join(f'"{r.name}{r.specifier}"' for r in reqs)


def _system_rows() -> list[Row]:
    from .. import __version__
    from ..core.utils import cpu_name

    return [
        Row("system", "emodistill", __version__),
        Row("system", "Python", f"{platform.python_version()} ({sys.executable})"),
        Row("system", "OS", platform.platform()),
        Row("system", "CPU", cpu_name()),
    ]


def _dependency_rows(runtime: list) -> list[Row]:
    rows = []
    for req in runtime:
        try:
            ver = md.version(req.name)
        except md.PackageNotFoundError:
            rows.append(Row("packages", req.name, "not installed", FAIL, _pin_fix([req]), True))
            continue
        if req.specifier and not req.specifier.contains(ver, prereleases=True):
            rows.append(Row("packages", req.name, f"{ver} (needs {req.specifier})", FAIL, _pin_fix([req]), True))
        else:
            rows.append(Row("packages", req.name, ver, OK, required=True))
    return rows


def _torch_rows(runtime: list) -> list[Row]:
    """torch's build and whether the native libraries of its siblings load beside it."""
    trio = [r for r in runtime if r.name in ("torch", "torchvision", "torchaudio")]
    fix = _pin_fix(trio) + "  (the three must be the matching releases)"
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure is the answer
        return [Row("torch", "torch", f"import failed: {_first_line(e)}", FAIL, fix, True)]
    cuda = torch.version.cuda or "none (CPU build)"
    rows = [Row("torch", "torch build", f"{torch.__version__}, CUDA {cuda}, cuDNN "
                f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'n/a'}", OK, required=True)]
    for name, probe in (("torchvision", _probe_torchvision), ("torchaudio", _probe_torchaudio)):
        try:
            detail = probe()
            rows.append(Row("torch", f"{name} native library", detail, OK, required=True))
        except Exception as e:  # noqa: BLE001
            rows.append(Row("torch", f"{name} native library", f"does not load: {_first_line(e)}", FAIL, fix, True))
    return rows


def _probe_torchvision() -> str:
    import torch
    import torchvision

    torch.ops.torchvision.nms  # raises when the C++ ops were built for another torch  # noqa: B018
    return f"loads ({torchvision.__version__}, C++ ops present)"


def _probe_torchaudio() -> str:
    import torchaudio

    return f"loads ({torchaudio.__version__})"


def _runtime_rows(runtime: list) -> list[Row]:
    rows = []
    try:
        import onnxruntime as ort

        rows.append(Row("runtimes", "ONNX Runtime providers", ", ".join(ort.get_available_providers()), OK, required=True))
    except Exception as e:  # noqa: BLE001
        rows.append(Row("runtimes", "ONNX Runtime", f"import failed: {_first_line(e)}", FAIL,
                        _pin_fix([r for r in runtime if r.name == "onnxruntime"]), True))
    trt_req = [r for r in runtime if r.name == "tensorrt-rtx"]
    try:
        trt = importlib.import_module("tensorrt_rtx")
        rows.append(Row("runtimes", "TensorRT for RTX", f"{trt.__version__} (builds SM 8.6 engines without a GPU)", OK,
                        required=bool(trt_req)))
    except Exception as e:  # noqa: BLE001
        if trt_req:
            rows.append(Row("runtimes", "TensorRT for RTX", f"import failed: {_first_line(e)}", FAIL,
                            _pin_fix(trt_req), True))
        elif platform.machine().lower() in ("x86_64", "amd64"):  # the runtime-only install, without the extra
            rows.append(Row("runtimes", "TensorRT for RTX", "not installed (to run engines: pip install "
                            "'emodistill[rtx]'; to build them: 'emodistill[train]')", INFO))
        else:  # no wheels for this platform: engines cannot be built here, everything else works
            rows.append(Row("runtimes", "TensorRT for RTX", "not available on this platform (x86-64 Linux/Windows only)",
                            WARN, "build engines on an x86-64 Linux or Windows machine"))
    return rows


def _extra_rows(extras: dict[str, list]) -> list[Row]:
    rows = []
    for extra, reqs in sorted(extras.items()):
        parts, status = [], OK
        for req in reqs:
            try:
                ver = md.version(req.name)
            except md.PackageNotFoundError:
                parts.append(f"{req.name} not installed")
                status = WARN
                continue
            try:
                importlib.import_module(IMPORT_NAMES.get(req.name, req.name.replace("-", "_")))
                parts.append(f"{req.name} {ver}")
            except Exception as e:  # noqa: BLE001 - torch-tensorrt needs a CUDA driver at import
                parts.append(f"{req.name} {ver} does not import ({_first_line(e)})")
                status = WARN
        fix = f'pip install -e ".[{extra}]"' if status != OK else ""
        rows.append(Row("extras", f"[{extra}]", "; ".join(parts), status, fix))
    return rows


def _gpu_rows() -> list[Row]:
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ModuleNotFoundError:  # runtime-only install: ask the driver
        from emodistill.export.trt_rtx import cuda_devices

        found = cuda_devices()
        return [Row("gpu", f"cuda:{i}", f"{name}, compute capability {cc}", OK) for i, (name, cc) in enumerate(found)] \
            or [Row("gpu", "CUDA GPUs", "none")]
    except Exception as e:  # noqa: BLE001
        return [Row("gpu", "CUDA GPUs", f"unknown ({_first_line(e)})", WARN)]
    if n == 0:
        return [Row("gpu", "CUDA GPUs", "none (engines are built ahead of time; latencies are compiled or estimated)")]
    rows = []
    for i in range(n):
        p = torch.cuda.get_device_properties(i)
        rows.append(Row("gpu", f"cuda:{i}", f"{p.name}, compute capability {p.major}.{p.minor}, "
                        f"{p.total_memory / 2**30:.1f} GiB", OK))
    return rows


def collect() -> list[Row]:
    """Every row of the report, in display order."""
    try:
        runtime, extras = _requirements()
    except Exception as e:  # noqa: BLE001 - e.g. emodistill not installed, only on sys.path
        return [*_system_rows(), Row("packages", "emodistill metadata", f"unreadable: {_first_line(e)}", FAIL,
                                     'pip install -e ".[dev]"', True)]
    train = extras.pop("train", [])
    if _installed_any(train):  # training installed: all of it is required, and torch must load
        required = runtime + train
        torch_rows = _torch_rows(required)
    else:  # the runtime-only install (pip install emodistill): exported ONNX models on clips and streams
        required = runtime
        torch_rows = [Row("torch", "training stack", "not installed: this install runs exported ONNX models; "
                          "training, export and checkpoints need pip install 'emodistill[train]'", INFO)]
    return [*_system_rows(), *_dependency_rows(required), *torch_rows, *_runtime_rows(required),
            *_extra_rows(extras), *_gpu_rows()]


def _installed_any(reqs: list) -> bool:
    for req in reqs:
        try:
            md.version(req.name)
            return True
        except md.PackageNotFoundError:
            continue
    return False


def render(rows: list[Row]) -> str:
    """A plain-text table: one line a row, FAIL/warn lines followed by their fix."""
    width = max(len(r.name) for r in rows) + 2
    lines, section = [], None
    for r in rows:
        if r.section != section:
            section = r.section
            lines.append(f"\n{section}")
        mark = {OK: "ok  ", FAIL: "FAIL", WARN: "warn", INFO: "    "}[r.status]
        lines.append(f"  {mark}  {r.name:<{width}}{r.value}")
        if r.fix and r.status in (FAIL, WARN):
            lines.append(f"        {'':<{width}}fix: {r.fix}")
    failed = [r for r in rows if r.status == FAIL and r.required]
    lines.append("\n" + (f"{len(failed)} required piece(s) FAIL: " + ", ".join(r.name for r in failed)
                         if failed else "all required pieces work"))
    return "\n".join(lines).lstrip("\n")


def run(args: argparse.Namespace) -> int:
    rows = collect()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        print(render(rows))
    failed = any(r.status == FAIL and r.required for r in rows)
    return 1 if (args.check and failed) else 0


def register(sub) -> None:
    from ..core.cli_args import add_json

    p = sub.add_parser("env", help="versions, native libraries, runtimes, extras and GPUs: a table for bug reports",
                       description="Show what this install runs on (versions, native libraries, runtimes, extras, "
                                   "GPUs) as a table to paste into a bug report, and check the stack is healthy.")
    p.add_argument("--check", action="store_true", help="exit 1 when a required piece fails (used by CI)")
    add_json(p, help="print the rows as JSON instead of the table")
    p.set_defaults(func=run)


__all__ = ["Row", "collect", "render", "register"]
