"""Data plumbing of the distillation loop: the splits, a resumable data order, unlabeled transfer sets."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler

from emodistill.core.contract import Preprocess
from emodistill.core.data.dataset import CLEAN_VIEW
from emodistill.core.utils import stable_hash

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
    from emodistill.core.data import build_datasets, cache_context

    d = cfg.data
    with accelerator.main_process_first():
        splits = build_datasets(d, progress=accelerator.is_main_process)
    return splits, d.preprocess, cache_context(d)


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


def _labels_and_keys(dataset) -> tuple[list[int], list[str]]:
    """Every item's label and cache key without loading (augmenting) a clip."""
    if hasattr(dataset, "entries"):  # ClipDataset
        return [e.clip.label for e in dataset.entries], [e.key for e in dataset.entries]
    if hasattr(dataset, "labels") and hasattr(dataset, "key_of"):  # the toy set
        return list(dataset.labels), [dataset.key_of(i) for i in range(len(dataset))]
    items = [dataset[i] for i in range(len(dataset))]  # anything else: one pass over the items
    return [int(it["label"]) for it in items], [str(it["key"]) for it in items]


def label_split(labels: list[int], keys: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(labelled indices, unlabelled indices): a class-stratified, deterministic split of a train split.

    Within each class, items are ranked by a hash of (seed, key) and the first round(fraction * n_class)
    keep their label (at least one per class when fraction > 0), so the split depends only on the seed
    and the clips (not on their order), the two parts are disjoint, and a smaller fraction's labelled
    set is contained in a larger one's (a label-efficiency sweep adds labels, it does not swap them).
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"label fraction must be in [0, 1], got {fraction}")
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(int(c), []).append(i)
    labelled = []
    for c, idx in sorted(by_class.items()):
        idx.sort(key=lambda i: (stable_hash([seed, "label_split", keys[i]]), keys[i]))
        n = len(idx) if fraction >= 1 else (0 if fraction <= 0 else max(1, round(fraction * len(idx))))
        labelled += idx[:n]
    labelled.sort()
    chosen = set(labelled)
    return labelled, [i for i in range(len(labels)) if i not in chosen]


class PartiallyLabeled(Dataset):
    """The whole train split, where only `labelled` indices keep their label; the rest get label -1
    (unlabelled transfer clips: only the teacher teaches). The KD arm of a semi-supervised recipe."""

    def __init__(self, dataset, labelled: list[int]):
        self.dataset, self.labelled = dataset, frozenset(labelled)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = self.dataset[i]
        if i not in self.labelled:
            item["label"] = torch.tensor(IGNORE_LABEL, dtype=torch.long)
        return item

    def __getattr__(self, name):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class LabelledOnly(Dataset):
    """Only the `labelled` items of a split (the CE-only arm: the unlabelled clips are never loaded), each
    `repeats` times per epoch; an item keeps its index in the full split, so its augmentation views are the
    ones the KD arm draws for the same clip."""

    def __init__(self, dataset, labelled: list[int], repeats: int = 1):
        if not labelled:
            raise ValueError("the CE-only arm needs labelled clips: distill.label_fraction is 0")
        self.dataset, self.indices, self.repeats = dataset, list(labelled), int(repeats)

    def __len__(self) -> int:
        return len(self.indices) * self.repeats

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i % len(self.indices)]]

    def __getattr__(self, name):
        if name in ("dataset", "indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def semi_supervised(train_items, train_ds, fraction: float, seed: int, with_teacher: bool,
                    matched_steps: bool = False) -> tuple[Dataset, dict]:
    """The train items of one arm of a semi-supervised recipe, and the regime it saw.

    KD arm (`with_teacher`): every clip, the unlabelled ones with label -1 (teacher targets only).
    CE-only arm: the labelled clips alone (`matched_steps`: repeated so an epoch has as many steps as
    the KD arm's). -> (dataset, {"label_fraction", "labelled_clips", "unlabelled_clips", ...}).
    """
    n = len(train_ds)
    if fraction >= 1:
        return train_items, {"label_fraction": 1.0, "labelled_clips": n, "unlabelled_clips": 0,
                             "unlabelled_available": 0, "repeats": 1}
    labelled, unlabelled = label_split(*_labels_and_keys(train_ds), fraction, seed)
    regime = {"label_fraction": fraction, "labelled_clips": len(labelled), "unlabelled_available": len(unlabelled)}
    if with_teacher:
        return PartiallyLabeled(train_items, labelled), {**regime, "unlabelled_clips": len(unlabelled), "repeats": 1}
    repeats = max(1, round(n / max(len(labelled), 1))) if matched_steps else 1
    return LabelledOnly(train_items, labelled, repeats), {**regime, "unlabelled_clips": 0, "repeats": repeats}


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


__all__ = ["build_data", "EpochShuffle", "label_split", "semi_supervised", "PartiallyLabeled", "LabelledOnly", "CleanTeacherView", "clean_teacher_inputs"]
