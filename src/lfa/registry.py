"""One registry idiom for everything the package looks up by name: losses, backbones, dataset sources.

Each kind keeps one :class:`Registry` and exposes the same four functions, as timm does for its models::

    register_loss / loss_names / get_loss / build_loss              (lfa.losses)
    register_backbone / backbone_names / get_backbone / build_model (lfa.models)
    register_source / source_names / get_source                     (lfa.sources)

An entry carries its display name (what tables and figures print) and where it was registered, so that a
name registered twice, or a name that does not exist, gets an error naming the files and the close names.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Generic, TypeVar

from lfa.errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    display: str
    origin: str  # the file that registered it


def origin_of(obj: object) -> str:
    """The source file of a class or function (for error messages), or its module's name."""
    try:
        return inspect.getsourcefile(obj) or obj.__module__  # type: ignore[arg-type]
    except TypeError:
        return getattr(obj, "__module__", "?")


class Registry(Generic[T]):
    """Entries of one kind (``kind``: e.g. "loss"), by name."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, value: T, display: str, origin: str) -> T:
        if not name:
            raise ValueError(f"a {self.kind} needs a non-empty name ({origin})")
        if name in self._entries:
            first = self._entries[name].origin
            raise DuplicateNameError(f"{self.kind} {name!r} is registered twice: in {first} and in {origin}")
        self._entries[name] = Entry(name, value, display or name, origin)
        return value

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def get(self, name: str) -> T:
        return self.entry(name).value

    def display(self, name: str) -> str:
        return self.entry(name).display

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; known {self.plural}: {', '.join(self.names())}"
