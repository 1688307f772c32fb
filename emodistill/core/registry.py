"""timm-style registries: `@REG.register def preset(**kw)` and `REG.create("preset", **kw)`.

An entry may carry tags (`@REG.register(role="student")`), read back with `REG.tags(name)` and used to filter
`REG.names(role="student")`. `Registry(kind, plugins=[module, ...])` imports those modules (which register more
entries and may import the registry's own module) the first time the registry is read.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import UnknownNameError


class Registry:
    """Named factories of one kind (students, teachers, fusions, losses, ...)."""

    def __init__(self, kind: str, plugins: tuple[str, ...] = ()):
        self.kind = kind
        self._fns: dict[str, Callable[..., Any]] = {}
        self._tags: dict[str, dict[str, Any]] = {}
        self._plugins = list(plugins)

    def _load_plugins(self) -> None:
        import importlib

        while self._plugins:  # by name, at first use: a plugin builds on the module that defines the registry
            importlib.import_module(self._plugins.pop(0))

    def register(self, fn: Callable[..., Any] | None = None, *, name: str | None = None, **tags: Any):
        def deco(f: Callable[..., Any]) -> Callable[..., Any]:
            key = name or f.__name__
            if key in self._fns:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._fns[key] = f
            self._tags[key] = tags
            return f

        return deco(fn) if fn is not None else deco

    def get(self, name: str) -> Callable[..., Any]:
        """The factory (function or class) registered under `name`."""
        self._load_plugins()
        if name not in self._fns:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._fns))}")
        return self._fns[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def tags(self, name: str) -> dict[str, Any]:
        """The tags `name` was registered with."""
        self.get(name)
        return dict(self._tags[name])

    def names(self, **tags: Any) -> list[str]:
        """Registered names, sorted; with `tags`, only those registered with these tag values."""
        self._load_plugins()
        return sorted(n for n in self._fns if all(self._tags[n].get(k) == v for k, v in tags.items()))

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._fns

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self.names())})"
