"""LFM2 fusion: gated modality projections, modality-type embeddings, interleaved audio/visual segment tokens
through our LFM2 layers (bidirectional), separate-and-average, output projection. The projection and the token
layout are the teacher's too (emodistill.core.layers).

    audio [B,S,Da] -> proj -> +e_audio --.
                                          interleave [B,2S,D] (a1,v1,a2,v2,...) -> LFM2 x N -> deinterleave
    visual [B,S,Dv] -> proj -> +e_visual -'                                   -> (a+v)/2 [B,S,D] -> Linear -> fused
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from emodistill.core.layers import GatedModalityProjection, deinterleave, interleave
from emodistill.student.lfm2 import Lfm2Backbone, Lfm2BackboneConfig

logger = logging.getLogger(__name__)


@dataclass
class LFM2FusionConfig:
    """LFM2 fusion hyperparameters. The SwiGLU width is LFM2's rule applied to `ff_multiplier * hidden_dim`."""

    audio_dim: int = 512
    visual_dim: int = 768
    num_segments: int = 8
    hidden_dim: int = 256
    num_layers: int = 3
    dropout: float = 0.1
    use_gated_projection: bool = True
    projection_hidden_dim: int = 512
    output_dim: int = 256
    num_heads: int = 8
    num_kv_heads: int = 2
    layer_pattern: list[str] = field(default_factory=lambda: ["conv", "conv", "full_attention"])
    conv_kernel: int = 3
    ff_multiplier: float = 4.5
    ff_multiple_of: int = 32
    norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0
    causal: bool = False
    layer_dropout: float = 0.0  # residual-branch dropout inside the LFM2 layers

    def backbone_config(self) -> Lfm2BackboneConfig:
        return Lfm2BackboneConfig(
            hidden_size=self.hidden_dim, num_layers=self.num_layers, num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads, intermediate_size=int(self.ff_multiplier * self.hidden_dim),
            layer_pattern=list(self.layer_pattern), conv_L_cache=self.conv_kernel, norm_eps=self.norm_eps,
            rope_theta=self.rope_theta, block_multiple_of=self.ff_multiple_of, causal=self.causal,
            dropout=self.layer_dropout,
        )

    def to_dict(self) -> dict:
        return asdict(self)


class LFM2Fusion(nn.Module):
    """forward(audio [B,S,Da], visual [B,S,Dv]) -> dict(fused [B,S,Dout], pooled [B,Dout])."""

    def __init__(self, cfg: LFM2FusionConfig | None = None, **kw):
        super().__init__()
        cfg = cfg or LFM2FusionConfig(**kw)
        self.config = cfg
        d = cfg.hidden_dim
        self.audio_proj = GatedModalityProjection(cfg.audio_dim, d, cfg.projection_hidden_dim, cfg.dropout,
                                                  cfg.use_gated_projection)
        self.visual_proj = GatedModalityProjection(cfg.visual_dim, d, cfg.projection_hidden_dim, cfg.dropout,
                                                   cfg.use_gated_projection)
        self.modality_embed = nn.Parameter(torch.randn(2, d) * 0.02)  # row 0 audio, row 1 visual
        self.backbone = Lfm2Backbone(cfg.backbone_config())
        self.dropout = nn.Dropout(cfg.dropout)
        self.output_proj = nn.Linear(d, cfg.output_dim)

    @classmethod
    def from_config(cls, cfg: LFM2FusionConfig | dict) -> "LFM2Fusion":
        return cls(cfg if isinstance(cfg, LFM2FusionConfig) else LFM2FusionConfig(**cfg))

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.audio_proj(audio) + self.modality_embed[0]
        v = self.visual_proj(visual) + self.modality_embed[1]
        h = self.backbone(self.dropout(interleave(a, v)))
        a, v = deinterleave(h)
        fused = self.output_proj(self.dropout(0.5 * (a + v)))
        return {"fused": fused, "pooled": fused.mean(dim=1)}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)


__all__ = ["LFM2FusionConfig", "LFM2Fusion"]
