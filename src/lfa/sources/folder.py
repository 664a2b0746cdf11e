"""``source: folder``: your own images, one sub-folder per class (torchvision's ImageFolder layout).

Layout under ``datasets.<name>.root``::

    <class a>/img001.png
    <class a>/more/img002.JPG      (nested folders belong to their top-level class folder)
    <class b>/...

As in ``torchvision.datasets.ImageFolder``: class i is the i-th folder name in sorted order; a file is an
image by its extension, compared case-insensitively (:data:`EXTENSIONS`); images in nested folders count
for the class folder they are under (symbolic links are followed, each folder once). Unlike ImageFolder,
hidden files and folders (names starting with ``.``) are ignored at every level, files directly under the
root are ignored, and an empty class folder is an error naming it. Single-label (at least two
classes). The images are packed with
``datasets.<name>.channels`` (1 or 3; default: 3 if any file is in a colour mode, else 1).

Never downloaded: the user puts the folders in place and points ``datasets.<name>.root`` at them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import RawDataInvalid, RawDataMissing
from lfa.sources.base import IMAGE_EXTENSIONS, FileList, Source, list_dirs, one_hot, register_source

#: torchvision's ImageFolder extensions (compared lower-case).
EXTENSIONS = tuple(sorted({*IMAGE_EXTENSIONS, ".ppm", ".pgm"}))


def walk_images(root: Path, folder: Path) -> list[str]:
    """Image files under ``folder`` at any depth, as sorted posix paths relative to ``root`` (hidden skipped).

    Symbolic links to folders are followed, each real folder once (a link cycle does not loop).
    """
    found, seen = [], set()
    for here, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(here).relative_to(root).as_posix()
        found += [f"{rel}/{f}" for f in files if not f.startswith(".") and f.lower().endswith(EXTENSIONS)]
    return sorted(found)


def list_image_folder(root: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Relative image paths, class index per path and class names (sorted folder names) of a class-folder tree.

    Raises :class:`RawDataMissing` without class folders and :class:`RawDataInvalid` for empty ones.
    """
    classes = list_dirs(root)
    paths: list[str] = []
    target: list[int] = []
    empty = []
    for c, name in enumerate(classes):
        found = walk_images(root, root / name)
        if not found:
            empty.append(name)
        paths += found
        target += [c] * len(found)
    if empty:
        shown = ", ".join(f"{root / e}/" for e in empty)
        raise RawDataInvalid(f"empty class folder(s) under {root}: {shown}: no image files ({', '.join(EXTENSIONS)}; "
                             "hidden files skipped) at any depth; add images or remove the folder(s)")
    return paths, np.asarray(target, dtype=np.int64), classes


@register_source
class FolderSource(Source):
    name = "folder"
    title = "Image folders"
    manual = True
    options = frozenset({"channels"})
    default_image_size = 128
    prepare_threads = 8
    root_per_dataset = True

    def instructions(self, root: Path) -> str:
        return (
            "source: folder reads your own images, one sub-folder per class; it is never downloaded.\n"
            f"Put them in this layout under {root}:\n"
            f"  {root}/<class a>/<image>.png   (any of {', '.join(EXTENSIONS)}, any case, nested folders allowed)\n"
            f"  {root}/<class b>/<image>.jpg\n"
            "and point datasets.<name>.root at that folder (classes: the folder names, sorted), then rerun."
        )

    def present(self, root: Path) -> bool:
        return root.is_dir() and bool(list_dirs(root))

    def _listing(self, root: Path) -> tuple[list[str], np.ndarray, list[str]]:
        if not root.is_dir():
            raise RawDataMissing(self.missing_message(root, "no such folder"))
        classes = list_dirs(root)
        if not classes:
            raise RawDataMissing(self.missing_message(root, "no class sub-folders"))
        if len(classes) < 2:
            raise RawDataInvalid(f"{root}: one class folder ({classes[0]}/); a classifier needs at least two "
                                 "class folders under the root")
        return list_image_folder(root)

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        trees = []
        for tree in sorted({spec.get("root", str(root)) for spec in specs} or {str(root)}):
            paths, target, classes = self._listing(Path(tree))
            counts = {name: int((target == c).sum()) for c, name in enumerate(classes)}
            trees.append({"root": tree, "classes": len(classes), "images": len(paths), "counts": counts})
        return trees[0] if len(trees) == 1 else {"trees": trees}

    def load(self, root: Path, spec: dict[str, Any]) -> FileList:
        root = Path(root)
        paths, target, classes = self._listing(root)
        return FileList(root, paths, one_hot(target, len(classes)), classes, "single_label")
