"""Audio branch of the student: waveform -> log-mel -> small Conformer -> S segment features.

The log-mel front end is part of the model and exports with it: the STFT is a Conv1d whose fixed
weights are the windowed DFT basis (real and imaginary rows), the mel filterbank is a fixed matmul,
then log(eps + x). No torch.stft in the graph, so ONNX Runtime and TensorRT take the whole model.

    audio [B, N] --LogMel--> [B, F, n_mels] --Conformer (x4 subsampling)--> [B, F/4, D]
                 --SegmentPooling--> [B, S, D]
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .head import SegmentPooling, sinusoidal_positions


class LogMel(nn.Module):
    """[B, N] waveform -> [B, frames, n_mels] natural-log mel power, frames = 1 + N // hop (centered).

    Matches torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, win_length, hop_length, f_min, f_max,
    n_mels, center, pad_mode, power=2, norm=None, mel_scale="htk") followed by log(eps + x).
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: int | None = None,
                 hop_length: int = 160, n_mels: int = 64, f_min: float = 0.0, f_max: float | None = None,
                 center: bool = True, pad_mode: str = "reflect", eps: float = 1e-6):
        super().__init__()
        from torchaudio.functional import melscale_fbanks

        win_length = win_length or n_fft
        self.n_fft, self.hop_length, self.center, self.pad_mode, self.eps = n_fft, hop_length, center, pad_mode, eps
        self.n_freq = n_fft // 2 + 1
        # torch.stft centres a shorter window inside the n_fft frame; do the same
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win_length) // 2
        window[left:left + win_length] = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(self.n_freq, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])  # [2F, n_fft]
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)
        fb = melscale_fbanks(self.n_freq, f_min, f_max or sample_rate / 2, n_mels, sample_rate, None, "htk")
        self.register_buffer("fbank", fb.T.contiguous().float(), persistent=False)  # [n_mels, F]

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length if self.center else 1 + (num_samples - self.n_fft) // self.hop_length

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.unsqueeze(1)
        if self.center:
            x = F.pad(x, (self.n_fft // 2, self.n_fft // 2), mode=self.pad_mode)
        spec = F.conv1d(x, self.basis, stride=self.hop_length)  # [B, 2F, frames]
        re, im = spec[:, : self.n_freq], spec[:, self.n_freq:]
        mel = torch.matmul(self.fbank, re * re + im * im)  # [B, n_mels, frames]
        return torch.log(mel + self.eps).transpose(1, 2)


class FeedForward(nn.Module):
    """Pre-norm Swish FFN of the Conformer (used twice per block, macaron style, with half residual)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(dim * mult, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """Pre-norm bidirectional multi-head self-attention. [B, T, D] -> [B, T, D]."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, D)))


class ConvModule(nn.Module):
    """Conformer convolution module: pointwise (2D) -> GLU -> depthwise (k) -> LayerNorm -> Swish -> pointwise.

    LayerNorm instead of BatchNorm so batch-1 inference and tiny training batches behave the same.
    """

    def __init__(self, dim: int, kernel_size: int = 15, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Conv1d(dim, 2 * dim, 1)
        self.dw = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.dw_norm = nn.LayerNorm(dim)
        self.pw2 = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pw1(self.norm(x).transpose(1, 2)), dim=1)
        y = self.dw_norm(self.dw(y).transpose(1, 2))
        return self.drop(self.pw2(F.silu(y).transpose(1, 2)).transpose(1, 2))


class ConformerBlock(nn.Module):
    """x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm."""

    def __init__(self, dim: int, heads: int = 4, ff_mult: int = 4, kernel_size: int = 15, dropout: float = 0.1):
        super().__init__()
        self.ff1 = FeedForward(dim, ff_mult, dropout)
        self.attn = SelfAttention(dim, heads, dropout)
        self.conv = ConvModule(dim, kernel_size, dropout)
        self.ff2 = FeedForward(dim, ff_mult, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class ConvSubsampling(nn.Module):
    """Two stride-2 Conv1d over time (x4 fewer frames): [B, F, n_mels] -> [B, ceil(ceil(F/2)/2), D].

    1-D convolutions over the mel axis as channels: a fraction of the FLOPs of the usual Conv2d stem.
    """

    def __init__(self, n_mels: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, 3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(x.transpose(1, 2)))))
        return self.norm(x.transpose(1, 2))


class ConformerEncoder(nn.Module):
    """[B, F, n_mels] -> [B, F', D] with F' = F/4 (rounded up)."""

    def __init__(self, n_mels: int, dim: int, layers: int, heads: int, ff_mult: int, kernel_size: int,
                 dropout: float):
        super().__init__()
        self.subsample = ConvSubsampling(n_mels, dim)
        self.blocks = nn.ModuleList(ConformerBlock(dim, heads, ff_mult, kernel_size, dropout) for _ in range(layers))
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.subsample(x)
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x


class AudioBranch(nn.Module):
    """audio [B, N] (16 kHz mono) -> segment features [B, S, dim].

    `missing` is the learned embedding that replaces the segment features of a clip whose audio is
    marked missing (applied by the student model through its modality mask).
    """

    def __init__(self, dim: int = 144, layers: int = 4, heads: int = 4, ff_mult: int = 4, kernel_size: int = 15,
                 num_segments: int = 8, pool: str = "attention", dropout: float = 0.1, sample_rate: int = 16000,
                 n_mels: int = 64, n_fft: int = 400, hop_length: int = 160, mel_mean: float = -4.0,
                 mel_std: float = 4.0):
        super().__init__()
        self.dim = dim
        self.mel_mean, self.mel_std = mel_mean, mel_std
        self.logmel = LogMel(sample_rate, n_fft, None, hop_length, n_mels)
        self.encoder = ConformerEncoder(n_mels, dim, layers, heads, ff_mult, kernel_size, dropout)
        self.pool = SegmentPooling(dim, num_segments, pool)
        self.missing = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.missing, std=0.02)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = (self.logmel(audio) - self.mel_mean) / self.mel_std
        return self.pool(self.encoder(mel))


__all__ = ["LogMel", "FeedForward", "SelfAttention", "ConvModule", "ConformerBlock", "ConvSubsampling",
           "ConformerEncoder", "AudioBranch"]
