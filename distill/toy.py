"""Toy audio-visual data and models that follow the emodistill interfaces, for fast tests of the loop.

`ToyClips` returns the same items as the data layer's ClipDataset (video [T,3,H,W] in [0,1], audio [N],
label, actor, path, key, view) with deterministic augmentation views, in microseconds instead of
decoding video. `ToyAV` implements the model contract (emodistill.core.model); `toy_student` and
`toy_teacher` are registered presets like every other model. The class cue is split between the
modalities (classes 2k and 2k+1 share their video colour and differ in audio pitch, and vice versa)
so fusion matters, as on the synthetic set. `distill/run.py` reads the toy set with `toy:` in the config.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset

from emodistill.core.config import BaseConfig
from emodistill.core.layers import replace_missing
from emodistill.core.model import AVModel, model_registry


class ToyDataConfig(BaseConfig):
    """Sizes of the toy splits and tensors (replaces `data:` in a distill config when set)."""

    num_classes: int = Field(4, ge=2, description="number of classes (even: half the cue in each modality)")
    train: int = Field(64, ge=1, description="train split size")
    val: int = Field(24, ge=1, description="val split size")
    test: int = Field(24, ge=1, description="test split size")
    frames: int = Field(4, ge=1, description="T")
    image_size: int = Field(16, ge=16, description="H = W")
    samples: int = Field(128, ge=8, description="audio samples N")
    noise: float = Field(0.3, ge=0, description="per-sample noise level")
    num_views: int = Field(2, ge=1, description="augmentation views per sample (train only)")
    seed: int = Field(0, description="generator seed")
    sleep_per_item: float = Field(0.0, ge=0, description="seconds to sleep in __getitem__ (simulates slow I/O)")


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


class ToyClips(Dataset):
    """A deterministic toy split with ClipDataset's item contract."""

    def __init__(self, cfg: ToyDataConfig, split: str, augment: bool = False):
        self.cfg, self.split, self.augment = cfg, split, augment
        self.n = getattr(cfg, split)
        self.class_names = [f"class{i}" for i in range(cfg.num_classes)]
        self.num_classes = cfg.num_classes
        self.epoch = 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def view_of(self, i: int, epoch: int) -> int:
        if not self.augment or self.cfg.num_views == 1:
            return 0
        return _seed(self.cfg.seed, "view", epoch, i) % self.cfg.num_views

    @property
    def labels(self) -> list[int]:
        """Every item's label without building it (the first draw of the item's generator, as in `load`)."""
        return [int(torch.randint(self.cfg.num_classes, (1,),
                                  generator=torch.Generator().manual_seed(_seed(self.cfg.seed, self.split, i))))
                for i in range(self.n)]

    def key_of(self, i: int) -> str:
        return f"{self.split}-{self.cfg.seed}-{i}"

    def __getitem__(self, i: int) -> dict:
        return self.load(i, self.view_of(i, self.epoch))

    def load(self, i: int, view: int = 0) -> dict:
        """The item for an explicit augmentation view (as ClipDataset.load)."""
        c = self.cfg
        if c.sleep_per_item:
            time.sleep(c.sleep_per_item)
        g = torch.Generator().manual_seed(_seed(c.seed, self.split, i))
        label = int(torch.randint(c.num_classes, (1,), generator=g))
        half = c.num_classes // 2
        colour = torch.tensor([(label % half) / half, 1 - (label % half) / half, 0.5])
        video = colour.view(1, 3, 1, 1) + c.noise * torch.randn(c.frames, 3, c.image_size, c.image_size, generator=g)
        t = torch.arange(c.samples, dtype=torch.float32)
        audio = 0.5 * torch.sin(t * (0.2 + 0.4 * (label // half))) + c.noise * torch.randn(c.samples, generator=g)
        key = self.key_of(i)
        view = view if self.augment else 0
        if view > 0:  # 0 and CLEAN_VIEW (-1): the clip as it is
            ga = torch.Generator().manual_seed(_seed(c.seed, key, view))
            video = video + 0.1 * torch.randn(video.shape, generator=ga)
            audio = audio * (0.8 + 0.4 * torch.rand(1, generator=ga))
        return {"video": video.clamp(0, 1), "audio": audio, "label": torch.tensor(label, dtype=torch.long),
                "actor": i % 6, "path": f"toy/{key}.mp4", "key": key, "view": view}


def toy_datasets(cfg: ToyDataConfig) -> dict[str, ToyClips]:
    return {s: ToyClips(cfg, s, augment=(s == "train")) for s in ("train", "val", "test")}


@dataclass
class ToyAVConfig:
    family: str = "student"
    num_classes: int = 4
    frames: int = 4
    samples: int = 128
    num_segments: int = 2
    audio_dim: int = 8
    visual_dim: int = 8
    dim: int = 16
    dropout: float = 0.1


class ToyAV(AVModel):
    """A tiny audio-visual classifier with the model contract of emodistill.core.model.

    video [B,T,3,H,W] -> per-frame colour means -> [B,S,Dv]; audio [B,N] -> |rfft| of S chunks ->
    [B,S,Da]; concat + MLP -> features [B,S,D]; pooled [B,D]; logits [B,C].
    """

    def __init__(self, cfg: ToyAVConfig):
        super().__init__()
        self.config, self.family, self.num_classes = cfg, cfg.family, cfg.num_classes
        chunk = cfg.samples // cfg.num_segments
        self.visual = nn.Sequential(nn.Linear(6, cfg.visual_dim), nn.GELU())
        self.audio = nn.Sequential(nn.Linear(chunk // 2 + 1, cfg.audio_dim), nn.GELU())
        self.missing = nn.Parameter(torch.zeros(2, max(cfg.audio_dim, cfg.visual_dim)))
        self.fuse = nn.Sequential(nn.Linear(cfg.audio_dim + cfg.visual_dim, cfg.dim), nn.GELU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, cfg.dim))
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def feature_dims(self) -> dict:
        c = self.config
        return {"features": c.dim, "pooled": c.dim, "audio_features": c.audio_dim, "visual_features": c.visual_dim}

    def forward_features(self, video, audio, modality_mask=None) -> dict:
        c = self.config
        b, t = video.shape[:2]
        frame = torch.cat([video.mean((-1, -2)), video.std((-1, -2))], -1)          # [B,T,6]
        v = self.visual(frame)
        v = F.adaptive_avg_pool1d(v.transpose(1, 2), c.num_segments).transpose(1, 2)  # [B,S,Dv]
        spec = torch.fft.rfft(audio[:, : c.samples].reshape(b, c.num_segments, -1)).abs()
        a = self.audio(spec)                                                          # [B,S,Da]
        if modality_mask is not None:
            a = replace_missing(a, modality_mask[:, 0], self.missing[0, : c.audio_dim])
            v = replace_missing(v, modality_mask[:, 1], self.missing[1, : c.visual_dim])
        feats = self.fuse(torch.cat([a, v], -1))
        return {"features": feats, "pooled": feats.mean(1), "audio_features": a, "visual_features": v}


# The toys are presets like the students' and teachers' (`create_model("toy_student")`), in their own registry so
# they never show in `student list`. They play the role their instances save as (`family`), and are sized by the
# clips they get (`input_sized`: the caller passes the clips' `frames` T and `samples` N).
TOYS = model_registry("toy")


def _toy(preset: dict, num_classes: int, frames: int, samples: int, kw: dict) -> ToyAV:
    return ToyAV(ToyAVConfig(num_classes=num_classes, frames=frames, samples=samples, **{**preset, **kw}))


@TOYS.register(role="student", input_sized=True)
def toy_student(num_classes: int = 4, frames: int = 4, samples: int = 128, **kw) -> ToyAV:
    """Small toy (family "student")."""
    return _toy(dict(family="student", dim=16, audio_dim=8, visual_dim=8), num_classes, frames, samples, kw)


@TOYS.register(role="teacher", input_sized=True)
def toy_teacher(num_classes: int = 4, frames: int = 4, samples: int = 128, **kw) -> ToyAV:
    """Wider toy without dropout (family "teacher")."""
    return _toy(dict(family="teacher", dim=48, audio_dim=24, visual_dim=24, dropout=0.0), num_classes, frames,
                samples, kw)


def create_toy(name: str, **kw) -> ToyAV:
    """`toy_student` or `toy_teacher` by name (UnknownNameError, a KeyError, for others)."""
    return TOYS.create(name, **kw)


__all__ = ["ToyDataConfig", "ToyClips", "toy_datasets", "ToyAV", "ToyAVConfig", "TOYS", "create_toy", "toy_student",
           "toy_teacher"]
