"""The roofline estimator against figures computed by hand from a profile's stated numbers."""

import pytest
import torch
from torch import nn

from emodistill.export.estimate import count_costs, estimate
from emodistill.export.profiles import HardwareProfile

SM, CLK, BW = 20, 1500.0, 200.0  # a made-up board, so the hand figures do not depend on the shipped YAMLs


def make_profile(**est) -> HardwareProfile:
    return HardwareProfile.model_validate({
        "name": "hand", "gpu": {"chip": "x", "sm_count": SM, "cuda_cores": 128 * SM, "tensor_cores": 4 * SM,
                                "base_clock_mhz": 1000, "boost_clock_mhz": CLK, "memory_gb": 8,
                                "memory_bus_bits": 128, "memory_data_rate_gbps": BW / 16, "pcie_gbs": 16.0},
        "estimator": {"eff_tensor": 0.5, "eff_cuda": 0.25, "eff_mem": 0.8, "kernel_overhead_us": 5.0,
                      "inference_overhead_us": 20.0, "jitter_p95": 1.25, "pcie_eff": 0.5, "gemm_tile": 0, **est},
        "vram": {"cuda_context_mb": 100, "workspace_mb": 10, "activation_overhead": 1.0}})


class MatMul(nn.Module):
    def __init__(self, k=1024, n=4096):
        super().__init__()
        self.lin = nn.Linear(k, n, bias=False)

    def forward(self, x):
        return self.lin(x)


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(64, 128, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_one_matmul_fp16_matches_hand_roofline():
    m, k, n = 256, 1024, 4096
    prof = make_profile()
    trace = count_costs(MatMul(k, n), (torch.randn(m, k),), "fp16")
    (op,) = trace.ops
    flops = 2 * m * k * n
    assert op.kind == "gemm" and op.flops == flops
    assert (op.weight_bytes, op.in_bytes, op.out_bytes) == (2 * k * n, 2 * m * k, 2 * m * n)
    peak = SM * 512 * CLK * 1e6 * 0.5  # FP16 tensor with FP32 accumulate (the default), eff_tensor 0.5
    t_compute = flops / peak
    t_mem = 2 * (k * n + m * k + m * n) / (BW * 1e9 * 0.8)
    expected = max(t_compute, t_mem) + 5e-6 + 20e-6
    est = estimate(trace, prof, include_transfer=False)
    assert est.p50_ms == pytest.approx(expected * 1e3, rel=1e-9)
    assert est.p95_ms == pytest.approx(expected * 1.25 * 1e3, rel=1e-9)
    assert est.kernels == 1 and est.bound["gemm"]["compute_bound"] == 1
    # with FP16 accumulate the tensor peak doubles
    est16 = estimate(trace, make_profile(fp16_accumulate="fp16"), include_transfer=False)
    assert est16.p50_ms == pytest.approx((max(t_compute / 2, t_mem) + 25e-6) * 1e3, rel=1e-9)
    # the input upload over PCIe: fp16 input bytes / (16 GB/s * 0.5)
    est_t = estimate(trace, prof, include_transfer=True)
    assert est_t.transfer_ms == pytest.approx(2 * m * k / 8e9 * 1e3, rel=1e-9)
    # VRAM: context + workspace + weights + peak activations (the output) + inputs and outputs
    mb = 2**20
    assert est.vram_mb == pytest.approx(100 + 10 + (2 * k * n + 2 * m * n + 2 * m * k + 2 * m * n) / mb, rel=1e-9)


def test_one_conv_fp32_and_int8_match_hand_roofline():
    b, cin, cout, hw = 8, 64, 128, 56
    prof = make_profile()
    x = torch.randn(b, cin, hw, hw)
    flops = 2 * b * cout * hw * hw * cin * 9
    w_elems, in_elems, out_elems = cout * cin * 9 + cout, b * cin * hw * hw, b * cout * hw * hw
    (op,) = count_costs(Conv(), (x,), "fp32").ops
    assert op.kind == "conv" and op.flops == flops
    t_c = flops / (SM * 256 * CLK * 1e6 * 0.5)  # FP32 rate (= TF32 tensor rate on GA10x)
    t_m = 4 * (w_elems + in_elems + out_elems) / (BW * 1e9 * 0.8)
    est = estimate(count_costs(Conv(), (x,), "fp32"), prof, include_transfer=False)
    assert est.p50_ms == pytest.approx((max(t_c, t_m) + 25e-6) * 1e3, rel=1e-9)
    # INT8: 1-byte weights and input activations, output stays fp16, INT8 tensor peak
    (q,) = count_costs(Conv(), (x,), "int8").ops
    assert q.dtype == "int8" and (q.weight_bytes, q.in_bytes, q.out_bytes) == (w_elems, in_elems, 2 * out_elems)
    t_c8 = flops / (SM * 2048 * CLK * 1e6 * 0.5)
    t_m8 = (w_elems + in_elems + 2 * out_elems) / (BW * 1e9 * 0.8)
    est8 = estimate(count_costs(Conv(), (x,), "int8"), prof, include_transfer=False)
    assert est8.p50_ms == pytest.approx((max(t_c8, t_m8) + 25e-6) * 1e3, rel=1e-9)
    assert est8.p50_ms < est.p50_ms


def test_memory_bound_pointwise_and_fusion():
    class AddOne(nn.Module):
        def forward(self, x):
            return x * 2.0 + 1.0

    x = torch.randn(64, 1 << 16)
    n = x.numel()
    unfused = estimate(count_costs(AddOne(), (x,), "fp32"), make_profile(fuse_pointwise=False), include_transfer=False)
    per_op = max(n / (SM * 256 * CLK * 1e6 * 0.25), 8 * n / (BW * 1e9 * 0.8)) + 5e-6
    assert unfused.kernels == 2
    assert unfused.p50_ms == pytest.approx((2 * per_op + 20e-6) * 1e3, rel=1e-9)
    fused = estimate(count_costs(AddOne(), (x,), "fp32"), make_profile(fuse_pointwise=True), include_transfer=False)
    assert fused.kernels == 0
    assert fused.p50_ms == pytest.approx((2 * n / (SM * 256 * CLK * 1e6 * 0.25) + 20e-6) * 1e3, rel=1e-9)


def test_constants_fold_and_views_are_free():
    class Folded(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(32, 16))

        def forward(self, x):
            w = (self.w * 0.5).t()  # constant subgraph: folded at export, no kernel
            return (x @ w).view(-1)

    trace = count_costs(Folded(), (torch.randn(4, 16),), "fp32")
    assert [o.op for o in trace.ops] == ["mm"]
    assert trace.weight_bytes == 32 * 16 * 4


def test_peak_activation_follows_lifetimes():
    class Chain(nn.Module):
        def forward(self, x):
            a = x.exp()   # 4n
            b = a.sin()   # 4n, a dies after this op
            c = b.sum()   # scalar
            return c

    n = 1000
    trace = count_costs(Chain(), (torch.randn(n),), "fp32")
    assert trace.peak_activation_bytes == 2 * 4 * n + 0  # a and b live together at the sin
    assert trace.input_bytes == 4 * n and trace.output_bytes == 4


def test_fp16_trace_keeps_explicit_fp32_upcasts():
    class Norm(nn.Module):
        def forward(self, x):
            h = x.float()
            return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype)

    trace = count_costs(Norm(), (torch.randn(4, 64),), "fp16")
    dtypes = {o.op: o.dtype for o in trace.ops}
    assert dtypes["pow"] == "float32" and dtypes["_to_copy"] in ("float16", "float32")


def test_falls_back_to_cpu_when_meta_cannot_run():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x * float(x.abs().max())  # .item() has no meaning on the meta device

    trace = count_costs(DataDependent(), (torch.randn(8, 8),), "fp32")
    assert trace.device == "cpu" and [o.op for o in trace.ops][-1] == "mul"
