"""``source: chestxray14``: NIH ChestX-ray14 (Wang et al. 2017), 14 findings in 112,120 radiographs, as released.

``root`` holds ``Data_Entry_2017_v2020.csv`` (or the older ``Data_Entry_2017.csv``), the images in
``images_001/images/`` … ``images_012/images/`` (or all of them in one ``images/``) and the official split,
``train_val_list.txt`` and ``test_list.txt``. Classes: the names in ``Finding Labels``, sorted; ``No Finding``
means no positive label. Multi-label. Grouped by ``Patient ID``. ``test_split: official`` tests on the images
of ``test_list.txt`` (patient-wise, as published).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lfa.sources.base import register_source
from lfa.sources.release import ReleaseSource

#: The table, newest version first.
DATA_ENTRY = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")


@register_source
class ChestXray14Source(ReleaseSource):
    name = "chestxray14"
    title = "NIH ChestX-ray14"
    task = "multi_label"
    required = ("|".join(DATA_ENTRY), "train_val_list.txt", "test_list.txt")
    where = ("https://nihcc.app.box.com/v/ChestXray-NIHCC (images_001.tar.gz … images_012.tar.gz, each unpacked in "
             "a folder of its name, the Data_Entry table and the two split lists), or Kaggle's nih-chest-xrays/data, "
             "which has this layout.")
    official_test = {"file": "test_list.txt"}

    def release(self, root: Path) -> tuple[Path, dict[str, Any]]:
        table = next((name for name in DATA_ENTRY if (root / name).is_file()), DATA_ENTRY[0])
        return root, {"csv": table, "path_column": "Image Index", "roots": ["images_*/images", "images"],
                      "labels_column": "Finding Labels", "none_label": "No Finding", "separator": "|",
                      "group_column": "Patient ID"}
