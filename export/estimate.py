"""Roofline estimate of GPU latency and VRAM from a model's counted operators.

Counting: the export wrapper (video, audio) -> logits runs once under a `TorchDispatchMode` on the
`meta` device (nothing is computed; real CPU tensors only if an op has no meta kernel), in the dtype the
engine would run (fp32; fp16 and int8 trace the half-precision model, so explicit fp32 upcasts such as
RMSNorm statistics stay fp32). Every ATen op becomes an `OpCost`: kind, FLOPs, weight bytes, activation
bytes in and out. Ops whose inputs are all constants (weights, buffers, `arange`...) are constant-folded
(as ONNX/TensorRT do): free, and their results count as weights. Views are free.

FLOPs: GEMM/conv/attention from `torch.utils.flop_counter` (2 per MAC; attention kernels without a formula there:
`emodistill.core.flops.attention_flops`, the rule of the core's FLOP counter); FFT 2.5 N log2 N per real
transform; pointwise 1 per output element; norms 8, softmax 5 per element; reductions 1 per input element.
INT8: GEMM and (non-depthwise) conv that run in fp16 read 1-byte weights and activations and run at the INT8
tensor peak; everything else as fp16 (TensorRT `--int8 --fp16`), fp32 islands (front end, norms) stay fp32.
Eval-mode batch norm and dtype casts count as pointwise (folded/fused by ONNX and TensorRT).

Time of one kernel (the profile states every factor):
    t = max(flops / (peak * clock_fraction * eff), bytes / (bandwidth * eff_mem)) + kernel_overhead
    peak: GEMM/conv/attention -> tensor peak of the dtype (fp32: the FP32 rate, = TF32 on GA10x; fp16: FP16
    tensor with the profile's accumulator; int8: INT8 tensor) with eff_tensor; depthwise conv, FFT, norms,
    reductions, copies, pointwise -> the FP32 CUDA-core rate (GA10x runs non-tensor FP16 at the same rate)
    with eff_cuda. With `fuse_pointwise`, pointwise ops are fused into their producer: only their math counts,
    no memory traffic and no launch.
    p50 = inference_overhead + sum(t) + input upload (bytes / (PCIe * pcie_eff), when the budget includes it);
    p95 = p50 * jitter_p95.
VRAM = CUDA context + workspace + weights (folded constants at their dtype) + peak live activations in
execution order * activation_overhead + input/output buffers.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from emodistill.core.flops import attention_flops

from .profiles import HardwareProfile, Precision

logger = logging.getLogger(__name__)

aten = torch.ops.aten
GEMM = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten._scaled_mm}
CONV = {aten.convolution, aten._convolution, aten.convolution_overrideable, aten.cudnn_convolution,
        aten._slow_conv2d_forward}
NORM = {aten.native_layer_norm, aten.native_group_norm, aten._native_batch_norm_legit, aten._fused_rms_norm}
SOFTMAX = {aten._softmax, aten._safe_softmax, aten._log_softmax}
FFT = {aten._fft_r2c, aten._fft_c2r, aten._fft_c2c}
# eval-mode batch norm is an affine map TensorRT/ONNX fold into the conv before it; dtype casts fuse likewise
AFFINE = {aten._native_batch_norm_legit_no_training, aten._to_copy}
COPY = {aten.clone, aten.copy, aten.copy_, aten.cat, aten.stack, aten.constant_pad_nd,
        aten.reflection_pad1d, aten.reflection_pad2d, aten.replication_pad1d, aten.index, aten.gather,
        aten.index_select, aten.repeat, aten.slice_scatter, aten.select_scatter, aten.fill, aten._unsafe_view}


@dataclass
class OpCost:
    """One kernel-sized operator. Bytes are at the dtype the engine would use."""

    op: str
    kind: str  # gemm | conv | dwconv | attention | fft | norm | softmax | reduction | pointwise | copy | other
    flops: float
    weight_bytes: int
    in_bytes: int
    out_bytes: int
    dtype: str
    launches: int = 1  # kernels: a concatenation copies each input into its slice (one copy per input)
    gemm_shape: tuple[int, int, int] | None = None  # (M, N, groups) of the (implicit) GEMM, for tile quantization


@dataclass
class CostTrace:
    """Counted operators of one forward pass at one batch size and precision."""

    precision: str
    batch_size: int
    ops: list[OpCost]
    params: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    peak_activation_bytes: int
    device: str = "meta"

    @property
    def flops(self) -> float:
        return sum(o.flops for o in self.ops)

    @property
    def gemm_flops(self) -> float:
        return sum(o.flops for o in self.ops if o.kind in ("gemm", "conv", "attention"))

    def by_kind(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for o in self.ops:
            d = out.setdefault(o.kind, {"count": 0, "flops": 0.0, "bytes": 0})
            d["count"] += 1
            d["flops"] += o.flops
            d["bytes"] += o.weight_bytes + o.in_bytes + o.out_bytes
        return out


def _numel(x) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


def _conv_groups(func, args, kwargs) -> int:
    """A convolution's groups: positional (args[8]) in aten.convolution / _convolution, else a keyword."""
    return args[8] if func.overloadpacket in (aten.convolution, aten._convolution) and len(args) > 8 \
        else kwargs.get("groups", 1)


def _kind(func, args, kwargs) -> str:
    packet = func.overloadpacket
    name = packet.__name__
    if packet in GEMM:
        return "gemm"
    if "scaled_dot_product" in name or "flash_attention" in name or "efficient_attention" in name:
        return "attention"
    if packet in CONV:
        w = args[1]
        groups = _conv_groups(func, args, kwargs)
        return "dwconv" if groups > 1 and w.shape[1] == 1 else "conv"
    if packet in FFT:
        return "fft"
    if packet in AFFINE or (packet is aten.native_batch_norm and not args[5]):  # args[5]: training
        return "pointwise"
    if packet in NORM or packet is aten.native_batch_norm:
        return "norm"
    if packet in SOFTMAX:
        return "softmax"
    if packet in COPY:
        return "copy"
    if torch.Tag.reduction in func.tags or name in ("mean", "sum", "amax", "amin", "max", "min", "var", "std",
                                                     "prod", "argmax", "argmin", "logsumexp", "var_mean"):
        return "reduction"
    if torch.Tag.pointwise in func.tags:
        return "pointwise"
    return "other"


def _flops(kind: str, func, args, kwargs, out) -> float:
    outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    n_out = sum(t.numel() for t in outs)
    if kind in ("gemm", "conv", "dwconv") or (kind == "attention" and func.overloadpacket in flop_registry):
        fn = flop_registry.get(func.overloadpacket)
        if fn is not None:
            return float(fn(*args, **kwargs, out_val=out))
    if kind == "attention":  # q [B,H,L,E], k [B,H,S,E], v [B,H,S,Ev]: the core counter's rule
        q, k, v = args[:3]
        return float(attention_flops(q.shape, k.shape, v.shape))
    if kind == "fft":
        x = args[0]
        dims = args[1] if len(args) > 1 else [-1]
        n = math.prod(x.shape[d] for d in dims)
        return 2.5 * (x.numel() / max(n, 1)) * n * math.log2(max(n, 2))
    if kind == "norm":
        return 8.0 * _numel(args[0])
    if kind == "softmax":
        return 5.0 * _numel(args[0])
    if kind == "reduction":
        return float(_numel(args[0]))
    if kind in ("pointwise", "other"):
        return float(n_out)
    return 0.0


def _gemm_shape(kind: str, func, args, kwargs, outs) -> tuple[int, int, int] | None:
    """(M, N, groups) of the GEMM a tensor-core kernel tiles: output rows x output columns per group.
    Conv (implicit GEMM): M = batch x output pixels, N = output channels per group."""
    if kind not in ("gemm", "conv", "attention") or not outs:
        return None
    out = outs[0]
    if kind == "gemm":
        n = out.shape[-1] if out.dim() else 1
        return (out.numel() // max(n, 1), n, 1)
    if kind == "attention":  # q [..., L, E] x k [..., S, E]^T: M = all query rows, N = keys
        q, k = args[0], args[1]
        return (q.numel() // max(q.shape[-1], 1), k.shape[-2], 1)
    groups = _conv_groups(func, args, kwargs)
    cout = out.shape[1]
    return (out.numel() // max(cout, 1), cout // max(groups, 1), groups)


class _Counter(TorchDispatchMode):
    """Records an OpCost per non-constant, non-view ATen op, and tensor lifetimes for peak memory."""

    def __init__(self, constants: list[torch.Tensor], int8: bool):
        super().__init__()
        self.int8 = int8
        self.keep: list[torch.Tensor] = list(constants)  # strong refs: ids stay unique for the whole trace
        self.const: dict[int, int] = {id(t): id(t) for t in constants}  # tensor id -> base id
        self.base: dict[int, int] = {}  # activation tensor id -> base id
        self.size: dict[int, int] = {}  # base id -> bytes
        self.born: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.const_used: dict[int, int] = {}  # constant base id -> bytes as consumed
        self.ops: list[OpCost] = []

    def _bytes(self, t: torch.Tensor, quantized: bool) -> int:
        return t.numel() * (1 if quantized else t.element_size())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.keep.extend(outs)
        schema = func._schema
        aliasing = any(r.alias_info is not None for r in schema.returns)
        if all(id(t) in self.const for t in ins):  # constant folding (also factory ops)
            for o in outs:
                src = self.const.get(id(ins[0])) if (aliasing and ins) else None
                self.const[id(o)] = src if src is not None else id(o)
            return out
        idx = len(self.ops)
        for t in ins:
            b = self.base.get(id(t))
            if b is not None:
                self.last[b] = idx
        if aliasing:  # views and in-place ops allocate nothing; a view keeps its base alive
            src = next((self.base[id(t)] for t in ins if id(t) in self.base), None)
            for o in outs:
                if src is not None:
                    self.base[id(o)] = src
            if not schema.is_mutable:
                return out
        kind = _kind(func, args, kwargs)
        # int8 where the half-precision trace runs GEMM/conv in fp16; fp32 islands (front end) stay float
        quant = self.int8 and kind in ("gemm", "conv") and any(t.dtype == torch.float16 for t in ins)
        w_bytes = 0
        in_bytes = 0
        for t in ins:
            if id(t) in self.const:
                nb = self._bytes(t, quant)
                cb = self.const[id(t)]
                self.const_used[cb] = max(self.const_used.get(cb, 0), nb)
                w_bytes += nb
            else:
                in_bytes += self._bytes(t, quant)
        out_bytes = 0
        for o in outs:
            if id(o) in self.base:  # in-place result
                continue
            nb = o.numel() * o.element_size()
            out_bytes += nb
            self.base[id(o)] = id(o)
            self.size[id(o)] = nb
            self.born[id(o)] = idx
            self.last[id(o)] = idx
        dtype = "int8" if quant else str(outs[0].dtype).replace("torch.", "") if outs else "none"
        launches = len(args[0]) if func.overloadpacket is aten.cat and isinstance(args[0], (list, tuple)) else 1
        self.ops.append(OpCost(func.overloadpacket.__name__, kind, _flops(kind, func, args, kwargs, out),
                               w_bytes, in_bytes, out_bytes, dtype, max(launches, 1),
                               _gemm_shape(kind, func, args, kwargs, outs)))
        return out

    def peak_activation(self, keep_alive: set[int]) -> int:
        n = len(self.ops)
        delta = [0] * (n + 2)
        for b, nb in self.size.items():
            end = n if b in keep_alive else self.last[b]
            delta[self.born[b]] += nb
            delta[end + 1] -= nb
        peak = cur = 0
        for d in delta:
            cur += d
            peak = max(peak, cur)
        return peak


def count_costs(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], precision: Precision = "fp32",
                device: str = "meta", input_dtype: torch.dtype | None = None) -> CostTrace:
    """Count the operators of `module(*inputs)` (a tensor -> tensor wrapper, e.g. `ExportWrapper`).

    `inputs` give shapes (their values are not used on `meta`); floating inputs are fed as `input_dtype`
    (default: the precision's compute dtype; the export wrapper takes float32 and casts inside). The module
    is not modified: its parameters are swapped for meta (or cast CPU) tensors by `torch.func.functional_call`.
    """
    dtype = torch.float32 if precision == "fp32" else torch.float16
    in_dtype = input_dtype or dtype
    named = {**dict(module.named_parameters()), **dict(module.named_buffers())}

    def conv(t: torch.Tensor) -> torch.Tensor:
        dt = dtype if t.is_floating_point() else t.dtype
        return torch.empty(t.shape, dtype=dt, device="meta") if device == "meta" else t.detach().to(device, dt)

    cache: dict[int, torch.Tensor] = {}  # tied weights stay one tensor, as in the engine
    state = {k: cache[id(v)] if id(v) in cache else cache.setdefault(id(v), conv(v))
             for k, v in named.items()}
    args = tuple(torch.empty(x.shape, dtype=in_dtype if x.is_floating_point() else x.dtype, device="meta")
                 if device == "meta" else x.to(device, in_dtype if x.is_floating_point() else x.dtype)
                 for x in inputs)
    counter = _Counter(list(state.values()), int8=precision == "int8")
    was = module.training
    module.eval()
    try:
        with torch.no_grad(), counter:
            out = torch.func.functional_call(module, state, args)
    except (NotImplementedError, RuntimeError) as e:
        if device != "meta":
            raise
        # an op without a meta kernel (or data-dependent Python): count on real CPU tensors instead
        logger.info("meta-device count failed (%s); counting on CPU", e)
        return count_costs(module, inputs, precision, "cpu", input_dtype)
    finally:
        module.train(was)
    outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    keep = {counter.base[id(t)] for t in outs if id(t) in counter.base}  # graph outputs live to the end
    params = sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
    return CostTrace(
        precision=precision, batch_size=int(inputs[0].shape[0]), ops=counter.ops, params=params,
        weight_bytes=sum(counter.const_used.values()),
        input_bytes=sum(a.numel() * a.element_size() for a in args),
        output_bytes=sum(t.numel() * t.element_size() for t in outs),
        peak_activation_bytes=counter.peak_activation(keep), device=device)


@dataclass
class Estimate:
    """Roofline figures on one hardware profile (all times in ms, memory in MB)."""

    profile: str
    precision: str
    batch_size: int
    p50_ms: float
    p95_ms: float
    vram_mb: float
    compute_ms: float
    transfer_ms: float
    overhead_ms: float
    kernels: int
    weights_mb: float
    activations_mb: float
    io_mb: float
    context_mb: float
    workspace_mb: float
    flops: float
    bytes: float
    bound: dict = field(default_factory=dict)  # kind -> {"ms", "compute_bound", "memory_bound"}

    def to_dict(self) -> dict:
        return asdict(self)


def op_time_s(op: OpCost, profile: HardwareProfile) -> tuple[float, bool, bool]:
    """(seconds, counts as a kernel launch, compute-bound) of one op on `profile`."""
    g, e = profile.gpu, profile.estimator
    clk = e.sustained_clock_fraction
    cuda_peak = g.peak_fp32_flops * clk * e.eff_cuda
    if op.kind in ("gemm", "conv", "attention"):
        if op.dtype == "int8":
            peak = g.peak_int8_tensor_ops
        elif op.dtype in ("float16", "bfloat16"):
            peak = g.peak_fp16_tensor_flops if e.fp16_accumulate == "fp16" else g.peak_fp16_tensor_fp32acc_flops
        else:
            peak = g.peak_fp32_flops
        peak *= clk * e.eff_tensor * tile_utilization(op, profile)
    else:
        peak = cuda_peak
    t_compute = op.flops / peak if op.flops else 0.0
    if op.kind == "pointwise" and e.fuse_pointwise:
        return t_compute, False, True
    bw = g.memory_bandwidth_gbs * 1e9 * e.eff_mem
    t_mem = (op.weight_bytes + op.in_bytes + op.out_bytes) / bw
    return max(t_compute, t_mem) + e.kernel_overhead_us * 1e-6 * op.launches, True, t_compute >= t_mem


def tile_utilization(op: OpCost, profile: HardwareProfile) -> float:
    """Fraction of the tensor cores a tiled GEMM keeps busy: tile quantization (a partial tile costs a whole one)
    and wave quantization (tiles run in waves of one tile per SM; the last wave may leave SMs idle).
    util = M * N * groups / (waves * SMs * tile^2), waves = ceil(groups * ceil(M/tile) * ceil(N/tile) / SMs);
    1.0 when the profile's `gemm_tile` is 0 (off)."""
    tile = profile.estimator.gemm_tile
    if not tile or op.gemm_shape is None:
        return 1.0
    m, n, groups = op.gemm_shape
    sms = profile.gpu.sm_count
    tiles = groups * math.ceil(m / tile) * math.ceil(n / tile)
    waves = max(1, math.ceil(tiles / sms))
    return max(min(1.0, m * n * groups / (waves * sms * tile * tile)), 1e-6)


def estimate(trace: CostTrace, profile: HardwareProfile, include_transfer: bool = True) -> Estimate:
    """Latency (p50/p95) and VRAM of `trace` on `profile` by the roofline model in the module docstring."""
    e, v = profile.estimator, profile.vram
    total = 0.0
    kernels = 0
    bound: dict[str, dict] = {}
    for op in trace.ops:
        t, launch, cb = op_time_s(op, profile)
        total += t
        kernels += launch * op.launches
        d = bound.setdefault(op.kind, {"ms": 0.0, "ops": 0, "compute_bound": 0, "memory_bound": 0})
        d["ms"] += t * 1e3
        d["ops"] += 1
        d["compute_bound" if cb else "memory_bound"] += 1
    for d in bound.values():
        d["ms"] = round(d["ms"], 4)
    transfer = trace.input_bytes / (profile.gpu.pcie_gbs * 1e9 * e.pcie_eff) if include_transfer else 0.0
    overhead = e.inference_overhead_us * 1e-6
    p50 = total + transfer + overhead
    mb = 1 / 2**20
    io = (trace.input_bytes + trace.output_bytes) if v.io_buffers else 0
    act = trace.peak_activation_bytes * v.activation_overhead
    vram = v.cuda_context_mb + v.workspace_mb + (trace.weight_bytes + act + io) * mb
    return Estimate(
        profile=profile.name, precision=trace.precision, batch_size=trace.batch_size,
        p50_ms=p50 * 1e3, p95_ms=p50 * e.jitter_p95 * 1e3, vram_mb=vram, compute_ms=total * 1e3,
        transfer_ms=transfer * 1e3, overhead_ms=overhead * 1e3, kernels=kernels,
        weights_mb=trace.weight_bytes * mb, activations_mb=act * mb, io_mb=io * mb,
        context_mb=v.cuda_context_mb, workspace_mb=v.workspace_mb, flops=trace.flops,
        bytes=float(sum(o.weight_bytes + o.in_bytes + o.out_bytes for o in trace.ops)), bound=bound)


def op_histogram(trace: CostTrace) -> dict[str, int]:
    return dict(Counter(o.op for o in trace.ops).most_common())


__all__ = ["OpCost", "CostTrace", "Estimate", "count_costs", "estimate", "op_time_s", "op_histogram",
           "tile_utilization"]
