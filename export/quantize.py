"""INT8 ONNX with `onnxruntime.quantization`: static QDQ (calibrated on real clips) or dynamic.

Static: `quant_pre_process` (shape inference + basic graph cleanup), then `quantize_static` in QDQ format
with per-channel weights and a `CalibrationDataReader` over training clips. Only the heavy ops
(`OP_TYPES`: Conv, MatMul, Gemm) are quantized, so norms, softmax and the rest stay float; on top of that,
every node that the exporter recorded as coming from a module whose path matches `exclude` (default: the
log-mel/STFT front end, whose DFT conv feeds a log and suffers from 8-bit error) is kept float too. Targets:
  cpu       uint8 asymmetric activations, int8 symmetric weights (ONNX Runtime's fast path on x86)
  tensorrt  int8 symmetric activations and weights (TensorRT accepts only zero-point-0 Q/DQ), float biases
            (`QuantizeBias: False`: TensorRT rejects int32 bias DequantizeLinear), no ORT-specific graph
            optimizations so the graph stays in the default ONNX domain
Dynamic: `quantize_dynamic` of MatMul/Gemm weights (activations quantized at run time; no calibration).
"""

from __future__ import annotations

import ast
import logging
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

logger = logging.getLogger(__name__)

OP_TYPES = ("Conv", "MatMul", "Gemm")
EXCLUDE = r"mel|spectrogram|stft|fbank|front_?end"


@dataclass
class QuantConfig:
    mode: Literal["static", "dynamic"] = "static"
    target: Literal["cpu", "tensorrt"] = "cpu"
    per_channel: bool = True
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calib_samples: int = 64
    op_types: tuple[str, ...] = OP_TYPES
    exclude: str = EXCLUDE
    extra_exclude_nodes: list[str] = field(default_factory=list)


class ClipCalibrationReader:
    """`CalibrationDataReader` over batches of clips (dicts with video [B,T,3,H,W] and audio [B,N])."""

    def __init__(self, batches: Iterable[dict], max_samples: int = 64):
        self.feeds: list[dict[str, np.ndarray]] = []
        n = 0
        for b in batches:
            if n >= max_samples:
                break
            take = min(len(b["video"]), max_samples - n)
            self.feeds.append({"video": np.asarray(b["video"][:take], np.float32),
                               "audio": np.asarray(b["audio"][:take], np.float32)})
            n += take
        if not self.feeds:
            raise ValueError("calibration needs at least one clip; none were given")
        self.num_samples = n
        self._it = iter(self.feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.feeds)


def _reader_class():
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(ClipCalibrationReader, CalibrationDataReader):
        pass

    return Reader


def make_reader(batches: Iterable[dict], max_samples: int = 64) -> ClipCalibrationReader:
    return _reader_class()(batches, max_samples)


def _scope(node) -> str:
    """Dotted module path of the node ("model.audio.logmel"); the exporter's list ends with the op's own name."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                parts = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                return p.value
            return ".".join(str(x) for x in parts[:-1] if x)
    return ""


def nodes_to_exclude(original, prepared, op_types: Iterable[str], pattern: str) -> list[str]:
    """Names of quantizable nodes in `prepared` coming from modules whose path matches `pattern`.

    Module paths come from the exporter's `name_scopes` metadata on `original` (quant_pre_process drops
    metadata but keeps node names) and from the names of the weights a node reads (initializers are named
    after module paths, e.g. `model.audio.frontend.proj.weight`).
    """
    if not pattern:
        return []
    rx = re.compile(pattern, re.I)
    by_scope = {n.name for n in original.graph.node if rx.search(_scope(n))}
    inits = {i.name for i in prepared.graph.initializer}
    out = []
    for n in prepared.graph.node:
        if n.op_type not in op_types:
            continue
        weights = [i for i in n.input if i in inits]
        if n.name in by_scope or any(rx.search(w) for w in weights):
            out.append(n.name)
    return out


def quantize_int8(fp32_path: str | Path, out_path: str | Path, cfg: QuantConfig,
                  reader: ClipCalibrationReader | None = None) -> dict:
    """Quantize an fp32 ONNX file to INT8; returns what was done (for the sidecar)."""
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quant_pre_process,
                                          quantize_dynamic, quantize_static)

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    original = onnx.load(str(fp32_path), load_external_data=False)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        # TensorRT-bound graphs skip ORT's optimizer: it may emit com.microsoft fused ops TensorRT cannot parse.
        skip_opt = cfg.target == "tensorrt"
        shapes = "symbolic"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_optimization=skip_opt, skip_symbolic_shape=False)
        except Exception as e:  # ORT's symbolic shape inference misses some ops (e.g. ReduceSum of unknown rank)
            logger.warning("symbolic shape inference failed (%s: %s); using ONNX shape inference only",
                           type(e).__name__, e)
            shapes = "onnx"
            quant_pre_process(str(fp32_path), str(pre), skip_optimization=skip_opt, skip_symbolic_shape=True)
        prepared = onnx.load(str(pre))
        exclude = nodes_to_exclude(original, prepared, cfg.op_types, cfg.exclude) + list(cfg.extra_exclude_nodes)
        info = {"method": f"onnxruntime.quantization.quantize_{cfg.mode}", "config": asdict(cfg),
                "shape_inference": shapes, "excluded_nodes": exclude}
        if cfg.mode == "dynamic":
            quantize_dynamic(str(pre), str(out_path), weight_type=QuantType.QInt8, per_channel=cfg.per_channel,
                             op_types_to_quantize=[o for o in cfg.op_types if o != "Conv"], nodes_to_exclude=exclude)
        else:
            if reader is None:
                raise ValueError("static INT8 quantization needs calibration clips (a reader); none given")
            symmetric = cfg.target == "tensorrt"
            method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                      "percentile": CalibrationMethod.Percentile}[cfg.calibrate_method]
            reader.rewind()
            quantize_static(
                str(pre), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=list(cfg.op_types), nodes_to_exclude=exclude, calibrate_method=method,
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                               # TensorRT (for RTX too) refuses int32 bias DequantizeLinear: keep biases float
                               **({"QuantizeBias": False} if symmetric else {}),
                               # Q/DQ on the inputs of quantized ops only (TensorRT's placement): outputs such
                               # as the logits stay float, and float consumers get no extra rounding
                               "OpTypesToExcludeOutputQuantization": list(cfg.op_types)})
            info["calibration_samples"] = reader.num_samples
    quantized = onnx.load(str(out_path), load_external_data=False)
    counts: dict[str, int] = {}
    for n in quantized.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    info["op_counts"] = dict(sorted(counts.items()))
    foreign = sorted({n.domain for n in quantized.graph.node if n.domain not in ("", "ai.onnx")})
    if cfg.target == "tensorrt" and foreign:
        logger.warning("INT8 graph for TensorRT uses non-standard op domains %s", foreign)
    info["non_standard_domains"] = foreign
    logger.info("INT8 (%s, %s): %d QuantizeLinear, %d excluded nodes", cfg.mode, cfg.target,
                counts.get("QuantizeLinear", 0) + counts.get("DynamicQuantizeLinear", 0), len(exclude))
    return info


__all__ = ["QuantConfig", "ClipCalibrationReader", "make_reader", "nodes_to_exclude", "quantize_int8", "OP_TYPES",
           "EXCLUDE"]
