"""Hardware profiles and budgets: what the RTX 3050 family can do, and what a deployment may use.

A *profile* (configs/hardware/<name>.yaml) states a GPU's published figures (SMs, boost clock, memory
bandwidth, per-SM tensor throughput) with their sources, plus the assumptions of the roofline estimator
(efficiency factors, per-kernel overhead, CUDA context size); peak FLOP rates are derived from the per-SM
rates so a typo cannot silently disagree with the SM count. A *budget* (configs/hardware/budgets/*.yaml,
a profile's `default_budget`, or `--budget-set` overrides) names a profile, batch size, precision and the
limits: p50/p95 latency in ms and VRAM in MB.

Users add their own profiles/budgets as YAML anywhere: pass the path, or put the folder in
`$EMODISTILL_HARDWARE_DIR` (searched before configs/hardware/).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator

from emodistill.core.config import BaseConfig, ConfigError, apply_overrides, format_validation_error
from emodistill.core.utils import CONFIG_DIR

HARDWARE_DIR = CONFIG_DIR / "hardware"
BUDGET_DIR = HARDWARE_DIR / "budgets"
Precision = Literal["fp32", "fp16", "int8"]


class Source(BaseConfig):
    title: str
    url: str
    what: str = Field("", description="which figures this source gives")


class GpuSpec(BaseConfig):
    """Published figures of one GPU board (boost clock at the board's maximum power)."""

    chip: str
    compute_capability: str | None = Field(
        None, pattern=r"^\d+\.\d+$", description="CUDA compute capability, e.g. 8.6 (every RTX 3050); TensorRT "
        "engines are built for it")
    sm_count: int = Field(..., ge=1)
    cuda_cores: int = Field(..., ge=1)
    tensor_cores: int = Field(..., ge=0)
    base_clock_mhz: float = Field(..., gt=0)
    boost_clock_mhz: float = Field(..., gt=0)
    memory_gb: float = Field(..., gt=0)
    memory_type: str = "GDDR6"
    memory_bus_bits: int = Field(..., ge=8)
    memory_data_rate_gbps: float = Field(..., gt=0, description="per pin, effective")
    l2_cache_mb: float = 2.0
    power_w: str = Field("", description="TDP (desktop) or TGP range (laptop)")
    pcie: str = "4.0 x8"
    pcie_gbs: float = Field(15.75, gt=0, description="host link, GB/s per direction (4.0 x8 = 15.75)")
    # Per-SM, per-clock dense throughput of the architecture (GA10x: GA102 whitepaper, Tables 2-3).
    fp32_flops_per_clk_per_sm: int = 256
    fp16_tensor_flops_per_clk_per_sm: int = Field(1024, description="FP16 in, FP16 accumulate, dense")
    fp16_tensor_fp32acc_flops_per_clk_per_sm: int = Field(512, description="GeForce: half rate with FP32 accumulate")
    int8_tensor_ops_per_clk_per_sm: int = 2048

    @field_validator("compute_capability", mode="before")
    @classmethod
    def _cc_text(cls, v):  # YAML reads 8.6 as a float
        return f"{v:.1f}" if isinstance(v, float) else v

    @property
    def memory_bandwidth_gbs(self) -> float:
        return self.memory_bus_bits / 8 * self.memory_data_rate_gbps

    def _peak(self, per_sm: int) -> float:
        return self.sm_count * per_sm * self.boost_clock_mhz * 1e6

    @property
    def peak_fp32_flops(self) -> float:
        return self._peak(self.fp32_flops_per_clk_per_sm)

    @property
    def peak_fp16_tensor_flops(self) -> float:
        return self._peak(self.fp16_tensor_flops_per_clk_per_sm)

    @property
    def peak_fp16_tensor_fp32acc_flops(self) -> float:
        return self._peak(self.fp16_tensor_fp32acc_flops_per_clk_per_sm)

    @property
    def peak_int8_tensor_ops(self) -> float:
        return self._peak(self.int8_tensor_ops_per_clk_per_sm)


class EstimatorSpec(BaseConfig):
    """Assumptions of the roofline estimate (see export/estimate.py). Not measurements: tune them against
    a measured run (`emodistill export ... --verdict measured` on the real board) and keep the sources."""

    sustained_clock_fraction: float = Field(1.0, gt=0, le=1.0, description="clock actually held under load")
    eff_tensor: float = Field(0.6, gt=0, le=1.0, description="fraction of tensor-core peak reached by GEMM/conv")
    eff_cuda: float = Field(0.5, gt=0, le=1.0, description="fraction of CUDA-core peak for other math")
    eff_mem: float = Field(0.8, gt=0, le=1.0, description="fraction of DRAM bandwidth reached")
    fp16_accumulate: Literal["fp16", "fp32"] = Field(
        "fp32", description="accumulator of FP16 GEMMs; GeForce runs FP32 accumulate at half rate")
    kernel_overhead_us: float = Field(14.0, ge=0, description="launch + tail per kernel")
    gemm_tile: int = Field(64, ge=0, description="square CTA tile (M x N) of tensor-core GEMM/conv kernels for tile "
                           "and wave quantization over the SMs; 0 = off")
    inference_overhead_us: float = Field(30.0, ge=0, description="enqueue + stream sync per inference")
    fuse_pointwise: bool = Field(True, description="pointwise ops fused into their producer (TensorRT)")
    pcie_eff: float = Field(0.7, gt=0, le=1.0, description="fraction of PCIe bandwidth for input upload")
    jitter_p95: float = Field(1.15, ge=1.0, description="p95 = p50 * this")


class VramSpec(BaseConfig):
    """Fixed VRAM costs besides weights and activations."""

    cuda_context_mb: float = Field(300.0, ge=0, description="CUDA context + cuBLAS/cuDNN/TensorRT runtime")
    workspace_mb: float = Field(64.0, ge=0, description="TensorRT / cuBLAS workspace")
    activation_overhead: float = Field(1.1, ge=1.0, description="allocator rounding on activation memory")
    io_buffers: bool = Field(True, description="count device copies of inputs and outputs")
    # `emodistill plan` (training): PyTorch's caching allocator reserves more than its live tensors (blocks rounded
    # to 512 B and to 2 MiB / 20 MiB segments, fragmentation between differently sized activations). An assumption,
    # not a measurement: set it from torch.cuda.max_memory_reserved() / max_memory_allocated() - 1 of a real run.
    # Source of the mechanism: https://pytorch.org/docs/stable/notes/cuda.html#memory-management
    allocator_margin: float = Field(0.10, ge=0, le=1, description="training: reserved beyond the peak of live "
                                    "tensors, as a fraction of that peak (emodistill plan)")


class Limits(BaseConfig):
    batch_size: int = Field(1, ge=1)
    precision: Precision | None = Field(None, description="None: the artifact's precision")
    max_p50_ms: float | None = Field(None, gt=0)
    max_p95_ms: float | None = Field(None, gt=0)
    max_vram_mb: float | None = Field(None, gt=0)
    include_transfer: bool = Field(True, description="latency includes the host->device input upload")


class HardwareProfile(BaseConfig):
    name: str
    description: str = ""
    gpu: GpuSpec
    estimator: EstimatorSpec = EstimatorSpec()
    vram: VramSpec = VramSpec()
    default_budget: Limits = Limits()
    sources: list[Source] = Field(default_factory=list)

    def summary(self) -> dict:
        g = self.gpu
        return {"name": self.name, "compute_capability": g.compute_capability, "sm_count": g.sm_count, "boost_clock_mhz": g.boost_clock_mhz,
                "memory_gb": g.memory_gb, "memory_bandwidth_gbs": round(g.memory_bandwidth_gbs, 1),
                "peak_fp32_tflops": round(g.peak_fp32_flops / 1e12, 2),
                "peak_fp16_tensor_tflops": round(g.peak_fp16_tensor_flops / 1e12, 2),
                "peak_int8_tensor_tops": round(g.peak_int8_tensor_ops / 1e12, 2)}


class Budget(Limits):
    name: str = "custom"
    profile: str = Field(..., description="profile name (configs/hardware/<name>.yaml) or path")
    description: str = ""


def _search_dirs(kind: str) -> list[Path]:
    extra = [Path(p) for p in os.environ.get("EMODISTILL_HARDWARE_DIR", "").split(os.pathsep) if p]
    if kind == "budget":
        return [d / "budgets" for d in extra] + extra + [BUDGET_DIR]
    return extra + [HARDWARE_DIR]


def _find(name_or_path: str | Path, kind: str) -> Path | None:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    for d in _search_dirs(kind):
        for cand in (d / f"{p}.yaml", d / f"{p}.yml"):
            if cand.exists():
                return cand
    return None


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def _validate(cls, data: dict, source: str):
    from pydantic import ValidationError

    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(cls, e, source)) from None


def list_profiles() -> list[str]:
    names = set()
    for d in _search_dirs("profile"):
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def list_budgets() -> list[str]:
    names = set()
    for d in _search_dirs("budget"):
        names.update(p.stem for p in d.glob("*.yaml") if "profile" in _load_yaml(p))
    return sorted(names)


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    path = _find(name_or_path, "profile")
    if path is None:
        raise ConfigError(f"hardware profile {str(name_or_path)!r} not found; available: {', '.join(list_profiles())} "
                          f"(or give a YAML path; extra folders via $EMODISTILL_HARDWARE_DIR)")
    return _validate(HardwareProfile, _load_yaml(path), str(path))


def load_budget(name_or_path: str | Path, overrides: list[str] | None = None) -> tuple[Budget, HardwareProfile]:
    """A budget file, or a profile name (its `default_budget`), plus `key=value` overrides.

    Returns (budget, the profile it names).
    """
    path = _find(name_or_path, "budget")
    data = _load_yaml(path) if path is not None else None
    if data is not None and "profile" in data:
        source = str(path)
    else:
        profile = load_profile(name_or_path)  # raises naming both kinds when neither exists
        ref = str(name_or_path) if Path(name_or_path).suffix in (".yaml", ".yml") else profile.name
        data = {"name": f"{profile.name}-default", "profile": ref,
                **profile.default_budget.model_dump()}
        source = f"default_budget of {profile.name}"
    data = apply_overrides(dict(data), overrides)
    budget = _validate(Budget, data, source)
    prof_path = Path(budget.profile)
    if not prof_path.is_absolute() and path is not None and (path.parent / prof_path).exists():
        prof_path = path.parent / prof_path
    return budget, load_profile(prof_path if prof_path.exists() else budget.profile)


__all__ = ["HardwareProfile", "GpuSpec", "EstimatorSpec", "VramSpec", "Limits", "Budget", "Source", "Precision",
           "load_profile", "load_budget", "list_profiles", "list_budgets", "HARDWARE_DIR", "BUDGET_DIR"]
