"""Finding and reading pretrained teacher weights: local folder or local HF cache, never a silent fallback.

`resolve_sources` turns hub ids / local folders into local folders and raises one `MissingWeightsError`
listing every part that is not available together with the command that fetches it.
`load_selected` copies into a module only the tensors it has, reading them one by one from the
(possibly sharded) safetensors files, so a truncated LFM2 never reads its other layers or its
65536 x 1536 token embedding.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open

from emodistill.core.errors import InputError

logger = logging.getLogger(__name__)

REFERENCE_DIR = Path(__file__).resolve().parent / "configs"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


class MissingWeightsError(InputError, RuntimeError):
    """Pretrained weights that are neither in a given folder nor in the local Hugging Face cache."""


def _weight_map(folder: Path) -> dict[str, str]:
    """{tensor: shard file} of the index; a shard that is not a plain file name beside it is refused (the index is
    data: "../x" or "/x" must not make us read files outside the folder)."""
    index = folder / INDEX
    try:
        wm = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as e:
        raise MissingWeightsError(f"{index}: unreadable index ({type(e).__name__}: {e})") from None
    if not isinstance(wm, dict):
        raise MissingWeightsError(f"{index}: 'weight_map' must map tensor names to shard files")
    for key, shard in wm.items():
        if not isinstance(shard, str) or Path(shard).is_absolute() or ".." in Path(shard).parts or not shard:
            raise MissingWeightsError(f"{index}: weight_map[{key!r}] = {shard!r} is not a file inside {folder}")
    return wm


def reference_config(name: str) -> dict:
    """A published config shipped with the package (teacher/configs/<name>.json), for offline sizing."""
    path = REFERENCE_DIR / f"{name}.json"
    if not path.exists():
        have = ", ".join(sorted(p.stem for p in REFERENCE_DIR.glob("*.json")))
        raise FileNotFoundError(f"no reference config {path.name} in {REFERENCE_DIR}; available: {have}")
    return json.loads(path.read_text())


def fetch_command(repo_id: str) -> str:
    return f"hf download {repo_id}    (or: huggingface-cli download {repo_id})"


def _weight_files(folder: Path) -> list[str]:
    """Problems with a weights folder (empty list = usable)."""
    problems = []
    if not (folder / "config.json").exists():
        problems.append("config.json")
    if (folder / INDEX).exists():
        shards = set(_weight_map(folder).values())
        problems += sorted(s for s in shards if not (folder / s).exists())
    elif not (folder / SINGLE).exists() and not list(folder.glob("*.safetensors")):
        problems.append("*.safetensors (only safetensors weights are read)")
    return problems


def _from_cache(repo_id: str) -> Path | None:
    """The cached snapshot folder of `repo_id`, without any network access (None when not cached)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as e:  # LocalEntryNotFoundError, HFValidationError (not a repo id), offline errors
        logger.debug("%s not in the local HF cache: %s", repo_id, e)
        return None


def _cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def resolve_sources(sources: dict[str, str]) -> dict[str, Path]:
    """{part: hub id or local folder} -> {part: local folder}. Raises MissingWeightsError naming every gap."""
    found, missing = {}, []
    for part, src in sources.items():
        local = Path(os.path.expanduser(src))
        if local.is_dir():
            folder, how = local, "local folder"
        elif local.is_absolute() or src.startswith((".", "~")) or src.count("/") != 1:
            missing.append(f"- {part}: {src!r} is not an existing folder (and not a hub id)")
            continue
        else:
            folder, how = _from_cache(src), "local HF cache"
            if folder is None:
                missing.append(f"- {part}: {src} is not in the local Hugging Face cache ({_cache_dir()}).\n"
                               f"    fetch it with: {fetch_command(src)}")
                continue
        gaps = _weight_files(folder)
        if gaps:
            hint = f"\n    fetch it with: {fetch_command(src)}" if how == "local HF cache" else ""
            missing.append(f"- {part}: {folder} ({how}) lacks {', '.join(gaps)}{hint}")
            continue
        logger.info("%s weights: %s (%s)", part, folder, how)
        found[part] = folder
    if missing:
        raise MissingWeightsError(
            "pretrained teacher weights are missing (no random-weight fallback):\n" + "\n".join(missing) +
            "\nOr point the model at local folders, e.g. --set model.overrides.lfm2_source=/path/to/LFM2-700M")
    return found


@dataclass
class LoadReport:
    """What `load_selected` read (checkpoint keys) and what it left on disk."""

    folder: str
    read: list[str] = field(default_factory=list)
    skipped: int = 0


def _index(folder: Path) -> dict[str, Path]:
    """checkpoint key -> file holding it (reads only headers)."""
    if (folder / INDEX).exists():
        return {k: folder / f for k, f in _weight_map(folder).items()}
    files = [folder / SINGLE] if (folder / SINGLE).exists() else sorted(folder.glob("*.safetensors"))
    out = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            out.update({k: f for k in sf.keys()})
    return out


def load_selected(module: torch.nn.Module, folder: str | Path, prefixes: tuple[str, ...] = ("",),
                  optional: tuple[str, ...] = ("num_batches_tracked",),
                  rename: Callable[[str], str | None] | None = None) -> LoadReport:
    """Copy the module's tensors from `folder`, looking each one up as `prefix + name` for each prefix.

    Only the tensors the module owns are read (one `get_tensor` each); every other tensor in the
    checkpoint stays on disk. A module tensor not found (except names ending in `optional`) or with a
    different shape raises, naming it. `rename(name)` maps a module name to its checkpoint name first (None: not
    in the checkpoint, left as initialised: LoRA adapters).
    """
    folder = Path(folder)
    where = _index(folder)
    state = module.state_dict()
    plan: dict[Path, list[tuple[str, str]]] = {}
    absent = []
    for name in state:
        src = rename(name) if rename is not None else name
        if src is None:
            continue
        key = next((p + src for p in prefixes if p + src in where), None)
        if key is None:
            if not name.endswith(optional):
                absent.append(name)
            continue
        plan.setdefault(where[key], []).append((name, key))
    if absent:
        raise MissingWeightsError(f"{folder}: {len(absent)} tensors of {type(module).__name__} are not in the "
                                  f"checkpoint (looked under prefixes {prefixes}): {absent[:8]}")
    report = LoadReport(str(folder))
    with torch.no_grad():
        for file, items in plan.items():
            with safe_open(str(file), framework="pt", device="cpu") as sf:
                for name, key in items:
                    tensor = sf.get_tensor(key)
                    if tuple(tensor.shape) != tuple(state[name].shape):
                        raise MissingWeightsError(f"{file}: {key} has shape {tuple(tensor.shape)}, the model "
                                                  f"expects {tuple(state[name].shape)} for {name}")
                    state[name].copy_(tensor)
                    report.read.append(key)
    report.skipped = len(where) - len(report.read)
    logger.info("loaded %d tensors of %s from %s (%d others left unread)", len(report.read),
                type(module).__name__, folder, report.skipped)
    return report


def read_json(folder: str | Path, name: str) -> dict | None:
    path = Path(folder) / name
    return json.loads(path.read_text()) if path.exists() else None


__all__ = ["MissingWeightsError", "LoadReport", "reference_config", "fetch_command", "resolve_sources",
           "load_selected", "read_json", "REFERENCE_DIR"]
