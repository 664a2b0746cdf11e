"""CAD-CAP: capsule-endoscopy images released on request by their authors; the paper uses 1,812 of them.

Layout under ``root``: one folder per class (names compared case-insensitively, ``_``/``-`` as spaces)::

    Inflammatory/*.jpg        (607)
    Vascular Lesions/*.jpg    (605)
    Healthy Control/*.jpg     (600)

Images may sit in sub-folders of a class folder; any common image format is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import RawDataMissing
from lfa.sources.base import IMAGE_EXTENSIONS, FileList, Source, list_dirs, one_hot, register_source

CLASS_NAMES = ["Inflammatory", "Vascular Lesions", "Healthy Control"]


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


@register_source
class CadCapSource(Source):
    name = "cadcap"
    title = "CAD-CAP"
    manual = True
    default_image_size = 224
    prepare_threads = 8
    reference_table = "cadcap"

    def instructions(self, root: Path) -> str:
        return (
            "CAD-CAP is released on request by its authors (Leenhardt et al., 'CAD-CAP: a 25,000-image "
            "database serving the development of artificial intelligence for capsule endoscopy', Endoscopy "
            "International Open, 2020); it cannot be downloaded automatically.\n"
            f"Put the paper's 1,812 images in one folder per class under {root}:\n"
            f"  {root}/Inflammatory/       (607 images)\n"
            f"  {root}/Vascular Lesions/   (605 images)\n"
            f"  {root}/Healthy Control/    (600 images)\n"
            "or point datasets.<name>.root at an existing copy in this layout, then rerun."
        )

    def _folders(self, root: Path) -> dict[str, str]:
        found = {_norm(d): d for d in list_dirs(root)} if root.is_dir() else {}
        return {c: found[_norm(c)] for c in CLASS_NAMES if _norm(c) in found}

    def present(self, root: Path) -> bool:
        return len(self._folders(root)) == len(CLASS_NAMES)

    def _listing(self, root: Path) -> tuple[list[str], list[int]]:
        folders = self._folders(root)
        missing = [c for c in CLASS_NAMES if c not in folders]
        if missing:
            raise RawDataMissing(self.missing_message(root, f"no folder for {', '.join(missing)}"))
        paths, target = [], []
        for c, name in enumerate(CLASS_NAMES):
            found = []
            for here, dirs, files in os.walk(root / folders[name]):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                rel = Path(here).relative_to(root).as_posix()
                found += [f"{rel}/{f}" for f in files
                          if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                raise RawDataMissing(self.missing_message(root, f"no images in {root / folders[name]}"))
            found.sort()
            paths += found
            target += [c] * len(found)
        return paths, target

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        paths, target = self._listing(root)
        counts = {name: target.count(c) for c, name in enumerate(CLASS_NAMES)}
        # No checksums are published for CAD-CAP; the counts go to the report beside the paper's.
        return {"counts": counts}

    def load(self, root: Path, spec: dict[str, Any]) -> FileList:
        paths, target = self._listing(Path(root))
        return FileList(Path(root), paths, one_hot(np.asarray(target), 3), list(CLASS_NAMES), "single_label")
