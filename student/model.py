"""The student: audio branch + video branch -> fusion (LFM2 by default) -> classifier head.

    video [B,T,3,H,W], audio [B,N] -> VideoBranch -> visual [B,S,Dv] --.
                                   -> AudioBranch -> audio  [B,S,Da] --+-> fusion -> features [B,S,D] -> head -> logits
A modality marked missing (modality_mask[:, i] == 0) has its segment features replaced by a learned embedding
through arithmetic (x*m + e*(1-m)): the missing input has no influence and the graph has no branches.
Presets: `student_xs` (CPU demo) and `student_s` (the RTX 3050 edge model).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from emodistill.core.config import check_fields
from emodistill.core.layers import replace_missing
from emodistill.core.model import AVModel, model_registry, unimodal_heads

from .audio import AudioBranch
from .fusions import create_fusion
from .head import ClassifierHead
from .video import VideoBranch

logger = logging.getLogger(__name__)

PARTS = ("audio", "video", "fusion", "head")


@dataclass
class StudentConfig:
    """Every hyperparameter of a student; `get_config()` is `asdict` of this, JSON-able."""

    name: str = "student"
    num_classes: int = 8
    num_segments: int = 8
    dropout: float = 0.1
    # audio branch: log-mel (16 kHz) -> Conformer -> segment pooling
    sample_rate: int = 16000
    n_mels: int = 64
    n_fft: int = 400
    hop_length: int = 160
    audio_dim: int = 144
    audio_layers: int = 4
    audio_heads: int = 4
    audio_ff_mult: int = 4
    audio_conv_kernel: int = 15
    audio_pool: str = "attention"
    # video branch: frame encoder ("cnn", "vit" or a timm model name) -> ROI top-k -> temporal encoder -> segment pooling
    frame_encoder: str = "mobilenetv4_conv_small_050"
    pretrained: bool = False
    image_size: int = 112
    cnn_widths: list[int] = field(default_factory=lambda: [24, 32, 48, 64])
    vit_patch: int = 8
    vit_dim: int = 64
    vit_depth: int = 2
    vit_heads: int = 4
    vit_mlp_ratio: int = 2
    video_dim: int = 256
    roi_topk: int = 0
    temporal_layers: int = 2
    temporal_pattern: list[str] = field(default_factory=lambda: ["conv", "full_attention"])
    temporal_heads: int = 4
    temporal_ff_mult: float = 3.0
    video_pool: str = "attention"
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    # fusion: any mode of student.fusions; fusion_kwargs[mode] are that mode's extra options
    fusion: str = "lfm2"
    fusion_dim: int = 256
    fusion_hidden_dim: int = 256
    fusion_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # classifier head
    head_pool: str = "mean"
    head_hidden: list[int] = field(default_factory=lambda: [256])
    head_dropout: float = 0.2
    # linear audio-only / video-only heads on the mean branch features: a training signal per branch (the
    # `unimodal` distill loss); not part of `logits`, so exports leave them out
    unimodal_heads: bool = False
    # the input sizes this preset is designed for (info / export / demo use them for dummy inputs)
    default_preprocess: dict[str, Any] = field(
        default_factory=lambda: {"num_frames": 16, "image_size": 112, "clip_seconds": 3.0})

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        check_fields(cls, d, "student")  # unknown names and wrong types fail before any build
        return cls(**d)


class StudentModel(AVModel):
    """The model contract of emodistill.core.model: forward(video [B,T,3,H,W] in [0,1], audio [B,N],
    modality_mask [B,2] | None) -> dict(logits [B,C], features [B,S,D], pooled [B,D], audio_features [B,S,Da],
    visual_features [B,S,Dv], aux_loss? scalar, audio_logits? / visual_logits? [B,C] with `unimodal_heads`)."""

    family = "student"
    head_input = "features"  # the classifier head pools the segments itself

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.audio = AudioBranch(
            cfg.audio_dim, cfg.audio_layers, cfg.audio_heads, cfg.audio_ff_mult, cfg.audio_conv_kernel,
            cfg.num_segments, cfg.audio_pool, cfg.dropout, cfg.sample_rate, cfg.n_mels, cfg.n_fft, cfg.hop_length)
        self.video = VideoBranch(
            cfg.video_dim, cfg.frame_encoder, cfg.image_size, cfg.pretrained, cfg.vit_patch, cfg.vit_dim,
            cfg.vit_depth, cfg.vit_heads, cfg.vit_mlp_ratio, cfg.roi_topk, 1.0, cfg.temporal_layers,
            cfg.temporal_pattern, cfg.temporal_heads, cfg.temporal_ff_mult, cfg.num_segments, cfg.video_pool,
            cfg.dropout, cfg.mean, cfg.std, cfg.cnn_widths)
        fusion_kw = {"hidden_dim": cfg.fusion_hidden_dim, "dropout": cfg.dropout,
                     **cfg.fusion_kwargs.get(cfg.fusion, {})}
        self.fusion = create_fusion(cfg.fusion, cfg.audio_dim, cfg.video_dim, cfg.num_segments, cfg.fusion_dim,
                                    **fusion_kw)
        self.head = ClassifierHead(cfg.fusion_dim, cfg.num_classes, cfg.head_hidden, cfg.head_pool, cfg.head_dropout)
        self.unimodal = (unimodal_heads(cfg.audio_dim, cfg.video_dim, cfg.num_classes) if cfg.unimodal_heads
                         else None)

    # -- the model contract (forward_head, forward, get_config, counting: AVModel) -------------------------------
    def feature_dims(self) -> dict[str, int]:
        c = self.config
        return {"features": c.fusion_dim, "audio_features": c.audio_dim, "visual_features": c.video_dim}

    def forward_features(self, video: torch.Tensor, audio: torch.Tensor,
                         modality_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """-> features [B,S,D], pooled [B,D], audio_features [B,S,Da], visual_features [B,S,Dv] (+ aux_loss).

        audio_/visual_features are what the fusion sees: a missing modality's are its learned embedding.
        """
        a = self.audio(audio)
        v = self.video(video)
        if modality_mask is not None:
            a = replace_missing(a, modality_mask[:, 0], self.audio.missing)
            v = replace_missing(v, modality_mask[:, 1], self.video.missing)
        elif self.training:
            # keep the missing embeddings in the autograd graph (zero gradient): DDP without
            # find_unused_parameters fails on parameters that get no gradient
            a = a + 0.0 * self.audio.missing
            v = v + 0.0 * self.video.missing
        out = self.fusion(a, v)
        feats = {"features": out["fused"], "pooled": out["pooled"], "audio_features": a, "visual_features": v}
        if out.get("aux_loss") is not None:
            feats["aux_loss"] = out["aux_loss"]
        return feats

    def parts(self) -> dict[str, list[nn.Parameter]]:
        """audio, video, fusion, head (the unimodal heads count as part of the head)."""
        head = [*self.head.parameters(), *(self.unimodal.parameters() if self.unimodal is not None else [])]
        return {"audio": list(self.audio.parameters()), "video": list(self.video.parameters()),
                "fusion": list(self.fusion.parameters()), "head": head}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations of the conformer, frame encoder, temporal and fusion layers in backward."""
        self.audio.encoder.grad_checkpointing = enable
        self.video.set_grad_checkpointing(enable)
        if hasattr(self.fusion, "set_grad_checkpointing"):  # the ablation fusions have nothing worth it
            self.fusion.set_grad_checkpointing(enable)


# -- registry and presets ---------------------------------------------------------------------------------------
STUDENTS = model_registry("student")
register_student = STUDENTS.register


def create_student(name: str, **overrides: Any) -> StudentModel:
    """A preset by name; `overrides` replace StudentConfig fields (e.g. num_classes=6, fusion="gated")."""
    return STUDENTS.create(name, **overrides)


def list_students() -> list[str]:
    return STUDENTS.names()


def model_from_config(d: dict) -> StudentModel:
    """Rebuild a student from `get_config()` (random weights; a checkpoint's weights are loaded after).

    `pretrained` is forced off: the weights come from the checkpoint, and rebuilding must not touch the hub.
    """
    return StudentModel(StudentConfig.from_dict({**d, "pretrained": False}))


def _build(cfg: StudentConfig, overrides: dict[str, Any]) -> StudentModel:
    cfg = StudentConfig.from_dict({**asdict(cfg), **overrides})
    return StudentModel(cfg)


@register_student
def student_xs(**overrides: Any) -> StudentModel:
    """Tiny CPU-demo student (~0.6M params): 8 frames 64x64 through a 4-stage CNN (stride 8, 64 tokens per
    frame), 2 s audio through a 2-layer d=64 Conformer, 2 LFM2 fusion layers (conv, attention) of width 96."""
    cfg = StudentConfig(
        name="student_xs", num_segments=8, dropout=0.1,
        n_mels=64, audio_dim=64, audio_layers=2, audio_heads=4, audio_ff_mult=2, audio_conv_kernel=15,
        frame_encoder="cnn", image_size=64,
        video_dim=64, roi_topk=0, temporal_layers=2, temporal_heads=4, temporal_ff_mult=2.0,
        fusion="lfm2", fusion_dim=96, fusion_hidden_dim=96,
        fusion_kwargs={"lfm2": {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                                "layer_pattern": ["conv", "full_attention"], "projection_hidden_dim": 128,
                                "ff_multiplier": 3.0}},
        head_hidden=[96], head_dropout=0.2, unimodal_heads=True,
        default_preprocess={"num_frames": 8, "image_size": 64, "clip_seconds": 2.0})
    return _build(cfg, overrides)


@register_student
def student_s(**overrides: Any) -> StudentModel:
    """The RTX 3050 edge student (~8M params, ~1 GFLOP per clip): 16 frames 112x112 through timm's
    MobileNetV4-conv-small (0.5 width) with ROI top-8 tokens and a 2-layer temporal encoder, 3 s audio through
    a 4-layer d=144 Conformer on 80 mels, 4 bidirectional LFM2 fusion layers (conv, conv, attention) of width 256."""
    cfg = StudentConfig(
        name="student_s", num_segments=8, dropout=0.1,
        n_mels=80, audio_dim=144, audio_layers=4, audio_heads=4, audio_ff_mult=4, audio_conv_kernel=15,
        frame_encoder="mobilenetv4_conv_small_050", image_size=112, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5],
        video_dim=256, roi_topk=8, temporal_layers=2, temporal_heads=4, temporal_ff_mult=3.0,
        fusion="lfm2", fusion_dim=256, fusion_hidden_dim=256,
        fusion_kwargs={"lfm2": {"num_layers": 4, "num_heads": 8, "num_kv_heads": 2,
                                "layer_pattern": ["conv", "conv", "full_attention"], "projection_hidden_dim": 384,
                                "ff_multiplier": 4.5}},
        head_hidden=[256], head_dropout=0.2, unimodal_heads=True,
        default_preprocess={"num_frames": 16, "image_size": 112, "clip_seconds": 3.2})
    return _build(cfg, overrides)


__all__ = ["StudentConfig", "StudentModel", "STUDENTS", "register_student", "create_student", "list_students",
           "model_from_config", "student_xs", "student_s"]
