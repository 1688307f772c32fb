"""The teacher's pretrained parts, each a transformers class wrapped to take the emodistill input contract.

- `VisionEncoder`: SigLIP (FixRes SigLIP2 checkpoints) or SigLIP2 NaFlex vision tower per frame, resize +
  mean/std inside, pooled per-frame token, temporal segment pooling -> [B,S,Dv].
- `LogMel` + `AudioEncoder`: ParakeetFeatureExtractor's log-mel re-implemented in torch (in the graph),
  `ParakeetEncoder` (FastConformer), segment pooling -> [B,S,Da].
- `build_lfm2`: an `Lfm2Model` holding only the first k decoder layers and no token embedding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (Lfm2Config, Lfm2Model, ParakeetEncoder, ParakeetEncoderConfig, Siglip2VisionConfig,
                          Siglip2VisionModel, SiglipVisionConfig, SiglipVisionModel)
from transformers.audio_utils import mel_filter_bank

VISION_TYPES = {"siglip_vision_model": (SiglipVisionConfig, SiglipVisionModel),
                "siglip2_vision_model": (Siglip2VisionConfig, Siglip2VisionModel)}
_HF_META = ("architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "model_type")


def hf_config(cls, d: dict):
    """A transformers config from a (possibly hub-format) dict, ignoring bookkeeping keys."""
    return cls.from_dict({k: v for k, v in d.items() if k not in _HF_META})


def segment_pool(x: torch.Tensor, num_segments: int) -> torch.Tensor:
    """[B,L,D] -> [B,S,D]: mean over S contiguous time spans (nearest repeat when L < S)."""
    if x.shape[1] < num_segments:
        return F.interpolate(x.transpose(1, 2), size=num_segments, mode="nearest").transpose(1, 2)
    return F.adaptive_avg_pool1d(x.transpose(1, 2), num_segments).transpose(1, 2)


class VisionEncoder(nn.Module):
    """video [B,T,3,H,W] RGB in [0,1] -> (segments [B,S,Dv], frames [B,T,Dv]).

    Per-frame token: SigLIP's attention-pooling `head`, the `mean` of patch tokens, or `grid`: patch tokens
    averaged onto a grid x grid layout and concatenated (Dv = hidden * grid^2).
    """

    def __init__(self, config: dict, num_segments: int, image_mean, image_std, pooling: str = "head",
                 grid: int = 2):
        super().__init__()
        self.kind = config.get("model_type", "siglip_vision_model")
        if self.kind not in VISION_TYPES:
            raise ValueError(f"vision model_type {self.kind!r} not supported; use one of {sorted(VISION_TYPES)}")
        cfg_cls, model_cls = VISION_TYPES[self.kind]
        self.model = model_cls(hf_config(cfg_cls, config))
        c = self.model.config
        self.patch = c.patch_size
        if self.kind == "siglip_vision_model":
            self.image_size = c.image_size
        else:  # NaFlex: the largest square patch grid within the position-embedding budget
            self.side = int(math.isqrt(c.num_patches))
            self.image_size = self.side * self.patch
        if pooling not in ("head", "mean", "grid"):
            raise ValueError(f"vision pooling must be 'head', 'mean' or 'grid', got {pooling!r}")
        self.pooling = "mean" if pooling == "head" and not c.vision_use_head else pooling
        if self.pooling != "head" and c.vision_use_head:  # an unused head would leave DDP waiting for its grads
            self.model.head, self.model.use_head = None, False
        self.num_segments = num_segments
        side = self.image_size // self.patch
        self.pool_grid = min(grid, side) if self.pooling == "grid" else 1
        if self.pooling == "grid" and self.kind != "siglip_vision_model":
            raise ValueError("grid pooling needs a fixed patch grid (SigLIP FixRes); use 'head' or 'mean' for NaFlex")
        self.dim = c.hidden_size * self.pool_grid ** 2
        self.register_buffer("mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] -> [N, H/p * W/p, p*p*3] in Siglip2ImageProcessor's order (row-major patches, HWC inside)."""
        n, c, h, w = x.shape
        p = self.patch
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(n, (h // p) * (w // p), p * p * c)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = video.shape[:2]
        x = video.flatten(0, 1).float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.image_size)
        x = ((x - self.mean) / self.std).to(self.model.dtype)
        if self.kind == "siglip_vision_model":
            out = self.model(pixel_values=x)
        else:
            patches = self._patchify(x)
            mask = torch.ones(patches.shape[:2], dtype=torch.long, device=x.device)
            shapes = torch.tensor([[self.side, self.side]], device=x.device).expand(patches.shape[0], 2)
            out = self.model(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes)
        if self.pooling == "head":
            tokens = out.pooler_output
        elif self.pooling == "mean":
            tokens = out.last_hidden_state.mean(1)
        else:  # patch tokens averaged onto a grid x grid layout and concatenated: keeps where a cue is
            h = out.last_hidden_state
            side = self.image_size // self.patch
            h = h.transpose(1, 2).reshape(h.shape[0], h.shape[2], side, side)
            tokens = F.adaptive_avg_pool2d(h, self.pool_grid).flatten(1)
        frames = tokens.float().view(b, t, -1)
        return segment_pool(frames, self.num_segments), frames


class LogMel(nn.Module):
    """audio [B,N] 16 kHz -> (normalised log-mel [B,F,M], frame mask [B,F]), as ParakeetFeatureExtractor
    computes it for unpadded clips of length N (pre-emphasis, |STFT|^2, slaney mel, log, per-clip norm)."""

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 512, hop_length: int = 160,
                 win_length: int = 400, preemphasis: float | None = 0.97):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length, self.preemphasis = n_fft, hop_length, win_length, preemphasis
        fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                             max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney",
                             mel_scale="slaney", dtype=np.float32)
        self.register_buffer("fb", torch.from_numpy(np.ascontiguousarray(fb.T)), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(audio.device.type, enabled=False):  # log-mel statistics need fp32
            x = audio.float()
            if self.preemphasis:
                x = torch.cat([x[:, :1], x[:, 1:] - self.preemphasis * x[:, :-1]], dim=1)
            spec = torch.stft(x, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                              window=self.window, return_complex=True, pad_mode="constant")
            power = torch.view_as_real(spec).pow(2).sum(-1)
            mel = torch.log(self.fb @ power + 2.0 ** -24).transpose(1, 2)  # [B,F,M]
            valid = (x.shape[1] + self.n_fft // 2 * 2 - self.n_fft) // self.hop_length
            mask = (torch.arange(mel.shape[1], device=x.device) < valid).unsqueeze(0).expand(x.shape[0], -1)
            m = mask.unsqueeze(-1).to(mel.dtype)
            mean = (mel * m).sum(1, keepdim=True) / valid
            var = ((mel * m - mean) ** 2 * m).sum(1, keepdim=True) / (valid - 1)
            mel = (mel - mean) / (var.sqrt() + 1e-5) * m
        return mel, mask


class AudioEncoder(nn.Module):
    """audio [B,N] 16 kHz mono -> (segments [B,S,Da], encoder frames [B,L,Da])."""

    def __init__(self, config: dict, num_segments: int, mel: dict):
        super().__init__()
        cfg = hf_config(ParakeetEncoderConfig, {**config, "layerdrop": 0.0})  # layer drop breaks DDP / determinism
        self.frontend = LogMel(n_mels=cfg.num_mel_bins, **mel)
        self.model = ParakeetEncoder(cfg)
        # transformers initialises these convs N(0, 0.02) (fine when pretrained weights overwrite them); from
        # scratch, three stacked such convs shrink the log-mel to ~1e-7 and the encoder sees only its biases.
        for m in self.model.subsampling.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.num_segments = num_segments
        self.dim = cfg.hidden_size

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, mask = self.frontend(audio)
        out = self.model(input_features=feats.to(self.model.dtype), attention_mask=mask).last_hidden_state.float()
        return segment_pool(out, self.num_segments), out


def lfm2_kept_config(config: dict, num_layers: int) -> Lfm2Config:
    """The Lfm2Config of the first `num_layers` layers: layer types cut, no vocabulary, no cache."""
    full = hf_config(Lfm2Config, config)
    if not 1 <= num_layers <= full.num_hidden_layers:
        raise ValueError(f"num_layers={num_layers} must be in 1..{full.num_hidden_layers} (layers of the LFM2 model)")
    d = full.to_dict()
    types = list(full.layer_types[:num_layers])
    d.update(num_hidden_layers=num_layers, layer_types=types, use_cache=False, vocab_size=1,
             full_attn_idxs=[i for i, t in enumerate(types) if t == "full_attention"],
             pad_token_id=None, bos_token_id=None, eos_token_id=None, tie_word_embeddings=False)
    return hf_config(Lfm2Config, d)


def build_lfm2(config: dict, num_layers: int) -> Lfm2Model:
    """`Lfm2Model` with the first `num_layers` decoder layers + final norm, fed through `inputs_embeds`.

    Built with a 1-token vocabulary, then its embedding removed, so the pretrained 65536 x D table is never
    allocated; its state dict is exactly the kept layers and `embedding_norm`.
    """
    model = Lfm2Model(lfm2_kept_config(config, num_layers))
    model.embed_tokens = nn.Identity()
    return model


__all__ = ["VisionEncoder", "LogMel", "AudioEncoder", "build_lfm2", "lfm2_kept_config", "segment_pool",
           "hf_config", "VISION_TYPES"]
