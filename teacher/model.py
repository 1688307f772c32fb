"""The teacher: SigLIP2 vision + Parakeet (FastConformer) audio + the first k layers of pretrained LFM2-700M.

    video [B,T,3,H,W] -> SigLIP per frame -> segment pool -> [B,S,Dv] -> gated proj -> +e_visual --.
                                                                                          interleave [B,2S,D]
    audio [B,N] -> log-mel -> ParakeetEncoder -> segment pool -> [B,S,Da] -> gated proj -> +e_audio -'
      -> Lfm2Model(inputs_embeds) first k layers -> deinterleave -> (a+v)/2 -> Linear -> features [B,S,Dout]
      -> mean over S -> pooled [B,Dout] -> MLP head -> logits [B,C]

The token layout (a1, v1, a2, v2, ...) is the student's (`emodistill.core.layers.interleave`), so teacher and
student fused features line up segment by segment for feature distillation.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pydantic import Field

from emodistill.core.config import BaseConfig, check_fields
from emodistill.core.layers import GatedModalityProjection, deinterleave, interleave, replace_missing
from emodistill.core.model import AVModel, model_registry, unimodal_heads

from .encoders import AudioEncoder, VisionEncoder, build_lfm2
from .weights import LoadReport, load_selected, read_json, reference_config, resolve_sources

logger = logging.getLogger(__name__)

PARTS = ("vision", "audio", "lfm2")
PREFIXES = {"vision": ("vision_model.", ""), "audio": ("encoder.", ""), "lfm2": ("model.", "")}


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "in_proj", "w1", "w2", "w3"]  # every Linear of an LFM2 layer


class LoraSettings(BaseConfig):
    """LoRA adapters (peft) on the LFM2 layers: the layers' own weights stay frozen, the adapters train."""

    rank: int = Field(16, ge=1, description="adapter rank r")
    alpha: float = Field(32.0, gt=0, description="scaling alpha (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] = Field(default_factory=lambda: list(LORA_TARGETS),
                                      description="LFM2 Linear names that get adapters (attention q/k/v/out, conv "
                                      "in/out projections, MLP w1/w2/w3)")
    layers: list[int] | None = Field(None, description="kept LFM2 layers that get adapters (None: all)")


def _default_mel() -> dict:
    return {"sample_rate": 16000, "n_fft": 512, "hop_length": 160, "win_length": 400, "preemphasis": 0.97}


@dataclass
class TeacherConfig:
    """Everything needed to rebuild the teacher offline. `vision`, `audio`, `lfm2` are transformers config
    dicts (SigLIP/SigLIP2 vision, ParakeetEncoder, full Lfm2 model); `*_source` name the pretrained weights
    (hub id or local folder; None = random init, only meant for tiny test/demo configs)."""

    vision: dict
    audio: dict
    lfm2: dict
    num_layers: int = 6                  # k: LFM2 decoder layers kept
    num_classes: int = 8
    num_segments: int = 8
    vision_source: str | None = None
    audio_source: str | None = None
    lfm2_source: str | None = None
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    vision_pooling: str = "head"          # SigLIP attention-pooling head, "mean" or "grid" of patch tokens
    vision_grid: int = 2                  # grid pooling: side of the patch-token grid kept per frame
    mel: dict = field(default_factory=_default_mel)
    proj_hidden_dim: int = 1024
    gated: bool = True
    out_dim: int = 512
    head_hidden_dim: int = 256
    unimodal_heads: bool = False          # linear audio-only / video-only heads (training signal per encoder)
    dropout: float = 0.1
    bidirectional: bool = False           # pretrained LFM2 is causal; True lets attention layers look ahead
    freeze_vision: bool = False
    freeze_audio: bool = False
    freeze_backbone: bool = False
    gradient_checkpointing: bool = False
    dtype: str = "float32"                # "bfloat16": pretrained parts held and run in bf16
    lora: LoraSettings | None = None      # LoRA on the LFM2 layers (a dict in the config: LoraSettings' fields)
    backbone_trainable_layers: list[int] | None = None  # partial unfreezing: only these LFM2 layers (negative:
                                                        # from the end) and the final norm train

    def sources(self) -> dict[str, str]:
        return {p: s for p in PARTS if (s := getattr(self, f"{p}_source"))}


class TeacherModel(AVModel):
    """The model contract of emodistill.core.model: forward(video [B,T,3,H,W], audio [B,N], modality_mask [B,2] |
    None) -> dict(logits [B,C], features [B,S,Dout], pooled [B,Dout], audio_features [B,S,Da],
    visual_features [B,S,Dv]) (+ audio_logits, visual_logits [B,C] with `unimodal_heads`)."""

    family = "teacher"
    default_lr_scale = {"vision": 0.1, "audio": 0.1, "backbone": 0.1}  # pretrained parts learn slower

    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        if cfg.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got {cfg.dtype!r}")
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.vision = VisionEncoder(cfg.vision, cfg.num_segments, cfg.image_mean, cfg.image_std, cfg.vision_pooling,
                                    cfg.vision_grid)
        self.audio = AudioEncoder(cfg.audio, cfg.num_segments, cfg.mel)
        self.backbone = build_lfm2(cfg.lfm2, cfg.num_layers)
        d, da, dv = self.backbone.config.hidden_size, self.audio.dim, self.vision.dim
        self.missing = nn.ParameterDict({"audio": nn.Parameter(torch.zeros(da)),
                                         "visual": nn.Parameter(torch.zeros(dv))})
        self.audio_proj = GatedModalityProjection(da, d, cfg.proj_hidden_dim, cfg.dropout, cfg.gated)
        self.visual_proj = GatedModalityProjection(dv, d, cfg.proj_hidden_dim, cfg.dropout, cfg.gated)
        self.modality_embed = nn.Parameter(torch.randn(2, d) * 0.02)  # row 0 audio, row 1 visual
        self.dropout = nn.Dropout(cfg.dropout)
        self.output_proj = nn.Linear(d, cfg.out_dim)
        self.head = nn.Sequential(nn.LayerNorm(cfg.out_dim), nn.Linear(cfg.out_dim, cfg.head_hidden_dim), nn.GELU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.head_hidden_dim, cfg.num_classes))
        # the fused head alone lets audio dominate early training: unimodal heads give each encoder its own gradient
        self.unimodal = unimodal_heads(da, dv, cfg.num_classes) if cfg.unimodal_heads else None
        self.load_reports: dict[str, LoadReport] = {}
        self._setup_backbone_tuning()  # LoRA adapters made beside an fp32 base, and kept fp32 by the cast below
        if cfg.dtype == "bfloat16":
            for m in self.pretrained_parts().values():
                _cast_floating(m, torch.bfloat16)
        self.set_freeze(cfg.freeze_vision, cfg.freeze_audio, cfg.freeze_backbone)
        if cfg.gradient_checkpointing:
            self.set_grad_checkpointing(True)

    # -- parts, freezing, optimisation ---------------------------------------------------------------------
    def pretrained_parts(self) -> dict[str, nn.Module]:
        return {"vision": self.vision.model, "audio": self.audio.model, "lfm2": self.backbone}

    def parts(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per part: vision / audio encoders, LFM2 backbone, fusion (projections, embeddings), head."""
        fusion = [*self.missing.values(), *self.audio_proj.parameters(), *self.visual_proj.parameters(),
                  self.modality_embed, *self.output_proj.parameters()]
        head = [*self.head.parameters(), *(self.unimodal.parameters() if self.unimodal is not None else [])]
        return {"vision": list(self.vision.parameters()), "audio": list(self.audio.parameters()),
                "backbone": list(self.backbone.parameters()), "fusion": fusion, "head": head}

    def set_freeze(self, vision: bool, audio: bool, backbone: bool) -> None:
        """Freeze exactly the pretrained vision encoder / audio encoder / LFM2 layers (fusion and head stay trainable).
        An unfrozen backbone with `lora` trains its adapters only, with `backbone_trainable_layers` those layers."""
        self._frozen = {"vision": vision, "audio": audio, "backbone": backbone}
        for name, flag in self._frozen.items():
            for p in self.parts()[name]:
                p.requires_grad_(not flag)
        if not backbone and (self.config.lora is not None or self.config.backbone_trainable_layers is not None):
            for name, p in self.backbone.named_parameters():
                p.requires_grad_(self._backbone_trains(name))
        self.train(self.training)

    def _setup_backbone_tuning(self) -> None:
        """Check `lora` / `backbone_trainable_layers` and inject the LoRA adapters (before the bf16 cast of `dtype`,
        which leaves them fp32)."""
        cfg, k = self.config, len(self.backbone.layers)
        if cfg.lora is not None and cfg.backbone_trainable_layers is not None:
            raise ValueError("lora and backbone_trainable_layers both choose what trains in the LFM2 layers: give one")
        if cfg.freeze_backbone and (cfg.lora is not None or cfg.backbone_trainable_layers is not None):
            raise ValueError("freeze_backbone freezes every LFM2 weight; lora / backbone_trainable_layers train part "
                             "of them: set freeze_backbone false")
        layers = cfg.backbone_trainable_layers if cfg.lora is None else LoraSettings.model_validate(cfg.lora).layers
        bad = [i for i in layers or [] if not -k <= i < k]
        if bad:
            raise ValueError(f"LFM2 layer indices {bad} out of range: the teacher keeps {k} layers (0..{k - 1}, or "
                             f"negative from the end)")
        self._tuned_layers = None if layers is None else sorted({i % k for i in layers})
        if cfg.lora is None:
            return
        from contextlib import nullcontext
        from unittest import mock

        from peft import LoraConfig, inject_adapter_in_model
        from torch._subclasses.fake_tensor import FakeTensor

        lora = LoraSettings.model_validate(cfg.lora)
        self.config = dataclasses.replace(cfg, lora=lora.model_dump())  # the checkpoint records every setting
        where = {} if self._tuned_layers is None else {"layers_pattern": "layers",
                                                        "layers_to_transform": self._tuned_layers}
        # the adapters are made where the base is (CPU, fp32: before the cast), so peft's moves of them onto the
        # base's device and dtype do nothing; under FakeTensorMode (the memory plan), whose tensors Module.to cannot
        # swap, they are skipped
        fake = isinstance(next(self.backbone.parameters()), FakeTensor)
        with mock.patch.object(nn.Module, "to", lambda m, *a, **k: m) if fake else nullcontext():
            inject_adapter_in_model(LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                               target_modules=lora.target_modules, **where), self.backbone)

    def _backbone_trains(self, name: str) -> bool:
        """Whether the LFM2 parameter `name` trains under `lora` / `backbone_trainable_layers`."""
        if self.config.lora is not None:
            return ".lora_" in name
        if name.startswith("layers."):
            return int(name.split(".")[1]) in self._tuned_layers
        return name.startswith("embedding_norm.")  # the final norm trains with the last layers

    def train(self, mode: bool = True):
        super().train(mode)
        frozen = getattr(self, "_frozen", {})
        for name, module in (("vision", self.vision), ("audio", self.audio), ("backbone", self.backbone)):
            if frozen.get(name):
                module.eval()  # frozen parts keep inference behaviour (no dropout, BatchNorm stats fixed)
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the activations of the pretrained encoders and the LFM2 layers in backward."""
        for m in self.pretrained_parts().values():
            if enable:
                m.activation_checkpointing_enable({"use_reentrant": False})
            else:
                m.activation_checkpointing_disable()

    # -- pretrained weights ---------------------------------------------------------------------------------
    def load_pretrained(self, folders: dict[str, str | Path]) -> None:
        """Read each part's tensors (only those it keeps) from a local transformers checkpoint folder."""
        for part, folder in folders.items():
            module = self.pretrained_parts()[part]
            rename = _lora_base_name if part == "lfm2" and self.config.lora is not None else None
            self.load_reports[part] = load_selected(module, folder, PREFIXES[part], rename=rename)

    # -- the model contract (forward_head, forward, get_config, counting, param_groups: AVModel) ----------------
    def feature_dims(self) -> dict[str, int]:
        return {"features": self.config.out_dim, "audio_features": self.audio.dim, "visual_features": self.vision.dim}

    def encode(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pretrained encoders' segment features: {"visual": [B,S,Dv], "audio": [B,S,Da]} (fp32). Frozen, they
        are what `teacher.encoder_cache` stores per (clip, augmentation view)."""
        v, _ = self.vision(video)
        a, _ = self.audio(audio)
        return {"visual": v, "audio": a}

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None,
                modality_mask: torch.Tensor | None = None,
                encoded: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The model contract's forward; `encoded` (the output of `encode`, e.g. from the encoder cache) stands in
        for video and audio, which may then be None."""
        feats = self.forward_features(video, audio, modality_mask, encoded)
        head = self.forward_head(feats)
        return {"logits": head.pop("logits"), **feats, **head}

    def forward_features(self, video: torch.Tensor | None, audio: torch.Tensor | None,
                         modality_mask: torch.Tensor | None = None,
                         encoded: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        enc = self.encode(video, audio) if encoded is None else encoded
        v, a = enc["visual"].float(), enc["audio"].float()
        if modality_mask is None:  # all present; still through the arithmetic so DDP sees every parameter used
            modality_mask = a.new_ones(a.shape[0], 2)
        a = replace_missing(a, modality_mask[:, 0], self.missing["audio"])
        v = replace_missing(v, modality_mask[:, 1], self.missing["visual"])
        x = interleave(self.audio_proj(a) + self.modality_embed[0], self.visual_proj(v) + self.modality_embed[1])
        x = self.dropout(x).to(self.backbone.dtype)
        mask = None
        if self.config.bidirectional:
            full = torch.zeros(x.shape[0], 1, x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
            mask = {"full_attention": full, "conv": None}
        h = self.backbone(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state.float()
        ha, hv = deinterleave(h)
        features = self.output_proj(self.dropout(0.5 * (ha + hv)))
        return {"features": features, "pooled": features.mean(1), "audio_features": a, "visual_features": v}


def _cast_floating(module: nn.Module, dtype: torch.dtype) -> None:
    """`module.to(dtype)` for floating parameters and buffers except LoRA adapters (the same Parameter objects, so
    ties hold), also under FakeTensorMode, whose tensors `Module.to` cannot swap (the memory plan builds the
    real-size teacher there)."""
    for name, m in module.named_modules():
        if "lora_" in name:  # LoRA adapters stay fp32 (the optimiser's master weights)
            continue
        for p in m._parameters.values():
            if p is not None and p.is_floating_point():
                p.data = p.data.to(dtype)
        for k, b in m._buffers.items():
            if b is not None and b.is_floating_point():
                m._buffers[k] = b.to(dtype)


def _lora_base_name(name: str) -> str | None:
    """A LoRA-wrapped LFM2 tensor's name in the pretrained checkpoint (None: an adapter, not in it)."""
    return None if ".lora_" in name else name.replace(".base_layer.", ".")


def model_from_config(d: dict) -> TeacherModel:
    """Rebuild the architecture of `get_config()` offline with random weights (a checkpoint then fills them)."""
    fields = {f.name for f in dataclasses.fields(TeacherConfig)}
    unknown = sorted(set(d) - fields)
    if unknown:
        raise ValueError(f"teacher config has unknown keys {unknown}; allowed: {sorted(fields)}")
    return TeacherModel(TeacherConfig(**d))


def _checkpoint_config(part: str, folder: Path, cfg: TeacherConfig) -> dict:
    """Take the architecture (and preprocessing) from the checkpoint's own config files."""
    c = read_json(folder, "config.json")
    if part == "lfm2":
        return {"lfm2": c}
    if part == "audio":
        enc = c.get("encoder_config", c)
        pre = read_json(folder, "preprocessor_config.json") or {}
        mel = {k: pre.get(k, v) for k, v in cfg.mel.items() if k != "sample_rate"}
        return {"audio": enc, "mel": {**mel, "sample_rate": pre.get("sampling_rate", 16000)}}
    vis = c.get("vision_config", c)
    kind = c.get("model_type", "")
    vis = {**vis, "model_type": vis.get("model_type") or ("siglip2_vision_model" if "siglip2" in kind
                                                           else "siglip_vision_model")}
    pre = read_json(folder, "preprocessor_config.json") or {}
    return {"vision": vis, "image_mean": tuple(pre.get("image_mean", cfg.image_mean)),
            "image_std": tuple(pre.get("image_std", cfg.image_std))}


def build_teacher(cfg: TeacherConfig, pretrained: bool = True) -> TeacherModel:
    """A teacher with the pretrained weights its sources name (MissingWeightsError if any is absent).
    `pretrained=False` builds the same architecture with random weights (sizing, meta device)."""
    sources = cfg.sources()
    if not pretrained or not sources:
        return TeacherModel(cfg)
    folders = resolve_sources(sources)
    for part, folder in folders.items():
        cfg = dataclasses.replace(cfg, **_checkpoint_config(part, folder, cfg))
    model = TeacherModel(cfg)
    model.load_pretrained(folders)
    return model


# -- presets -------------------------------------------------------------------------------------------------
TEACHERS = model_registry("teacher")
register_teacher = TEACHERS.register
list_teachers = TEACHERS.names


def create_teacher(name: str, **overrides) -> TeacherModel:
    """`create_teacher("teacher_tiny", num_classes=6)`; `pretrained=False` skips loading real weights."""
    return TEACHERS.create(name, **overrides)


def _override(cfg: TeacherConfig, overrides: dict) -> TeacherConfig:
    """Preset + overrides; dict-valued fields (vision, audio, lfm2, mel) are merged key by key."""
    check_fields(TeacherConfig, overrides, "teacher")  # unknown names and wrong types fail before any build
    merged = {k: ({**getattr(cfg, k), **v} if isinstance(v, dict) and isinstance(getattr(cfg, k), dict) else v)
              for k, v in overrides.items()}
    return dataclasses.replace(cfg, **merged)


def _ref(name: str, key: str | None = None) -> dict:
    d = {k: v for k, v in reference_config(name).items() if not k.startswith("_")}
    return d[key] if key else d


def teacher_lfm2_700m_config(**overrides) -> TeacherConfig:
    cfg = TeacherConfig(
        vision={**_ref("siglip2-base-patch16-224", "vision_config")},
        audio={**_ref("parakeet-ctc-0.6b", "encoder_config")},
        lfm2=_ref("lfm2-700m"), num_layers=6,
        vision_source="google/siglip2-base-patch16-224", audio_source="nvidia/parakeet-ctc-0.6b",
        lfm2_source="LiquidAI/LFM2-700M", proj_hidden_dim=1024, out_dim=512, head_hidden_dim=256, dropout=0.1)
    return _override(cfg, overrides)


def teacher_tiny_config(**overrides) -> TeacherConfig:
    """Random-init configs of the same transformers classes, sized for the CPU demo (8 x 64x64 frames, 2 s)."""
    cfg = TeacherConfig(
        vision={"model_type": "siglip_vision_model", "hidden_size": 96, "intermediate_size": 256,
                "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32, "patch_size": 8,
                "vision_use_head": False},
        audio={"hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256,
               "conv_kernel_size": 9, "subsampling_conv_channels": 32, "num_mel_bins": 64,
               "dropout": 0.1, "attention_dropout": 0.0, "activation_dropout": 0.0},
        lfm2={"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "full_attn_idxs": [2], "block_multiple_of": 32, "vocab_size": 256},
        num_layers=3, vision_pooling="grid", vision_grid=4, unimodal_heads=True, proj_hidden_dim=128, out_dim=128,
        head_hidden_dim=128, dropout=0.1)
    return _override(cfg, overrides)


@register_teacher
def teacher_lfm2_700m(pretrained: bool = True, **overrides) -> TeacherModel:
    """SigLIP2-B/16-224 + Parakeet-CTC-0.6B encoder + first k=6 layers of LFM2-700M (real checkpoints)."""
    return build_teacher(teacher_lfm2_700m_config(**overrides), pretrained)


@register_teacher
def teacher_tiny(pretrained: bool = True, **overrides) -> TeacherModel:
    """Tiny random-init teacher for tests and the CPU demo (loads weights only if `*_source` is given)."""
    return build_teacher(teacher_tiny_config(**overrides), pretrained)


TEACHER_CONFIGS = {"teacher_lfm2_700m": teacher_lfm2_700m_config, "teacher_tiny": teacher_tiny_config}

__all__ = ["TeacherConfig", "TeacherModel", "LoraSettings", "LORA_TARGETS", "TEACHERS", "TEACHER_CONFIGS",
           "register_teacher", "create_teacher",
           "list_teachers", "model_from_config", "build_teacher", "teacher_lfm2_700m_config", "teacher_tiny_config"]
