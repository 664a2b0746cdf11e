"""Small stand-ins for four public releases, in each one's exact on-disk layout: file and folder names, table
headers, value conventions (1.0/0.0/-1.0/blank, ``No Finding``, blank lesion ids) and folder splits.

Each builder writes real JPEG/PNG files (16 x 16) whose pixels follow the labels (a class colour; a bright row
per finding for the radiographs), and returns what a test needs to check the reading: per image its path as
the table gives it, its labels and its group.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from user_data import CHEXPERT_LABELS, class_image, xray_image

#: HAM10000's seven diagnoses (dx), sorted: the class order of source ham10000; and roughly their shares.
HAM_DX = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
HAM_SHARES = [0.05, 0.08, 0.11, 0.03, 0.11, 0.57, 0.05]
ISIC_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
ISIC_SHARES = [0.18, 0.50, 0.13, 0.04, 0.10, 0.03, 0.03, 0.03, 0.0]
#: Data_Entry_2017_v2020.csv's header (the brackets' commas split two columns each).
CXR14_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
CXR14_FINDINGS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis",
                  "Hernia", "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax"]


@dataclass
class Release:
    """What a builder wrote: the root, the class names to expect, and per listed image (in table order) the path
    as found under the root, its labels and its group; ``test``: the images of the official test split."""

    root: Path
    classes: list[str]
    paths: list[str] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)

    def add(self, path: str, labels: list[int], group: str) -> None:
        self.paths.append(path)
        self.labels.append(labels)
        self.groups.append(group)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _draw(rng: np.random.Generator, shares: list[float]) -> int:
    p = np.asarray(shares) / np.sum(shares)
    return int(rng.choice(len(p), p=p))


def ham10000(root: Path, n_lesions: int = 40, seed: int = 0) -> Release:
    """HAM10000_metadata.csv (lesion_id,image_id,dx,dx_type,age,sex,localization) and the images, without
    extension in the table, split over HAM10000_images_part_1/ and _part_2/ by image number (as released)."""
    rng = np.random.default_rng(seed)
    out = Release(root, HAM_DX)
    rows, number = [], 24306
    for lesion in range(n_lesions):
        dx = HAM_DX[lesion % 7] if lesion < 14 else HAM_DX[_draw(rng, HAM_SHARES)]  # every class at least twice
        for _ in range(1 + int(rng.integers(0, 3))):  # one to three images per lesion
            image_id = f"ISIC_{number:07d}"
            folder = "HAM10000_images_part_1" if number < 24306 + n_lesions else "HAM10000_images_part_2"
            (root / folder).mkdir(parents=True, exist_ok=True)
            class_image(HAM_DX.index(dx), 16, rng).save(root / folder / f"{image_id}.jpg", quality=95)
            rows.append([f"HAM_{lesion:07d}", image_id, dx, "histo", f"{40 + lesion % 40}.0", "male", "back"])
            out.add(f"{folder}/{image_id}.jpg", [int(d == dx) for d in HAM_DX], f"HAM_{lesion:07d}")
            number += 1
    order = rng.permutation(len(rows))  # the released table is not in image order
    _write(root / "HAM10000_metadata.csv", ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
           [rows[i] for i in order])
    out.paths, out.labels, out.groups = ([values[i] for i in order] for values in (out.paths, out.labels, out.groups))
    return out


def isic2019(root: Path, n_images: int = 48, seed: int = 0) -> Release:
    """ISIC_2019_Training_GroundTruth.csv (one 1.0/0.0 column per class, UNK never positive), the metadata file
    (lesion_id blank for some images) and ISIC_2019_Training_Input/<image>.jpg with the release's text files."""
    rng = np.random.default_rng(seed)
    out = Release(root, ISIC_CLASSES[:-1])
    folder = root / "ISIC_2019_Training_Input"
    folder.mkdir(parents=True)
    for extra in ("ATTRIBUTION.txt", "LICENSE.txt"):
        (folder / extra).write_text("CC-BY-NC\n")
    truth, meta = [], []
    for i in range(n_images):
        c = i % 8 if i < 16 else _draw(rng, ISIC_SHARES)
        image = f"ISIC_{i:07d}"
        class_image(c, 16, rng).save(folder / f"{image}.jpg", quality=95)
        lesion = "" if i % 5 == 0 else f"BCN_{i // 2:07d}"  # pairs of images share a lesion; some have none
        truth.append([image, *("1.0" if k == c else "0.0" for k in range(9))])
        meta.append([image, str(30 + i % 50), "anterior torso", lesion, "female"])
        out.add(f"ISIC_2019_Training_Input/{image}.jpg", [int(k == c) for k in range(8)], lesion or f"{image}.jpg")
    _write(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *ISIC_CLASSES], truth)
    _write(root / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general", "lesion_id",
                                                        "sex"], meta)
    return out


def _chexpert_row(path: str, rng: np.random.Generator, valid: bool) -> tuple[list[str], list[int]]:
    """A row of train.csv or valid.csv: 1.0 / 0.0 / -1.0 / blank (valid.csv: 1.0 / 0.0 only)."""
    cells, positives = [], []
    for k in range(len(CHEXPERT_LABELS)):
        draw = rng.random()
        if draw < 0.25:
            cells.append("1.0")
            positives.append(k)
        elif draw < 0.35 and not valid:
            cells.append("-1.0")
        elif draw < 0.6 or valid:
            cells.append("0.0")
        else:
            cells.append("")
    return [path, "Female", "68", "Frontal", "AP", *cells], positives


def chexpert(root: Path, n_patients: int = 12, n_valid: int = 6, seed: int = 0) -> Release:
    """CheXpert-v1.0-small/{train,valid}.csv and the images at the paths they list (patientNNNNN/studyN/viewN_*.jpg);
    the valid patients are others than the training ones, as released."""
    rng = np.random.default_rng(seed)
    out = Release(root, list(CHEXPERT_LABELS))
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]
    for part, first, count in (("train", 1, n_patients), ("valid", 64541, n_valid)):
        rows = []
        for patient in range(first, first + count):
            for study in range(1, 2 + (patient % 2 if part == "train" else 0)):
                path = f"CheXpert-v1.0-small/{part}/patient{patient:05d}/study{study}/view1_frontal.jpg"
                row, positives = _chexpert_row(path, rng, part == "valid")
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                xray_image(positives, 16, rng).save(root / path, quality=95)
                rows.append(row)
                if part == "train":
                    out.add(path, [int(k in positives) for k in range(len(CHEXPERT_LABELS))], f"patient{patient:05d}")
                else:
                    out.test.append(path)
        _write(root / "CheXpert-v1.0-small" / f"{part}.csv", header, rows)
    return out


def chestxray14(root: Path, n_patients: int = 16, seed: int = 0, table: str = "Data_Entry_2017_v2020.csv") -> Release:
    """The Data_Entry table, images over images_001/images/ and images_002/images/ (as unpacked from the
    release's archives) and the patient-wise official split lists train_val_list.txt and test_list.txt."""
    rng = np.random.default_rng(seed)
    out = Release(root, CXR14_FINDINGS)
    rows, train_val, test = [], [], []
    for patient in range(1, n_patients + 1):
        for follow_up in range(1 + patient % 3):
            name = f"{patient:08d}_{follow_up:03d}.png"
            found = [k for k in range(14) if rng.random() < 0.18]
            if patient <= 2:
                found = [7 * (patient - 1) + k for k in range(7)]  # every finding at least once
            folder = root / ("images_001" if patient <= n_patients // 2 else "images_002") / "images"
            folder.mkdir(parents=True, exist_ok=True)
            xray_image(found, 16, rng).save(folder / name)
            labels = "|".join(CXR14_FINDINGS[k] for k in found) or "No Finding"
            rows.append([name, labels, str(follow_up), str(patient), "58", "M", "PA", "2682", "2749", "0.143",
                         "0.143"])
            out.add(f"{folder.relative_to(root).as_posix()}/{name}", [int(k in found) for k in range(14)], str(patient))
            (test if patient % 4 == 0 else train_val).append(name)
    header = CXR14_HEADER + ([""] if table == "Data_Entry_2017.csv" else [])  # the old file ends lines with a comma
    _write(root / table, header, [row + ([""] if table == "Data_Entry_2017.csv" else []) for row in rows])
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    out.test = test
    return out
