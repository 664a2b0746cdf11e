"""``source: chexpert``: CheXpert (Irvin et al. 2019), 14 observations per chest radiograph, as released.

``root`` holds ``CheXpert-v1.0-small/`` (or the full ``CheXpert-v1.0/``; pointing at that folder itself works
too), with ``train.csv`` and ``valid.csv`` whose ``Path`` column begins with the folder's name
(``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``). Labels: one column per observation,
1.0 / 0.0 / -1.0 (uncertain: ``uncertain: zero`` (default) or ``one``) / blank (0); ``label_columns`` may pick
some of the 14. Multi-label. Grouped by the ``patientNNNNN`` part of the path. ``test_split: official``
tests on ``valid.csv`` (radiologists' labels, other patients); without it the dataset is ``train.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lfa.errors import ConfigError
from lfa.sources.base import register_source
from lfa.sources.release import USER_KEYS, ReleaseSource

#: The 14 observations, in train.csv's order.
CHEXPERT_OBSERVATIONS = [
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices"]
#: The release folders, the downsampled one first.
RELEASES = ("CheXpert-v1.0-small", "CheXpert-v1.0")


@register_source
class ChexpertSource(ReleaseSource):
    name = "chexpert"
    title = "CheXpert"
    task = "multi_label"
    options = USER_KEYS | {"uncertain", "label_columns"}
    required = ("CheXpert-v1.0-small/train.csv|CheXpert-v1.0/train.csv",)
    where = ("https://stanfordmlgroup.github.io/competitions/chexpert/ (CheXpert-v1.0-small.zip after registering; "
             "the full CheXpert-v1.0 works too).")

    def release(self, root: Path) -> tuple[Path, dict[str, Any]]:
        if root.name in RELEASES and (root / "train.csv").is_file():
            root, folder = root.parent, root.name  # pointed at the release folder itself: its paths start with it
        else:
            folder = next((name for name in RELEASES if (root / name / "train.csv").is_file()), RELEASES[0])
        return root, {"csv": f"{folder}/train.csv", "path_column": "Path", "label_columns": CHEXPERT_OBSERVATIONS,
                      "uncertain": "zero", "group_pattern": r"(patient\d+)"}

    official_test = {"csv": "<release folder>/valid.csv"}

    def official_split(self, preset: dict[str, Any]) -> dict[str, Any]:
        return {"csv": preset["csv"].replace("train.csv", "valid.csv")}

    def check_spec(self, key: str, spec: dict[str, Any]) -> None:
        unknown = [c for c in spec.get("label_columns", []) if c not in CHEXPERT_OBSERVATIONS]
        if unknown:
            raise ConfigError(f"{key}.label_columns: {unknown} are not CheXpert observations; they are "
                              f"{CHEXPERT_OBSERVATIONS}")
        super().check_spec(key, spec)
