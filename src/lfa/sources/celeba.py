"""CelebA: 202,599 aligned and cropped face images with 40 binary attributes (a multi-label task).

Layout under ``root`` (or under ``root/celeba/``, torchvision's layout)::

    img_align_celeba/000001.jpg ... 202599.jpg
    list_attr_celeba.txt        (count; 40 attribute names; '<file> <40 values of -1/1>' per image)
    list_eval_partition.txt     ('<file> <0|1|2>': train, valid, test)

Downloaded automatically from the official Google Drive mirror (the files and MD5s torchvision uses)
when it answers; otherwise by hand from the CelebA page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import RawDataInvalid, RawDataMissing
from lfa.sources.base import FileList, Source, list_images, register_source

PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
IMAGES = "img_align_celeba"
ATTR = "list_attr_celeba.txt"
PARTITION = "list_eval_partition.txt"
#: Google Drive file id and MD5 of each file used (the official mirror, as in torchvision).
FILES = {
    "img_align_celeba.zip": ("0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb"),
    ATTR: ("0B7EVK8r0v71pblRyaVFSWGxPY0U", "75e246fa4810816ffd6ee81facbd244c"),
    PARTITION: ("0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668"),
}
DRIVE_URL = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
PUBLISHED_IMAGES = 202_599
PARTITION_NAMES = {"0": "train", "1": "valid", "2": "test"}


def parse_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """list_attr_celeba.txt: file names, attribute names and labels (N, 40) int8 (1: has the attribute)."""
    lines = path.read_text().splitlines()
    try:
        n = int(lines[0].strip())
        names = lines[1].split()
        files, rows = [], []
        for line in lines[2:]:
            if line.strip():
                fields = line.split()
                files.append(fields[0])
                rows.append(fields[1:])
        values = np.asarray(rows, dtype=np.int64)
    except (IndexError, ValueError) as err:
        raise RawDataInvalid(f"{path}: not in the list_attr_celeba.txt format ({err})") from None
    if values.shape != (len(files), len(names)) or not np.isin(values, (-1, 1)).all():
        raise RawDataInvalid(f"{path}: expected {len(names)} values of -1/1 per image")
    if n != len(files):
        raise RawDataInvalid(f"{path}: the header announces {n} images, the file lists {len(files)}")
    return files, names, (values == 1).astype(np.int8)


def parse_partition(path: Path) -> dict[str, str]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in PARTITION_NAMES:
            raise RawDataInvalid(f"{path}:{n}: expected '<file> <0|1|2>', got {line!r}")
        out[fields[0]] = PARTITION_NAMES[fields[1]]
    return out


@register_source
class CelebASource(Source):
    name = "celeba"
    title = "CelebA"
    manual = False
    task = "multi_label"
    partitions = ("train", "valid", "test")
    default_partitions = ("train", "valid", "test")
    default_image_size = 128
    prepare_threads = 8
    reference_table = "celeba"

    def instructions(self, root: Path) -> str:
        return (
            "CelebA is downloaded automatically from its official Google Drive mirror when it answers (it "
            f"often refuses with a daily quota). Otherwise download from {PAGE} (Align&Cropped Images: "
            f"{IMAGES}.zip; Anno: {ATTR}; Eval: {PARTITION}) and put them at\n"
            f"  {root}/{IMAGES}/000001.jpg ...   (or {root}/{IMAGES}.zip, extracted on the next run)\n"
            f"  {root}/{ATTR}\n  {root}/{PARTITION}\n"
            "or point datasets.<name>.root at an existing copy in this layout, then rerun."
        )

    @staticmethod
    def base(root: Path) -> Path:
        nested = Path(root) / "celeba"
        return nested if (nested / ATTR).is_file() else Path(root)

    def present(self, root: Path) -> bool:
        base = self.base(root)
        return (base / ATTR).is_file() and (base / PARTITION).is_file() and (base / IMAGES).is_dir()

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        base = self.base(root)
        missing = [n for n in (ATTR, PARTITION, IMAGES) if not (base / n).exists()]
        if missing:
            raise RawDataMissing(self.missing_message(root, f"missing {', '.join(missing)}"))
        if strict:
            from lfa.data.download import md5sum

            for name in (ATTR, PARTITION):
                actual, md5 = md5sum(base / name), FILES[name][1]
                if actual != md5:
                    raise RawDataInvalid(f"{base / name}: md5 {actual}, expected {md5} (the official file); "
                                         "delete it and rerun to download it again, or set "
                                         "datasets.<name>.checksums: false for a copy you trust")
        files, names, _ = parse_attributes(base / ATTR)
        partition = parse_partition(base / PARTITION)
        on_disk = set(list_images(base / IMAGES))
        absent = [f for f in files if f not in on_disk]
        if absent:
            raise RawDataMissing(self.missing_message(
                root, f"{len(absent)} of the {len(files)} images listed in {ATTR} are not in {base / IMAGES}, "
                      f"e.g. {', '.join(absent[:3])}"))
        unassigned = [f for f in files if f not in partition]
        if unassigned:
            raise RawDataInvalid(f"{base / PARTITION}: no partition for {len(unassigned)} images, "
                                 f"e.g. {', '.join(unassigned[:3])}")
        if strict and len(files) != PUBLISHED_IMAGES:
            raise RawDataInvalid(f"{base / ATTR}: {len(files)} images, CelebA has {PUBLISHED_IMAGES}")
        return {"images": len(files), "attributes": len(names), "checksums_verified": strict}

    def download(self, root: Path, specs: list[dict[str, Any]]) -> None:
        from lfa.data.download import fetch, safe_extract
        from lfa.errors import ChecksumError, DownloadError

        base = self.base(root)
        base.mkdir(parents=True, exist_ok=True)
        try:
            for name in (ATTR, PARTITION):
                if not (base / name).is_file():
                    fid, md5 = FILES[name]
                    fetch(DRIVE_URL.format(id=fid), base / name, md5, desc=f"CelebA {name}")
            if not (base / IMAGES).is_dir():
                fid, md5 = FILES[f"{IMAGES}.zip"]
                archive = fetch(DRIVE_URL.format(id=fid), base / f"{IMAGES}.zip", md5, desc="CelebA images")
                safe_extract(archive, base)
                archive.unlink()
        except ChecksumError:
            raise
        except DownloadError as err:
            raise RawDataMissing(self.missing_message(root, f"automatic download failed: {err}")) from None

    def load(self, root: Path, spec: dict[str, Any]) -> FileList:
        base = self.base(root)
        files, names, labels = parse_attributes(base / ATTR)
        partition = parse_partition(base / PARTITION)
        wanted = set(self.check_partitions(spec))
        keep = np.asarray([partition.get(f) in wanted for f in files], dtype=bool)
        kept = [f for f, k in zip(files, keep, strict=True) if k]
        return FileList(base, [f"{IMAGES}/{f}" for f in kept], labels[keep], names, "multi_label",
                        [partition[f] for f in kept], ids=list(kept))
