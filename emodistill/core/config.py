"""Typed configs: pydantic v2 models loaded from YAML, with `--set a.b=c` overrides.

Every YAML under `configs/` starts with a comment line giving the command that runs it.
An unknown key or a value of the wrong type is a `ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .utils import CONFIG_DIR, write_text_atomic

T = TypeVar("T", bound="BaseConfig")


class ConfigError(ValueError):
    """A config file or override that does not fit its schema."""


class BaseConfig(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _allowed(cls: type[BaseModel], loc: tuple) -> str:
    """The field names allowed at `loc` (for unknown-key errors)."""
    model: Any = cls
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return ""
        ann = field.annotation
        for cand in (ann, *typing.get_args(ann)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
        else:
            return ""
    if isinstance(model, type) and issubclass(model, BaseModel):
        return ", ".join(model.model_fields)
    return ""


def format_validation_error(cls: type[BaseModel], err: ValidationError, source: str = "") -> str:
    lines = [f"invalid config{f' in {source}' if source else ''}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}'; allowed keys here: {_allowed(cls, e['loc'])}")
        else:
            lines.append(f"  '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b=3' -> (['a', 'b'], 3). The value is parsed as YAML, so 3, 0.1, true, [1, 2] work."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.path=value")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: e.g. a date like 2001-13-01
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    for item in overrides or []:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: '{part}' is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return data


RECIPE_KINDS = ("teacher", "distill", "data")


def packaged_configs() -> dict[str, Path]:
    """The packaged recipes by name (`kind/stem`, e.g. `distill/ravdess_s`) -> their file in `CONFIG_DIR`."""
    return {str(f.relative_to(CONFIG_DIR).with_suffix("")): f
            for k in RECIPE_KINDS for f in sorted((CONFIG_DIR / k).rglob("*.yaml"))}


def yaml_header(path: Path) -> tuple[str, str]:
    """(the command of a YAML's first comment line, the description of its second); '' where absent."""
    try:
        lines = path.read_text().splitlines()[:2]
    except (OSError, UnicodeDecodeError):
        return "", ""
    text = [ln.lstrip("# ").strip() if ln.startswith("#") else "" for ln in lines] + ["", ""]
    return text[0], text[1]


def resolve_config_path(path: str | Path) -> Path:
    """A config file: the path as given (a user's own file), else a packaged recipe by its name.

    Packaged names: `ravdess_s`, `distill/ravdess_s`, `distill/ravdess_s.yaml` or the repository path
    `configs/distill/ravdess_s.yaml`, all found in the installed package from any folder.
    """
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        raise ConfigError(f"config {path} is a folder, not a YAML file")
    if not p.is_absolute():
        rel = Path(*p.parts[1:]) if p.parts and p.parts[0] == "configs" else p
        for cand in (CONFIG_DIR / rel, CONFIG_DIR / f"{rel}.yaml"):
            if cand.is_file() and rel.parts[0] != "hardware":
                return cand
        if len(rel.parts) == 1:
            stem = rel.stem if rel.suffix in (".yaml", ".yml") else rel.name
            hits = [f for name, f in packaged_configs().items() if Path(name).name == stem]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                names = ", ".join(str(f.relative_to(CONFIG_DIR).with_suffix("")) for f in hits)
                raise ConfigError(f"config {path!r} names several packaged recipes: {names}; give one of them")
    names = ", ".join(packaged_configs())
    raise ConfigError(f"config file not found: {path} (not a file, nor a packaged recipe: {names}; "
                      f"`emodistill config list` shows them)")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from a YAML file (optional) plus `key.path=value` overrides."""
    data: dict = {}
    source = ""
    if path is not None:
        p = resolve_config_path(path)
        source = str(p)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except (UnicodeDecodeError, OSError) as e:
            raise ConfigError(f"{p}: cannot read the config ({type(e).__name__}: {e})") from None
        except (yaml.YAMLError, ValueError, RecursionError) as e:
            raise ConfigError(f"{p}: not valid YAML: {str(e)[:300]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    data = apply_overrides(data, overrides)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(cls, e, source)) from None


def dump_config(cfg: BaseModel, path: str | Path, command: str) -> None:
    """Write a config as YAML whose first line is the command that runs it."""
    text = f"# {command}\n" + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    write_text_atomic(path, text)
