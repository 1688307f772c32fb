"""Model outputs stored on disk per (sample key, augmentation view): the one store behind the teacher-output cache
(`emodistill.distill.cache.TeacherCache`) and the teacher's frozen-encoder cache
(`emodistill.teacher.encoder_cache.EncoderCache`).

The keying discipline both follow. One store per (weights hash, identity): the weights hash names the model that
computed the outputs (`state_fingerprint`, or a checkpoint's fingerprint), the identity is a JSON-able dict of
everything else that decides an output (preprocessing, augmentation settings, stored fields, format, versions).
Inside a store, rows are indexed by (sample key, augmentation view): the data layer's `key` is a content hash of
the clip's files and its preprocessing parameters, `view` the deterministic augmentation id (a function of
(data seed, key, view)). So a stored output is never served for another clip, preprocessing, view or model: each
of those changes is a miss.

Layout of a store folder `<root>/<weights-hash[:16]>-<identity-hash>/`:
    meta.json              weights hash, identity, fields (shape, dtype), row count, current version
    index.v<N>.json        {"keys": [...], "views": [...]}: row i holds (keys[i], views[i])
    <field>.v<N>.npy       one array per field, rows aligned with the index
A write produces version N+1 files first and commits by atomically replacing meta.json, so a kill at any moment
leaves the previous version readable. Reads load each array into RAM once; a lookup is a dict access plus a row
copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from .utils import atomic_path, stable_hash, write_json_atomic

logger = logging.getLogger(__name__)


class CacheMiss(KeyError):
    """A (key, view) the cache does not hold."""


def state_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes (sorted by name): the weights hash of a model."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def key_of(dataset, i: int) -> str | None:
    """A sample's key without loading it, where the dataset can tell (ClipDataset entries, toy sets)."""
    if hasattr(dataset, "key_of"):
        return dataset.key_of(i)
    entries = getattr(dataset, "entries", None)
    if entries is not None and hasattr(entries[i], "key"):
        return entries[i].key
    return None


def pairs_for_epochs(dataset, epochs: int, view: int | None = None,
                     have: Callable[[str, int], bool] = lambda key, view: False) -> tuple[list[tuple[int, int]], int]:
    """The (index, view) pairs that `epochs` epochs of `dataset` draw (`view_of(i, epoch)`, ClipDataset's API), or
    every index at the one `view`, each once -> (pairs not yet stored by `have(key, view)`, distinct pairs)."""
    todo, seen = [], set()
    for e in range(epochs if view is None else 1):
        for i in range(len(dataset)):
            pair = (i, int(dataset.view_of(i, e) if view is None else view))
            if pair in seen:
                continue
            seen.add(pair)
            key = key_of(dataset, i)
            if key is None or not have(key, pair[1]):
                todo.append(pair)
    return todo, len(seen)


class OutputStore:
    """Outputs on disk for one model (weights hash) and one identity, indexed by (key, view) (module doc).

    Subclasses name themselves (`label`, `hash_field` in meta.json, `miss_hint`) and say how outputs become rows
    (`to_rows`) and how rows come back (`finish`).
    """

    label = "output cache"
    hash_field = "weights_sha256"
    miss_hint = ""

    def __init__(self, root: str | Path, weights_hash: str, ident: dict, fields: list[str]):
        self.weights_hash, self.ident, self.fields = weights_hash, ident, list(fields)
        self.dir = Path(root) / f"{weights_hash[:16]}-{stable_hash(ident)}"
        self._index: dict[tuple[str, int], int] = {}
        self._arrays: dict[str, torch.Tensor] = {}
        self._pending: list[tuple[list[tuple[str, int]], dict[str, np.ndarray]]] = []
        self._pending_keys: set[tuple[str, int]] = set()
        self.version = 0
        self.load()

    def to_rows(self, outputs: dict) -> dict[str, np.ndarray]:
        """Model outputs (dict of [B,...] tensors) -> the stored numpy rows per field (default: float32)."""
        return {f: outputs[f].detach().float().cpu().numpy() for f in self.fields}

    def finish(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Looked-up rows as the caller gets them (default: as stored)."""
        return out

    # ---- reading
    def load(self) -> None:
        """(Re)load the committed version from disk into RAM; a missing store is an empty cache."""
        meta_path = self.dir / "meta.json"
        self._index, self._arrays, self.version = {}, {}, 0
        if not meta_path.exists():
            return
        meta = json.loads(meta_path.read_text())
        if meta.get(self.hash_field) != self.weights_hash or meta.get("ident") != json.loads(json.dumps(self.ident)):
            logger.warning("%s %s does not match this model/context; ignoring it", self.label, self.dir)
            return
        v = meta["version"]
        index = json.loads((self.dir / f"index.v{v}.json").read_text())
        self._index = {(k, int(w)): i for i, (k, w) in enumerate(zip(index["keys"], index["views"]))}
        self._arrays = {f: torch.from_numpy(np.load(self.dir / f"{f}.v{v}.npy")) for f in self.fields}
        for f, a in self._arrays.items():
            if a.shape[0] != len(self._index):
                raise RuntimeError(f"{self.label} {self.dir}: {f} has {a.shape[0]} rows, index {len(self._index)}")
        self.version = v

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key_view: tuple[str, int]) -> bool:
        return (key_view[0], int(key_view[1])) in self._index

    def lookup(self, key: str, view: int) -> dict[str, torch.Tensor]:
        """Stored outputs of one (key, view): {field: tensor [...]}."""
        row = self._index.get((key, int(view)))
        if row is None:
            raise CacheMiss(f"{self.label} {self.dir} has no entry for key={key!r} view={view}{self.miss_hint}")
        return self.finish({f: a[row] for f, a in self._arrays.items()})

    def lookup_batch(self, keys: list[str], views) -> dict[str, torch.Tensor]:
        """{field: [B,...]} for the given keys and views."""
        views = [int(v) for v in (views.tolist() if torch.is_tensor(views) else views)]
        missing = [(k, v) for k, v in zip(keys, views) if (k, v) not in self._index]
        if missing:
            raise CacheMiss(f"{self.label} {self.dir}: {len(missing)} misses, first key={missing[0][0]!r} "
                            f"view={missing[0][1]}")
        rows = torch.tensor([self._index[(k, v)] for k, v in zip(keys, views)], dtype=torch.long)
        return self.finish({f: a.index_select(0, rows) for f, a in self._arrays.items()})

    # ---- writing
    def add(self, keys: list[str], views, outputs: dict) -> int:
        """Queue outputs ([B,...] tensors) for rows (keys[i], views[i]); `flush` writes them."""
        views = [int(v) for v in (views.tolist() if torch.is_tensor(views) else views)]
        self._pending.append((list(zip(keys, views)), self.to_rows(outputs)))
        self._pending_keys.update(zip(keys, views))
        return len(keys)

    def _merged(self) -> tuple[list[tuple[str, int]], dict[str, np.ndarray]]:
        """The committed rows followed by the queued ones (a (key, view) once), then the queue emptied."""
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
        return keys, {f: np.concatenate(a, 0) for f, a in arrays.items()}

    def flush(self) -> None:
        """Write the queued rows as a new version (arrays first, meta.json last, each atomically)."""
        if not self._pending:
            return
        keys, merged = self._merged()
        v = self.version + 1
        self.dir.mkdir(parents=True, exist_ok=True)
        for f, a in merged.items():
            with atomic_path(self.dir / f"{f}.v{v}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, a)
        write_json_atomic(self.dir / f"index.v{v}.json", {"keys": [k for k, _ in keys], "views": [w for _, w in keys]})
        write_json_atomic(self.dir / "meta.json", {
            "format": self.ident.get("format"), "version": v, "count": len(keys), self.hash_field: self.weights_hash,
            "ident": self.ident,
            "fields": {f: {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for f, a in merged.items()},
        })
        for old in self.dir.glob("*.v*.*"):  # previous versions are no longer referenced
            if not old.name.split(".v")[-1].startswith(f"{v}."):
                old.unlink(missing_ok=True)
        self.version = v
        self._index = {kv: i for i, kv in enumerate(keys)}
        self._arrays = {f: torch.from_numpy(a) for f, a in merged.items()}
        logger.info("%s %s: %d entries (version %d)", self.label, self.dir, len(keys), v)

    @torch.no_grad()
    def fill_with(self, compute: Callable[[dict], dict], batches: Iterable[dict], device=None, progress: bool = False,
                  autocast=None) -> int:
        """`compute(batch) -> outputs` on every batch row whose (key, view) is missing, then `flush`. Returns rows
        added. batches: dicts with `key` (list[str]), `view` ([B] ints) and what `compute` reads."""
        added = 0
        it = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc=self.label, leave=False)
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
                    out = compute(sub)
            else:
                out = compute(sub)
            added += self.add([keys[i] for i in need], [views[i] for i in need], out)
        self.flush()
        return added


__all__ = ["OutputStore", "CacheMiss", "state_fingerprint", "key_of", "pairs_for_epochs"]
