"""Typed configs: pydantic v2 models loaded from YAML, with `--set a.b=c` overrides.

Every YAML under `configs/` starts with a comment line giving the command that runs it.
An unknown key or a value of the wrong type is a `ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import logging
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .utils import CONFIG_DIR, write_text_atomic

T = TypeVar("T", bound="BaseConfig")
logger = logging.getLogger(__name__)


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


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def format_validation_error(cls: type[BaseModel], err: ValidationError, source: str = "") -> str:
    """One line per problem; the unknown keys of one section share one line that lists its allowed keys once."""
    lines = [f"invalid config{f' in {source}' if source else ''}:"]
    unknown: dict[tuple, list[str]] = {}  # section loc -> its unknown keys, in order
    for e in err.errors():
        if e["type"] == "extra_forbidden":
            unknown.setdefault(tuple(e["loc"][:-1]), []).append(".".join(str(p) for p in e["loc"]))
    done: set[tuple] = set()
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parent = tuple(e["loc"][:-1])
            if parent in done:
                continue
            done.add(parent)
            keys, allowed = unknown[parent], _allowed(cls, e["loc"])
            names = ", ".join(f"'{k}'" + did_you_mean(k.rsplit(".", 1)[-1], allowed.split(", ")) for k in keys)
            lines.append(f"  unknown key{'s' if len(keys) > 1 else ''} {names}; allowed keys here: {allowed}")
        elif e["type"] == "missing":  # its input is the whole enclosing section: not worth repeating
            lines.append(f"  '{key}': {e['msg']}")
        else:
            lines.append(f"  '{key}': {e['msg']} (got {_short(e.get('input'))})")
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


# What each kind of recipe is called and the command that runs it (its YAML's first line says so too).
KIND_NAMES = {"data": ("a data recipe", "emodistill data prepare"),
              "teacher": ("a teacher training recipe", "emodistill teacher train"),
              "distill": ("a distillation recipe", "emodistill distill"),
              "hardware": ("a hardware profile or budget", "emodistill export --budget")}
_HEADER_KINDS = ((r"emodistill data prepare\b", "data"), (r"emodistill teacher train\b", "teacher"),
                 (r"emodistill distill\b", "distill"), (r"(python -m )?emodistill[ .]export\b", "hardware"),
                 (r"emodistill (gpu-check|plan|calibrate)\b", "hardware"))


def _kind_of_keys(keys) -> str | None:
    """The recipe kind whose top-level keys these are (a config class's fields or a YAML's keys); None if unclear."""
    keys = set(keys)
    if keys & {"student", "distill", "toy", "teacher"}:
        return "distill"
    if "model" in keys:
        return "teacher"
    if keys & {"root", "preprocess"}:
        return "data"
    if keys & {"gpu", "profile"}:
        return "hardware"
    return None


def recipe_kind(path: str | Path, data: dict | None = None) -> tuple[str | None, str]:
    """(kind, command) of a recipe file: from its first line's command, else from its top-level keys."""
    command = re.split(r"\s{2,}", yaml_header(Path(path))[0])[0]  # the command, without a trailing "  (note)"
    for pattern, kind in _HEADER_KINDS:
        if re.match(pattern, command):
            return kind, command
    return (_kind_of_keys(data) if isinstance(data, dict) else None), ""


def _wrong_kind(cls: type[BaseModel], path: str | Path, resolved: Path, data: dict, section: bool) -> str | None:
    """The one-line message for a recipe of another kind than `cls` (None when it is not clearly one)."""
    want = _kind_of_keys(cls.model_fields)
    kind, command = recipe_kind(resolved, data)
    if want is None or kind is None or kind == want:
        return None
    desc, runner = KIND_NAMES[kind]
    if not command:
        command = f"{runner} NAME" if kind == "hardware" else f"{runner} --config {path}"
    want_desc, want_runner = KIND_NAMES[want]
    takes = want_desc + (" or a recipe with a data: section" if section else "")
    return f"{path} is {desc} ({command}); {want_runner} takes {takes}"


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from a YAML file (optional) plus `key.path=value` overrides.

    A data config (`cls` of the data kind) also reads the `data:` section of a teacher or distillation recipe;
    overrides then apply to that section (`root=X` and `data.root=X` alike). A recipe of another kind is a
    one-line `ConfigError` naming its kind and the command that runs it.
    """
    data: dict = {}
    source = ""
    p: Path | None = None
    section = _kind_of_keys(cls.model_fields) == "data" and "data" not in cls.model_fields
    used_section = False
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
        if section and isinstance(data.get("data"), dict):
            kind, _ = recipe_kind(p, data)
            logger.info("%s is %s: using its data: section", path, KIND_NAMES[kind][0] if kind else "a recipe")
            data, source, used_section = data["data"], f"{p} (its data: section)", True
            overrides = [o[len("data."):] if o.startswith("data.") else o for o in overrides or []]
    file_keys = dict.fromkeys(data)  # the file's own top-level keys (kind detection), before any override
    data = apply_overrides(data, overrides)
    try:
        return cls.model_validate(data)
    except (ValidationError, ConfigError) as e:
        wrong = _wrong_kind(cls, path, p, file_keys, section) if p is not None and not used_section else None
        if wrong:
            raise ConfigError(wrong) from None
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(format_validation_error(cls, e, source)) from None


def dump_config(cfg: BaseModel, path: str | Path, command: str) -> None:
    """Write a config as YAML whose first line is the command that runs it."""
    text = f"# {command}\n" + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    write_text_atomic(path, text)


def did_you_mean(name: str, allowed) -> str:
    """' (did you mean 'x'?)' for a near miss of `name` among `allowed`, else ''."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_fields(cls: type, values: dict, what: str) -> None:
    """Check `values` against the fields of the dataclass `cls` (a model config) before anything is built: an
    unknown name or a value of the wrong type raises ConfigError naming `what.<field>`, the value, and the allowed
    names or the expected type. The values themselves are not converted (a config's JSON stays as written)."""
    import dataclasses

    from pydantic import TypeAdapter

    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{what}.{key}: unknown option{did_you_mean(key, fields)}; allowed: "
                              f"{', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        try:
            TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as e:
            why = e.errors()[0].get("msg", str(e)).lower() if e.errors() else str(e)
            raise ConfigError(f"{what}.{key}: {value!r} is not a valid {_type_name(hints[key])} ({why})") from None


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
