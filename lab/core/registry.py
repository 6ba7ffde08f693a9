"""Name -> constructor registries, as timm does for models.

Every pluggable family (renderers, real datasets, models, executors, ...) is a `Registry`. Unknown names
are errors that list the valid ones, so a typo in a config never silently picks a default.

A registry may name packages to `discover`: before its first lookup it imports every module in them, so a new
entry is one file with its decorator and no hand-kept list of modules has to name that file.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterator, Sequence, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def import_package(package: str) -> list[str]:
    """Import `package` and every module below it (sub-packages included); returns the module names."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), prefix=f"{package}."):
        importlib.import_module(info.name)
        names.append(info.name)
    return names


class Registry(Generic[T]):
    """A named collection of constructors: `@registry.register("name")` and `registry.get("name")`."""

    def __init__(self, kind: str, discover: str | Sequence[str] = ()) -> None:
        self.kind = kind
        self.discover = (discover,) if isinstance(discover, str) else tuple(discover)
        self._entries: dict[str, T] = {}
        self._discovered = not self.discover

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return decorator

    def _entries_discovered(self) -> dict[str, T]:
        """The entries, after importing the `discover` packages once (their modules register themselves)."""
        if not self._discovered:
            self._discovered = True  # first: a module that looks a name up while it is imported must not recurse
            try:
                for package in self.discover:
                    import_package(package)
            except BaseException:
                self._discovered = False  # a failed import is raised again by the next lookup, never hidden
                raise
        return self._entries

    def get(self, name: str) -> T:
        try:
            return self._entries_discovered()[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries_discovered())

    def __contains__(self, name: object) -> bool:
        return name in self._entries_discovered()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
