"""Data: RAVDESS/CREMA-D names, PyAV decoding, actor splits, the preprocessed cache, datasets, synthetic set.

    from emodistill.core.data import DataConfig, build_datasets
    ds = build_datasets(DataConfig(root="data/synth"))   # {"train", "val", "test"} -> ClipDataset

Names are imported lazily, so decode/synth worker processes do not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "dataset": ["DataConfig", "build_datasets", "ClipDataset", "augment_frames", "augment_audio"],
    "cache": ["CacheEntry", "CacheReport", "build_cache", "clip_key", "content_hash", "read_entry"],
    "decode": ["DecodeError", "load_clip"],
    "names": ["FORMATS", "Clip", "ClipName", "NameParseError", "get_format", "parse_name", "register_format",
              "scan_dataset"],
    "splits": ["actor_groups", "assign_splits", "split_actors"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
