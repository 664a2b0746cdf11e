"""Breast Histopathology (IDC): 277,524 patches of 50x50 pixels from 279 patients, on Kaggle.

Layout under ``root`` (as in the Kaggle archive)::

    <patient_id>/0/<patient_id>_idx5_x<X>_y<Y>_class0.png   (IDC-, 198,738 patches)
    <patient_id>/1/<patient_id>_idx5_x<X>_y<Y>_class1.png   (IDC+, 78,786 patches)

The archive also holds the same tree a second time under ``IDC_regular_ps50_idx5/``; it is used only when
the top-level patient folders are absent. Downloaded with the Kaggle API when the ``kaggle`` package and
credentials are present; otherwise the user downloads the archive by hand. Kaggle publishes no checksum:
the archive is checked by its members' CRC-32 while it is extracted, and the tree by the published counts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import RawDataInvalid, RawDataMissing
from lfa.sources.base import FileList, Source, list_images, one_hot, register_source

SLUG = "paultimothymooney/breast-histopathology-images"
PAGE = f"https://www.kaggle.com/datasets/{SLUG}"
ARCHIVES = ("breast-histopathology-images.zip", "archive.zip")
DUPLICATE = "IDC_regular_ps50_idx5"
CLASS_NAMES = ["IDC-", "IDC+"]
PUBLISHED_COUNTS = {"IDC-": 198_738, "IDC+": 78_786}


def _patients(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.name.isdigit() and e.is_dir())


@register_source
class IdcSource(Source):
    name = "idc"
    title = "Breast Histopathology (IDC)"
    manual = False
    default_image_size = 50
    prepare_threads = 8
    reference_table = "idc_full"
    ratio_reference_table = "idc_subset"

    def instructions(self, root: Path) -> str:
        return (
            f"Breast Histopathology is the Kaggle dataset {SLUG} ({PAGE}). It is downloaded automatically "
            "when the kaggle package is installed (pip install kaggle) and Kaggle credentials are in "
            "~/.kaggle/kaggle.json or the environment (KAGGLE_USERNAME, KAGGLE_KEY).\n"
            f"Otherwise download the archive from that page and put it at {root}/archive.zip (it is "
            f"extracted on the next run), or unzip it yourself so that\n"
            f"  {root}/10253/0/10253_idx5_x1001_y1001_class0.png   (<patient_id>/<0|1>/*_class<0|1>.png)\n"
            "or point datasets.<name>.root at an existing copy in this layout, then rerun."
        )

    def _base(self, root: Path) -> Path | None:
        if root.is_dir() and _patients(root):
            return root
        if (root / DUPLICATE).is_dir() and _patients(root / DUPLICATE):
            return root / DUPLICATE
        return None

    def present(self, root: Path) -> bool:
        return self._base(root) is not None

    def _listing(self, root: Path) -> tuple[list[str], np.ndarray]:
        base = self._base(root)
        if base is None:
            raise RawDataMissing(self.missing_message(root, "no <patient_id>/<0|1>/ folders"))
        prefix = "" if base == root else f"{base.name}/"
        paths, target = [], []
        for patient in _patients(base):
            for label in (0, 1):
                folder = base / patient / str(label)
                if not folder.is_dir():
                    continue
                for name in list_images(folder):
                    if not name.endswith(f"_class{label}.png"):
                        raise RawDataInvalid(f"{folder / name}: in folder {label} but not named *_class{label}.png")
                    paths.append(f"{prefix}{patient}/{label}/{name}")
                    target.append(label)
        return paths, np.asarray(target, dtype=np.int64)

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        paths, target = self._listing(root)
        counts = {name: int((target == c).sum()) for c, name in enumerate(CLASS_NAMES)}
        if strict and counts != PUBLISHED_COUNTS:
            raise RawDataInvalid(
                f"{root}: {counts} patches, the published dataset has {PUBLISHED_COUNTS}; complete the copy "
                "(delete it and rerun to download it again), or set datasets.<name>.checksums: false to use it")
        return {"patients": len({p.split('/')[-3] for p in paths}), "counts": counts,
                "published_counts_verified": strict}

    def download(self, root: Path, specs: list[dict[str, Any]]) -> None:
        from lfa.data.download import kaggle_credentials_present, kaggle_download, safe_extract

        root.mkdir(parents=True, exist_ok=True)
        archive = next((root / a for a in ARCHIVES if (root / a).is_file()), None)
        if archive is None:
            if not kaggle_credentials_present():
                raise RawDataMissing(self.missing_message(root, "no Kaggle credentials for an automatic download"))
            archive = kaggle_download(SLUG, root)
        safe_extract(archive, root)
        if self._base(root) is None:
            raise RawDataInvalid(f"{archive}: extracted, but it holds no <patient_id>/<0|1>/ folders")
        archive.unlink()

    def load(self, root: Path, spec: dict[str, Any]) -> FileList:
        paths, target = self._listing(Path(root))
        return FileList(Path(root), paths, one_hot(target, 2), list(CLASS_NAMES), "single_label")
