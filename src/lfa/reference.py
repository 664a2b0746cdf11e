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

#: Breast Histopathology (IDC): full dataset and the paper's 1:4 subset.
IDC_FULL = {"IDC-": 198738, "IDC+": 78786}
IDC_SUBSET = {"IDC-": 44200, "IDC+": 11050}


def imagenet_lt_counts(n_classes: int = 1000) -> dict[str, int]:
    """ImageNet_LT per-class counts by the rule of the README's rows 0-49: 50 + (37 i mod 1500).

    The README prints rows 0-49 only; rows 50-999 are extrapolated by the same rule.
    """
    return {str(i): 50 + (37 * i) % 1500 for i in range(n_classes)}


COUNT_TABLES: dict[str, dict[str, int]] = {
    "cifar10_lt": CIFAR10_LT,
    "cadcap": CADCAP,
    "idc_subset": IDC_SUBSET,
    "imagenet_lt": imagenet_lt_counts(),
}


def count_table(name: str) -> pd.DataFrame:
    """A reference count table as a frame with columns class, name, count."""
    counts = COUNT_TABLES[name]
    return pd.DataFrame(
        {"class": range(len(counts)), "name": list(counts), "count": list(counts.values())}
    )
