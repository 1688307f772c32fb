"""Our LFM2 (Liquid Foundation Model 2) layers, weight-compatible with transformers' `Lfm2Model`.

Parameter names and shapes follow `transformers/models/lfm2/modeling_lfm2.py`, so a state dict of an HF
`Lfm2Model` (minus `embed_tokens`) loads into `Lfm2Backbone` as-is. Differences that matter for the edge:
- attention can be bidirectional (`causal=False`): fusion tokens are a set of segments, not a generation;
- the short conv is causal through a LEFT pad (no pad-both-sides-then-slice), so the graph has no slicing of a
  data-sized tail;
- GQA repeats K/V heads explicitly (no `enable_gqa`), RMSNorm is computed in fp32, no KV/conv caches and no
  data-dependent Python control flow: the backbone exports with `torch.onnx.export(dynamo=True)`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)

LAYER_TYPES = ("conv", "full_attention")


class Lfm2RMSNorm(nn.Module):
    """RMSNorm over the last dim, `w * x / rms(x)` (LFM2 weights are the plain scale, initialised to 1)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        # fp32 statistics: fp16 squares of activations overflow.
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(dtype)


def rope_cos_sin(inv_freq: torch.Tensor, seq_len_like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, head_dim] for positions 0..T-1, T = seq_len_like.shape[1]."""
    pos = torch.arange(seq_len_like.shape[1], device=seq_len_like.device, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq.float()[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(seq_len_like.dtype), emb.sin().to(seq_len_like.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, T, hd] -> [B, Hkv*n_rep, T, hd], each K/V head serving n_rep consecutive query heads."""
    if n_rep == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


class Lfm2ShortConv(nn.Module):
    """Gated short convolution: in_proj D->3D, (B, C, x) split, B*x, depthwise causal conv, C*y, out_proj."""

    def __init__(self, dim: int, kernel: int = 3, bias: bool = False):
        super().__init__()
        self.kernel = kernel
        # padding=0: causality comes from the explicit left pad in forward.
        self.conv = nn.Conv1d(dim, dim, kernel_size=kernel, groups=dim, bias=bias, padding=0)
        self.in_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D]."""
        bcx = self.in_proj(x).transpose(1, 2)  # [B, 3D, T]
        b, c, h = bcx.chunk(3, dim=1)
        y = self.conv(F.pad(b * h, (self.kernel - 1, 0)))
        return self.out_proj((c * y).transpose(1, 2))


class Lfm2Attention(nn.Module):
    """GQA with per-head RMSNorm on Q and K, RoPE, optional causal mask."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, eps: float = 1e-5, causal: bool = True):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        self.causal = causal
        self.q_proj = nn.Linear(dim, num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=False)
        self.out_proj = nn.Linear(num_heads * self.head_dim, dim, bias=False)
        self.q_layernorm = Lfm2RMSNorm(self.head_dim, eps)
        self.k_layernorm = Lfm2RMSNorm(self.head_dim, eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], cos/sin [T, head_dim] -> [B, T, D]."""
        bsz, t, _ = x.shape
        q = self.q_layernorm(self.q_proj(x).view(bsz, t, -1, self.head_dim)).transpose(1, 2)
        k = self.k_layernorm(self.k_proj(x).view(bsz, t, -1, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(bsz, t, -1, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        n_rep = self.num_heads // self.num_kv_heads
        y = F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=self.causal)
        return self.out_proj(y.transpose(1, 2).reshape(bsz, t, -1))


class Lfm2MLP(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, ff_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, ff_dim, bias=False)
        self.w3 = nn.Linear(dim, ff_dim, bias=False)
        self.w2 = nn.Linear(ff_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


@dataclass
class Lfm2BackboneConfig:
    """Architecture of an LFM2 stack (field names follow transformers' `Lfm2Config` where they exist).

    `intermediate_size` is LFM2's `block_ff_dim`; the real SwiGLU width is `ff_dim` (LFM2's auto-adjust rule).
    Layer types are `layer_types` if given, else `layer_pattern` repeated to `num_layers`.
    """

    hidden_size: int = 256
    num_layers: int = 3
    num_heads: int = 8
    num_kv_heads: int = 2
    intermediate_size: int = 1152
    layer_pattern: list[str] = field(default_factory=lambda: ["conv", "conv", "full_attention"])
    layer_types: list[str] | None = None
    conv_L_cache: int = 3
    conv_bias: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0
    block_auto_adjust_ff_dim: bool = True
    block_ffn_dim_multiplier: float | None = 1.0
    block_multiple_of: int = 256
    causal: bool = True
    dropout: float = 0.0  # on each residual branch; identity in eval, so HF parity is unaffected

    def __post_init__(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must divide by num_heads={self.num_heads}, "
                             f"and num_heads by num_kv_heads={self.num_kv_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"head_dim={self.hidden_size // self.num_heads} must be even for RoPE")
        bad = [t for t in self.types if t not in LAYER_TYPES]
        if bad or len(self.types) != self.num_layers:
            raise ValueError(f"layer types {self.types} must be {self.num_layers} entries from {LAYER_TYPES}")

    @property
    def types(self) -> list[str]:
        if self.layer_types is not None:
            return list(self.layer_types)
        pattern = list(self.layer_pattern) or ["conv"]
        return [pattern[i % len(pattern)] for i in range(self.num_layers)]

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def ff_dim(self) -> int:
        """LFM2's intermediate-size rule (`Lfm2MLP.__init__` in transformers)."""
        ff = self.intermediate_size
        if self.block_auto_adjust_ff_dim:
            ff = int(2 * ff / 3)
            if self.block_ffn_dim_multiplier is not None:
                ff = int(self.block_ffn_dim_multiplier * ff)
                ff = self.block_multiple_of * ((ff + self.block_multiple_of - 1) // self.block_multiple_of)
        return ff

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_hf_config(cls, hf_config, num_layers: int | None = None, causal: bool = True) -> "Lfm2BackboneConfig":
        """From a `transformers.Lfm2Config`; `num_layers=k` keeps the first k layers."""
        n = hf_config.num_hidden_layers if num_layers is None else num_layers
        if not 1 <= n <= hf_config.num_hidden_layers:
            raise ValueError(f"num_layers={n} must be in [1, {hf_config.num_hidden_layers}]")
        rope = dict(hf_config.rope_parameters or {})
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope_type {rope.get('rope_type')!r} not supported (only 'default')")
        hd = getattr(hf_config, "head_dim", None)
        if hd not in (None, hf_config.hidden_size // hf_config.num_attention_heads):
            raise ValueError(f"head_dim={hd} != hidden_size/num_attention_heads is not supported")
        return cls(
            hidden_size=hf_config.hidden_size, num_layers=n, num_heads=hf_config.num_attention_heads,
            num_kv_heads=hf_config.num_key_value_heads, intermediate_size=hf_config.intermediate_size,
            layer_types=list(hf_config.layer_types[:n]), conv_L_cache=hf_config.conv_L_cache,
            conv_bias=hf_config.conv_bias, norm_eps=hf_config.norm_eps,
            rope_theta=float(rope.get("rope_theta", getattr(hf_config, "default_theta", 1_000_000.0))),
            block_auto_adjust_ff_dim=hf_config.block_auto_adjust_ff_dim,
            block_ffn_dim_multiplier=hf_config.block_ffn_dim_multiplier,
            block_multiple_of=hf_config.block_multiple_of, causal=causal,
        )


class Lfm2DecoderLayer(nn.Module):
    """Pre-norm block: x + op(norm(x)), then x + mlp(norm(x)); op is a short conv or attention."""

    def __init__(self, cfg: Lfm2BackboneConfig, layer_type: str):
        super().__init__()
        self.layer_type = layer_type
        if layer_type == "conv":
            self.conv = Lfm2ShortConv(cfg.hidden_size, cfg.conv_L_cache, cfg.conv_bias)
        else:
            self.self_attn = Lfm2Attention(cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.norm_eps, cfg.causal)
        self.feed_forward = Lfm2MLP(cfg.hidden_size, cfg.ff_dim)
        self.operator_norm = Lfm2RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.ffn_norm = Lfm2RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = self.operator_norm(x)
        h = self.conv(h) if self.layer_type == "conv" else self.self_attn(h, cos, sin)
        x = x + self.dropout(h)
        return x + self.dropout(self.feed_forward(self.ffn_norm(x)))


class Lfm2Backbone(nn.Module):
    """A stack of LFM2 layers on input embeddings, then the final norm (HF calls it `embedding_norm`).

    forward(x [B, T, D]) -> [B, T, D], equal to `Lfm2Model(inputs_embeds=x).last_hidden_state` when causal.
    """

    def __init__(self, cfg: Lfm2BackboneConfig):
        super().__init__()
        self.config = cfg
        self.layers = nn.ModuleList(Lfm2DecoderLayer(cfg, t) for t in cfg.types)
        self.embedding_norm = Lfm2RMSNorm(cfg.hidden_size, cfg.norm_eps)
        hd = cfg.head_dim
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.gradient_checkpointing = False
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module, std: float = 0.02):
        # LFM2's initializer_range; checkpoints overwrite it.
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.gradient_checkpointing = enable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos, sin = rope_cos_sin(self.inv_freq, x)
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, use_reentrant=False)
            else:
                x = layer(x, cos, sin)
        return self.embedding_norm(x)

    @classmethod
    def from_hf_config(cls, hf_config, num_layers: int | None = None, causal: bool = True) -> "Lfm2Backbone":
        """Architecture of a `transformers.Lfm2Config` (first `num_layers` layers), random weights."""
        return cls(Lfm2BackboneConfig.from_hf_config(hf_config, num_layers, causal))

    @classmethod
    def from_hf(cls, hf_model: nn.Module, num_layers: int | None = None, causal: bool = True) -> "Lfm2Backbone":
        """Copy of a `transformers.Lfm2Model` (or `Lfm2ForCausalLM`): its first `num_layers` layers + final norm."""
        hf = getattr(hf_model, "model", hf_model)
        model = cls.from_hf_config(hf.config, num_layers, causal)
        n = model.config.num_layers
        state = {k: v for k, v in hf.state_dict().items()
                 if k.startswith("embedding_norm.") or (k.startswith("layers.") and int(k.split(".")[1]) < n)}
        model.load_state_dict(state, strict=True)
        ref = next(hf.parameters())
        logger.info("LFM2 backbone from HF: %d of %d layers, %.1fM params", n, hf.config.num_hidden_layers,
                    sum(p.numel() for p in model.parameters()) / 1e6)
        return model.to(device=ref.device, dtype=ref.dtype)


__all__ = ["Lfm2RMSNorm", "Lfm2ShortConv", "Lfm2Attention", "Lfm2MLP", "Lfm2DecoderLayer", "Lfm2BackboneConfig",
           "Lfm2Backbone", "LAYER_TYPES", "repeat_kv", "rope_cos_sin"]
