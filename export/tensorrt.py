"""TensorRT engine through torch-tensorrt 2.11 (`--trt-backend torch-tensorrt`; needs the NVIDIA GPU that runs it).

Which torch-tensorrt: on a GeForce RTX / RTX PRO machine, `torch-tensorrt-rtx` (the `emodistill[tensorrt]` extra,
built on TensorRT for RTX; same `torch_tensorrt` module); on data-center GPUs (A100, H100/H200: SM 8.0/9.0),
standard `torch-tensorrt==2.11.*` with full TensorRT (`pip install torch-tensorrt==2.11.*`). The default backend,
which needs no GPU at all, is TensorRT for RTX from the ONNX artifact (export/trt_rtx.py).

Steps (the torch-tensorrt 2.11 dynamo API):
1. the export wrapper (video, audio) -> logits on CUDA; fp16 = a half copy of the model (norms/front end kept
   fp32) with casts inside, because with `use_explicit_typing=True` TensorRT follows the graph's dtypes
   (`enabled_precisions` is deprecated and asserts with explicit typing in 2.11); int8 = NVIDIA Model Optimizer
   fake-quant (`mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop)` over calibration clips) on the half
   model, exported under `export_torch_mode()`;
2. `torch.export.export` with a dynamic batch axis, then `torch_tensorrt.compile(ir="dynamo",
   use_explicit_typing=True, attn_bias_is_causal=False, min_block_size=1, require_full_compilation=True)`: proves
   every op converts (a partial graph raises) and gives a runnable module for parity and timing;
3. `torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(...)` with the same settings
   (optionally `hardware_compatible=True`, Ampere+) -> the `.engine` file;
4. the engine is deserialized with `tensorrt.Runtime` to read its device memory (`device_memory_size_v2`) and
   weight size for the VRAM verdict.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import torch

from emodistill.core.errors import UnavailableError

from .wrappers import Dims, ExportWrapper, half_model, random_inputs

logger = logging.getLogger(__name__)

INSTALL_HINT = ("pip install 'emodistill[tensorrt]' on an RTX GPU (torch-tensorrt-rtx 2.11), or "
                "pip install 'torch-tensorrt==2.11.*' on a data-center GPU; INT8 also needs nvidia-modelopt")


class TensorRTUnavailable(UnavailableError, RuntimeError):
    """torch-tensorrt, TensorRT, Model Optimizer or a CUDA GPU is missing."""


def availability(precision: str = "fp16") -> tuple[bool, str]:
    """(usable, reason) for building a TensorRT engine at `precision` on this machine."""
    missing = []
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as e:  # ImportError, or a broken install that fails on import
        missing.append(f"torch-tensorrt is not installed ({type(e).__name__}: {e}); {INSTALL_HINT}")
    if precision == "int8":
        try:
            import modelopt.torch.quantization  # noqa: F401
        except Exception:
            missing.append("NVIDIA Model Optimizer is not installed (pip install nvidia-modelopt) - needed for INT8")
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is visible (TensorRT builds engines on the GPU they run on)")
    return (not missing), "; ".join(missing)


def trtexec_command(onnx_path: str | Path, dims: Dims, precision: str, opt_batch: int = 1, max_batch: int = 16,
                    engine_path: str | Path | None = None) -> str:
    """The equivalent `trtexec` line for an ONNX artifact (build + benchmark on the target GPU)."""
    def shape(b: int) -> str:
        s = dims.shapes(b)
        return ",".join(f"{k}:{'x'.join(map(str, v))}" for k, v in s.items())

    engine = engine_path or Path(onnx_path).with_suffix(".engine")
    flags = {"fp32": "", "fp16": " --fp16", "int8": " --int8 --fp16"}[precision]
    return (f"trtexec --onnx={onnx_path} --saveEngine={engine} --minShapes={shape(1)} --optShapes={shape(opt_batch)} "
            f"--maxShapes={shape(max(max_batch, opt_batch))}{flags}")


def _settings(hardware_compatible: bool) -> dict:
    return {"use_explicit_typing": True, "attn_bias_is_causal": False, "min_block_size": 1,
            "require_full_compilation": True, "hardware_compatible": hardware_compatible}


def _quantize_int8(wrapper: torch.nn.Module, calib: Iterable[dict], device: torch.device) -> torch.nn.Module:
    import modelopt.torch.quantization as mtq

    batches = list(calib)
    if not batches:
        raise ValueError("TensorRT INT8 needs calibration clips (--data); none were given")

    def forward_loop(m):
        with torch.no_grad():
            for b in batches:
                m(b["video"].to(device), b["audio"].to(device))

    return mtq.quantize(wrapper, mtq.INT8_DEFAULT_CFG, forward_loop)


def _export(wrapper: torch.nn.Module, example: tuple, int8: bool):
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = {"video": {0: batch}, "audio": {0: batch}}
    if not int8:
        return torch.export.export(wrapper, example, dynamic_shapes=shapes)
    from modelopt.torch.quantization.utils import export_torch_mode

    with torch.no_grad(), export_torch_mode():
        return torch.export.export(wrapper, example, dynamic_shapes=shapes)


def engine_memory(engine_bytes: bytes) -> dict:
    """Device memory an execution context needs and the engine's weight size (bytes), via `tensorrt.Runtime`."""
    try:  # torch-tensorrt-rtx runs on TensorRT for RTX, standard torch-tensorrt on TensorRT
        import tensorrt_rtx as trt
    except ImportError:
        import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise RuntimeError("TensorRT could not deserialize the engine it just built")
    device_mem = getattr(engine, "device_memory_size_v2", None) or engine.device_memory_size
    weights = None
    if hasattr(trt, "EngineStat") and hasattr(engine, "get_engine_stat"):
        weights = engine.get_engine_stat(trt.EngineStat.TOTAL_WEIGHTS_SIZE)
    streamable = getattr(engine, "streamable_weights_size", None)
    if not weights:
        weights = streamable or len(engine_bytes)  # the plan file holds the weights: an upper bound
    return {"device_memory_bytes": int(device_mem), "weights_bytes": int(weights),
            "streamable_weights_bytes": None if streamable is None else int(streamable),
            "num_layers": engine.num_layers, "engine_file_bytes": len(engine_bytes)}


def build_engine(model: torch.nn.Module, dims: Dims, precision: str, out_path: str | Path, opt_batch: int = 1,
                 max_batch: int = 16, calib: Iterable[dict] = (), hardware_compatible: bool = False) -> tuple[dict, object]:
    """Build and write a serialized TensorRT engine; returns (facts for the sidecar, runnable compiled module).

    The runnable module takes (video, audio) float32 CUDA tensors and returns logits; use it for parity and the
    measured verdict.
    """
    ok, reason = availability(precision)
    if not ok:
        raise TensorRTUnavailable(reason)
    import torch_tensorrt

    device = torch.device("cuda")
    base = model.to(device).eval()
    if precision == "fp32":
        wrapper = ExportWrapper(base).eval()
    else:
        wrapper = ExportWrapper(half_model(base)[0].to(device), torch.float16).eval()
    if precision == "int8":
        wrapper = _quantize_int8(wrapper, calib, device)
    example = tuple(x.to(device) for x in random_inputs(dims, max(opt_batch, 2)))
    exported = _export(wrapper, example, precision == "int8")
    shapes = {k: v[1:] for k, v in dims.shapes(1).items()}
    inputs = [torch_tensorrt.Input(min_shape=(1, *shapes[k]), opt_shape=(opt_batch, *shapes[k]),
                                   max_shape=(max(max_batch, opt_batch), *shapes[k]), dtype=torch.float32, name=k)
              for k in ("video", "audio")]
    settings = _settings(hardware_compatible)
    # 1) full-conversion check: require_full_compilation makes any op left to PyTorch an error.
    compiled = torch_tensorrt.compile(exported, ir="dynamo", arg_inputs=inputs, **settings)
    # 2) the standalone engine (no graph partitioning: one engine for the whole program).
    engine_bytes = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        exported, arg_inputs=inputs, **settings)
    out_path = Path(out_path)
    out_path.write_bytes(engine_bytes)
    mem = engine_memory(engine_bytes)
    facts = {"torch_tensorrt": torch_tensorrt.__version__, "settings": settings,
             "profile_shapes": {"min": dims.shapes(1), "opt": dims.shapes(opt_batch),
                                "max": dims.shapes(max(max_batch, opt_batch))},
             "int8": "modelopt mtq.INT8_DEFAULT_CFG (explicit Q/DQ)" if precision == "int8" else None,
             "engine": mem}
    logger.info("TensorRT engine %s: %.1f MB device memory, %.1f MB weights", out_path,
                mem["device_memory_bytes"] / 2**20, mem["weights_bytes"] / 2**20)
    return facts, compiled


__all__ = ["TensorRTUnavailable", "availability", "trtexec_command", "build_engine", "engine_memory", "INSTALL_HINT"]
