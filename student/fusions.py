"""Fusion-mode registry for ablations. Every mode has LFM2Fusion's interface:

    forward(audio [B,S,Da], visual [B,S,Dv]) -> dict(fused [B,S,Dout], pooled [B,Dout][, aux_loss scalar])

The non-LFM2 modes project both streams to `hidden_dim` (optionally scaled by per-channel learnable modality weights,
`modality_weights="channel"`), fuse each segment token, then apply a Linear to `output_dim`. Fixed defects of the
prototype modules: modality dropout draws one coin per SAMPLE and never drops both modalities; transformer_concat's
modality-type embeddings are added, not overwritten; routing (shomr, energy_aware) samples Gumbel noise only in
training and is argmax/softmax at eval; the energy penalty is returned as `aux_loss` for the training loss. All
experts of a routed mode are computed and mixed by the (one-hot) routing weights, so the graph has no data-dependent
control flow and exports to ONNX; the routing therefore saves no compute here, it only selects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emodistill.core.layers import deinterleave, interleave
from emodistill.core.registry import Registry
from emodistill.student.fusion import LFM2Fusion, LFM2FusionConfig

FUSIONS = Registry("fusion")
register_fusion = FUSIONS.register


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class Attention(nn.Module):
    """Bidirectional multi-head attention of x [B,T,D] over ctx [B,T',D] (self-attention when ctx is None)."""

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must divide by num_heads={num_heads}")
        self.num_heads, self.p = num_heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if ctx is None else ctx
        b, t, d = x.shape
        hd = d // self.num_heads
        q = self.q(x).view(b, t, self.num_heads, hd).transpose(1, 2)
        k, v = self.kv(ctx).view(b, -1, 2, self.num_heads, hd).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block (own attention, so eval mode has no fused fast path that breaks export)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.mlp = mlp(dim, int(dim * mlp_ratio), dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def pair_attention(attn: Attention, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Self-attention over the two modality tokens of each segment, mean of the two outputs: [B,S,D]."""
    tokens = torch.stack((a, v), dim=2).flatten(0, 1)  # [B*S, 2, D]
    return attn(tokens).mean(dim=1).view_as(a)


def route(logits: torch.Tensor, hard: bool, training: bool, tau: float) -> torch.Tensor:
    """Routing weights [..., K]: soft = softmax; hard = straight-through Gumbel one-hot in training, argmax at eval."""
    if not hard:
        return logits.softmax(dim=-1)
    if training:
        return F.gumbel_softmax(logits, tau=tau, hard=True, dim=-1)
    return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)


class TwoStreamFusion(nn.Module):
    """Base of the ablation modes: projections, optional channel weights, `fuse(a, v)`, output Linear, mean pool."""

    def __init__(self, audio_dim: int, visual_dim: int, num_segments: int, output_dim: int,
                 hidden_dim: int | None = None, dropout: float = 0.1, modality_weights: str | None = None):
        super().__init__()
        d = self.hidden_dim = hidden_dim or output_dim
        self.num_segments = num_segments
        self.audio_proj = nn.Linear(audio_dim, d)
        self.visual_proj = nn.Linear(visual_dim, d)
        if modality_weights not in (None, "channel"):
            raise ValueError(f"modality_weights={modality_weights!r}; expected None or 'channel'")
        if modality_weights == "channel":
            self.audio_scale = nn.Parameter(torch.ones(d))
            self.visual_scale = nn.Parameter(torch.ones(d))
        self.modality_weights = modality_weights
        self.dropout = nn.Dropout(dropout)
        self.output_proj = nn.Linear(d, output_dim)

    def project(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio [B,S,Da], visual [B,S,Dv] -> a, v [B,S,D]."""
        a, v = self.audio_proj(audio), self.visual_proj(visual)
        if self.modality_weights == "channel":
            a, v = a * self.audio_scale, v * self.visual_scale
        return a, v

    def fuse(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """a, v [B,S,D] -> (h [B,S,D], aux_loss scalar or None)."""
        raise NotImplementedError

    def finish(self, h: torch.Tensor, aux: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        fused = self.output_proj(self.dropout(h))
        out = {"fused": fused, "pooled": fused.mean(dim=1)}
        if aux is not None:
            out["aux_loss"] = aux
        return out

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.finish(*self.fuse(*self.project(audio, visual)))


@register_fusion(name="concat_mlp")
class ConcatMLPFusion(TwoStreamFusion):
    """h = MLP([a; v])."""

    def __init__(self, *args, mlp_ratio: float = 2.0, **kw):
        super().__init__(*args, **kw)
        d = self.hidden_dim
        self.mlp = mlp(2 * d, int(d * mlp_ratio), d, self.dropout.p)

    def fuse(self, a, v):
        return self.mlp(torch.cat((a, v), dim=-1)), None


@register_fusion(name="gated")
class GatedFusion(TwoStreamFusion):
    """g = sigmoid(W[a; v]); h = g*a + (1-g)*v (per-channel convex blend)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.gate = nn.Linear(2 * self.hidden_dim, self.hidden_dim)

    def fuse(self, a, v):
        g = torch.sigmoid(self.gate(torch.cat((a, v), dim=-1)))
        return g * a + (1 - g) * v, None


@register_fusion(name="film")
class FiLMFusion(TwoStreamFusion):
    """Asymmetric: the `condition` modality modulates the other, h = (1 + Wg c) * x + Wb c."""

    def __init__(self, *args, condition: str = "audio", **kw):
        super().__init__(*args, **kw)
        if condition not in ("audio", "visual"):
            raise ValueError(f"condition={condition!r}; expected 'audio' or 'visual'")
        self.condition = condition
        self.gamma = nn.Linear(self.hidden_dim, self.hidden_dim)
        self.beta = nn.Linear(self.hidden_dim, self.hidden_dim)

    def fuse(self, a, v):
        c, x = (a, v) if self.condition == "audio" else (v, a)
        return (1 + self.gamma(c)) * x + self.beta(c), None


@register_fusion(name="cross_attention")
class CrossAttentionFusion(TwoStreamFusion):
    """Each stream attends over the other's segments; learned per-channel blend, then FFN with residual."""

    def __init__(self, *args, num_heads: int = 4, mlp_ratio: float = 2.0, **kw):
        super().__init__(*args, **kw)
        d, p = self.hidden_dim, self.dropout.p
        self.pos_embed = nn.Parameter(torch.randn(self.num_segments, d) * 0.02)
        self.norm_a, self.norm_v = nn.LayerNorm(d), nn.LayerNorm(d)
        self.a_from_v, self.v_from_a = Attention(d, num_heads, p), Attention(d, num_heads, p)
        self.blend = nn.Parameter(torch.zeros(d))  # sigmoid(0) = equal weights
        self.norm_out = nn.LayerNorm(d)
        self.ffn = mlp(d, int(d * mlp_ratio), d, p)

    def fuse(self, a, v):
        pos = self.pos_embed[: a.shape[1]]
        na, nv = self.norm_a(a + pos), self.norm_v(v + pos)
        a2, v2 = a + self.a_from_v(na, nv), v + self.v_from_a(nv, na)
        w = torch.sigmoid(self.blend)
        h = w * a2 + (1 - w) * v2
        return h + self.ffn(self.norm_out(h)), None


@register_fusion(name="transformer_concat")
class TransformerConcatFusion(TwoStreamFusion):
    """Interleaved [B,2S,D] tokens + (added) modality-type and segment embeddings -> transformer -> mean of pairs."""

    def __init__(self, *args, num_layers: int = 2, num_heads: int = 4, mlp_ratio: float = 2.0, **kw):
        super().__init__(*args, **kw)
        d = self.hidden_dim
        self.modality_embed = nn.Parameter(torch.randn(2, d) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(self.num_segments, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, num_heads, mlp_ratio, self.dropout.p) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d)

    def fuse(self, a, v):
        pos = self.pos_embed[: a.shape[1]]
        x = interleave(a + self.modality_embed[0] + pos, v + self.modality_embed[1] + pos)
        for blk in self.blocks:
            x = blk(x)
        a, v = deinterleave(self.norm(x))
        return 0.5 * (a + v), None


@register_fusion(name="modality_dropout")
class ModalityDropoutFusion(TwoStreamFusion):
    """concat_mlp where, in training, each SAMPLE loses its audio with p_audio or its video with p_visual (never
    both: one uniform draw u per sample, audio dropped if u < p_audio, video if u >= 1 - p_visual)."""

    def __init__(self, *args, p_audio: float = 0.2, p_visual: float = 0.2, mlp_ratio: float = 2.0, **kw):
        super().__init__(*args, **kw)
        if min(p_audio, p_visual) < 0 or p_audio + p_visual > 1:
            raise ValueError(f"need p_audio, p_visual >= 0 and p_audio + p_visual <= 1, got {p_audio}, {p_visual}")
        self.p_audio, self.p_visual = p_audio, p_visual
        d = self.hidden_dim
        self.mlp = mlp(2 * d, int(d * mlp_ratio), d, self.dropout.p)

    def keep_masks(self, batch: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(keep_audio, keep_visual) [B,1,1] in {0,1}, never both 0."""
        u = torch.rand(batch, 1, 1, device=device)
        return (u >= self.p_audio).to(dtype), (u < 1 - self.p_visual).to(dtype)

    def fuse(self, a, v):
        if self.training:
            ka, kv = self.keep_masks(a.shape[0], a.device, a.dtype)
            a, v = a * ka, v * kv
        return self.mlp(torch.cat((a, v), dim=-1)), None


@register_fusion(name="shomr")
class SHoMRFusion(TwoStreamFusion):
    """Soft-hard modality routing per segment token over experts {audio-only, visual-only, both}, where "both" is a
    confidence-weighted sum + pair attention + FFN. hard_routing: Gumbel one-hot (train) / argmax (eval); else softmax.
    """

    def __init__(self, *args, num_heads: int = 4, mlp_ratio: float = 2.0, hard_routing: bool = True,
                 tau: float = 1.0, **kw):
        super().__init__(*args, **kw)
        d, p = self.hidden_dim, self.dropout.p
        self.hard_routing, self.tau = hard_routing, tau
        self.conf_net = nn.Linear(2 * d, 2)
        self.attn = Attention(d, num_heads, p)
        self.norm = nn.LayerNorm(d)
        self.ffn = mlp(d, int(d * mlp_ratio), d, p)
        self.audio_only, self.visual_only = nn.Linear(d, d), nn.Linear(d, d)
        self.router = nn.Linear(2 * d, 3)

    def fuse(self, a, v):
        av = torch.cat((a, v), dim=-1)
        w = self.conf_net(av).softmax(dim=-1)
        h = self.norm(w[..., :1] * a + w[..., 1:] * v + pair_attention(self.attn, a, v))
        both = h + self.ffn(h)
        r = route(self.router(av), self.hard_routing, self.training, self.tau)  # [B,S,3]
        out = r[..., 0:1] * self.audio_only(a) + r[..., 1:2] * self.visual_only(v) + r[..., 2:3] * both
        return out, None


@register_fusion(name="energy_aware")
class EnergyAwareFusion(TwoStreamFusion):
    """Per segment token, a router picks {audio-only, visual-only, both (gated blend + pair attention + FFN)}.
    aux_loss = energy_weight * relu(E[cost] - energy_budget), E over the router's softmax, mean over B and S;
    the training loss must add it."""

    def __init__(self, *args, num_heads: int = 4, mlp_ratio: float = 2.0, hard_routing: bool = True,
                 tau: float = 1.0, expert_costs: tuple[float, float, float] = (0.3, 0.7, 1.0),
                 energy_budget: float = 0.6, energy_weight: float = 0.1, **kw):
        super().__init__(*args, **kw)
        d, p = self.hidden_dim, self.dropout.p
        self.hard_routing, self.tau = hard_routing, tau
        self.energy_budget, self.energy_weight = energy_budget, energy_weight
        self.register_buffer("expert_costs", torch.tensor(expert_costs, dtype=torch.float32), persistent=False)
        self.gate = nn.Linear(2 * d, d)
        self.attn = Attention(d, num_heads, p)
        self.norm = nn.LayerNorm(d)
        self.ffn = mlp(d, int(d * mlp_ratio), d, p)
        self.router = nn.Linear(2 * d, 3)

    def fuse(self, a, v):
        av = torch.cat((a, v), dim=-1)
        g = torch.sigmoid(self.gate(av))
        h = self.norm(g * a + (1 - g) * v + pair_attention(self.attn, a, v))
        both = h + self.ffn(h)
        logits = self.router(av)
        r = route(logits, self.hard_routing, self.training, self.tau)
        out = r[..., 0:1] * a + r[..., 1:2] * v + r[..., 2:3] * both
        energy = (logits.softmax(dim=-1) * self.expert_costs.to(logits.dtype)).sum(-1).mean()
        return out, self.energy_weight * F.relu(energy - self.energy_budget)


@register_fusion(name="lfm2")
def lfm2(audio_dim: int, visual_dim: int, num_segments: int, output_dim: int, **kw) -> LFM2Fusion:
    return LFM2Fusion(LFM2FusionConfig(audio_dim=audio_dim, visual_dim=visual_dim, num_segments=num_segments,
                                       output_dim=output_dim, **kw))


def create_fusion(name: str, audio_dim: int, visual_dim: int, num_segments: int, output_dim: int, **kw) -> nn.Module:
    """A registered fusion mode; `kw` are the mode's options (hidden_dim, dropout, modality_weights, ...)."""
    return FUSIONS.create(name, audio_dim=audio_dim, visual_dim=visual_dim, num_segments=num_segments,
                          output_dim=output_dim, **kw)


def list_fusions() -> list[str]:
    return FUSIONS.names()


__all__ = ["FUSIONS", "register_fusion", "create_fusion", "list_fusions", "TwoStreamFusion", "ConcatMLPFusion",
           "GatedFusion", "FiLMFusion", "CrossAttentionFusion", "TransformerConcatFusion", "ModalityDropoutFusion",
           "SHoMRFusion", "EnergyAwareFusion", "Attention", "Block"]
