"""Data: RAVDESS/CREMA-D names, PyAV decoding, actor splits, the preprocessed cache, datasets, synthetic set.

    from emodistill.core.data import DataConfig, build_datasets
    ds = build_datasets(DataConfig(root="data/synth"))   # {"train", "val", "test"} -> ClipDataset

Names are imported lazily, so decode/synth worker processes do not pay for importing torch.
"""

from __future__ import annotations

from ..utils import lazy_exports

_EXPORTS = {
    "dataset": ["DataConfig", "build_datasets", "cache_context", "ClipDataset", "augment_frames", "augment_audio"],
    "cache": ["CacheEntry", "CacheReport", "build_cache", "clip_key", "content_hash", "read_entry"],
    "decode": ["DecodeError", "load_clip"],
    "names": ["FORMATS", "Clip", "ClipName", "NameParseError", "get_format", "parse_name", "register_format",
              "scan_dataset"],
    "splits": ["actor_groups", "assign_splits", "split_actors"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
