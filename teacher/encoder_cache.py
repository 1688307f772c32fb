"""Frozen-encoder cache: the teacher's SigLIP2 and Parakeet outputs, computed once per (clip, augmentation view).

With `freeze_vision` and `freeze_audio` the encoders are a fixed function of their input, and an epoch of
fine-tuning spends most of its time in them (and in decoding and augmenting the clips they read). With
`encoder_cache.enabled` a pre-pass before training runs them once on every (clip, view) that the run's epochs
will draw (a progress bar, `encoder cache`), stores their segment features (`TeacherModel.encode`: visual
[S, Dv], audio [S, Da] per row) on disk, and the train loader then reads rows instead of clips: each step runs
only the fusion (projections, LFM2 layers, head). Evaluation still runs the whole teacher on val / test.

The store and its keying discipline are the teacher-output cache's (`emodistill.core.output_cache`, as
`emodistill.distill.cache`): one store per (encoder weights hash, identity), rows by (clip key, view).
    clip key      the data layer's content hash of the clip's files + every preprocessing parameter
    view          the deterministic augmentation id; augmentation is a function of (data seed, key, view)
    weights hash  sha256 of the vision and audio encoders' state dicts (`encoder_fingerprint`)
    identity      the data's cache context (format, preprocessing, augmentation on/off, views, seed), the encoders'
                  config (transformers configs, mel and image normalisation, pooling, segments, dtype), the
                  precision and device type they ran in, the stored dtype, the store format and the torch and
                  transformers versions
A change to any of them is a different store or row, so a row is never served for another clip, preprocessing,
view, encoder or precision. With `encoder_cache.fill: false` the pre-pass computes nothing and the cache must
already hold every (clip, view): a miss, up front or in training, is an `EncoderCacheMiss` naming the clip, its
key, its view and the store.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import DataLoader, Dataset

from emodistill.core.config import BaseConfig, ConfigError
from emodistill.core.data import cache_context
from emodistill.core.errors import InputError
from emodistill.core.output_cache import CacheMiss, OutputStore, pairs_for_epochs, state_fingerprint

logger = logging.getLogger(__name__)

FORMAT = 1  # bump when what `TeacherModel.encode` computes from the same weights changes
FIELDS = ["visual", "audio"]


class EncoderCacheConfig(BaseConfig):
    """`encoder_cache:` of a teacher fine-tuning recipe."""

    enabled: bool = Field(False, description="compute the frozen encoders once per (clip, view) and train the fusion "
                          "on the stored outputs (needs model.overrides.freeze_vision and freeze_audio)")
    dir: str | None = Field(None, description="cache root; default <output_dir>/../encoder_cache")
    fill: bool = Field(True, description="fill what is missing in a pre-pass before training; false: the cache must "
                       "already hold every (clip, view) the run draws (a miss is an error)")
    dtype: Literal["float32", "float16"] = Field("float32", description="stored dtype (float16 halves disk and RAM; "
                                                 "float32 is exactly what the live encoders give)")


class EncoderCacheMiss(InputError, CacheMiss):
    """A (clip, view) the encoder cache does not hold, while the cache is required."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def encoder_fingerprint(model) -> str:
    """sha256 of the teacher's vision and audio encoders' weights (names, dtypes, shapes, bytes)."""
    state = {f"vision.{k}": v for k, v in model.vision.state_dict().items()}
    state.update({f"audio.{k}": v for k, v in model.audio.state_dict().items()})
    return state_fingerprint(state)


def encoder_identity(model, data_cfg, precision: str, device: str, dtype: str = "float32") -> dict:
    """Everything besides the weights, the clip key and the view that decides a stored row (module doc)."""
    import transformers

    c = model.config
    encoders = {"vision": c.vision, "audio": c.audio, "mel": c.mel, "image_mean": list(c.image_mean),
                "image_std": list(c.image_std), "vision_pooling": c.vision_pooling, "vision_grid": c.vision_grid,
                "num_segments": c.num_segments, "dtype": c.dtype}
    return {"format": FORMAT, "data": cache_context(data_cfg), "encoders": encoders, "precision": precision,
            "device": device, "stored_dtype": dtype,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


class EncoderCache(OutputStore):
    """The frozen encoders' segment features on disk: rows {"visual": [S, Dv], "audio": [S, Da]} per (key, view)."""

    label, hash_field = "encoder cache", "encoders_sha256"
    miss_hint = " (fill it: encoder_cache.fill=true)"

    def __init__(self, root: str | Path, weights_hash: str, ident: dict):
        self.dtype = np.dtype(ident.get("stored_dtype", "float32"))
        super().__init__(root, weights_hash, ident, FIELDS)

    def to_rows(self, outputs: dict) -> dict[str, np.ndarray]:
        return {f: outputs[f].detach().float().cpu().numpy().astype(self.dtype) for f in self.fields}

    def finish(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {f: t.float() for f, t in out.items()}


def miss_message(cache: EncoderCache, dataset, index: int, view: int, missing: int = 1) -> str:
    e = dataset.entries[index]
    more = f" ({missing} (clip, view) pairs missing in all)" if missing > 1 else ""
    return (f"encoder cache {cache.dir} has no entry for clip {e.clip.video_path} (key={e.key}, view={view}){more}; "
            "fill it with encoder_cache.fill=true, or check that the data, preprocessing, augmentation seed, "
            "encoders and precision are those it was filled with")


class EncodedClips(Dataset):
    """A ClipDataset's train items as stored encoder outputs: {"encoded": {"visual", "audio"}, "label", "key",
    "view", "actor", "path"}, in the same order and views as the clips; a clip is never decoded. A (clip, view)
    that is not stored raises EncoderCacheMiss."""

    def __init__(self, dataset, cache: EncoderCache):
        self.dataset, self.cache = dataset, cache

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        e, view = self.dataset.entries[index], int(self.dataset.view_of(index))
        if (e.key, view) not in self.cache:
            raise EncoderCacheMiss(miss_message(self.cache, self.dataset, index, view))
        return {"encoded": self.cache.lookup(e.key, view), "label": torch.tensor(e.clip.label, dtype=torch.long),
                "actor": e.clip.actor, "path": e.clip.video_path, "key": e.key, "view": view}


class _Pairs(Dataset):
    """The clips of the pre-pass: item j is `dataset.load(*pairs[j])` (decoded, augmented as that view)."""

    def __init__(self, dataset, pairs: list[tuple[int, int]]):
        self.dataset, self.pairs = dataset, pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, j: int) -> dict:
        return self.dataset.load(*self.pairs[j])


def check_frozen(model) -> None:
    c = model.config
    if not (c.freeze_vision and c.freeze_audio):
        raise ConfigError("encoder_cache.enabled needs frozen encoders: set model.overrides.freeze_vision=true and "
                          "model.overrides.freeze_audio=true (a training encoder changes its outputs every step)")


@torch.no_grad()
def fill_encoder_cache(cache: EncoderCache, model, dataset, pairs: list[tuple[int, int]], device, autocast=None,
                       batch_size: int = 16, num_workers: int = 0, progress: bool = True) -> int:
    """Run the frozen encoders on the clips of `pairs` ((index, view)) and store their outputs. Returns rows added."""
    for encoder in (model.vision, model.audio):  # frozen: already in eval mode; onto the device that trains
        encoder.eval().to(device)
    loader = DataLoader(_Pairs(dataset, pairs), batch_size=batch_size, num_workers=num_workers,
                        generator=torch.Generator())  # its own: the pre-pass leaves the run's RNG streams alone
    return cache.fill_with(lambda b: model.encode(b["video"], b["audio"]), loader, device, progress, autocast)


def prepare_encoder_cache(section: EncoderCacheConfig, model, dataset, data_cfg, accelerator, epochs: int,
                          root: str | Path, batch_size: int = 16, num_workers: int = 0) -> tuple[EncodedClips, dict]:
    """The pre-pass (main process; the others wait), then the cache loaded everywhere -> (the train items as stored
    encoder outputs, statistics for metrics.json). `model`: the unwrapped teacher, before sharding."""
    check_frozen(model)
    ident = encoder_identity(model, data_cfg, accelerator.mixed_precision, accelerator.device.type, section.dtype)
    cache = EncoderCache(section.dir or root, encoder_fingerprint(model), ident)
    todo, pairs = pairs_for_epochs(dataset, epochs, have=lambda key, view: (key, view) in cache)
    logger.info("encoder cache %s: %d of %d (clip, view) pairs to compute", cache.dir, len(todo), pairs)
    if todo and not section.fill:
        raise EncoderCacheMiss(miss_message(cache, dataset, todo[0][0], todo[0][1], len(todo)))
    t0, added = time.perf_counter(), 0
    if todo and accelerator.is_main_process:
        added = fill_encoder_cache(cache, model, dataset, todo, accelerator.device, accelerator.autocast, batch_size,
                                   num_workers, progress=accelerator.is_local_main_process)
    accelerator.wait_for_everyone()
    cache.load()
    info = {"dir": str(cache.dir), "entries": len(cache), "added": added, "pairs": pairs,
            "fill_seconds": round(time.perf_counter() - t0, 3)}
    return EncodedClips(dataset, cache), info


__all__ = ["EncoderCacheConfig", "EncoderCache", "EncoderCacheMiss", "EncodedClips", "encoder_fingerprint",
           "encoder_identity", "fill_encoder_cache", "prepare_encoder_cache", "FORMAT"]
