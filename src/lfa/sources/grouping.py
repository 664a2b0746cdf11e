"""Groups of images (a patient, a lesion): read from a column or a path pattern, and never left out silently.

Images of one patient (or one lesion) in both the training and the test data inflate every metric. A table
names its groups in a column (``group_column``: ChestX-ray14's ``Patient ID``, HAM10000's ``lesion_id``) or
only inside its paths (``group_pattern``: CheXpert's ``patient00001`` folder). :func:`leak_hint` looks at a
table that has no grouping configured for a column whose name says patient, subject, lesion or case, or a
path component such as ``patient00001``, and names what it found and how to group by it; the config check
and the raw-data check stop on it unless the config says ``group_column: none``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: ``group_column: none``: the images are independent, on purpose (no grouping, no leak check).
NO_GROUPS = "none"
#: A column whose name says it holds group ids: Patient ID, patient_id, PatientID, lesion_id, subject, case no.
GROUP_WORDS = re.compile(r"(patient|subject|lesion|case)[\s_.-]*(id|no|nr|number|#|key|code)?", re.IGNORECASE)
#: A path component that names a group: patient00001, subject_12, case-7, lesion3.
GROUP_COMPONENT = re.compile(r"(patient|subject|case|lesion)[_-]?\d+", re.IGNORECASE)


def grouping_configured(spec: dict) -> bool:
    """Whether the dataset says how its images group (a column, a pattern, or ``none`` on purpose)."""
    return bool(spec.get("group_column") or spec.get("group_pattern"))


def leak_hint(header: Sequence[str], paths: Sequence[str], key: str) -> str:
    """What in the table says that images belong to groups, and how to group by it; "" if nothing does."""
    columns = [name for name in header if GROUP_WORDS.fullmatch(name.strip())]
    component = next((m for p in paths for part in p.split("/") if (m := GROUP_COMPONENT.fullmatch(part))), None)
    if not columns and component is None:
        return ""
    found, fixes = [], []
    if columns:
        found.append(f"column(s) {', '.join(repr(c) for c in columns)}")
        fixes.append(f"{key}.group_column: {columns[0]!r}")
    if component is not None:
        stem = component.group(0).rstrip("0123456789")
        found.append(f"path components like {component.group(0)!r}")
        fixes.append(f"{key}.group_pattern: '({re.escape(stem)}\\d+)'")
    return (f"{key}: no grouping is configured, but the table has {' and '.join(found)}: images of one group would "
            f"be split across folds (test images of a group whose other images were trained on). Set "
            f"{' or '.join(fixes)} to keep each group in one fold, or {key}.group_column: none to go on "
            "ungrouped on purpose")


def groups_from_pattern(paths: Sequence[str], pattern: str) -> tuple[list[str], list[int]]:
    """The first group of ``pattern`` searched in each path, and the rows where it does not match."""
    regex = re.compile(pattern)
    groups, unmatched = [], []
    for row, path in enumerate(paths):
        match = regex.search(path)
        if match is None or not match.group(1):
            unmatched.append(row)
            groups.append("")
        else:
            groups.append(match.group(1))
    return groups, unmatched


def shared_groups(groups: Sequence[str], test: Sequence[bool]) -> list[str]:
    """Groups with images both in the test split and in the rest (sorted)."""
    inside = {g for g, t in zip(groups, test, strict=True) if t}
    outside = {g for g, t in zip(groups, test, strict=True) if not t}
    return sorted(inside & outside)
