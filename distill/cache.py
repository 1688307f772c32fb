"""Teacher-output cache for offline distillation.

One store per (teacher weights, context), where the context holds everything else that decides a
teacher output: preprocessing parameters, augmentation settings, stored fields, top-k. Inside a store,
rows are indexed by (sample key, augmentation view): the data layer's `key` is a content hash of the
preprocessed sample and `view` the deterministic augmentation id, so a cached output is never served
for another sample, preprocessing, view or teacher: each of those changes is a miss.

Layout of a store folder `<root>/<teacher-hash[:16]>-<context-hash>/`:
    meta.json              teacher hash, context, fields (shape, dtype), row count, current version
    index.v<N>.json        {"keys": [...], "views": [...]}: row i holds (keys[i], views[i])
    <field>.v<N>.npy       one array per field, rows aligned with the index (fp16; top-k indices int16)
A write produces version N+1 files first and commits by atomically replacing meta.json, so a kill at
any moment leaves the previous version readable. Reads load each array into RAM once; a lookup is a
dict access plus a row copy, so a cached epoch costs about what a CE-only epoch does.
The store itself (layout, versions, atomic writes, the (key, view) index) is
`emodistill.core.output_cache.OutputStore`, shared with the teacher's frozen-encoder cache
(`emodistill.teacher.encoder_cache`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from emodistill.core.checkpoint import fingerprint
from emodistill.core.output_cache import CacheMiss, OutputStore, pairs_for_epochs, state_fingerprint

from .core import av_inputs_full

logger = logging.getLogger(__name__)

FORMAT = 1


def teacher_fingerprint(checkpoint: str | Path | None = None, model: torch.nn.Module | None = None) -> str:
    """sha256 identifying the teacher's weights: the checkpoint's (`emodistill.core.checkpoint.fingerprint`),
    else a hash of the model's state dict (`emodistill.core.output_cache.state_fingerprint`)."""
    if checkpoint is not None:
        return fingerprint(checkpoint)
    if model is None:
        raise ValueError("teacher_fingerprint needs a checkpoint path or a model")
    return state_fingerprint(model.state_dict())


def _to_rows(outputs: dict, fields: list[str], topk: int | None) -> dict[str, np.ndarray]:
    """Teacher outputs (dict of [B,...] tensors) -> the stored numpy rows per field."""
    rows = {}
    for f in fields:
        if f == "logits_topk_values" or f == "logits_topk_indices":
            continue
        rows[f] = outputs[f].detach().float().cpu().numpy().astype(np.float16)
    if topk:
        vals, idx = outputs["logits"].detach().float().topk(topk, dim=-1)
        rows["logits_topk_values"] = vals.cpu().numpy().astype(np.float16)
        rows["logits_topk_indices"] = idx.cpu().numpy().astype(np.int16)
    return rows


class TeacherCache(OutputStore):
    """Teacher outputs on disk for one teacher and one context, indexed by (key, view) (the store and its keying
    discipline: `emodistill.core.output_cache`).

    teacher_hash: from `teacher_fingerprint`. context: JSON-able dict of everything else that changes
    teacher outputs (preprocess, augmentation settings). features: output names stored besides the
    logits (e.g. ["pooled", "features"]). topk: store only the k largest logits (values + indices).
    """

    label, hash_field = "teacher cache", "teacher_sha256"
    miss_hint = " (was the cache filled for these epochs / this augmentation?)"

    def __init__(self, root: str | Path, teacher_hash: str, context: dict, features: Iterable[str] = (),
                 topk: int | None = None):
        self.teacher_hash, self.context, self.topk = teacher_hash, dict(context), topk
        self.features = list(features)
        fields = (["logits_topk_values", "logits_topk_indices"] if topk else ["logits"]) + self.features
        ident = {"format": FORMAT, "context": self.context, "features": self.features, "topk": topk}
        super().__init__(root, teacher_hash, ident, fields)

    def to_rows(self, outputs: dict) -> dict[str, np.ndarray]:
        return _to_rows(outputs, self.fields, self.topk)

    def finish(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """fp16 rows; top-k indices as int64."""
        if "logits_topk_indices" in out:
            out["logits_topk_indices"] = out["logits_topk_indices"].long()
        return out

    @torch.no_grad()
    def fill(self, teacher: torch.nn.Module, batches: Iterable[dict], inputs: Callable[[dict], dict] = av_inputs_full,
             device=None, progress: bool = False, autocast=None) -> int:
        """Run `teacher` on every batch row whose (key, view) is missing, then `flush`. Returns rows added.

        batches: dicts with `key` (list[str]), `view` ([B] ints) and the teacher's inputs.
        """
        teacher.eval()
        return self.fill_with(lambda sub: teacher(**inputs(sub)), batches, device, progress, autocast)


@torch.no_grad()
def fill_for_epochs(cache: TeacherCache, teacher: torch.nn.Module, dataset, epochs: int, batch_size: int = 32,
                    inputs: Callable[[dict], dict] = av_inputs_full, device=None, progress: bool = False,
                    autocast=None, view: int | None = None) -> int:
    """Cache the teacher's outputs for every (sample, view) that `epochs` epochs of `dataset` will draw,
    or, with `view`, for every sample at that one view (the clean clip: `CLEAN_VIEW`).

    Uses the dataset's `view_of(i, epoch)` and `load(i, view)` (ClipDataset's API) so each distinct
    (sample, view) is loaded once, and not at all when it is cached already. Returns rows added.
    """
    from torch.utils.data import default_collate

    if not (hasattr(dataset, "view_of") and hasattr(dataset, "load")):
        def per_epoch():
            for e in range(epochs):
                dataset.set_epoch(e)
                yield from torch.utils.data.DataLoader(dataset, batch_size=batch_size)
        return cache.fill(teacher, per_epoch(), inputs, device, progress, autocast)
    todo, seen = pairs_for_epochs(dataset, epochs, view, lambda key, v: (key, v) in cache)
    logger.info("teacher cache %s: %d of %d (sample, view) pairs to compute", cache.dir, len(todo), seen)

    def batches():
        for s in range(0, len(todo), batch_size):
            yield default_collate([dataset.load(i, v) for i, v in todo[s:s + batch_size]])

    return cache.fill(teacher, batches(), inputs, device, progress, autocast)


class WithTeacherOutputs:
    """collate_fn adding `teacher` = the cached outputs of each row's (key, view) to a default-collated batch
    (or of (key, `view`) for every row: the teacher's outputs on the clean clip, whatever view the student got).

    One `index_select` per stored field per batch: the read path of a cached epoch.
    """

    def __init__(self, cache: TeacherCache, collate: Callable[[list], dict] | None = None, view: int | None = None):
        from torch.utils.data import default_collate

        self.cache, self.collate, self.view = cache, collate or default_collate, view

    def __call__(self, items: list[dict]) -> dict:
        batch = self.collate(items)
        views = batch["view"] if self.view is None else [self.view] * len(batch["key"])
        batch["teacher"] = self.cache.lookup_batch(batch["key"], views)
        return batch


__all__ = ["TeacherCache", "WithTeacherOutputs", "CacheMiss", "teacher_fingerprint", "fill_for_epochs"]
