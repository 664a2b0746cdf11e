"""``source: ham10000``: HAM10000 (Tschandl et al. 2018), seven skin-lesion classes, as released.

``root`` holds ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,dx_type,age,sex,localization``) and the
images split over ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/``, named ``<image_id>.jpg``.
Classes: the ``dx`` values, sorted (akiec, bcc, bkl, df, mel, nv, vasc); single-label. Grouped by
``lesion_id`` (several images of one lesion never span two folds). No official test split with labels in
this release (the ISIC 2018 test set is a separate download).
"""

from __future__ import annotations

from lfa.sources.base import register_source
from lfa.sources.release import ReleaseSource


@register_source
class Ham10000Source(ReleaseSource):
    name = "ham10000"
    title = "HAM10000"
    task = "single_label"
    required = ("HAM10000_metadata.csv", "HAM10000_images_part_1/", "HAM10000_images_part_2/")
    where = ("the Harvard Dataverse, doi:10.7910/DVN/DBW86T (HAM10000_images_part_1.zip, HAM10000_images_part_2.zip, "
             "HAM10000_metadata as its original .csv), or Kaggle's skin-cancer-mnist-ham10000, which has this layout.")
    preset = {"csv": "HAM10000_metadata.csv", "path_template": "{image_id}.jpg",
              "roots": ["HAM10000_images_part_1", "HAM10000_images_part_2"], "labels_column": "dx",
              "group_column": "lesion_id"}
