"""Pooling and the classifier head of the student.

`SegmentPooling` turns a frame/time sequence [B, T, D] into S segment features [B, S, D] (used by
both branches); `TemporalPooling` turns segments [B, S, D] into one vector [B, D]; `ClassifierHead`
is temporal pooling + an MLP with LayerNorm and dropout.

Everything uses shapes known at trace time (T, S are Python ints there), so the graph exported to
ONNX / TensorRT has fixed reshapes and no data-dependent control flow.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

PoolMode = Literal["attention", "mean", "max"]
TemporalMode = Literal["attention", "mean", "max", "last"]


def sinusoidal_positions(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed sine/cosine position table [length, dim] (computed from Python ints: a constant when exported)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype or torch.float32)


class AttentionScore(nn.Module):
    """Additive attention logits: Linear -> tanh -> Linear(1). [..., D] -> [..., 1]."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(16, dim // 2)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SegmentPooling(nn.Module):
    """[B, T, D] -> [B, S, D]: split time into S equal segments and pool each one.

    T is zero-padded to a multiple of S (padding is masked out of the pool); when T < S the sequence
    is first repeated (nearest interpolation) to S steps. A sinusoidal position encoding over the full
    time axis is added before pooling, so the attention scores see where in the segment a step lies,
    and a learned segment embedding after it.
    """

    def __init__(self, dim: int, num_segments: int, mode: PoolMode = "attention", position: bool = True):
        super().__init__()
        if mode not in ("attention", "mean", "max"):
            raise ValueError(f"segment pooling mode must be attention|mean|max, got {mode!r}")
        self.dim, self.num_segments, self.mode, self.position = dim, num_segments, mode, position
        self.score = AttentionScore(dim) if mode == "attention" else None
        self.segment_embed = nn.Parameter(torch.zeros(num_segments, dim))
        nn.init.trunc_normal_(self.segment_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        S = self.num_segments
        if T < S:
            x = F.interpolate(x.transpose(1, 2), size=S, mode="nearest").transpose(1, 2)
            T = S
        if self.position:
            x = x + sinusoidal_positions(T, D, x.device, x.dtype)
        L = -(-T // S)
        pad = L * S - T
        valid = torch.ones(T, device=x.device, dtype=x.dtype)
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
            valid = F.pad(valid, (0, pad))
        x = x.reshape(B, S, L, D)
        valid = valid.reshape(1, S, L, 1)
        if self.mode == "mean":
            pooled = (x * valid).sum(2) / valid.sum(2)
        elif self.mode == "max":
            pooled = (x + (valid - 1.0) * 1e4).amax(2)
        else:
            logits = self.score(x) + (valid - 1.0) * 1e4
            pooled = (logits.softmax(2) * x).sum(2)
        return pooled + self.segment_embed


class TemporalPooling(nn.Module):
    """[B, S, D] -> [B, D] by mean, max, attention or the last step."""

    def __init__(self, dim: int, mode: TemporalMode = "mean"):
        super().__init__()
        if mode not in ("attention", "mean", "max", "last"):
            raise ValueError(f"temporal pooling mode must be attention|mean|max|last, got {mode!r}")
        self.mode = mode
        self.score = AttentionScore(dim) if mode == "attention" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "mean":
            return x.mean(1)
        if self.mode == "max":
            return x.amax(1)
        if self.mode == "last":
            return x[:, -1]
        return (self.score(x).softmax(1) * x).sum(1)


class ClassifierHead(nn.Module):
    """Temporal pooling + MLP: [B, S, D] -> logits [B, C].

    Each hidden layer is Linear -> LayerNorm -> GELU -> Dropout; the input is LayerNorm-ed first so the
    head sees the same scale whichever fusion produced the features.
    """

    def __init__(self, dim: int, num_classes: int, hidden: Sequence[int] = (256,), pool: TemporalMode = "mean",
                 dropout: float = 0.1):
        super().__init__()
        self.pool = TemporalPooling(dim, pool)
        layers: list[nn.Module] = [nn.LayerNorm(dim)]
        d = dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout)]
            d = h
        layers += [nn.Dropout(dropout), nn.Linear(d, num_classes)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(x))


__all__ = ["sinusoidal_positions", "AttentionScore", "SegmentPooling", "TemporalPooling", "ClassifierHead"]
