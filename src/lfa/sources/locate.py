"""Find a table's images on disk: over one or several image folders (``roots``), and say why when they are not there.

A released table names its images in its own way (HAM10000's ``image_id`` without folder or extension, two
image folders; ChestX-ray14's twelve ``images_0NN/images/`` folders). :func:`resolve_roots` expands
``datasets.<name>.roots`` (relative to the dataset's root or absolute, globs allowed) and :func:`locate`
finds each image in the first folder that holds it, listing each folder once (not a stat per image and
folder). When images are missing, :func:`absent_hint` looks for the real cause: the same names with an
image extension (set ``path_template``), or the files in other folders under the root (set ``roots``).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path, PurePosixPath

from lfa.errors import RawDataMissing
from lfa.sources.base import IMAGE_EXTENSIONS

#: How deep below the root :func:`absent_hint` looks for misplaced images, and how many folders at most.
HINT_DEPTH, HINT_FOLDERS = 3, 5000


def resolve_roots(root: Path, roots: list[str] | None, key: str) -> list[Path]:
    """The image folders to search, in order: ``roots`` (relative to ``root`` or absolute; a glob expands to
    its matches, sorted; an entry matching nothing is skipped), or ``root`` alone. No folder at all is an error."""
    if not roots:
        return [root]
    found: list[Path] = []
    for entry in roots:
        pattern = entry if os.path.isabs(entry) else os.path.join(glob.escape(str(root)), entry)  # [ ] * ? in root
        matches = sorted(Path(m) for m in glob.glob(pattern) if os.path.isdir(m))
        found += [m for m in matches if m not in found]
    if not found:
        raise RawDataMissing(f"{key}: {roots} match no folder under {root}; each entry is an image folder, "
                             "relative to the root or absolute, a glob allowed (e.g. images_*/images)")
    return found


class _Listing:
    """File names per folder, each folder listed once (a missing folder lists as empty)."""

    def __init__(self) -> None:
        self._names: dict[Path, frozenset[str]] = {}

    def has(self, path: Path) -> bool:
        folder = path.parent
        if folder not in self._names:
            try:
                with os.scandir(folder) as entries:
                    self._names[folder] = frozenset(e.name for e in entries if e.is_file())
            except (FileNotFoundError, NotADirectoryError):
                self._names[folder] = frozenset()
        return path.name in self._names[folder]


def locate(root: Path, folders: list[Path], paths: list[str]) -> tuple[list[str], list[str]]:
    """Each image's path relative to ``root`` (absolute where its folder lies outside the root), found in the
    first of ``folders`` that holds it; and the paths found in none (as the table gives them)."""
    listing = _Listing()
    found, absent = [], []
    for rel in paths:
        where = next((folder / rel for folder in folders if listing.has(folder / rel)), None)
        if where is None:
            absent.append(rel)
            continue
        try:
            found.append(where.relative_to(root).as_posix())
        except ValueError:
            found.append(str(where))
    return found, absent


def _walk(root: Path):
    """Folders under ``root`` to depth :data:`HINT_DEPTH` (at most :data:`HINT_FOLDERS`), with their file names."""
    seen = 0
    for here, dirs, files in os.walk(root):
        depth = len(Path(here).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < HINT_DEPTH else []
        yield Path(here), set(files)
        seen += 1
        if seen >= HINT_FOLDERS:
            return


def absent_hint(root: Path, folders: list[Path], absent: list[str], template_key: str, roots_key: str,
                column: str | None) -> str:
    """Why the first absent images are not found, if the disk says so: their names with an image extension
    exist (set ``path_template``), or they lie in other folders under the root (set ``roots``); else ""."""
    sample = [PurePosixPath(p) for p in absent[:5]]
    bare = all(not p.suffix for p in sample)
    hits: dict[Path, str] = {}
    for here, names in _walk(root):
        for p in sample:
            for name in ([p.name + ext for ext in (*IMAGE_EXTENSIONS, ".JPG", ".PNG")] if bare else [p.name]):
                if name in names:
                    hits.setdefault(here, PurePosixPath(name).suffix)
    if not hits:
        return ""
    hint = []
    ext = sorted(set(hits.values()))[0]
    if bare:
        field = "{" + (column or "<column>") + "}"
        hint.append(f"the table's paths have no extension while the files have one ({ext}): set {template_key}: "
                    f"\"{field}{ext}\"")
    parents = sorted({here for here in hits if not any(here == f / PurePosixPath(*p.parts[:-1]) for f in folders
                                                       for p in sample)})
    if parents:
        shown = ", ".join(repr(os.path.relpath(here, root)) for here in parents[:12])
        hint.append(f"files of these names lie in {shown}: set {roots_key}: [{shown}] (searched in order; a glob "
                    "such as 'images_*/images' is allowed)")
    return "; ".join(hint)
