"""Small user datasets in their real on-disk formats: a class-folder tree, ChestX-ray14's and CheXpert's tables.

Real PNG/JPEG files written with Pillow, tiny (16 x 16 by default) and few (tens), so a test builds one in
well under a second. The pixels depend on the labels (a class colour and stripes; one bright row per finding
for the chest X-rays), so a model could learn something and a test can check that images and labels stayed
together. Each builder returns what a test needs: the paths written and the counts to expect.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: The 14 findings of NIH ChestX-ray14 (sorted: the class order of ``source: csv`` with labels_column).
CHESTXRAY_FINDINGS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis",
                      "Hernia", "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax"]
#: How often each finding occurs per image in the fixture (roughly the real data's order of magnitude).
CHESTXRAY_RATES = [0.10, 0.04, 0.04, 0.03, 0.15, 0.03, 0.02, 0.01, 0.20, 0.06, 0.06, 0.03, 0.02, 0.05]
#: Data_Entry_2017.csv's header, as published (the brackets' commas split two columns each, and a trailing
#: comma ends every line of the original file).
CHESTXRAY_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                    "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]", ""]
#: CheXpert's train.csv header (the 14 observations after the five description columns).
CHEXPERT_LABELS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                   "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                   "Fracture", "Support Devices"]
CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]


def colour(c: int) -> tuple[int, int, int]:
    """A distinct colour per class index."""
    return (30 + 70 * (c % 4), 200 - 50 * (c % 3), 40 + 100 * (c % 2))


def class_image(c: int, size: int, rng: np.random.Generator, grayscale: bool = False) -> Image.Image:
    """The class colour with stripes every (c + 2) pixels and a little noise; grayscale: its luma."""
    base = np.empty((size, size, 3), dtype=np.float64)
    base[:] = colour(c)
    base[:, :: c + 2] *= 0.6
    img = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(img, "RGB")
    return im.convert("L") if grayscale else im


@dataclass
class ImageTree:
    """What :func:`image_tree` wrote: the listed images (sorted relative paths) by class, and the rest."""

    root: Path
    classes: list[str]
    counts: dict[str, int]
    by_class: dict[str, list[str]]
    grayscale: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # hidden files and folders, non-images, files at the root

    @property
    def paths(self) -> list[str]:
        """Every listed image, class by class (classes sorted, paths sorted within a class)."""
        return [p for c in self.classes for p in self.by_class[c]]


def image_tree(root: Path, classes: dict[str, int] | None = None, size: int = 16,
               formats: tuple[str, ...] = ("png", "jpg"), nested: bool = True, grayscale_some: bool = True,
               hidden: bool = True, all_grayscale: bool = False, seed: int = 0) -> ImageTree:
    """One folder per class under ``root`` (ImageFolder's layout) with ``classes[name]`` images each.

    Image j of a class is in ``formats[j % len(formats)]``; every third has an upper-case extension
    (``.PNG``); with ``nested`` every fourth sits in ``<class>/sub/deeper/``; with ``grayscale_some`` every
    fifth is grayscale (mode L) and the others RGB (``all_grayscale``: all L). With ``hidden``: a hidden image
    in each class folder, a hidden folder of images in one class and at the root, a text file in a class
    folder and an image directly under the root, none of which is listed.
    """
    classes = dict(classes or {"cat": 6, "dog": 4, "bird": 3})
    rng = np.random.default_rng(seed)
    root = Path(root)
    names = sorted(classes)
    tree = ImageTree(root, names, dict(classes), {n: [] for n in names})

    def write(rel: str, c: int, gray: bool, fmt: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        class_image(c, size, rng, gray).save(path, format="JPEG" if fmt.lower() in ("jpg", "jpeg") else fmt.upper())

    for c, name in enumerate(names):
        for j in range(classes[name]):
            fmt = formats[j % len(formats)]
            ext = fmt.upper() if j % 3 == 2 else fmt
            folder = f"{name}/sub/deeper" if nested and j % 4 == 3 else name
            rel = f"{folder}/{name}_{j:03d}.{ext}"
            gray = all_grayscale or (grayscale_some and j % 5 == 4)
            write(rel, c, gray, fmt)
            tree.by_class[name].append(rel)
            if gray:
                tree.grayscale.append(rel)
        tree.by_class[name].sort()
        if hidden:
            rel = f"{name}/.hidden_{name}.png"
            write(rel, c, False, "png")
            tree.ignored.append(rel)
    if hidden:
        first = names[0]
        for rel in (f"{first}/.thumbs/t.png", ".cache/x.png", "loose_at_root.png"):
            write(rel, 0, False, "png")
            tree.ignored.append(rel)
        (root / first / "notes.txt").write_text("not an image\n")
        tree.ignored.append(f"{first}/notes.txt")
    return tree


# ------------------------------------------------------------------------------------------- ChestX-ray14

def xray_image(findings: list[int], size: int, rng: np.random.Generator, rgba: bool = False) -> Image.Image:
    """Grayscale noise with one bright row per finding (row k for finding k, modulo the size)."""
    img = rng.integers(20, 60, size=(size, size)).astype(np.uint8)
    for k in findings:
        img[k % size] = 230
    im = Image.fromarray(img, "L")
    return im.convert("RGBA") if rgba else im


@dataclass
class ChestXray:
    """What :func:`chestxray_csv` wrote: the table, the image folder, and per image its findings and patient."""

    root: Path
    csv: Path
    images: Path
    files: list[str]                 # Image Index values, in table order
    findings: list[list[str]]        # per image
    patients: list[str]              # per image (Patient ID as written)
    classes: list[str]               # findings that occur, sorted
    labels: np.ndarray               # (N, len(classes)) int8
    no_finding: int                  # rows with "No Finding"
    lines: dict[str, int] = field(default_factory=dict)  # Image Index -> line of the CSV (header = 1)
    partition: list[str] = field(default_factory=list)   # per image, with partition_column


def chestxray_csv(root: Path, n_patients: int = 12, max_images: int = 4, size: int = 16, seed: int = 0,
                  rgba_every: int = 7, partition_column: str | None = None) -> ChestXray:
    """NIH ChestX-ray14's ``Data_Entry_2017.csv`` and its PNGs under ``images/``, for ``n_patients`` patients.

    1..``max_images`` follow-up images per patient (``<patient:08d>_<follow-up:03d>.png``); findings drawn per
    image at :data:`CHESTXRAY_RATES`, joined by ``|`` in the real order; images without any are
    ``No Finding``. Every finding occurs at least once. Every ``rgba_every``-th PNG is RGBA (as a few real
    ones are); the others are 8-bit grayscale. ``partition_column``: an extra last column of that name with
    ``train`` or ``test`` per patient (every fourth patient is test), as a user adds to select partitions.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, files, findings, patients = [], [], [], []
    n = 0
    for pid in range(1, n_patients + 1):
        for follow in range(int(rng.integers(1, max_images + 1))):
            hit = [k for k, rate in enumerate(CHESTXRAY_RATES) if rng.random() < rate * 2.5]
            if n < len(CHESTXRAY_FINDINGS):  # every finding at least once
                hit = sorted({*hit, n})
            name = f"{pid:08d}_{follow:03d}.png"
            xray_image(hit, size, rng, rgba=rgba_every > 0 and n % rgba_every == rgba_every - 1).save(images / name)
            labels = "|".join(CHESTXRAY_FINDINGS[k] for k in hit) or "No Finding"
            rows.append([name, labels, str(follow), str(pid), str(int(rng.integers(20, 80))), "MF"[pid % 2],
                         "PA" if rng.random() < 0.6 else "AP", str(int(rng.integers(2400, 3000))),
                         str(int(rng.integers(2400, 3000))), "0.143", "0.143", ""])
            if partition_column:
                rows[-1].append("test" if pid % 4 == 0 else "train")
            files.append(name)
            findings.append([CHESTXRAY_FINDINGS[k] for k in hit])
            patients.append(str(pid))
            n += 1
    path = root / "Data_Entry_2017.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CHESTXRAY_HEADER + ([partition_column] if partition_column else []))
        writer.writerows(rows)
    classes = sorted({f for found in findings for f in found})
    labels = np.zeros((len(files), len(classes)), dtype=np.int8)
    for i, found in enumerate(findings):
        for f in found:
            labels[i, classes.index(f)] = 1
    return ChestXray(root, path, images, files, findings, patients, classes, labels,
                     no_finding=sum(not f for f in findings), lines={f: i + 2 for i, f in enumerate(files)},
                     partition=[row[-1] for row in rows] if partition_column else [])


# ------------------------------------------------------------------------------------------------- CheXpert

@dataclass
class Chexpert:
    """What :func:`chexpert_csv` wrote: root (the folder above ``CheXpert-v1.0-small/``), the table, and the raw
    label values per image (NaN for blank) in :data:`CHEXPERT_LABELS` order."""

    root: Path
    csv: Path
    csv_relative: str
    paths: list[str]
    values: np.ndarray  # (N, 14) float: 1, 0, -1 or NaN (blank)
    patients: list[str]
    partition: list[str] = field(default_factory=list)

    def expected(self, columns: list[str], uncertain: str = "zero") -> np.ndarray:
        """The labels ``source: csv`` should read for ``label_columns: columns``."""
        v = self.values[:, [CHEXPERT_LABELS.index(c) for c in columns]]
        v = np.where(np.isnan(v), 0, v)
        return np.where(v == -1, 1 if uncertain == "one" else 0, v).astype(np.int8)


def chexpert_csv(root: Path, n_patients: int = 6, max_studies: int = 2, lateral_every: int = 3, size: int = 16,
                 seed: int = 0, valid: bool = False) -> Chexpert:
    """CheXpert-v1.0-small's ``train.csv`` (``valid.csv`` with ``valid``) and its JPEGs.

    Paths as published: ``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`` (a lateral
    ``view2_lateral.jpg`` for every ``lateral_every``-th study, with a blank AP/PA). Values ``1.0``, ``0.0``,
    ``-1.0`` and blank, each occurring in every label column the first four rows set (row r has value
    [1.0, 0.0, -1.0, blank][r % 4] in every column), the rest drawn at random. Grayscale JPEGs whose rows
    show the positive (1.0) observations.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    part = "valid" if valid else "train"
    base = root / "CheXpert-v1.0-small"
    rows, paths, values, patients = [], [], [], []
    choices = np.array([1.0, 0.0, -1.0, np.nan])
    r = 0
    for pid in range(1, n_patients + 1):
        for study in range(1, int(rng.integers(1, max_studies + 1)) + 1):
            views = [("view1_frontal.jpg", "Frontal", "AP" if rng.random() < 0.7 else "PA")]
            if lateral_every and (r % lateral_every == lateral_every - 1):
                views.append(("view2_lateral.jpg", "Lateral", ""))
            for file, fl, appa in views:
                rel = f"CheXpert-v1.0-small/{part}/patient{pid:05d}/study{study}/{file}"
                v = (np.full(len(CHEXPERT_LABELS), choices[r % 4]) if r < 4
                     else rng.choice(choices, size=len(CHEXPERT_LABELS), p=[0.2, 0.3, 0.1, 0.4]))
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                xray_image([k for k in range(len(v)) if v[k] == 1.0], size, rng).save(root / rel, format="JPEG")
                cells = ["" if np.isnan(x) else f"{x:.1f}" for x in v]
                rows.append([rel, "Female" if pid % 2 else "Male", str(int(rng.integers(20, 90))), fl, appa, *cells])
                paths.append(rel)
                values.append(v)
                patients.append(f"patient{pid:05d}")
                r += 1
    path = base / f"{part}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CHEXPERT_HEADER)
        writer.writerows(rows)
    return Chexpert(root, path, f"CheXpert-v1.0-small/{part}.csv", paths, np.asarray(values), patients,
                    [part] * len(paths))
