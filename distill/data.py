"""Data plumbing of the distillation loop: the splits, a resumable data order, unlabeled transfer sets."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler

from emodistill.contract import Preprocess
from emodistill.data.dataset import CLEAN_VIEW
from emodistill.utils import stable_hash

from .config import DistillConfig
from .losses import IGNORE_LABEL


def build_data(cfg: DistillConfig, accelerator) -> tuple[dict, Preprocess, dict]:
    """(splits, preprocess contract, cache context: everything besides key/view that shapes inputs)."""
    if cfg.toy is not None:
        from .toy import toy_datasets

        t = cfg.toy
        pre = Preprocess(num_frames=t.frames, image_size=t.image_size, clip_seconds=t.samples / 16000,
                         face_crop="none")
        return toy_datasets(t), pre, {"kind": "toy", **t.model_dump(mode="json", exclude={"sleep_per_item"})}
    from emodistill.data import build_datasets

    d = cfg.data
    with accelerator.main_process_first():
        splits = build_datasets(d, progress=accelerator.is_main_process)
    ctx = {"kind": "clips", "format": d.format, "preprocess": d.preprocess.model_dump(mode="json"),
           "augment": d.augment, "num_views": d.num_views, "seed": d.seed}
    return splits, d.preprocess, ctx


class EpochShuffle(Sampler):
    """A permutation that is a pure function of (seed, epoch): the data order needs no saved state."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class PartiallyLabeled(Dataset):
    """Keeps the label of a deterministic `fraction` of samples (by key); the rest get label -1."""

    def __init__(self, dataset, fraction: float, seed: int):
        self.dataset, self.fraction, self.seed = dataset, fraction, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = self.dataset[i]
        if int(stable_hash([self.seed, item["key"]]), 16) / 16 ** 16 >= self.fraction:
            item["label"] = torch.tensor(IGNORE_LABEL, dtype=torch.long)
        return item

    def __getattr__(self, name):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class CleanTeacherView(Dataset):
    """Adds the clean clip (`teacher_video` [T,3,S,S], `teacher_audio` [N]) to each item of an augmenting
    dataset: with `distill.teacher_view: clean` and a live teacher, the teacher sees it, the student the view."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = self.dataset[i]
        clean = self.dataset.load(i, CLEAN_VIEW)
        return {**item, "teacher_video": clean["video"], "teacher_audio": clean["audio"]}

    def __getattr__(self, name):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def clean_teacher_inputs(batch: dict) -> dict:
    """Teacher kwargs from `CleanTeacherView` items: the clean clip, both modalities."""
    return {"video": batch["teacher_video"], "audio": batch["teacher_audio"]}


__all__ = ["build_data", "EpochShuffle", "PartiallyLabeled", "CleanTeacherView", "clean_teacher_inputs"]
