"""Class-count tables of the paper's datasets, transcribed from the paper's README.

Used to build long-tailed subsets (``subset.kind: long_tail``) and to compare prepared datasets with the
paper's dataset tables in the report.
"""

from __future__ import annotations

import pandas as pd

SOURCE = "Dataset tables of the paper's README (LFA-CIFAR10 repository, section 'Datasets')"

#: CIFAR10_LT: per-class training counts, in CIFAR-10's class order.
CIFAR10_LT = {
    "airplane": 5000,
    "automobile": 3422,
    "bird": 3650,
    "cat": 3885,
    "deer": 3020,
    "dog": 228,
    "frog": 2525,
    "horse": 4308,
    "ship": 2259,
    "truck": 4934,
}

#: CAD-CAP class folders and their counts.
CADCAP = {"Inflammatory": 607, "Vascular Lesions": 605, "Healthy Control": 600}

#: Breast Histopathology (IDC): full dataset and the paper's 1:4 subset. The README's subset total, 55,259,
#: is a typo of 44,200 + 11,050 = 55,250.
IDC_FULL = {"IDC-": 198738, "IDC+": 78786}
IDC_SUBSET = {"IDC-": 44200, "IDC+": 11050}

#: CelebA: images having each of the 40 attributes (202,599 images), in the attribute order of
#: list_attr_celeba.txt (the README's names, with spaces for the official underscores).
CELEBA = {
    "5 o Clock Shadow": 22516, "Arched Eyebrows": 54090, "Attractive": 103833, "Bags Under Eyes": 41446,
    "Bald": 4547, "Bangs": 30709, "Big Lips": 48785, "Big Nose": 47516, "Black Hair": 48472,
    "Blond Hair": 29983, "Blurry": 10312, "Brown Hair": 41572, "Bushy Eyebrows": 28803, "Chubby": 11663,
    "Double Chin": 9459, "Eyeglasses": 13193, "Goatee": 12716, "Gray Hair": 8499, "Heavy Makeup": 78390,
    "High Cheekbones": 92189, "Male": 84434, "Mouth Slightly Open": 97942, "Mustache": 8417,
    "Narrow Eyes": 23329, "No Beard": 169158, "Oval Face": 57567, "Pale Skin": 8701, "Pointy Nose": 56210,
    "Receding Hairline": 16163, "Rosy Cheeks": 13315, "Sideburns": 11449, "Smiling": 97669,
    "Straight Hair": 42222, "Wavy Hair": 64744, "Wearing Earrings": 38276, "Wearing Hat": 9818,
    "Wearing Lipstick": 95715, "Wearing Necklace": 24913, "Wearing Necktie": 14732, "Young": 156734,
}
CELEBA_IMAGES = 202599


def imagenet_lt_counts(n_classes: int = 1000) -> dict[str, int]:
    """ImageNet_LT per-class counts by the rule of the README's rows 0-49: 50 + (37 i mod 1500).

    The README prints rows 0-49 only; rows 50-999 are extrapolated by the same rule (the seed's
    data/ImageNet_LT_full.csv has other numbers: give it as ``subset.counts_csv`` to use them).
    Class i is the i-th ILSVRC-2012 class folder (wnid) in sorted order.
    """
    return {str(i): 50 + (37 * i) % 1500 for i in range(n_classes)}


COUNT_TABLES: dict[str, dict[str, int]] = {
    "cifar10_lt": CIFAR10_LT,
    "cadcap": CADCAP,
    "idc_subset": IDC_SUBSET,
    "idc_full": IDC_FULL,
    "celeba": CELEBA,
    "imagenet_lt": imagenet_lt_counts(),
}


def count_table(name: str) -> pd.DataFrame:
    """A reference count table as a frame with columns class, name, count."""
    counts = COUNT_TABLES[name]
    return pd.DataFrame(
        {"class": range(len(counts)), "name": list(counts), "count": list(counts.values())}
    )
