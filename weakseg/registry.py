"""Name → factory registries in the timm manner (learners, backbones, instance encoders).

Third-party packages add entries through an entry-point group (e.g. ``weakseg.learners``) or by
being imported (a recipe's ``plugins:`` list); either way their ``@register_*`` decorators run.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import WeaksegError

T = TypeVar("T")


class Registry(Generic[T]):
    """A case-sensitive mapping from names to factories (classes or functions)."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Callable[..., T]] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name")``. Re-registering a name is an error.

        Every public decorator (``register_learner``, ``register_backbone``, ``register_encoder``)
        has this one form: the registered name is always given explicitly.
        """
        if not isinstance(name, str) or not name:
            raise WeaksegError(f"register a {self.kind} with an explicit name: @register_{self.kind}(\"my_name\"), "
                               f"got {name!r}")

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            existing = self._entries.get(name)
            if existing is not None and existing is not factory:
                raise WeaksegError(f"{self.kind} {name!r} is already registered by {existing.__module__}")
            self._entries[name] = factory
            return factory

        return deco

    def _load_entry_points(self) -> None:
        if self._plugins_loaded or self.entry_point_group is None:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            ep.load()  # importing runs the plugin's @register decorators

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; unknown names suggest the closest match."""
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise WeaksegError(f"unknown {self.kind} {name!r}{hint} (available: {', '.join(sorted(self._entries))})") from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Instantiate the entry ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style ``pattern``."""
        self._load_entry_points()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries
