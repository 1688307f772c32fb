"""Unimodal vs fused check of a dataset: one tiny model trained three times (audio-only, video-only, fused).

    emodistill data probe --data data/synth            # demo preprocessing, fixed split

The model (a small per-frame conv net + mean/std over time for video, a small conv net on the log-mel
spectrogram for audio, an MLP on both) is identical in all three runs; the absent modality's
features are zeroed. On the synthetic set the fused run must beat the better unimodal one by >= 10
accuracy points (the set is designed so: docs/synthetic_data.md).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..contract import Preprocess
from ..metrics import classification_metrics
from ..utils import seed_everything
from .dataset import DataConfig, build_datasets

logger = logging.getLogger(__name__)

DEMO_PREPROCESS = dict(num_frames=8, image_size=64, clip_seconds=2.0, face_crop="center")
MODES = ("audio", "video", "fused")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ProbeNet(nn.Module):
    """video [B, T, 3, H, W] + log-mel [B, M, L] -> logits [B, C]; `mask` [B, 2] zeroes a modality's features."""

    def __init__(self, num_classes: int, n_mels: int = 40, width: int = 32):
        super().__init__()
        w = width
        # 4x4 patch stem: a 64x64 frame costs ~1 MMAC, so three runs fit in minutes on a laptop CPU
        self.video = nn.Sequential(nn.Conv2d(3, w // 2, 4, 4), nn.BatchNorm2d(w // 2), nn.ReLU(inplace=True),
                                   _block(w // 2, w), _block(w, 2 * w), _block(2 * w, 2 * w),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.video_proj = nn.Linear(4 * w, 2 * w)          # mean and std over frames (motion)
        self.audio = nn.Sequential(_block(1, w // 2), _block(w // 2, w), _block(w, 2 * w), _block(2 * w, 2 * w))
        freq = n_mels
        for _ in range(4):
            freq = (freq + 1) // 2
        self.audio_proj = nn.Linear(2 * w * freq * 2, 2 * w)  # per-band features, mean and max over time
        self.head = nn.Sequential(nn.Linear(4 * w, 2 * w), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                  nn.Linear(2 * w, num_classes))

    def forward(self, video: torch.Tensor, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        fv = self.video(video.flatten(0, 1)).view(b, t, -1)
        fv = self.video_proj(torch.cat([fv.mean(1), fv.std(1)], -1))
        fa = self.audio(mel.unsqueeze(1))                   # [B, C, F', L']
        fa = self.audio_proj(torch.cat([fa.mean(-1), fa.amax(-1)], 1).flatten(1))
        return self.head(torch.cat([fa * mask[:, :1], fv * mask[:, 1:]], -1))


def log_mel(audio: torch.Tensor, sample_rate: int, n_mels: int = 40) -> torch.Tensor:
    """[B, N] -> [B, n_mels, frames] (25 ms windows, 10 ms hop), per-utterance normalised log power."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=400, hop_length=160, n_mels=n_mels)(audio)
    x = torch.log(mel + 1e-6)
    return (x - x.mean(dim=(1, 2), keepdim=True)) / 4.0


def load_split(ds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All items of a ClipDataset: video uint8 [B, T, 3, H, W], audio float [B, N], labels [B]."""
    items = [ds[i] for i in range(len(ds))]
    video = torch.stack([(it["video"] * 255).round().to(torch.uint8) for it in items])
    return video, torch.stack([it["audio"] for it in items]), torch.stack([it["label"] for it in items])


def train_probe(mode: str, data: dict, num_classes: int, epochs: int = 12, batch: int = 32, lr: float = 2e-3,
                seed: int = 0, device: str = "cpu") -> dict:
    """Train ProbeNet on data["train"] with one modality (or both); val picks the epoch, test is reported."""
    seed_everything(seed)
    model = ProbeNet(num_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    video, mel, y = (t.to(device) for t in data["train"])
    steps = epochs * ((len(y) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
    mask_row = torch.tensor([[mode != "video", mode != "audio"]], dtype=torch.float32, device=device)
    g = torch.Generator().manual_seed(seed)

    def predict(split: str) -> np.ndarray:
        model.eval()
        v, m, _ = (t.to(device) for t in data[split])
        out = []
        with torch.no_grad():
            for i in range(0, len(v), 128):
                vb = v[i:i + 128].float() / 255
                out.append(model(vb, m[i:i + 128], mask_row.expand(len(vb), -1)).argmax(-1).cpu())
        model.train()
        return torch.cat(out).numpy()

    best = {"val": -1.0}
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=g).to(device)
        for i in range(0, len(y), batch):
            idx = perm[i:i + batch]
            vb = video[idx].float() / 255
            if torch.rand((), generator=g) < 0.5:
                vb = vb.flip(-1)
            loss = F.cross_entropy(model(vb, mel[idx], mask_row.expand(len(idx), -1)), y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        val = classification_metrics(data["val"][2].numpy(), predict("val"), num_classes)["accuracy"]
        if val >= best["val"]:
            test = classification_metrics(data["test"][2].numpy(), predict("test"), num_classes)
            best = {"val": val, "epoch": epoch, "test": test["accuracy"], "test_uar": test["uar"],
                    "confusion": test["confusion"]}
        logger.info("%s epoch %d loss %.3f val %.3f", mode, epoch, loss.item(), val)
    return best


def run(args) -> int:
    """`emodistill data probe --data DIR` (arguments: emodistill.core.data.cli)."""
    from .cli import data_root

    args.root, args.split = data_root(args), args.protocol
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = DataConfig(root=args.root, preprocess=Preprocess(**DEMO_PREPROCESS), split=args.split, fold=args.fold,
                     augment=False, workers=args.workers)
    ds = build_datasets(cfg)
    t0 = time.perf_counter()
    data = {}
    for name, d in ds.items():
        video, audio, y = load_split(d)
        data[name] = (video, log_mel(audio, cfg.preprocess.sample_rate), y)
    num_classes = ds["train"].num_classes
    logger.info("loaded %s in %.1f s", {k: len(v[2]) for k, v in data.items()}, time.perf_counter() - t0)
    results = {}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        results[mode] = train_probe(mode, data, num_classes, epochs=args.epochs, seed=args.seed, device=args.device)
        results[mode]["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"modality probe on {args.root} ({args.split} split, train {len(data['train'][2])} / val "
          f"{len(data['val'][2])} / test {len(data['test'][2])} clips, {args.epochs} epochs, same ProbeNet each run)")
    print(f"{'mode':<8}{'val acc':>9}{'test acc':>10}{'test UAR':>10}{'epoch':>7}{'time s':>8}")
    for mode, r in results.items():
        print(f"{mode:<8}{r['val']:>9.3f}{r['test']:>10.3f}{r['test_uar']:>10.3f}{r['epoch']:>7}{r['seconds']:>8}")
    if {"audio", "video", "fused"} <= set(results):
        gap = results["fused"]["test"] - max(results["audio"]["test"], results["video"]["test"])
        print(f"fusion gain over the best single modality: {100 * gap:+.1f} accuracy points (test)")
        results["fusion_gain_points"] = 100 * gap
    if args.json:
        import json

        print(json.dumps(results, indent=2))
    if args.json_out:
        from ..utils import write_json_atomic

        write_json_atomic(args.json_out, results)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.core.data.modality_probe`: an alias of `emodistill data probe`."""
    import sys

    from .cli import main as data_main

    return data_main(["probe", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
