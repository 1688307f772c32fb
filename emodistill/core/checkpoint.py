"""Self-describing checkpoints: `model.safetensors` + `checkpoint.json`.

The JSON holds the model family and config (enough to rebuild it offline), the preprocessing
contract, class names, versions, git commit and the weights' sha256. Loading uses safetensors only;
nothing is unpickled. Both files are written atomically, JSON last, so a kill at any moment leaves
the previous checkpoint readable (a JSON whose sha256 does not match its weights is refused).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import Preprocess, input_contract
from .errors import InputError, UnknownNameError
from .utils import atomic_path, git_commit, sha256_file, versions, write_json_atomic

if TYPE_CHECKING:  # torch is imported where weights are read or written: the metadata readers run without it
    import torch

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "checkpoint.json"
REQUIRED_KEYS = ("family", "model", "preprocess", "class_names")


class CheckpointError(InputError, RuntimeError):
    """A checkpoint that is missing, torn or does not match what the caller expects."""


def _dir(path: str | Path) -> Path:
    """The checkpoint folder of a folder, its model.safetensors or its checkpoint.json (dots in names are fine)."""
    p = Path(path)
    return p.parent if p.suffix == ".safetensors" or p.name == META else p


def save_checkpoint(out: str | Path, model: torch.nn.Module, *, preprocess: Preprocess | dict,
                    class_names: list[str], extra: dict[str, Any] | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `model` (which must provide `family` and `get_config()`) to the folder `out`. `state_dict`: its
    weights when `model` cannot give them itself (a sharded model's, gathered by
    emodistill.core.sharding.full_state_dict on every process); default `model.state_dict()`."""
    out = _dir(out)
    out.mkdir(parents=True, exist_ok=True)
    pre = preprocess if isinstance(preprocess, Preprocess) else Preprocess.model_validate(preprocess)
    family = getattr(model, "family", None)
    if not isinstance(family, str) or not family:  # load_checkpoint rebuilds it through this family's registry
        raise CheckpointError(f"model {type(model).__name__} has family={family!r}; a checkpointed model names "
                              "its family (emodistill.core.model.AVModel)")
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in
             (model.state_dict() if state_dict is None else state_dict).items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    meta = {
        "format_version": FORMAT_VERSION,
        "family": family,
        "model": model.get_config(),
        "preprocess": pre.model_dump(mode="json"),
        "class_names": list(class_names),
        "contract": input_contract(pre, class_names),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "versions": versions(),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "weights_sha256": sha256_file(out / WEIGHTS),
        **(extra or {}),
    }
    write_json_atomic(out / META, meta)
    logger.info("saved %s checkpoint to %s", family, out)
    return out


def recorded_data(meta: dict) -> dict:
    """The `data:` section of the recipe that trained a checkpoint ({} when it was not recorded): the layout,
    split and label map to read a data set the way its training did (export --data, compare)."""
    for section in (meta.get("data"), (meta.get("distill") or {}).get("config", {}).get("data"),
                    (meta.get("train_config") or {}).get("data")):
        if isinstance(section, dict):
            return section
    return {}


def recipe_making(path: str | Path) -> str | None:
    """The command of the packaged recipe whose run writes the checkpoint `path` (its `output_dir`/best), if
    one does: what to run when that checkpoint is missing."""
    import yaml

    from .config import packaged_configs, yaml_header

    want = Path(os.path.normpath(_dir(path)))
    for f in packaged_configs().values():
        try:
            out = (yaml.safe_load(f.read_text()) or {}).get("output_dir")
        except (yaml.YAMLError, OSError, AttributeError):
            continue
        if out and Path(os.path.normpath(Path(out) / "best")) == want:
            return yaml_header(f)[0] or None
    return None


def missing_checkpoint_message(path: str | Path) -> str:
    """Why `path` is not a checkpoint, and what to do: a missing path (and the command that makes it), a run
    folder (its checkpoint is best/), or a folder of something else."""
    d = _dir(path)
    if not d.exists():
        make = recipe_making(d)
        how = f"; make it first: `{make}`" if make else ""
        return f"{d}: no such checkpoint (the path does not exist){how}"
    if d.is_file():
        return f"{d}: a file, not a checkpoint folder (give the folder holding {META} and {WEIGHTS})"
    if (d / "best" / META).exists():
        return (f"{d} is a run folder, not a checkpoint: its best checkpoint is {d / 'best'} (pass that path)")
    return f"{d}: no {META}; not an emodistill checkpoint (or it was never completed)"


def read_meta(path: str | Path) -> dict:
    d = _dir(path)
    if not (d / META).exists():
        raise CheckpointError(missing_checkpoint_message(d))
    try:
        meta = json.loads((d / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{d / META}: unreadable JSON: {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{d / META}: expected a JSON object, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{d / META}: missing key(s) {', '.join(map(repr, missing))}; the file is incomplete "
                              "or not written by emodistill (save the checkpoint again)")
    return meta


def check_meta(meta: dict, *, preprocess: Preprocess | dict | None = None,
               class_names: list[str] | None = None, family: str | None = None) -> list[str]:
    """Differences between a checkpoint's contract and what the caller expects (empty = match)."""
    diffs = []
    if family is not None and meta.get("family") != family:
        diffs.append(f"family: checkpoint has {meta.get('family')!r}, expected {family!r}")
    if class_names is not None and list(meta.get("class_names", [])) != list(class_names):
        diffs.append(f"class_names: checkpoint has {meta.get('class_names')}, expected {list(class_names)}")
    if preprocess is not None:
        want = (preprocess if isinstance(preprocess, dict) else preprocess.model_dump(mode="json"))
        have = meta.get("preprocess", {})
        for k in sorted(set(want) | set(have)):
            if json.dumps(want.get(k)) != json.dumps(have.get(k)):
                diffs.append(f"preprocess.{k}: checkpoint has {have.get(k)!r}, expected {want.get(k)!r}")
    return diffs


def build_model(meta: dict) -> torch.nn.Module:
    """Rebuild the (untrained) model a checkpoint describes, without downloading anything.

    The family's `model_from_config` is looked up in the family registry (emodistill.core.model): the package
    that defines the family (`student`, `teacher`) must have been imported, which registers it.
    """
    from .model import family_from_config, list_families

    family = meta.get("family")
    try:
        from_config = family_from_config(family)
    except (UnknownNameError, TypeError):
        registered = ", ".join(list_families()) or "none"
        raise CheckpointError(f"{META}: model family {family!r} is not registered (registered: {registered}); "
                              "import the package that defines it before loading the checkpoint (emodistill's "
                              "families: `import emodistill.student`, `import emodistill.teacher`)") from None
    try:
        return from_config(meta["model"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{META}: key 'model' does not describe a {family} model ({type(e).__name__}: "
                              f"{e})") from None


def load_checkpoint(path: str | Path, *, map_location: str = "cpu", **expect: Any) -> tuple[torch.nn.Module, dict]:
    """Load a checkpoint folder (or its .safetensors file) -> (model in eval mode, meta).

    `expect` (preprocess=, class_names=, family=) is checked first; a mismatch raises naming each field.
    """
    d = _dir(path)
    meta = _read_expected(d, expect, "")
    weights = _checked_weights(d, meta)
    model = build_model(meta)
    _load_state(model, weights, map_location)
    model.eval()
    return model, meta


def is_checkpoint_path(path: str | Path) -> bool:
    """Whether `path` names a checkpoint the way `load_checkpoint` accepts it: a folder, its weights file or its
    metadata file (as opposed to an exported artifact such as model.onnx and its sidecar JSON)."""
    p = Path(path)
    return p.is_dir() or p.suffix == ".safetensors" or p.name == META


def fingerprint(path: str | Path) -> str:
    """sha256 identifying a checkpoint's weights: the `weights_sha256` its metadata records, else (a folder with
    weights only) the sha256 of its weights file. Cheap: the weights are hashed only when the JSON lacks it."""
    d = _dir(path)
    if (d / META).exists():
        try:
            sha = json.loads((d / META).read_text()).get("weights_sha256")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise CheckpointError(f"{d / META}: unreadable JSON: {e}") from None
        if sha:
            return sha
    weights = d / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"checkpoint {d}: neither {META} nor {WEIGHTS} found")
    return sha256_file(weights)


def load_weights(model: torch.nn.Module, path: str | Path, **expect: Any) -> dict:
    """Load a checkpoint's weights into an existing `model` (strict: every key, every shape) -> its meta.

    `expect` (preprocess=, class_names=, family=) is checked first and the weights against the sha256 in the
    metadata, as in `load_checkpoint`; tensors are copied onto the device of `model`'s parameters."""
    d = _dir(path)
    meta = _read_expected(d, expect, " this run")
    _load_state(model, _checked_weights(d, meta), "cpu")
    return meta


def _read_expected(d: Path, expect: dict, what: str) -> dict:
    """The checkpoint's meta, after `check_meta(**expect)`: a mismatch raises naming each field."""
    meta = read_meta(d)
    diffs = check_meta(meta, **expect)
    if diffs:
        raise CheckpointError(f"{d} does not match{what}:\n  " + "\n  ".join(diffs))
    return meta


def _checked_weights(d: Path, meta: dict) -> Path:
    """`d`'s weights file, present and with the sha256 its metadata records."""
    weights = d / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{d}: {WEIGHTS} is missing")
    if meta.get("weights_sha256") and sha256_file(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights}: sha256 does not match {META} (torn or replaced weights)")
    return weights


def _load_state(model: torch.nn.Module, weights: Path, map_location: str) -> None:
    """Load `weights` into `model`: readable safetensors, an exact fit (every key, every shape)."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights), device=map_location)
    except Exception as e:  # SafetensorError (truncated / not safetensors) has no useful base class
        raise CheckpointError(f"{weights}: unreadable safetensors file ({e}); it is truncated or not a "
                              "checkpoint, save or copy it again") from None
    from .sharding import load_full_state_dict

    try:
        missing, unexpected = load_full_state_dict(model, state)  # a sharded model keeps its own shards
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{weights}: weights do not fit the model in {META}: {str(e).splitlines()[-1].strip()}"
                              ) from None
    if missing or unexpected:
        raise CheckpointError(f"{weights.parent}: weights do not fit the model: missing={missing[:5]} "
                              f"unexpected={unexpected[:5]}")
