"""Stand-in models and data for the export tests (imported by conftest.py and the test modules).

`ToyAV` implements the model contract of `emodistill.core.model` (forward(video, audio, modality_mask) -> dict
with logits, features, pooled, audio_features, visual_features) with the op mix the student exports (conv,
linear, LayerNorm, RMSNorm in fp32, SDPA, softmax pooling), so the ONNX / INT8 / budget machinery is tested
without depending on student/. `ToyClips` is an in-memory
dataset whose classes are separable from both modalities, so a few dozen steps train a ToyAV to high
accuracy and INT8-vs-FP32 agreement is meaningful.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emodistill.core.layers import replace_missing
from emodistill.core.model import AVModel

T, HW, SR, SECONDS = 4, 32, 16000, 0.5
N = int(SR * SECONDS)


class RMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        h = x.float()
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype)


class ToyAV(AVModel):
    family = "student"

    def __init__(self, num_classes: int = 4, dim: int = 32, frames: int = T, samples: int = N, segments: int = 4):
        super().__init__()
        self.num_classes, self.dim, self.segments = num_classes, dim, segments
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, stride=2, padding=1, groups=dim)
        self.vproj = nn.Linear(dim, dim)
        self.aproj = nn.Linear(samples // segments, dim)
        self.anorm = nn.LayerNorm(dim)
        self.norm = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.missing = nn.Parameter(torch.zeros(2, dim))
        self.head = nn.Linear(dim, num_classes)

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, "dim": self.dim}

    def feature_dims(self) -> dict:
        return {"features": self.dim, "audio_features": self.dim, "visual_features": self.dim}

    def forward_features(self, video, audio, modality_mask=None):
        b, t = video.shape[:2]
        x = video.flatten(0, 1) - self.mean
        x = F.gelu(self.conv(x))
        x = F.gelu(self.conv2(x)).mean((2, 3)).view(b, t, -1)
        v = self.vproj(x)
        a = self.anorm(F.gelu(self.aproj(audio.view(b, self.segments, -1))))
        if modality_mask is not None:
            a = replace_missing(a, modality_mask[:, 0], self.missing[0])
            v = replace_missing(v, modality_mask[:, 1], self.missing[1])
        h = self.norm(torch.cat([a, v], 1))
        q, k, w = self.qkv(h).view(b, h.shape[1], 3, 2, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, w).transpose(1, 2).reshape(b, h.shape[1], -1)
        feats = h + self.out(y)
        pooled = (feats.softmax(1) * feats).sum(1)
        return {"features": feats, "pooled": pooled, "audio_features": a, "visual_features": v}


class ToyClips(torch.utils.data.Dataset):
    """Class c: frames tinted towards colour c, audio a sine at (c + 2) * 110 Hz, both with noise."""

    def __init__(self, n: int, num_classes: int = 4, seed: int = 0, frames: int = T, size: int = HW):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % num_classes
        self.class_names = [f"c{i}" for i in range(num_classes)]
        self.num_classes = num_classes
        tint = torch.rand(num_classes, 3, generator=g)
        t = torch.arange(N) / SR
        self.video = (tint[self.labels][:, None, :, None, None] * 0.6
                      + 0.4 * torch.rand(n, frames, 3, size, size, generator=g)).clamp(0, 1)
        freq = (self.labels.float() + 2) * 110
        self.audio = 0.5 * torch.sin(2 * math.pi * freq[:, None] * t) + 0.2 * torch.randn(n, N, generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"video": self.video[i], "audio": self.audio[i], "label": self.labels[i]}


def train_toy(model: ToyAV, data: ToyClips, steps: int = 40, lr: float = 3e-3) -> ToyAV:
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    model.train()
    step = 0
    while step < steps:
        for batch in loader:
            loss = F.cross_entropy(model(batch["video"], batch["audio"])["logits"], batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    return model.eval()


TOY_PREPROCESS = {"num_frames": T, "image_size": HW, "sample_rate": SR, "clip_seconds": SECONDS, "face_crop": "center"}


def train_student(model: nn.Module, train_ds, epochs: int = 8, lr: float = 2e-3, batch_size: int = 16,
                  seed: int = 0) -> nn.Module:
    """Plain cross-entropy training on a ClipDataset (the acceptance test's quickly-trained student)."""
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=g, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader), pct_start=0.15)
    model.train()
    for epoch in range(epochs):
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        for batch in loader:
            loss = F.cross_entropy(model(batch["video"], batch["audio"])["logits"], batch["label"], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()
