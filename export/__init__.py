"""Export and edge budgets: ONNX (fp32/fp16/int8), TensorRT engines, RTX 3050 latency/VRAM verdicts, regression figures.

    from emodistill.export import load_budget, estimated_verdict, export_onnx, quantize_int8
    emodistill export --model CKPT --format onnx --precision int8 --budget rtx3050-laptop-4gb --out DIR
    emodistill export --model CKPT --format tensorrt --precision int8 --budget rtx3050-laptop-4gb --out DIR

Modules: wrappers (the format-neutral export wrapper and fp16 copy), onnx (export, parity, ORT latency), quantize
(INT8), trt_rtx (TensorRT for RTX engines built ahead of time from ONNX, no GPU needed), tensorrt (torch-tensorrt
engines, on the GPU), profiles (hardware profiles and budgets), estimate (roofline), calibrate (the estimator vs
published TensorRT latencies), budget (verdicts: measured / compiled / estimated), perf (regression figures),
gpu_check (prepared GPU measurements), run (the export command), cli (subcommand registration: export, and the
ONNX latency of `student info`). Names are imported lazily (onnx/onnxruntime load only
when used).
"""

from __future__ import annotations

from emodistill.core.utils import lazy_exports

_EXPORTS = {
    "profiles": ["HardwareProfile", "Budget", "load_profile", "load_budget", "list_profiles", "list_budgets"],
    "estimate": ["count_costs", "estimate", "CostTrace", "Estimate"],
    "budget": ["Verdict", "estimated_verdict", "measured_verdict", "make_verdict", "with_compiled_vram"],
    "wrappers": ["Dims", "ExportWrapper", "half_model", "random_inputs"],
    "onnx": ["export_onnx", "compare_logits", "make_session", "ort_latency"],
    "quantize": ["QuantConfig", "quantize_int8", "make_reader"],
    "tensorrt": ["availability", "build_engine", "trtexec_command", "TensorRTUnavailable"],
    "trt_rtx": ["EngineBuildError", "EngineRuntimeError", "EngineUnavailable", "EngineMismatch", "EngineRunner", "load_engine", "sm_target"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
