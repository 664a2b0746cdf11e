"""scikit-learn's 8x8 digits: 1,797 images of 10 classes shipped with scikit-learn (the offline demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lfa.sources.base import RawData, Source, register_source


def load_digits_raw(root: str | Path | None = None) -> RawData:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), shipped inside the package; no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    target = bunch.target.astype(np.int64)
    labels = np.eye(10, dtype=np.int8)[target]
    return RawData(images, labels, [str(d) for d in range(10)], [f"digits-{i:04d}" for i in range(len(target))])


@register_source
class DigitsSource(Source):
    name = "digits"
    loads_in_memory = True
    title = "scikit-learn digits"
    needs_raw = False
    manual = False

    def instructions(self, root: Path) -> str:
        return "Shipped with scikit-learn; nothing to download."

    def present(self, root: Path) -> bool:
        return True

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        return {"files": "scikit-learn package data"}

    def load(self, root: Path, spec: dict[str, Any]) -> RawData:
        return load_digits_raw(root)
