"""Stand-in model inputs at the contract's sizes: for FLOP counts, exports, parity checks and latency figures."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .contract import Preprocess


@dataclass(frozen=True)
class Dims:
    """Fixed input sizes of the contract (batch is the only dynamic axis)."""

    num_frames: int
    image_size: int
    num_samples: int
    sample_rate: int

    @classmethod
    def from_preprocess(cls, pre: Preprocess | dict) -> "Dims":
        pre = pre if isinstance(pre, Preprocess) else Preprocess.model_validate(pre)
        return cls(pre.num_frames, pre.image_size, pre.num_samples, pre.sample_rate)

    def shapes(self, batch: int) -> dict[str, list[int]]:
        return {"video": [batch, self.num_frames, 3, self.image_size, self.image_size],
                "audio": [batch, self.num_samples]}


def random_inputs(dims: Dims, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stand-in clips: video [batch, T, 3, H, W] uniform [0, 1], audio [batch, N] 0.1 * N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    shapes = dims.shapes(batch)
    return torch.rand(*shapes["video"], generator=g), 0.1 * torch.randn(*shapes["audio"], generator=g)


__all__ = ["Dims", "random_inputs"]
