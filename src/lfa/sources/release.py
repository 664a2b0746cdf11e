"""Public datasets by name, read as they are released: a preset of ``source: csv``'s keys per release.

A release source (:mod:`lfa.sources.ham10000`, :mod:`lfa.sources.isic2019`, :mod:`lfa.sources.chexpert`,
:mod:`lfa.sources.chestxray14`) knows its files, classes, label conventions, grouping (on by default) and,
where the release has one, its official test split (``test_split: official``). ``root`` is the folder the
release was unpacked in, exactly as distributed. The user's keys (:data:`USER_KEYS`) override the preset:
``group_column: none`` turns the grouping off on purpose, ``drop_classes`` replaces the preset's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lfa.errors import ConfigError
from lfa.sources.table import CsvSource, check_table_keys

#: What a dataset of a release source may set besides the common keys.
USER_KEYS = frozenset({"group_column", "test_split", "drop_classes", "allow_empty_classes", "channels"})


class ReleaseSource(CsvSource):
    """A public release read through the table machinery: set :attr:`preset` (the table keys), :attr:`required`
    (what ``root`` must hold), :attr:`where` (how to get it) and, if the release has one, :attr:`official_test`."""

    options = USER_KEYS
    preset: dict[str, Any] = {}
    #: What ``test_split: official`` means (a ``test_split`` form), or None: the release has no test labels.
    official_test: dict[str, Any] | None = None
    #: Files and folders ``root`` must hold (a name ending in / is a folder; "a|b": either).
    required: tuple[str, ...] = ()
    where: str = ""

    def release(self, root: Path) -> tuple[Path, dict[str, Any]]:
        """The folder the table's paths are relative to, and the preset for the release as found there (a file
        name may differ between versions), from the configured root."""
        return root, dict(self.preset)

    def official_split(self, preset: dict[str, Any]) -> dict[str, Any]:
        """The ``test_split`` form ``official`` stands for, for the release of ``preset``."""
        return dict(self.official_test or {})

    def table_spec(self, root: Path, spec: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        root, preset = self.release(Path(root))
        full = {**preset, **spec}
        if spec.get("group_column"):  # the user's grouping replaces the release's (none: ungrouped on purpose)
            full.pop("group_pattern", None)
            full.pop("blank_group_is_image", None)
        if spec.get("test_split") == "official":
            full["test_split"] = self.official_split(preset)
        return root, full

    def check_spec(self, key: str, spec: dict[str, Any]) -> None:
        if spec.get("test_split") == "official" and self.official_test is None:
            raise ConfigError(f"{key}.test_split: {self.title} has no official test split with labels; give one of "
                              "the forms of source csv ({file: ...}, {column: ..., value: ...}) or leave it out")
        check_table_keys(key, self.table_spec(Path("."), spec)[1])

    def missing(self, root: Path) -> list[str]:
        """The required files and folders not under ``root``."""
        out = []
        for entry in self.required:
            names = entry.split("|")
            if not any((root / n.rstrip("/")).is_dir() if n.endswith("/") else (root / n).is_file() for n in names):
                out.append(" or ".join(names))
        return out

    def present(self, root: Path) -> bool:
        return not self.missing(self.release(root)[0])

    def missing_message(self, root: Path, problem: str = "") -> str:
        absent = self.missing(self.release(root)[0])
        problem = problem or (f"missing: {', '.join(absent)}" if absent else "")
        return super().missing_message(root, problem)

    def instructions(self, root: Path) -> str:
        return (f"source: {self.name} reads {self.title} as released; it is never downloaded (its licence asks you "
                f"to fetch it yourself).\nGet it from {self.where}\nUnpack it, renaming nothing, so that {root} "
                f"holds: {', '.join(' or '.join(e.split('|')) for e in self.required)}; point datasets.<name>.root "
                "at that folder (docs/datasets.md), then rerun.")
