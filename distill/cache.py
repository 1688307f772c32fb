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
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from emodistill.core.checkpoint import fingerprint
from emodistill.core.utils import atomic_path, stable_hash, write_json_atomic

from .core import av_inputs_full

logger = logging.getLogger(__name__)

FORMAT = 1


class CacheMiss(KeyError):
    """A (key, view) the cache does not hold."""


def teacher_fingerprint(checkpoint: str | Path | None = None, model: torch.nn.Module | None = None) -> str:
    """sha256 identifying the teacher's weights: the checkpoint's (`emodistill.core.checkpoint.fingerprint`),
    else a hash of the model's state dict (names, dtypes, shapes and bytes)."""
    if checkpoint is not None:
        return fingerprint(checkpoint)
    if model is None:
        raise ValueError("teacher_fingerprint needs a checkpoint path or a model")
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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


class TeacherCache:
    """Teacher outputs on disk for one teacher and one context, indexed by (key, view).

    teacher_hash: from `teacher_fingerprint`. context: JSON-able dict of everything else that changes
    teacher outputs (preprocess, augmentation settings). features: output names stored besides the
    logits (e.g. ["pooled", "features"]). topk: store only the k largest logits (values + indices).
    """

    def __init__(self, root: str | Path, teacher_hash: str, context: dict, features: Iterable[str] = (),
                 topk: int | None = None):
        self.teacher_hash, self.context, self.topk = teacher_hash, dict(context), topk
        self.features = list(features)
        self.fields = (["logits_topk_values", "logits_topk_indices"] if topk else ["logits"]) + self.features
        ident = {"format": FORMAT, "context": self.context, "features": self.features, "topk": topk}
        self.dir = Path(root) / f"{teacher_hash[:16]}-{stable_hash(ident)}"
        self.ident = ident
        self._index: dict[tuple[str, int], int] = {}
        self._arrays: dict[str, torch.Tensor] = {}
        self._pending: list[tuple[list[tuple[str, int]], dict[str, np.ndarray]]] = []
        self._pending_keys: set[tuple[str, int]] = set()
        self.version = 0
        self.load()

    # ---- reading
    def load(self) -> None:
        """(Re)load the committed version from disk into RAM; a missing store is an empty cache."""
        meta_path = self.dir / "meta.json"
        self._index, self._arrays, self.version = {}, {}, 0
        if not meta_path.exists():
            return
        meta = json.loads(meta_path.read_text())
        if meta.get("teacher_sha256") != self.teacher_hash or meta.get("ident") != json.loads(json.dumps(self.ident)):
            logger.warning("teacher cache %s does not match this teacher/context; ignoring it", self.dir)
            return
        v = meta["version"]
        index = json.loads((self.dir / f"index.v{v}.json").read_text())
        self._index = {(k, int(w)): i for i, (k, w) in enumerate(zip(index["keys"], index["views"]))}
        self._arrays = {f: torch.from_numpy(np.load(self.dir / f"{f}.v{v}.npy")) for f in self.fields}
        for f, a in self._arrays.items():
            if a.shape[0] != len(self._index):
                raise RuntimeError(f"teacher cache {self.dir}: {f} has {a.shape[0]} rows, index {len(self._index)}")
        self.version = v

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key_view: tuple[str, int]) -> bool:
        return (key_view[0], int(key_view[1])) in self._index

    def lookup(self, key: str, view: int) -> dict[str, torch.Tensor]:
        """Stored outputs of one (key, view): {field: tensor [...]} (fp16; top-k indices int64)."""
        row = self._index.get((key, int(view)))
        if row is None:
            raise CacheMiss(f"teacher cache {self.dir} has no entry for key={key!r} view={view} "
                            "(was the cache filled for these epochs / this augmentation?)")
        out = {f: a[row] for f, a in self._arrays.items()}
        if "logits_topk_indices" in out:
            out["logits_topk_indices"] = out["logits_topk_indices"].long()
        return out

    def lookup_batch(self, keys: list[str], views) -> dict[str, torch.Tensor]:
        """{field: [B,...]} for the given keys and views."""
        views = [int(v) for v in (views.tolist() if torch.is_tensor(views) else views)]
        missing = [(k, v) for k, v in zip(keys, views) if (k, v) not in self._index]
        if missing:
            raise CacheMiss(f"teacher cache {self.dir}: {len(missing)} misses, first key={missing[0][0]!r} "
                            f"view={missing[0][1]}")
        rows = torch.tensor([self._index[(k, v)] for k, v in zip(keys, views)], dtype=torch.long)
        out = {f: a.index_select(0, rows) for f, a in self._arrays.items()}
        if "logits_topk_indices" in out:
            out["logits_topk_indices"] = out["logits_topk_indices"].long()
        return out

    # ---- writing
    def add(self, keys: list[str], views, outputs: dict) -> int:
        """Queue teacher outputs ([B,...] tensors) for rows (keys[i], views[i]); `flush` writes them."""
        views = [int(v) for v in (views.tolist() if torch.is_tensor(views) else views)]
        rows = _to_rows(outputs, self.fields, self.topk)
        self._pending.append((list(zip(keys, views)), rows))
        self._pending_keys.update(zip(keys, views))
        return len(keys)

    def flush(self) -> None:
        """Write the queued rows as a new version (arrays first, meta.json last, each atomically)."""
        if not self._pending:
            return
        keys = [kv for kv, _ in sorted(self._index.items(), key=lambda x: x[1])]
        arrays = {f: [self._arrays[f].numpy()] if f in self._arrays else [] for f in self.fields}
        seen = set(self._index)
        for kvs, rows in self._pending:
            keep = []
            for i, kv in enumerate(kvs):
                if kv not in seen:
                    seen.add(kv)
                    keep.append(i)
                    keys.append(kv)
            for f in self.fields:
                arrays[f].append(rows[f][keep])
        self._pending, self._pending_keys = [], set()
        v = self.version + 1
        self.dir.mkdir(parents=True, exist_ok=True)
        merged = {f: np.concatenate(a, 0) for f, a in arrays.items()}
        for f, a in merged.items():
            with atomic_path(self.dir / f"{f}.v{v}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, a)
        write_json_atomic(self.dir / f"index.v{v}.json", {"keys": [k for k, _ in keys], "views": [w for _, w in keys]})
        write_json_atomic(self.dir / "meta.json", {
            "format": FORMAT, "version": v, "count": len(keys), "teacher_sha256": self.teacher_hash,
            "ident": self.ident,
            "fields": {f: {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for f, a in merged.items()},
        })
        for old in self.dir.glob("*.v*.*"):  # previous versions are no longer referenced
            if not old.name.split(".v")[-1].startswith(f"{v}."):
                old.unlink(missing_ok=True)
        self.version = v
        self._index = {kv: i for i, kv in enumerate(keys)}
        self._arrays = {f: torch.from_numpy(a) for f, a in merged.items()}
        logger.info("teacher cache %s: %d entries (version %d)", self.dir, len(keys), v)

    @torch.no_grad()
    def fill(self, teacher: torch.nn.Module, batches: Iterable[dict], inputs: Callable[[dict], dict] = av_inputs_full,
             device=None, progress: bool = False, autocast=None) -> int:
        """Run `teacher` on every batch row whose (key, view) is missing, then `flush`. Returns rows added.

        batches: dicts with `key` (list[str]), `view` ([B] ints) and the teacher's inputs.
        """
        teacher.eval()
        added = 0
        it = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc="teacher cache", leave=False)
        for batch in it:
            keys, views = list(batch["key"]), [int(v) for v in batch["view"]]
            need = [i for i, kv in enumerate(zip(keys, views))
                    if kv not in self._index and kv not in self._pending_keys]
            if not need:
                continue
            sel = torch.tensor(need, dtype=torch.long)
            sub = {k: (v.index_select(0, sel) if torch.is_tensor(v) and v.dim() > 0 and len(v) == len(keys) else v)
                   for k, v in batch.items()}
            if device is not None:
                sub = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in sub.items()}
            if autocast is not None:
                with autocast():
                    out = teacher(**inputs(sub))
            else:
                out = teacher(**inputs(sub))
            added += self.add([keys[i] for i in need], [views[i] for i in need], out)
        self.flush()
        return added


def _key_of(dataset, i: int) -> str | None:
    """A sample's key without loading it, where the dataset can tell (ClipDataset entries, toy sets)."""
    if hasattr(dataset, "key_of"):
        return dataset.key_of(i)
    entries = getattr(dataset, "entries", None)
    if entries is not None and hasattr(entries[i], "key"):
        return entries[i].key
    return None


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
    todo, seen = [], set()
    for e in range(epochs if view is None else 1):
        for i in range(len(dataset)):
            pair = (i, int(dataset.view_of(i, e) if view is None else view))
            if pair in seen:
                continue
            seen.add(pair)
            key = _key_of(dataset, i)
            if key is None or (key, pair[1]) not in cache:
                todo.append(pair)
    logger.info("teacher cache %s: %d of %d (sample, view) pairs to compute", cache.dir, len(todo), len(seen))

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
