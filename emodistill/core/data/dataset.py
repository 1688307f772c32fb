"""`DataConfig` -> `build_datasets` -> train/val/test `ClipDataset`s served from the preprocessed cache.

Items: video float32 [T, 3, S, S] RGB in [0, 1]; audio float32 [N] mono 16 kHz, zero-padded;
label int64 scalar; actor int; path str (the source video); key str (content key of the cached sample);
view int. Augmentation (train split only) is a deterministic function of (seed, key, view) and the
view of item i at epoch e a deterministic function of (seed, e, i) in [0, num_views), so anything
computed from an augmented sample (a teacher's logits) can be cached under (key, view). View
`CLEAN_VIEW` (-1) is the un-augmented clip of an augmenting dataset.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Literal

import cv2
import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from ..config import BaseConfig
from ..contract import Preprocess
from .cache import CacheEntry, build_cache, default_cache_dir, read_entry
from .names import labelled_clips
from .splits import SPLITS, clip_splits

logger = logging.getLogger(__name__)

CLEAN_VIEW = -1  # load(i, CLEAN_VIEW): the clip without augmentation, also where the dataset augments


class DataConfig(BaseConfig):
    """Where the clips are and how they become model input."""

    root: str = Field(description="dataset folder (RAVDESS tree Actor_XX/*.mp4, one folder per class for "
                                  "format folder), or the .csv / .jsonl file for format manifest")
    format: Literal["ravdess", "cremad", "folder", "manifest"] = Field(
        "ravdess", description="layout: a naming scheme (ravdess, cremad), one folder per class (folder), or a "
                               "CSV / JSONL of path,label[,audio_path,speaker,split,start,end] (manifest)")
    classes: list[str] | None = Field(None, min_length=2, description="class names in head order; default: the "
                                      "format's own (RAVDESS 8, CREMA-D 6) or the sorted labels found in the data")
    label_map: dict[str, str] = Field(default_factory=dict, description="raw label -> class name, e.g. CREMA-D's "
                                      "{fearful: fear} onto a shared set; labels it does not name stay as they are")
    cache_dir: str | None = Field(None, description="preprocessed cache; default <root>/.emodistill_cache "
                                  "(beside the manifest for format manifest)")
    preprocess: Preprocess = Field(default_factory=Preprocess, description="decode/crop/resample parameters")
    split: Literal["fixed", "fold"] = Field("fixed", description="fixed actor split or the 6-fold protocol (a "
                                            "split the data gives, manifest column or train/ val/ test/, wins)")
    fold: int = Field(0, ge=0, le=5, description="fold k tests the k-th group of actors (1-4, 5-8, ...)")
    vocal_channel: Literal["speech", "song", "all"] = Field("speech", description="RAVDESS vocal channel filter")
    augment: bool = Field(True, description="deterministic augmentation on the train split")
    num_views: int = Field(4, ge=1, description="augmentation views per sample (1 = no variety)")
    seed: int = Field(0, description="seed of views and augmentation")
    workers: int = Field(2, ge=0, description="decode processes for the cache build (0 = in-process)")


def _mix(*parts) -> int:
    """A 63-bit integer from any printable parts (stable across processes and Python runs)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def augment_frames(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] in [0, 1]: one random resized crop (70-100 % of the area,
    aspect 3/4..4/3), horizontal flip (p = 0.5) and brightness/contrast (x0.8..1.2) for all frames."""
    t, h, w, _ = frames.shape
    area = rng.uniform(0.7, 1.0)
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    ch = max(8, min(h, int(round(h * math.sqrt(area / ratio)))))
    cw = max(8, min(w, int(round(w * math.sqrt(area * ratio)))))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    crop = frames[:, y0:y0 + ch, x0:x0 + cw]
    if (ch, cw) != (h, w):
        crop = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in crop])
    if rng.random() < 0.5:
        crop = crop[:, :, ::-1]
    out = crop.transpose(0, 3, 1, 2).astype(np.float32) * (1 / 255)
    brightness, contrast = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((out - mean) * contrast + mean * brightness, 0.0, 1.0)


def augment_audio(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 [N] -> [N]: gain +-6 dB, time shift up to 10 % (zero fill), Gaussian noise at 20-40 dB SNR."""
    n = audio.shape[0]
    out = audio * np.float32(10 ** (rng.uniform(-6.0, 6.0) / 20))
    shift = int(round(rng.uniform(-0.1, 0.1) * n))
    if shift > 0:
        out = np.concatenate([np.zeros(shift, np.float32), out[:-shift]])
    elif shift < 0:
        out = np.concatenate([out[-shift:], np.zeros(-shift, np.float32)])
    rms = float(np.sqrt(np.mean(out ** 2)))
    noise = rng.standard_normal(n, dtype=np.float32) * np.float32(rms * 10 ** (-rng.uniform(20.0, 40.0) / 20))
    return np.clip(out + noise, -1.0, 1.0)


class ClipDataset(Dataset):
    """Cached clips of one split. `set_epoch(e)` picks which augmentation view each item gets."""

    def __init__(self, entries: list[CacheEntry], class_names: list[str], preprocess: Preprocess,
                 split: str = "", augment: bool = False, num_views: int = 1, seed: int = 0):
        self.entries = list(entries)
        self.class_names = list(class_names)
        self.preprocess = preprocess
        self.split = split
        self.augment = augment
        self.num_views = num_views if augment else 1
        self.seed = seed
        self.epoch = 0
        self.report: dict = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> list[int]:
        return [e.clip.label for e in self.entries]

    @property
    def actors(self) -> list[int]:
        return [e.clip.actor for e in self.entries]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def view_of(self, index: int, epoch: int | None = None) -> int:
        if not self.augment or self.num_views <= 1:
            return 0
        return _mix("view", self.seed, self.epoch if epoch is None else epoch, index) % self.num_views

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int, view: int = 0) -> dict:
        """The item for an explicit view (view ignored without augmentation; `CLEAN_VIEW`: not augmented)."""
        e = self.entries[index]
        # numpy (and cv2) rather than torch ops: tiny tensor ops through torch's OpenMP pool cost ~100x
        # more when the cores are busy, and this runs once per item
        frames, pcm = read_entry(e.path)
        audio = pcm.astype(np.float32) * np.float32(1 / 32768)
        if self.augment and view != CLEAN_VIEW:
            rng = np.random.default_rng(_mix("aug", self.seed, e.key, view))
            video = augment_frames(frames, rng)
            audio = augment_audio(audio, rng)
        else:
            video = frames.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)
            view = CLEAN_VIEW if self.augment else 0
        return {"video": torch.from_numpy(np.ascontiguousarray(video)), "audio": torch.from_numpy(audio),
                "label": torch.tensor(e.clip.label, dtype=torch.long),
                "actor": e.clip.actor, "path": e.clip.video_path, "key": e.key, "view": view}

    def __getitem__(self, index: int) -> dict:
        return self.load(index, self.view_of(index))

    def __repr__(self) -> str:
        return (f"ClipDataset({self.split}: {len(self)} clips, {len(set(self.actors))} actors, "
                f"augment={self.augment}, num_views={self.num_views})")


def filter_channel(clips: list, vocal_channel: str) -> list:
    return clips if vocal_channel == "all" else [c for c in clips if c.vocal_channel == vocal_channel]


def cache_context(cfg: DataConfig) -> dict:
    """What shapes a clip's items besides its key and view (format, preprocessing, augmentation settings): the part
    of an output cache's identity that comes from the data (emodistill.core.output_cache)."""
    return {"kind": "clips", "format": cfg.format, "preprocess": cfg.preprocess.model_dump(mode="json"),
            "augment": cfg.augment, "num_views": cfg.num_views, "seed": cfg.seed}


def build_datasets(cfg: DataConfig, progress: bool = True) -> dict[str, ClipDataset]:
    """Scan `cfg.root`, decode what is not cached yet, and return {"train", "val", "test"} datasets."""
    scan = labelled_clips(cfg.root, cfg.format, cfg.classes, cfg.label_map)
    clips = filter_channel(scan.clips, cfg.vocal_channel)
    if not clips:
        raise ValueError(f"no {cfg.vocal_channel} clips in {cfg.format} format under {cfg.root} "
                         f"({len(scan.clips)} clips of any channel, {len(scan.bad)} unusable files); "
                         f"run `emodistill data check --data {cfg.root} --data-format {cfg.format}` to see why")
    cache_dir = cfg.cache_dir or default_cache_dir(cfg.root)
    report = build_cache(clips, cfg.preprocess, cache_dir, workers=cfg.workers, progress=progress)
    if not report.entries:
        raise ValueError(f"none of the {len(clips)} clips under {cfg.root} could be decoded; "
                         f"first reason: {report.skipped[0][1] if report.skipped else '?'}")
    names, split_actors = clip_splits([e.clip for e in report.entries], cfg.split, cfg.fold, cfg.format)
    summary = {"root": cfg.root, "cache_dir": str(cache_dir), "bad_names": scan.bad, "skipped": report.skipped,
               "warnings": report.warnings, "hits": report.hits, "decoded": report.decoded,
               "class_names": scan.class_names, "split_actors": split_actors}
    out = {}
    for name in SPLITS:
        entries = [e for e, n in zip(report.entries, names) if n == name]
        is_train = name == "train"
        out[name] = ClipDataset(entries, scan.class_names, cfg.preprocess, split=name,
                                augment=cfg.augment and is_train, num_views=cfg.num_views if is_train else 1,
                                seed=cfg.seed)
        out[name].report = summary
    logger.info("datasets: %s", ", ".join(f"{k}={len(v)} ({len(summary['split_actors'][k])} actors)"
                                          for k, v in out.items()))
    return out


__all__ = ["CLEAN_VIEW", "DataConfig", "ClipDataset", "build_datasets", "cache_context", "augment_frames",
           "augment_audio", "filter_channel"]
