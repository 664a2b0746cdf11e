"""Small raw datasets in each dataset's real on-disk format, for the source and download tests.

Every image's colour (or first pixel) encodes its class, so the tests can check that packed images and
labels still belong together.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from lfa.data.reference import CELEBA

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CELEBA_ATTRIBUTES = [name.replace(" ", "_") for name in CELEBA]


def class_colour(c: int) -> tuple[int, int, int]:
    return (20 + 45 * (c % 5), 230 - 40 * (c % 6), 60 + 90 * (c % 3))


def write_image(path: Path, size: tuple[int, int], colour: tuple[int, int, int], fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


def corrupt(path: Path) -> None:
    """Truncate an image file to a third of its bytes (a broken download or disk)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(8, len(data) // 3)])


# ---------------------------------------------------------------------------------------------- CIFAR-10

def _cifar_batch(path: Path, labels: np.ndarray, side: int, rng: np.random.Generator, name: str) -> None:
    data = rng.integers(0, 256, size=(len(labels), 3 * side * side), dtype=np.uint8)
    data[:, 0] = labels * 20  # red channel of pixel (0, 0) encodes the class
    batch = {b"batch_label": name.encode(), b"labels": [int(x) for x in labels], b"data": data,
             b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))]}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def make_cifar(root: Path, train_per_class: int = 5000, test_per_class: int = 1000, side: int = 2,
               seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/`` with five training batches, a test batch and batches.meta.

    The real layout and keys (bytes keys, a uint8 ``data`` array of rows of 3 x side x side bytes, a list
    of ``labels``); images are ``side x side`` instead of 32 x 32 to keep the fixture small.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = rng.permutation(np.repeat(np.arange(10), train_per_class))
    for b, part in enumerate(np.array_split(train, 5), 1):
        _cifar_batch(folder / f"data_batch_{b}", part, side, rng, f"training batch {b} of 5")
    test = rng.permutation(np.repeat(np.arange(10), test_per_class))
    _cifar_batch(folder / "test_batch", test, side, rng, "testing batch 1 of 1")
    meta = {b"num_cases_per_batch": len(train) // 5, b"label_names": [n.encode() for n in CIFAR_CLASSES],
            b"num_vis": 3 * side * side}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


# ---------------------------------------------------------------------------------------------- ImageNet

IMAGENET_WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]


def make_imagenet(root: Path, per_class: tuple[int, ...] = (12, 9, 7, 5, 3), val_per_class: int = 2,
                  seed: int = 0) -> Path:
    """``root/train/<wnid>/<wnid>_<n>.JPEG`` and ``root/val/<wnid>/ILSVRC2012_val_<n>.JPEG`` of varied sizes."""
    rng = np.random.default_rng(seed)
    n_val = 0
    for c, (wnid, n) in enumerate(zip(IMAGENET_WNIDS, per_class, strict=True)):
        for i in range(n):
            size = (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
            write_image(root / "train" / wnid / f"{wnid}_{i}.JPEG", size, class_colour(c), "JPEG")
        for _ in range(val_per_class):
            n_val += 1
            write_image(root / "val" / wnid / f"ILSVRC2012_val_{n_val:08d}.JPEG", (20, 16), class_colour(c), "JPEG")
    return root


def write_split_lists(root: Path, out: Path) -> dict[str, str]:
    """ImageNet-LT style lists ('relative/path label') over the fixture: a train and a test list."""
    out.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for c, wnid in enumerate(IMAGENET_WNIDS):
        names = sorted(p.name for p in (root / "train" / wnid).iterdir())
        train += [f"train/{wnid}/{n} {c}" for n in names[: max(1, len(names) - 2 * c)]]
        test += [f"val/{wnid}/{p.name} {c}" for p in sorted((root / "val" / wnid).iterdir())]
    lists = {"train": out / "ImageNet_LT_train.txt", "test": out / "ImageNet_LT_test.txt"}
    lists["train"].write_text("\n".join(train) + "\n")
    lists["test"].write_text("\n".join(test) + "\n")
    return {k: str(v) for k, v in lists.items()}


# ------------------------------------------------------------------------------- Breast Histopathology

def make_idc(root: Path, n_neg: int = 210, n_pos: int = 55, patients: tuple[str, ...] = ("10253", "8863", "12930"),
             duplicate: bool = True) -> Path:
    """Kaggle's tree ``root/<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<0|1>.png`` of 50x50 patches.

    Every 17th patch is a smaller edge patch (50 x 35), as in the real data; ``duplicate`` adds a few
    files under ``IDC_regular_ps50_idx5/`` (the archive's second copy of the tree), which must be ignored.
    """
    def write(label: int, i: int) -> None:
        pid = patients[i % len(patients)]
        x, y = 1 + 50 * (i // 7), 1 + 50 * (i % 7)
        size = (50, 35) if i % 17 == 16 else (50, 50)
        write_image(root / pid / str(label) / f"{pid}_idx5_x{x}_y{y}_class{label}.png", size, class_colour(label))

    for i in range(n_neg):
        write(0, i)
    for i in range(n_pos):
        write(1, i)
    if duplicate:
        pid = patients[0]
        write_image(root / "IDC_regular_ps50_idx5" / pid / "1" / f"{pid}_idx5_x1_y1_class1.png", (50, 50),
                    class_colour(1))
    return root


# ---------------------------------------------------------------------------------------------- CAD-CAP

CADCAP_COUNTS = {"Inflammatory": 7, "Vascular Lesions": 6, "Healthy Control": 5}


def make_cadcap(root: Path, counts: dict[str, int] | None = None) -> Path:
    """Class folders of JPEG and PNG images of various sizes."""
    for c, (name, n) in enumerate((counts or CADCAP_COUNTS).items()):
        for i in range(n):
            ext = "jpg" if i % 2 else "png"
            write_image(root / name / f"{name.lower().replace(' ', '_')}_{i:03d}.{ext}", (40 + 3 * i, 36),
                        class_colour(c))
    return root


# ----------------------------------------------------------------------------------------------- CelebA

def make_celeba(root: Path, n: int = 40, seed: int = 0) -> tuple[Path, np.ndarray]:
    """``img_align_celeba/*.jpg`` (18 x 22, CelebA's aspect), list_attr_celeba.txt, list_eval_partition.txt.

    Returns the root and the attribute matrix (n, 40) of 0/1.
    """
    rng = np.random.default_rng(seed)
    attrs = (rng.random((n, 40)) < np.linspace(0.05, 0.8, 40)).astype(np.int8)
    attrs[0] = 1  # every attribute occurs at least once
    lines = [str(n), " ".join(CELEBA_ATTRIBUTES) + " "]
    parts = []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        write_image(root / "img_align_celeba" / name, (18, 22), (int(attrs[i, :3].sum()) * 60, 90, 120), "JPEG")
        values = "".join(f"{'1' if a else '-1':>3}" for a in attrs[i])
        lines.append(f"{name}{values}")
        parts.append(f"{name} {0 if i < n * 0.6 else 1 if i < n * 0.8 else 2}")
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root, attrs

