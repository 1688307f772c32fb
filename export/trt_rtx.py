"""TensorRT engines through TensorRT for RTX (`tensorrt_rtx`): built ahead of time, on any machine, from ONNX.

TensorRT for RTX compiles an engine for a chosen compute capability without a GPU (`num_compute_capabilities = 1`,
`set_compute_capability(ComputeCapability.SM86, 0)`); running it needs an NVIDIA GPU of that capability. Targets of
tensorrt-rtx 1.7: SM75, SM80, SM86, SM89, SM120, SM121. There is no SM90 (H100/H200): data-center GPUs use standard
TensorRT through torch-tensorrt (export/tensorrt.py).

Precision follows the ONNX graph's types (the network is strongly typed; there are no FP16/INT8 builder flags):
fp32 = the fp32 ONNX, fp16 = the fp16 ONNX with its fp32 islands (norms, log-mel front end), int8 = a QDQ ONNX with
symmetric int8 activations and float biases (`QuantizeBias: False`: TensorRT-RTX refuses int32 bias DequantizeLinear).

Inputs: an ONNX input that is also an initializer (the optional `modality_mask`, default "both present") is a
constant to TensorRT's parser, so engines take `video` and `audio` only and run the unmasked model.

Memory: the builder logs its own accounting ("Total Weights Memory", "Total Activation Memory", "Max Scratch
Memory", "Total Device/Host Persistent Memory"); the Python API exposes these only on a deserialized engine (which
needs a GPU), so a capturing `ILogger` reads them from the build. Activation memory is for the optimization
profile's largest shapes (max batch).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path

from emodistill.core.errors import InputError, RuntimeFailure, UnavailableError

logger = logging.getLogger(__name__)

# compute capability "major.minor" -> tensorrt_rtx.ComputeCapability member
SM_TARGETS = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}
MEMORY_LINES = {"Total Weights Memory": "weights_bytes", "Total Activation Memory": "activation_bytes",
                "Max Scratch Memory": "scratch_bytes", "Total Device Persistent Memory": "device_persistent_bytes",
                "Total Host Persistent Memory": "host_persistent_bytes"}
_MEM_RX = re.compile(r"(" + "|".join(MEMORY_LINES) + r"):\s*([\d.]+)\s*(bytes|KiB|MiB|GiB)")
_SRC_RX = re.compile(r"\s*In \w+ at /\S+\)?|\S+::\S+: Error Code \d+: ")
# logged by the builder on a machine without a CUDA driver: expected for ahead-of-time builds
_NO_DRIVER = ("CUDA driver version is insufficient", "cudaError 35")
_UNIT = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


class EngineBuildError(RuntimeError):
    """The ONNX graph does not parse or the engine does not build (the message names the node)."""


class EngineRuntimeError(RuntimeFailure, RuntimeError):
    """An engine failed while it ran (exit code 1)."""


class EngineUnavailable(UnavailableError, EngineRuntimeError):
    """An engine cannot run here: no NVIDIA GPU, one of another compute capability, or no TensorRT for RTX
    (exit code 5: use the ONNX artifact)."""


class EngineMismatch(InputError, EngineRuntimeError):
    """An engine file that is not the one its sidecar describes (exit code 2)."""


def trt_module():
    """`tensorrt_rtx`, or a plain error saying how to get it."""
    try:
        import tensorrt_rtx
    except ImportError as e:
        raise EngineBuildError(f"TensorRT for RTX is not installed ({e}); pip install tensorrt-rtx (wheels for "
                               "x86-64 Linux and Windows)") from None
    return tensorrt_rtx


def sm_target(compute_capability: str | None, profile: str) -> str:
    """'8.6' -> 'SM86'; errors name the profile when it has no (or an unsupported) compute capability."""
    if not compute_capability:
        raise ValueError(f"hardware profile {profile!r} has no gpu.compute_capability; TensorRT engines are built for "
                         "one: add e.g. `compute_capability: \"8.6\"` (every RTX 3050) under `gpu:` in its YAML")
    cc = str(compute_capability)
    if cc not in SM_TARGETS:
        raise ValueError(f"hardware profile {profile!r}: compute capability {cc} is not a TensorRT for RTX target "
                         f"({', '.join(SM_TARGETS)}); for data-center GPUs (SM 9.0: H100/H200) build with "
                         "--trt-backend torch-tensorrt on that GPU")
    return SM_TARGETS[cc]


def parse_memory(lines: list[str]) -> dict[str, int]:
    """TensorRT's memory accounting from build log lines (last value of each kind wins)."""
    out: dict[str, int] = {}
    for line in lines:
        for m in _MEM_RX.finditer(line):
            out[MEMORY_LINES[m.group(1)]] = int(float(m.group(2)) * _UNIT[m.group(3)])
    return out


def _logger(trt):
    class CaptureLogger(trt.ILogger):
        """Keeps every builder message; forwards warnings and errors to Python logging."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []
            self.errors: list[str] = []

        def log(self, severity, msg):
            self.lines.append(msg)
            if any(k in msg for k in _NO_DRIVER):
                logger.debug("TensorRT (no CUDA driver here, expected when building ahead of time): %s", msg)
            elif severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(msg)
                logger.debug("TensorRT error: %s", msg)  # raised with the failing node / build step
            elif severity == trt.ILogger.Severity.WARNING:
                logger.warning("TensorRT: %s", msg)

    return CaptureLogger()


def _parse_errors(parser, onnx_path: Path, log) -> str:
    msgs = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        name, op = e.node_name() or "?", e.node_operator() or "?"
        # the parser's own text is generic ("Invalid Node - <name>"); the reason is in the logged API error
        why = [_SRC_RX.sub("", m).strip() for m in log.errors if name in m and "Invalid Node" not in m]
        desc = why[0] if why else e.desc().splitlines()[0]
        msgs.append(f"node {name!r} ({op}, node #{e.node()}): {desc}")
    return f"{onnx_path}: TensorRT for RTX cannot parse the ONNX graph: " + "; ".join(msgs or ["no parser error given"])


def build_engine(onnx_path: str | Path, engine_path: str | Path, compute_capability: str, profile: str = "?",
                 opt_batch: int = 1, max_batch: int = 16) -> dict:
    """Parse `onnx_path`, build a serialized engine for `compute_capability` and write it to `engine_path`.

    A dynamic batch axis (dim 0 = -1) gets one optimization profile min 1 / opt `opt_batch` / max `max_batch`.
    Returns the sidecar facts: TensorRT-RTX version, target, profile shapes, engine size and sha256, and
    TensorRT's memory accounting (bytes).
    """
    trt = trt_module()
    target = sm_target(compute_capability, profile)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    log = _logger(trt)
    builder = trt.Builder(log)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        raise EngineBuildError(_parse_errors(parser, onnx_path, log))
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(getattr(trt.ComputeCapability, target), 0)
    max_batch = max(max_batch, opt_batch, 1)
    shapes: dict[str, dict] = {}
    prof = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = list(t.shape)
        if any(d < 0 for d in dims[1:]):
            raise EngineBuildError(f"{onnx_path}: input {t.name!r} has dynamic axes other than batch: {dims}")
        if dims[0] < 0:
            lo, mid, hi = ([b, *dims[1:]] for b in (1, opt_batch, max_batch))
            prof.set_shape(t.name, lo, mid, hi)
            shapes[t.name] = {"min": lo, "opt": mid, "max": hi}
        else:
            shapes[t.name] = {"min": dims, "opt": dims, "max": dims}
    if any(s["min"] != s["max"] for s in shapes.values()):
        config.add_optimization_profile(prof)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT for RTX could not build an engine for {target}: "
                               + ("; ".join(log.errors[-3:]) or "no error message"))
    data = bytes(plan)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(data)
    memory = parse_memory(log.lines)
    missing = sorted(set(MEMORY_LINES.values()) - set(memory))
    if missing:
        logger.warning("TensorRT build log gave no %s (memory accounting incomplete)", ", ".join(missing))
    facts = {"backend": "tensorrt_rtx", "tensorrt_rtx": trt.__version__, "compute_capability": str(compute_capability),
             "target": target, "onnx": onnx_path.name, "inputs": list(shapes), "profile_shapes": shapes, "build_seconds": round(seconds, 2),
             "engine_bytes": len(data), "engine_sha256": hashlib.sha256(data).hexdigest(), "memory": memory,
             "memory_source": "TensorRT builder log (ILogger): Total Weights / Activation / Device+Host Persistent "
                              "Memory, Max Scratch Memory; activations at the profile's max batch"}
    logger.info("TensorRT-RTX %s engine %s: %.1f MB file, %.2f MB weights, %.2f MB activations (%.1fs)", target,
                engine_path, len(data) / 2**20, memory.get("weights_bytes", 0) / 2**20,
                memory.get("activation_bytes", 0) / 2**20, seconds)
    return facts


def device_memory_bytes(memory: dict) -> int:
    """Device memory an execution context of the engine needs: weights + activations (scratch included) +
    device-persistent memory."""
    return sum(int(memory.get(k, 0)) for k in ("weights_bytes", "activation_bytes", "device_persistent_bytes"))


# ----------------------------------------------------------------------------- running (needs a GPU)

def cuda_devices() -> list[tuple[str, str]]:
    """[(name, compute capability "8.6")] of the visible NVIDIA GPUs, read from the CUDA driver (libcuda) with
    ctypes: no torch, no CUDA toolkit. [] without a driver or a GPU (CUDA_VISIBLE_DEVICES is honoured by it)."""
    import ctypes
    import os

    try:
        lib = ctypes.CDLL("nvcuda.dll" if os.name == "nt" else "libcuda.so.1")
    except OSError:
        return []
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    found = []
    for i in range(count.value):
        dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ..._MINOR
        lib.cuDeviceGetName(name, 256, dev)
        found.append((name.value.decode(errors="replace"), f"{major.value}.{minor.value}"))
    return found


def runnable_here(compute_capability: str | None) -> tuple[bool, str]:
    """(True, "") when an NVIDIA GPU of `compute_capability` is visible (the first one, as CUDA picks it), else
    (False, why not). Asks the driver, not torch: `predict` on a machine without a GPU stays torch-free."""
    devices = cuda_devices()
    if not devices:
        return False, "running a TensorRT engine needs an NVIDIA GPU; none is visible here"
    name, have = devices[0]
    if compute_capability and have != str(compute_capability):
        return False, (f"the engine targets compute capability {compute_capability}, but this GPU ({name}) is "
                       f"{have}")
    return True, ""


class EngineRunner:
    """Runs a serialized engine on the current CUDA device: `runner(video, audio) -> logits` (torch tensors).

    Inputs may be CPU or CUDA float32 tensors; outputs are float32 CUDA tensors. Uses torch's current stream.
    """

    def __init__(self, engine_bytes: bytes, compute_capability: str | None = None):
        ok, why = runnable_here(compute_capability)
        if not ok:
            raise EngineUnavailable(why)
        import torch

        trt = trt_module()
        self._log = _logger(trt)
        self.runtime = trt.Runtime(self._log)
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise EngineRuntimeError("TensorRT for RTX could not deserialize the engine: "
                                     + ("; ".join(self._log.errors[-3:]) or "no error message"))
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self._torch = torch

    def __call__(self, *inputs):
        torch = self._torch
        dev = torch.device("cuda")
        feeds = [x.to(dev, torch.float32).contiguous() for x in inputs]
        for name, x in zip(self.inputs, feeds):
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, x.data_ptr())
        outs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device=dev)
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise EngineRuntimeError("TensorRT engine execution failed")
        return outs[0]


def load_engine(path: str | Path, sidecar: dict) -> EngineRunner:
    """An `EngineRunner` for an engine file, checked against its export sidecar (sha256, target)."""
    path = Path(path)
    facts = (sidecar.get("export") or {}).get("engine") or {}
    cc = facts.get("compute_capability")
    ok, why = runnable_here(cc)
    if not ok:
        raise EngineUnavailable(f"{path}: {why} (built for SM {cc or '?'}); use the ONNX artifact on CPU instead")
    data = path.read_bytes()
    want = sidecar.get("sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        raise EngineMismatch(f"{path}: sha256 differs from its sidecar (the sidecar belongs to another export)")
    return EngineRunner(data, cc)


__all__ = ["SM_TARGETS", "EngineBuildError", "EngineRuntimeError", "EngineUnavailable", "EngineMismatch", "EngineRunner", "build_engine", "sm_target",
           "parse_memory", "device_memory_bytes", "runnable_here", "load_engine", "trt_module"]
