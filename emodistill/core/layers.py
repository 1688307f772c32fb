"""Layers shared by the teacher and the student (both import them from here, so neither imports the other).

The token layout of the LFM2 fusion is the same in both: audio and visual segment tokens interleaved
(a1, v1, a2, v2, ...), so teacher and student fused features line up segment by segment for feature
distillation. `replace_missing` is the missing-modality arithmetic of every model (see emodistill.core.model).
"""

from __future__ import annotations

import torch
from torch import nn


class GatedModalityProjection(nn.Module):
    """[.., in_dim] -> [.., out_dim]: `Linear(sigmoid(Wg x) * gelu(Wv x))` if gated, else one Linear."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, dropout: float = 0.0, gated: bool = True):
        super().__init__()
        self.gated = gated
        if gated:
            self.gate = nn.Linear(in_dim, hidden_dim)
            self.value = nn.Linear(in_dim, hidden_dim)
            self.act = nn.GELU()
            self.dropout = nn.Dropout(dropout)
            self.out = nn.Linear(hidden_dim, out_dim)
        else:
            self.out = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.gated:
            return self.out(x)
        return self.out(self.dropout(torch.sigmoid(self.gate(x)) * self.act(self.value(x))))


def interleave(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """a, v [B,S,D] -> [B,2S,D] ordered a1, v1, a2, v2, ..."""
    return torch.stack((a, v), dim=2).flatten(1, 2)


def deinterleave(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B,2S,D] (a1, v1, a2, v2, ...) -> (a [B,S,D], v [B,S,D]); inverse of `interleave`."""
    x = x.unflatten(1, (-1, 2))
    return x[:, :, 0], x[:, :, 1]


def replace_missing(x: torch.Tensor, present: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """x [B,S,D], present [B] (1 = the modality is there, 0 = missing), embedding [D] -> [B,S,D].

    `x * p + e * (1 - p)`: arithmetic, not branching, so a missing input has no influence on the output and the
    exported graph has no data-dependent control flow.
    """
    p = present.to(x.dtype)[:, None, None]
    return x * p + embedding * (1.0 - p)


__all__ = ["GatedModalityProjection", "interleave", "deinterleave", "replace_missing"]
