"""The one FLOP counter: forward FLOPs of a model, in total and per submodule.

Counting is `torch.utils.flop_counter` (2 FLOPs per multiply-add, matmul-like ops only: GEMM, conv, attention).
Its CPU scaled-dot-product-attention kernel has no formula in torch; `attention_flops` gives it the standard
count (the same rule the export stage's roofline estimate uses for attention kernels without one).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def attention_flops(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]) -> int:
    """q [..., L, E] @ k [..., S, E]^T, then scores @ v [..., S, Ev]: 2 * batch*heads * L * S * (E + Ev)."""
    return 2 * math.prod(q_shape[:-2]) * q_shape[-2] * k_shape[-2] * (q_shape[-1] + v_shape[-1])


def _sdpa_cpu(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return attention_flops(q_shape, k_shape, v_shape)


def _rules() -> dict:
    """ATen ops without a formula in torch's counter -> their formula (called with shapes)."""
    return {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu}


@torch.no_grad()
def count_flops(model: nn.Module, *inputs: torch.Tensor, **kwargs) -> dict[str, float]:
    """Forward FLOPs of `model(*inputs, **kwargs)` in eval mode (training mode restored after).

    -> {"total": all FLOPs, "<module path>": that submodule's FLOPs} with paths relative to `model`, e.g.
    "audio" or "unimodal.audio" (every submodule that runs a counted op).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=_rules()) as fc:
            model(*inputs, **kwargs)
    finally:
        model.train(was_training)
    root = type(model).__name__
    out = {"total": float(fc.get_total_flops())}
    for path, ops in fc.get_flop_counts().items():
        if path.startswith(root + "."):
            out[path[len(root) + 1:]] = float(sum(ops.values()))
    return out


__all__ = ["attention_flops", "count_flops"]
