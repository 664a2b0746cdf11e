"""ImageNet (ILSVRC-2012) in class-folder layout, put in place by the user (its licence forbids automatic
download). ImageNet_LT is drawn from it by per-class counts (``subset.kind: counts``) or by the standard
ImageNet-LT split lists (``split_lists``).

Layout under ``root``::

    train/n01440764/n01440764_10026.JPEG ...   (1,000 class folders, 1,281,167 images)
    val/n01440764/ILSVRC2012_val_00000293.JPEG (optional; the 50,000 validation images in class folders)

Class index i is the i-th class folder in sorted order (the usual ImageNet class order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import ConfigError, RawDataInvalid, RawDataMissing
from lfa.sources.base import FileList, Source, list_dirs, list_images, one_hot, register_source

N_CLASSES = 1000
PUBLISHED_IMAGES = {"train": 1_281_167, "val": 50_000}


@register_source
class ImageNetSource(Source):
    name = "imagenet"
    title = "ImageNet (ILSVRC-2012)"
    manual = True
    partitions = ("train", "val")
    default_partitions = ("train",)
    options = frozenset({"split_lists"})
    default_image_size = 128
    prepare_threads = 8

    def instructions(self, root: Path) -> str:
        return (
            "ImageNet cannot be downloaded automatically: its licence asks every user to accept the terms at "
            "https://image-net.org/download.php (ILSVRC-2012: ILSVRC2012_img_train.tar, and "
            "ILSVRC2012_img_val.tar for the val partition).\n"
            f"Extract the training images into one folder per class under {root}/train/ "
            "(the train archive holds one tar per class: extract each into its own folder), e.g.\n"
            f"  {root}/train/n01440764/n01440764_10026.JPEG   (1,000 class folders, 1,281,167 images)\n"
            f"  {root}/val/n01440764/ILSVRC2012_val_00000293.JPEG   (only for partitions: [val]; class folders)\n"
            "or point datasets.<name>.root at an existing copy in this layout, then rerun."
        )

    def present(self, root: Path) -> bool:
        train = root / "train"
        return train.is_dir() and bool(list_dirs(train))

    def _classes(self, root: Path, part: str) -> list[str]:
        folder = root / part
        if not folder.is_dir() or not list_dirs(folder):
            raise RawDataMissing(self.missing_message(root, f"no class folders in {folder}"))
        return list_dirs(folder)

    def _listing(self, root: Path, parts: list[str]) -> tuple[list[str], list[int], list[str], list[str]]:
        classes = self._classes(root, "train")
        paths, target, partition = [], [], []
        for part in parts:
            here = self._classes(root, part)
            if here != classes:
                raise RawDataInvalid(f"{root / part}: its class folders differ from those of {root / 'train'}")
            for c, wnid in enumerate(classes):
                names = list_images(root / part / wnid)
                paths += [f"{part}/{wnid}/{n}" for n in names]
                target += [c] * len(names)
                partition += [part] * len(names)
        return paths, target, partition, classes

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        if not self.present(root):
            raise RawDataMissing(self.missing_message(root, f"no class folders in {root / 'train'}"))
        parts = sorted({p for s in specs if not s.get("split_lists") for p in self.check_partitions(s)}) or ["train"]
        for spec in specs:
            for part, lst in (spec.get("split_lists") or {}).items():
                if not Path(lst).is_file():
                    raise RawDataMissing(
                        f"ImageNet-LT split list {lst} (split_lists.{part}) not found. The standard lists "
                        "(ImageNet_LT_train.txt, ImageNet_LT_val.txt, ImageNet_LT_test.txt; lines "
                        "'relative/path label', paths relative to the ImageNet root) are published with "
                        "Liu et al., 'Large-Scale Long-Tailed Recognition in an Open World' (CVPR 2019).")
        paths, target, partition, classes = self._listing(root, parts)
        per_part = {p: partition.count(p) for p in parts}
        if strict:
            if len(classes) != N_CLASSES:
                raise RawDataInvalid(f"{root / 'train'}: {len(classes)} class folders, ILSVRC-2012 has {N_CLASSES}")
            for part, n in per_part.items():
                if n != PUBLISHED_IMAGES[part]:
                    raise RawDataInvalid(
                        f"{root / part}: {n} images, ILSVRC-2012 has {PUBLISHED_IMAGES[part]}; complete the copy, "
                        "or set datasets.<name>.checksums: false to use it as it is")
        return {"classes": len(classes), "images": per_part, "published_counts_verified": strict}

    def load(self, root: Path, spec: dict[str, Any]) -> FileList:
        root = Path(root)
        if spec.get("split_lists"):
            return self._load_lists(root, spec)
        paths, target, partition, classes = self._listing(root, self.check_partitions(spec))
        return FileList(root, paths, one_hot(np.asarray(target), len(classes)), classes, "single_label", partition)

    def _load_lists(self, root: Path, spec: dict[str, Any]) -> FileList:
        lists: dict[str, str] = spec["split_lists"]
        wanted = list(spec.get("partitions") or lists)
        unknown = [p for p in wanted if p not in lists]
        if unknown:
            raise ConfigError(f"partitions {unknown} are not among the split lists {sorted(lists)}")
        paths, target, partition = [], [], []
        for part in wanted:
            for n, line in enumerate(Path(lists[part]).read_text().splitlines(), 1):
                if not line.strip():
                    continue
                fields = line.split()
                if len(fields) != 2 or not fields[1].isdigit():
                    raise RawDataInvalid(f"{lists[part]}:{n}: expected 'relative/path label', got {line!r}")
                paths.append(fields[0])
                target.append(int(fields[1]))
                partition.append(part)
        if not paths:
            raise RawDataInvalid(f"split lists {sorted(lists)} list no images")
        n_classes = max(target) + 1
        names: dict[int, str] = {}
        for rel, t in zip(paths, target, strict=True):
            wnid = Path(rel).parent.name
            if names.setdefault(t, wnid) != wnid:
                raise RawDataInvalid(f"split lists: label {t} is given to folders {names[t]} and {wnid}")
        class_names = [names.get(c, str(c)) for c in range(n_classes)]
        missing = [rel for rel in paths if not (root / rel).is_file()]
        if missing:
            raise RawDataMissing(f"{len(missing)} image(s) of the split lists are missing under {root}, e.g. "
                                 + ", ".join(missing[:5]) + f".\n{self.instructions(root)}")
        return FileList(root, paths, one_hot(np.asarray(target), n_classes), class_names, "single_label", partition)
