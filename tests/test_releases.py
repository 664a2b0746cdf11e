"""HAM10000, ISIC 2019, CheXpert and ChestX-ray14 read as released (tests/release_data.py builds each in its exact
layout), the table keys that make any release readable without conversion, and no silent patient leakage."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import dataset_spec
from release_data import chestxray14, chexpert, ham10000, isic2019
from user_data import chexpert_csv

from lfa.data.datasets import TEST_FOLD, load_prepared, prepare, split_rows
from lfa.errors import ConfigError, RawDataInvalid, RawDataMissing
from lfa.pipeline.config import validate_config
from lfa.sources import ensure_raw, get_source

BUILDERS = {"ham10000": ham10000, "isic2019": isic2019, "chexpert": chexpert, "chestxray14": chestxray14}


def _load(name: str, root: Path, **keys):
    return get_source(name).load(root, dataset_spec({"source": name, "root": str(root), **keys}, "d"))


def _prepare(tmp_path: Path, name: str, root: Path, **keys):
    spec = dataset_spec({"source": name, "root": str(root), "image_size": 8, **keys}, "d")
    out = prepare("d", spec, root, tmp_path / "prepared" / name, n_splits=3, split_seed=0, downloads=tmp_path)
    return json.loads((out / "meta.json").read_text()), pd.read_parquet(out / "index.parquet"), out


def _config(ds: dict, **top) -> dict:
    return {"datasets": {"d": ds}, **top,
            "experiments": {"e": {"dataset": "d", "backbones": ["small_cnn"], "losses": ["bce"]}}}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_release_reads_as_shipped_with_its_classes_labels_and_groups(tmp_path, name):
    release = BUILDERS[name](tmp_path / name)
    data = _load(name, release.root)
    assert data.class_names == release.classes
    assert data.paths == release.paths  # found in the release's own folders, as found on disk
    assert np.array_equal(data.labels, np.array(release.labels, dtype=np.int8))
    assert data.groups == release.groups  # grouped by default
    assert data.task == ("single_label" if name in ("ham10000", "isic2019") else "multi_label")
    meta, index, _ = _prepare(tmp_path, name, release.root)
    assert meta["task"] == data.task and meta["source"] == name
    assert (index.groupby("group")["fold"].nunique() == 1).all()  # no patient or lesion in two folds
    assert len(set(release.groups)) > len(release.paths) / 4  # the fixture has groups worth keeping whole


def test_ham10000_joins_two_image_folders_and_groups_by_lesion(tmp_path):
    release = ham10000(tmp_path / "ham")
    folders = {p.split("/")[0] for p in release.paths}
    assert folders == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    meta, index, _ = _prepare(tmp_path, "ham10000", release.root)
    assert meta["grouping"] == "group_column 'lesion_id'" and meta["n_groups"] == 40
    assert meta["class_names"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def test_isic2019_leaves_unk_out_and_groups_blank_lesions_alone(tmp_path):
    release = isic2019(tmp_path / "isic")
    meta, index, _ = _prepare(tmp_path, "isic2019", release.root)
    assert "UNK" not in meta["class_names"] and meta["dropped_classes"] == ["UNK"]
    blank = [p.split("/")[-1] for p, g in zip(release.paths, release.groups, strict=True) if g.endswith(".jpg")]
    assert blank and set(blank) <= set(index["group"])  # an image without lesion id is a group of its own
    with pytest.raises(RawDataInvalid, match=r"class\(es\) 'UNK' have no positive image.*drop_classes: \['UNK'\].*"
                                             r"allow_empty_classes: true .*'no positives'"):
        _load("isic2019", release.root, drop_classes=["SCC"])
    kept, _, _ = _prepare(tmp_path / "kept", "isic2019", release.root, drop_classes=["SCC"],
                          allow_empty_classes=True)
    assert kept["class_names"][-1] == "UNK" and kept["empty_classes"] == ["UNK"]


@pytest.mark.parametrize("point_at_release", [False, True])
def test_chexpert_official_test_split_is_valid_csv_and_folds_rotate_over_train(tmp_path, point_at_release):
    release = chexpert(tmp_path / "chex")
    root = release.root / "CheXpert-v1.0-small" if point_at_release else release.root
    meta, index, out = _prepare(tmp_path, "chexpert", root, test_split="official")
    test = index[index["fold"] == TEST_FOLD]
    assert sorted(test["id"]) == sorted(release.test)  # valid.csv's images, paths as the table gives them
    assert meta["test_split"] == {"rule": "csv: CheXpert-v1.0-small/valid.csv", "images": len(release.test)}
    data = load_prepared(out)
    for fold in range(3):
        rows = split_rows(data.folds, fold, 3)
        assert sorted(data.ids[rows["test"]]) == sorted(release.test)
        assert (data.folds[rows["val"]] == fold).all() and not np.isin(rows["train"], rows["val"]).any()
        assert len(rows["train"]) + len(rows["val"]) + len(rows["test"]) == len(index)
    assert (index.groupby("group")["fold"].nunique() == 1).all()


def test_chestxray14_official_split_and_either_table_version(tmp_path):
    new = chestxray14(tmp_path / "new")
    meta, index, _ = _prepare(tmp_path, "chestxray14", new.root, test_split="official")
    listed = {p.split("/")[-1] for p in index.loc[index["fold"] == TEST_FOLD, "id"]}
    assert listed == set(new.test) and meta["test_split"]["rule"] == "file: test_list.txt"
    old = chestxray14(tmp_path / "old", table="Data_Entry_2017.csv")  # trailing commas, older name
    assert _load("chestxray14", old.root).paths == old.paths


def test_a_release_missing_a_folder_says_which(tmp_path):
    release = ham10000(tmp_path / "ham")
    shutil.rmtree(release.root / "HAM10000_images_part_2")
    with pytest.raises(RawDataMissing, match=r"(?s)missing: HAM10000_images_part_2/.*Get it from .*Dataverse"):
        ensure_raw("ham10000", tmp_path / "x", [{"checksums": True, "root": str(release.root), "base": "d"}])


def test_official_test_split_only_where_the_release_has_one():
    with pytest.raises(ConfigError, match=r"datasets\.d\.test_split: HAM10000 has no official test split"):
        validate_config(_config({"source": "ham10000", "test_split": "official"}))
    with pytest.raises(ConfigError, match=r"datasets\.d\.label_columns: \['Edemaa'\] are not CheXpert observations"):
        validate_config(_config({"source": "chexpert", "label_columns": ["Edemaa"]}))


# ---------------------------------------------------------------- the csv keys any release needs, and their errors

def test_ham10000_as_a_plain_table_names_the_real_cause(tmp_path):
    release = ham10000(tmp_path / "ham")
    ds = {"source": "csv", "root": str(release.root), "csv": "HAM10000_metadata.csv", "path_column": "image_id",
          "labels_column": "dx", "group_column": "lesion_id"}
    with pytest.raises(RawDataMissing) as err:
        ensure_raw("csv", release.root, [{"checksums": True, "base": "ham", **ds}])
    text = str(err.value)
    assert "have no extension while the files have one (.jpg): set datasets.ham.path_template: \"{image_id}.jpg\"" \
        in text
    assert "'HAM10000_images_part_1', 'HAM10000_images_part_2': set datasets.ham.roots" in text
    fixed = {**ds, "path_template": "{image_id}.jpg", "roots": ["HAM10000_images_part_*"]}
    data = get_source("csv").load(release.root, dataset_spec(fixed, "ham"))
    assert data.paths == release.paths and data.task == "single_label"


def test_chexpert_recipe_without_grouping_stops_at_the_config_check(tmp_path):
    c = chexpert_csv(tmp_path / "chex", n_patients=4)
    ds = {"source": "csv", "root": str(c.root), "csv": c.csv_relative, "path_column": "Path",
          "label_columns": ["Edema"]}
    with pytest.raises(ConfigError, match=r"datasets\.d: no grouping is configured, but the table has path "
                                          r"components like 'patient00001'.*group_pattern: '\(patient\\d\+\)'.*"
                                          r"group_column: none"):
        validate_config(_config(ds))
    validate_config(_config({**ds, "group_column": "none"}))  # ungrouped on purpose
    validate_config(_config({**ds, "group_pattern": r"(patient\d+)"}))


def test_the_config_check_lists_every_problem_at_once(tmp_path):
    release = chestxray14(tmp_path / "cxr")
    config = {"datasets": {"cxr": {"source": "csv", "root": str(release.root), "csv": "Data_Entry_2017_v2020.csv",
                                   "path_column": "Image Index", "labels_column": "Finding Labels"},
                           "ham": {"source": "ham10000", "test_split": "official"},
                           "isic": {"source": "isic2019", "drop_classes": ["UNK"], "uncertain": "one"}},
              "experiments": {"e": {"dataset": "cxr", "backbones": ["small_cnn"], "losses": ["bce", "nope"]}}}
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    text = str(err.value)
    assert text.startswith("4 problems in the configuration:")
    for part in ("datasets.cxr: no grouping is configured, but the table has column(s) 'Patient ID'",
                 "datasets.ham.test_split: HAM10000 has no official test split",
                 "datasets.isic.uncertain: not used by source 'isic2019'", "experiments.e.losses: unknown loss 'nope'"):
        assert part in text


def _with_split(tmp_path: Path, name: str):
    """A ChestX-ray14 stand-in and its table with a ``Split`` column (the official test images: ``test``)."""
    release = chestxray14(tmp_path / "cxr")
    table = pd.read_csv(release.root / "Data_Entry_2017_v2020.csv")
    table["Split"] = np.where(table["Image Index"].isin(release.test), "test", "train")
    table.to_csv(release.root / name, index=False)
    return release, table


@pytest.mark.parametrize(("split", "expected"), [
    ({"partition": "test"}, "partition"), ({"column": "Split", "value": "test"}, "column"),
    ({"file": "test_list.txt"}, "file")])
def test_csv_test_split_forms(tmp_path, split, expected):
    release, _ = _with_split(tmp_path, "with_split.csv")
    ds = {"source": "csv", "root": str(release.root), "csv": "with_split.csv", "path_column": "Image Index",
          "roots": ["images_*/images"], "labels_column": "Finding Labels", "none_label": "No Finding",
          "group_column": "Patient ID", "test_split": split}
    if expected == "partition":
        ds["partition_column"] = "Split"
    data = get_source("csv").load(release.root, dataset_spec(ds, "d"))
    assert sorted(p.split("/")[-1] for p, t in zip(data.paths, data.test, strict=True) if t) == sorted(release.test)
    assert data.notes["test_split"]["rule"].startswith(expected)


def test_test_split_and_join_errors_name_their_cause(tmp_path):
    release = chestxray14(tmp_path / "cxr")
    base = {"source": "csv", "root": str(release.root), "csv": "Data_Entry_2017_v2020.csv",
            "path_column": "Image Index", "roots": ["images_*/images"], "labels_column": "Finding Labels",
            "group_column": "Patient ID"}
    (release.root / "mine.txt").write_text("00000001_000.png\nnot_there.png\n")
    with pytest.raises(RawDataInvalid, match=r"mine\.txt: 1 listed image\(s\) are not in the table .*not_there\.png"):
        get_source("csv").load(release.root, dataset_spec({**base, "test_split": {"file": "mine.txt"}}, "d"))
    (release.root / "one.txt").write_text("00000001_000.png\n")  # patient 1 has two images: one would leak
    with pytest.raises(RawDataInvalid, match=r"1 group\(s\) have images both in the test split .*e\.g\. 1;"):
        get_source("csv").load(release.root, dataset_spec({**base, "test_split": {"file": "one.txt"}}, "d"))
    meta = pd.DataFrame({"Image Index": ["00000001_000.png"] * 2, "Site": ["a", "b"]})
    meta.to_csv(release.root / "meta.csv", index=False)
    with pytest.raises(RawDataInvalid, match=r"meta\.csv: key\(s\) in column 'Image Index' listed twice"):
        get_source("csv").load(release.root, dataset_spec({**base, "join": {"csv": "meta.csv", "key": "Image Index"}},
                                                          "d"))
    with pytest.raises(RawDataInvalid, match=r"group_pattern '\(case\\d\+\)' finds no group in the path"):
        get_source("csv").load(release.root, dataset_spec({**{k: v for k, v in base.items() if k != "group_column"},
                                                           "group_pattern": r"(case\d+)"}, "d"))


# ----------------------------------------------------------------------------- the four releases, end to end

def test_the_four_releases_run_from_short_config_blocks_to_a_report(releases_run):
    work = releases_run
    config = yaml.safe_load((work / "config.yaml").read_text())
    datasets = config["datasets"]
    page = (work / "reports" / "report.html").read_text()
    for name in datasets:
        assert len(datasets[name]) <= 4  # source, root and at most two keys
        assert f"root <code>{datasets[name]['root']}</code>" in page
        index = pd.read_parquet(work / "data" / "prepared" / name / "index.parquet")
        assert (index.groupby("group")["fold"].nunique() == 1).all()
        metrics = pd.read_parquet(next((work / "results" / "runs" / name).rglob("metrics.parquet")))
        assert len(metrics) == len(json.loads((work / "data/prepared" / name / "meta.json").read_text())
                                   ["class_names"])
    assert page.count("checked: no group spans two folds") == 5
    assert "<strong>no positives</strong>: UNK (allow_empty_classes)" in page
    # UNK's AUC, sensitivity, specificity, average precision and threshold: undefined for want of positives
    assert re.search(r"<td>UNK</td>(\s*<td>no positives</td>){3}", page)
    assert "grouped by <code>group_pattern &#39;(patient\\d+)&#39;</code>" in page
    assert "left out: UNK" in page
    assert "Single-label reading" in page and "Confusion matrices" in page  # HAM and ISIC are single-label
    assert "not drawn: the classes of" in page  # a balanced dataset's AUC-vs-frequency figure says why it is absent
    predictions = pd.read_parquet(next((work / "results/runs/chexpert").rglob("predictions.parquet")))
    assert sorted(predictions.loc[predictions["split"] == "test", "id"]) == sorted(
        chexpert(work / "again").test)  # valid.csv is the test set


def test_the_releases_have_sizes_before_their_data_is_in_place(tmp_path):
    from lfa.pipeline.estimate import dataset_size
    from lfa.pipeline.resources import n_classes

    config = validate_config({"data_dir": str(tmp_path), "datasets": {
        "ham": {"source": "ham10000"}, "isic": {"source": "isic2019"}, "chexpert": {"source": "chexpert"},
        "cxr": {"source": "chestxray14"}}, "experiments": {"e": {"dataset": "ham", "backbones": ["small_cnn"],
                                                                "losses": ["bce"]}}})
    assert [dataset_size(config, d)[0] for d in ("ham", "isic", "chexpert", "cxr")] == [10015, 25331, 223414, 112120]
    assert [n_classes(config, d) for d in ("ham", "isic", "chexpert", "cxr")] == [7, 8, 14, 14]


def test_a_test_split_lost_to_partitions_or_a_join_gap_is_an_error(tmp_path):
    release, table = _with_split(tmp_path, "t.csv")
    base = {"source": "csv", "root": str(release.root), "csv": "t.csv", "path_column": "Image Index",
            "roots": ["images_*/images"], "labels_column": "Finding Labels", "group_column": "Patient ID",
            "partition_column": "Split", "test_split": {"partition": "test"}}
    with pytest.raises(RawDataInvalid, match=r"none of the 8 test images .* is in the partitions \['train'\]"):
        get_source("csv").load(release.root, dataset_spec({**base, "partitions": ["train"]}, "d"))
    table.iloc[:3][["Image Index", "Patient ID"]].to_csv(release.root / "meta.csv", index=False)
    joined = {**base, "join": {"csv": "meta.csv", "key": "Image Index"}}
    with pytest.raises(RawDataInvalid, match=r"29 row\(s\), at line\(s\) 5, 6, 7, 8, 9 ... have no row in the joined"):
        get_source("csv").load(release.root, dataset_spec(joined, "d"))


def test_chexpert_pointed_at_the_full_release_reads_it_even_beside_the_small_one(tmp_path):
    small = chexpert(tmp_path / "both")
    full = tmp_path / "both" / "CheXpert-v1.0"
    shutil.copytree(small.root / "CheXpert-v1.0-small", full)
    for name in ("train.csv", "valid.csv"):
        text = (full / name).read_text().replace("CheXpert-v1.0-small/", "CheXpert-v1.0/")
        (full / name).write_text(text)
    data = _load("chexpert", full, test_split="official")
    assert all(p.startswith("CheXpert-v1.0/") for p in data.paths) and data.test.sum() == len(small.test)


def test_a_root_with_glob_characters_in_its_name_is_a_folder_not_a_pattern(tmp_path):
    release = ham10000(tmp_path / "HAM [v1]")
    assert _load("ham10000", release.root).paths == release.paths
