"""``source: isic2019``: the ISIC 2019 Challenge training set (25,331 dermoscopic images, eight classes), as released.

``root`` holds ``ISIC_2019_Training_GroundTruth.csv`` (``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK`` as
1.0/0.0), ``ISIC_2019_Training_Metadata.csv`` (``image,age_approx,anatom_site_general,lesion_id,sex``) and
``ISIC_2019_Training_Input/<image>.jpg``. ``UNK`` is never positive in the training set and is left out by
default (``drop_classes`` replaces that). Single-label. Grouped by the metadata's ``lesion_id``, joined on
``image``; an image with a blank lesion id is a group of its own. The challenge's test labels are not part
of the release.
"""

from __future__ import annotations

from lfa.sources.base import register_source
from lfa.sources.release import ReleaseSource

#: The ground truth's columns, in its order.
ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


@register_source
class Isic2019Source(ReleaseSource):
    name = "isic2019"
    title = "ISIC 2019 (training set)"
    task = "single_label"
    required = ("ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv", "ISIC_2019_Training_Input/")
    where = ("https://challenge.isic-archive.com/data/#2019 (ISIC_2019_Training_Input.zip, "
             "ISIC_2019_Training_Metadata.csv, ISIC_2019_Training_GroundTruth.csv).")
    preset = {"csv": "ISIC_2019_Training_GroundTruth.csv", "path_template": "{image}.jpg",
              "roots": ["ISIC_2019_Training_Input"], "label_columns": ISIC2019_CLASSES, "drop_classes": ["UNK"],
              "join": {"csv": "ISIC_2019_Training_Metadata.csv", "key": "image"}, "group_column": "lesion_id",
              "blank_group_is_image": True}
