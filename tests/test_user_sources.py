"""The user-data sources, ``folder`` and ``csv``, on real files: listing, errors, prepare, group k-fold, config."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import dataset_spec, run_snakemake
from PIL import Image
from user_data import CHEXPERT_LABELS, chestxray_csv, chexpert_csv, colour, image_tree

from lfa.data.datasets import assign_folds, dataset_summary, load_prepared, prepare
from lfa.errors import ConfigError, RawDataInvalid, RawDataMissing
from lfa.pipeline.config import validate_config
from lfa.sources import check_specs, ensure_raw, get_source
from lfa.sources.__main__ import main as sources_main
from lfa.sources.images import image_channels

CXR = {"path_column": "Image Index", "labels_column": "Finding Labels", "none_label": "No Finding"}
CHEX_COLUMNS = ["Cardiomegaly", "Edema", "Pleural Effusion", "Support Devices"]


def _prepare(tmp_path: Path, ds: dict, name: str = "mine", n_splits: int = 3, ratio_k: int | None = None):
    spec = dataset_spec(ds, name, ratio_k)
    out = prepare(spec["base"] if ratio_k is None else f"{name}_k{ratio_k}", spec, spec["root"],
                  tmp_path / "prepared" / name, n_splits=n_splits, split_seed=0, downloads=tmp_path)
    meta = json.loads((out / "meta.json").read_text())
    return out, meta, pd.read_parquet(out / "index.parquet"), pd.read_csv(out / "counts.csv")


def _cxr(x, **extra) -> dict:
    """A ChestX-ray14-style dataset; ungrouped on purpose unless the test groups it."""
    return {"source": "csv", "root": str(x.images), "csv": str(x.csv), "image_size": 16, "group_column": "none", **CXR,
            **extra}


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------- folder: listing

def test_folder_lists_like_imagefolder(tmp_path):
    tree = image_tree(tmp_path / "pets", {"zebra": 3, "cat": 6, "dog": 5})
    data = get_source("folder").load(tree.root, {})
    assert data.class_names == ["cat", "dog", "zebra"] and data.task == "single_label"
    assert data.paths == tree.paths  # sorted within a class, classes in sorted order
    assert any(p.endswith(".PNG") for p in data.paths) and any(p.endswith(".JPG") for p in data.paths)
    assert "cat/sub/deeper/cat_003.jpg" in data.paths  # nested folders belong to their class
    assert not set(tree.ignored) & set(data.paths)  # hidden files and folders, a text file, a file at the root
    assert data.labels.argmax(1).tolist() == [data.class_names.index(p.split("/")[0]) for p in data.paths]
    assert (data.labels.sum(1) == 1).all()


def test_folder_channels_rule_reads_headers(tmp_path):
    mixed = image_tree(tmp_path / "mixed", {"a": 5, "b": 5})  # every fifth image grayscale
    gray = image_tree(tmp_path / "gray", {"a": 3, "b": 3}, all_grayscale=True, hidden=False)
    assert mixed.grayscale and len(mixed.grayscale) < len(mixed.paths)
    assert image_channels(mixed.root, mixed.paths) == 3
    assert image_channels(gray.root, gray.paths) == 1
    assert image_channels(mixed.root, mixed.grayscale) == 1  # only the grayscale ones


def test_folder_packs_gray_as_one_channel_unless_told(tmp_path):
    gray = image_tree(tmp_path / "gray", {"a": 3, "b": 3}, all_grayscale=True, hidden=False)
    out, meta, _, _ = _prepare(tmp_path, {"source": "folder", "root": str(gray.root), "image_size": 8})
    assert meta["image_shape"] == [8, 8, 1] and load_prepared(out).images.shape == (6, 8, 8, 1)
    out, meta, _, _ = _prepare(tmp_path / "rgb", {"source": "folder", "root": str(gray.root), "image_size": 8,
                                                   "channels": 3})
    images = load_prepared(out).images
    assert images.shape == (6, 8, 8, 3) and np.array_equal(images[..., 0], images[..., 2])  # gray planes


def test_folder_mixed_images_are_converted_to_the_channels(tmp_path):
    tree = image_tree(tmp_path / "mixed", {"a": 5, "b": 5}, formats=("png",))
    out, meta, index, _ = _prepare(tmp_path, {"source": "folder", "root": str(tree.root), "image_size": 16})
    data = load_prepared(out)
    assert data.images.shape[1:] == (16, 16, 3)
    for img, rel, c in zip(data.images, index["id"], data.labels.argmax(1), strict=True):
        want = colour(c) if rel not in tree.grayscale else (Image.new("RGB", (1, 1), colour(c)).convert("L")
                                                            .getpixel((0, 0)),) * 3
        # unstriped column 1 holds the class colour (or its luma), up to the noise
        assert np.abs(img[:, 1].reshape(-1, 3).mean(0) - want).max() < 6, rel
    out, meta, _, _ = _prepare(tmp_path / "one", {"source": "folder", "root": str(tree.root), "image_size": 16,
                                                   "channels": 1})
    assert meta["image_shape"] == [16, 16, 1]


# ------------------------------------------------------------------------------------- folder: errors

def test_an_empty_class_folder_is_named(tmp_path):
    tree = image_tree(tmp_path / "t", {"a": 2, "b": 2}, hidden=False)
    (tree.root / "empty").mkdir()
    (tree.root / "only_hidden" / ".x").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tree.root / "only_hidden" / ".x" / "y.png")
    with pytest.raises(RawDataInvalid) as err:
        ensure_raw("folder", tree.root, [{"checksums": True}])
    assert f"{tree.root / 'empty'}/" in str(err.value) and f"{tree.root / 'only_hidden'}/" in str(err.value)
    assert "empty class folder" in str(err.value)


def test_a_missing_folder_says_the_layout_and_the_key(tmp_path):
    where = tmp_path / "nowhere"
    with pytest.raises(RawDataMissing) as err:
        ensure_raw("folder", where, [{"checksums": True}])
    text = str(err.value)
    assert str(where) in text and f"{where}/<class a>/" in text and "datasets.<name>.root" in text
    assert "never downloaded" in text
    spec = dataset_spec({"source": "folder", "root": str(where)}, "mine")
    with pytest.raises(RawDataMissing, match="one sub-folder per class"):
        prepare("mine", spec, where, tmp_path / "out", n_splits=3, split_seed=0, downloads=tmp_path)


def test_one_class_folder_is_not_a_classification(tmp_path):
    tree = image_tree(tmp_path / "t", {"only": 3}, hidden=False)
    with pytest.raises(RawDataInvalid, match="at least two"):
        get_source("folder").load(tree.root, {})


# ------------------------------------------------------------------------------------ folder: prepare

def test_folder_prepares_with_its_source_and_counts(tmp_path):
    tree = image_tree(tmp_path / "pets", {"cat": 6, "dog": 5, "bird": 4})
    out, meta, index, counts = _prepare(tmp_path, {"source": "folder", "root": str(tree.root), "image_size": 8})
    assert meta["source"] == "folder" and meta["title"] == get_source("folder").title
    assert meta["task"] == "single_label" and meta["class_names"] == ["bird", "cat", "dog"]
    assert meta["root"] == str(tree.root) and meta["n_samples"] == 15 and meta["partitions"] == {"all": 15}
    assert dict(zip(counts["name"], counts["count"], strict=True)) == {"bird": 4, "cat": 6, "dog": 5}
    assert index["id"].tolist() == tree.paths and "group" not in index.columns
    summary = dataset_summary(out)  # what the report's Datasets section reads
    assert summary["source"] == "folder" and [c["count"] for c in summary["counts"]] == [4, 6, 5]


def test_folder_subsets_long_tail_and_counts(tmp_path):
    classes = {f"c{i}": 6 for i in range(10)}
    tree = image_tree(tmp_path / "ten", classes, size=4, formats=("png",), nested=False, grayscale_some=False,
                      hidden=False)
    _, meta, _, counts = _prepare(tmp_path / "lt", {"source": "folder", "root": str(tree.root), "image_size": 4,
                                                    "subset": {"kind": "long_tail", "reference": "cifar10_lt"}})
    # round(6 * ref / 5000), at least 2: the cifar10_lt proportions
    assert counts["count"].tolist() == [6, 4, 4, 5, 4, 2, 3, 5, 3, 6] == meta["expected_counts"]
    table = tmp_path / "counts.csv"
    table.write_text("Class,Count\n" + "\n".join(f"c{i},{1 + i % 3}" for i in range(10)) + "\n")
    _, meta, _, counts = _prepare(tmp_path / "ct", {"source": "folder", "root": str(tree.root), "image_size": 4,
                                                    "subset": {"kind": "counts", "counts_csv": str(table)}})
    assert counts["count"].tolist() == [1 + i % 3 for i in range(10)]


def test_folder_binary_ratio(tmp_path):
    tree = image_tree(tmp_path / "bin", {"healthy": 200, "lesion": 6}, size=4, formats=("png",), nested=False,
                      grayscale_some=False, hidden=False)
    ds = {"source": "folder", "root": str(tree.root), "image_size": 4,
          "subset": {"kind": "binary_ratio", "positive_class": 1, "ratios": [3, 1], "unit": 1}}
    kept = {}
    for k in (3, 1):
        _, meta, index, counts = _prepare(tmp_path / f"k{k}", ds, ratio_k=k)
        assert counts["name"].tolist() == ["healthy", "lesion"] and counts["count"].tolist() == [200, k]
        kept[k] = set(index["id"])
    assert kept[1] < kept[3]


def test_a_corrupt_image_is_skipped_and_counted(tmp_path):
    tree = image_tree(tmp_path / "t", {"a": 4, "b": 4}, formats=("png",), hidden=False)
    bad = tree.by_class["b"][1]
    data = (tree.root / bad).read_bytes()
    (tree.root / bad).write_bytes(data[: len(data) // 3])
    _, meta, index, counts = _prepare(tmp_path, {"source": "folder", "root": str(tree.root), "image_size": 8,
                                                 "skip_corrupt": True})
    assert meta["skipped_corrupt"] == {"count": 1, "files": [bad]} and bad not in set(index["id"])
    assert counts["count"].tolist() == [4, 3]


# ------------------------------------------------------------------------------------- csv: ChestX-ray14

def test_chestxray_table_prepares_multi_label_with_patient_folds(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=20)
    out, meta, index, counts = _prepare(tmp_path, _cxr(x, group_column="Patient ID", channels=1))
    assert meta["source"] == "csv" and meta["task"] == "multi_label" and meta["class_names"] == x.classes
    assert len(x.classes) == 14 and "No Finding" not in x.classes
    assert index["id"].tolist() == x.files
    assert np.array_equal(index[[f"label_{c}" for c in range(14)]].to_numpy(), x.labels)
    assert counts["count"].tolist() == x.labels.sum(0).tolist()
    assert (x.labels.sum(1) == 0).sum() == x.no_finding > 0  # No Finding: no positive class
    assert meta["group_column"] == "Patient ID" and meta["n_groups"] == 20
    assert index["group"].tolist() == x.patients
    assert (index.groupby("group")["fold"].nunique() == 1).all()  # no patient in two folds
    data = load_prepared(out)
    assert data.images.shape == (len(x.files), 16, 16, 1)
    for img, found in zip(data.images, x.findings, strict=True):  # one bright row per finding
        bright = set(np.flatnonzero(img[..., 0].mean(1) > 150).tolist())
        assert bright == {x.classes.index(f) for f in found}
    summary = dataset_summary(out)
    assert summary["source"] == "csv" and len(summary["counts"]) == 14


def test_rgba_images_make_the_default_three_channels(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=6, rgba_every=5)
    _, meta, _, _ = _prepare(tmp_path, _cxr(x))
    assert meta["image_shape"] == [16, 16, 3]
    y = chestxray_csv(tmp_path / "gray", n_patients=6, rgba_every=0)
    _, meta, _, _ = _prepare(tmp_path / "g", _cxr(y))
    assert meta["image_shape"] == [16, 16, 1]


def test_without_none_label_no_finding_is_a_class(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=8)
    spec = {k: v for k, v in _cxr(x).items() if k != "none_label"}
    data = get_source("csv").load(x.images, spec)
    assert data.class_names == sorted([*x.classes, "No Finding"])
    assert data.labels[:, data.class_names.index("No Finding")].sum() == x.no_finding
    assert (data.labels.sum(1) >= 1).all()


def test_none_label_with_other_labels_names_the_lines(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=4)
    rows = list(csv.reader(open(x.csv)))
    rows[3][1] = "No Finding|Effusion"
    rows[5][1] = "Mass|No Finding"
    _write_csv(x.csv, rows[0], rows[1:])
    with pytest.raises(RawDataInvalid, match=r"combines the none_label 'No Finding'.* 2 row\(s\), at line\(s\) 4, 6"):
        get_source("csv").load(x.images, _cxr(x))


def test_a_column_not_found_lists_the_columns(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=3)
    with pytest.raises(RawDataInvalid) as err:
        get_source("csv").load(x.images, _cxr(x, group_column="PatientID", base="xray"))
    text = str(err.value)
    assert "column 'PatientID' (datasets.xray.group_column) not found (did you mean 'Patient ID'" in text
    assert "'Image Index', 'Finding Labels', 'Follow-up #', 'Patient ID'" in text and "'OriginalImage[Width'" in text


def test_missing_images_are_counted_and_the_first_five_named(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=10)
    gone = x.files[2:9]
    for name in gone:
        (x.images / name).unlink()
    with pytest.raises(RawDataMissing) as err:
        ensure_raw("csv", x.images, [{"checksums": True, **_cxr(x)}])
    text = str(err.value)
    assert f"7 of the {len(x.files)} images listed in {x.csv}" in text
    assert f"the first five: {', '.join(gone[:5])}." in text and gone[5] not in text
    assert "root must be the folder the paths are relative to" in text


def test_a_missing_table_or_root_is_named(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=2)
    with pytest.raises(RawDataMissing, match=r"table .*Data_Entry_2016\.csv \(datasets\.xray\.csv\) not found"):
        get_source("csv").load(x.images, _cxr(x, csv=str(tmp_path / "Data_Entry_2016.csv"), base="xray"))
    where = tmp_path / "no_root"
    spec = dataset_spec(_cxr(x, root=str(where)), "xray")
    with pytest.raises(RawDataMissing) as err:
        prepare("xray", spec, where, tmp_path / "out", n_splits=3, split_seed=0, downloads=tmp_path)
    assert str(where) in str(err.value) and "datasets.<name>.root" in str(err.value)
    assert "never downloaded" in str(err.value)


def test_a_relative_table_path_is_taken_from_the_root(tmp_path):
    c = chexpert_csv(tmp_path / "chex", n_patients=3)
    data = get_source("csv").load(c.root, {"csv": c.csv_relative, "path_column": "Path", "label_columns": ["Edema"],
                                           "group_pattern": r"(patient\d+)"})
    assert data.paths == c.paths
    assert data.groups == [p.split("/")[2] for p in c.paths]  # the patientNNNNN folder


def test_rows_with_another_number_of_fields_are_named(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=3)
    lines = x.csv.read_text().splitlines()
    lines[2] = lines[2].rstrip(",")  # one field short
    x.csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(RawDataInvalid, match=r"1 row\(s\), at line\(s\) 3 with another number of fields .* 12"):
        get_source("csv").load(x.images, _cxr(x))


def test_duplicate_paths_are_refused(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=3)
    rows = list(csv.reader(open(x.csv)))
    _write_csv(x.csv, rows[0], [*rows[1:], rows[1]])
    with pytest.raises(RawDataInvalid, match=rf"listed twice in 1 row\(s\), at line\(s\) {len(rows) + 1}"):
        get_source("csv").load(x.images, _cxr(x))


def test_partition_column_selects_partitions(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=12, partition_column="Split")
    _, meta, index, _ = _prepare(tmp_path, _cxr(x, partition_column="Split", partitions=["train"]))
    train = [f for f, p in zip(x.files, x.partition, strict=True) if p == "train"]
    assert index["id"].tolist() == train and set(index["partition"]) == {"train"}
    assert meta["partitions"] == {"train": len(train)}
    _, meta, index, _ = _prepare(tmp_path / "all", _cxr(x, partition_column="Split"))
    assert meta["partitions"] == {"test": x.partition.count("test"), "train": x.partition.count("train")}
    spec = dataset_spec(_cxr(x, partition_column="Split", partitions=["valid"]), "xray")
    with pytest.raises(ValueError, match=r"datasets\.xray\.partitions: unknown partition\(s\) \['valid'\]; column "
                                         r"'Split' of .* holds \['test', 'train'\]"):
        prepare("xray", spec, x.images, tmp_path / "bad", n_splits=3, split_seed=0, downloads=tmp_path)


def test_a_class_without_positives_in_a_fold_warns(tmp_path, capsys):
    x = chestxray_csv(tmp_path / "cxr", n_patients=10)
    rare = [c for c in x.classes if x.labels[:, x.classes.index(c)].sum() == 1]
    assert rare  # the fixture has findings of a single image
    _prepare(tmp_path, _cxr(x, group_column="Patient ID"), n_splits=3)
    err = capsys.readouterr().err
    for c in rare:
        assert f"WARNING: mine: class {c!r} has no positive sample in fold(s)" in err


def test_corrupt_images_leave_their_group_too(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=8)
    bad = x.files[3]
    (x.images / bad).write_bytes((x.images / bad).read_bytes()[:40])
    _, meta, index, _ = _prepare(tmp_path, _cxr(x, group_column="Patient ID", skip_corrupt=True))
    assert meta["skipped_corrupt"]["files"] == [bad]
    kept = [p for f, p in zip(x.files, x.patients, strict=True) if f != bad]
    assert index["group"].tolist() == kept


# ------------------------------------------------------------------------------------------ csv: CheXpert

@pytest.mark.parametrize("uncertain", ["zero", "one"])
def test_chexpert_uncertain_values(tmp_path, uncertain):
    c = chexpert_csv(tmp_path / "chex", n_patients=6)
    ds = {"source": "csv", "root": str(c.root), "csv": c.csv_relative, "path_column": "Path",
          "label_columns": CHEX_COLUMNS, "uncertain": uncertain, "image_size": 8, "group_column": "none"}
    _, meta, index, _ = _prepare(tmp_path, ds)
    labels = index[[f"label_{i}" for i in range(len(CHEX_COLUMNS))]].to_numpy()
    assert meta["class_names"] == CHEX_COLUMNS  # in label_columns order
    assert np.array_equal(labels, c.expected(CHEX_COLUMNS, uncertain))
    raw = c.values[:, [CHEXPERT_LABELS.index(n) for n in CHEX_COLUMNS]]
    assert (labels[raw == -1] == (1 if uncertain == "one" else 0)).all() and (raw == -1).any()
    assert (labels[np.isnan(raw)] == 0).all() and np.isnan(raw).any()  # blank is 0
    assert any(p.endswith("view2_lateral.jpg") for p in index["id"])


def test_chexpert_values_outside_the_allowed_set_name_their_lines(tmp_path):
    c = chexpert_csv(tmp_path / "chex", n_patients=4)
    rows = list(csv.reader(open(c.csv)))
    edema = rows[0].index("Edema")
    for r, value in ((2, "2"), (5, "yes"), (6, "1.5")):
        rows[r][edema] = value
    _write_csv(c.csv, rows[0], rows[1:])
    with pytest.raises(RawDataInvalid) as err:
        get_source("csv").load(c.root, {"csv": c.csv_relative, "path_column": "Path", "label_columns": ["Edema"]})
    assert ("3 value(s) outside 1, 0, -1 (uncertain) and blank" in str(err.value)
            and "line 3 (Edema: '2'), line 6 (Edema: 'yes'), line 7 (Edema: '1.5')" in str(err.value))


# ------------------------------------------------------------------------------------------ group k-fold

def test_group_folds_keep_groups_whole_and_spread_common_labels():
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 12, size=150)  # patients with 1..11 images
    groups = np.repeat([f"p{i:03d}" for i in range(len(sizes))], sizes)
    patient_rate = rng.random((len(sizes), 5)) < [0.6, 0.3, 0.15, 0.08, 0.03]
    labels = (patient_rate[np.repeat(np.arange(len(sizes)), sizes)] & (rng.random((len(groups), 5)) < 0.7))
    labels = labels.astype(np.int8)
    folds = assign_folds(labels, 5, seed=0, groups=groups)
    assert np.array_equal(folds, assign_folds(labels, 5, seed=0, groups=groups))
    assert pd.DataFrame({"g": groups, "f": folds}).groupby("g")["f"].nunique().max() == 1
    per_group = pd.DataFrame(labels).groupby(groups).max()
    for c in range(5):
        if per_group[c].sum() >= 10:  # common enough to reach every fold
            assert (np.bincount(folds[labels[:, c] == 1], minlength=5) > 0).all(), c
    n = np.bincount(folds, minlength=5)
    assert n.max() - n.min() <= 0.2 * n.mean()  # balanced by samples, not by groups
    assert not np.array_equal(folds, assign_folds(labels, 5, seed=1, groups=groups))


def test_group_folds_need_enough_groups():
    with pytest.raises(ValueError, match="3 group"):
        assign_folds(np.eye(2, dtype=np.int8)[[0, 1, 0, 1]], 5, 0, groups=["a", "a", "b", "c"])


def test_folds_without_groups_are_exactly_as_before():
    from lfa.sources.digits import load_digits_raw

    rng = np.random.default_rng(0)
    multi = (rng.random((500, 4)) < [0.5, 0.3, 0.05, 0.02]).astype(np.int8)
    digests = [hashlib.sha256(assign_folds(labels, 5, seed).tobytes()).hexdigest()[:16]
               for labels in (load_digits_raw().labels, multi) for seed in (0, 3)]
    # the assignment of the release before group folds (same labels, same seeds)
    assert digests == ["62e21e5cd00c8ec8", "3b525f63ce1c9279", "36dfddd87f091804", "6fd5d9ff046d3bd6"]


def test_a_single_label_column_is_stratified_by_it():
    labels = np.zeros((50, 1), dtype=np.int8)
    labels[:5] = 1
    folds = assign_folds(labels, 5, 0)
    assert np.bincount(folds[:5], minlength=5).tolist() == [1, 1, 1, 1, 1]


# ------------------------------------------------------------------------------------- config and check

def _config(datasets: dict) -> dict:
    name = next(iter(datasets))
    return {"datasets": datasets,
            "experiments": {"e": {"dataset": name, "backbones": ["small_cnn"], "losses": ["bce"]}}}


TABLE = {"source": "csv", "csv": "t.csv", "path_column": "Path"}


def test_valid_user_configs_get_their_defaults():
    config = validate_config(_config({
        "names": {**TABLE, "labels_column": "Labels"},
        "columns": {**TABLE, "label_columns": ["A", "B"], "group_column": "Patient", "partition_column": "Split",
                    "partitions": ["train"]},
        "pets": {"source": "folder", "root": "/data/pets", "channels": 1},
    }))
    names, columns = config["datasets"]["names"], config["datasets"]["columns"]
    assert names["separator"] == "|" and "uncertain" not in names
    assert columns["uncertain"] == "zero" and "separator" not in columns
    assert "separator" not in config["datasets"]["pets"]


@pytest.mark.parametrize(("ds", "message"), [
    ({"source": "cifar10", "channels": 1}, r"datasets\.d\.channels: not used by source 'cifar10' \(a key of source "
                                           r"chestxray14, chexpert, csv, folder, ham10000, isic2019\)"),
    ({"source": "folder", "csv": "t.csv"}, r"datasets\.d\.csv: not used by source 'folder' \(a key of source csv\)"),
    ({"source": "folder", "label_columns": ["A"]}, r"datasets\.d\.label_columns: not used by source 'folder'"),
    ({"source": "imagenet", "group_column": "P"}, r"datasets\.d\.group_column: not used by source 'imagenet'"),
    ({"source": "csv", "path_column": "P", "labels_column": "L"}, r"datasets\.d\.csv: required by source 'csv'"),
    ({"source": "csv", "csv": "t.csv", "labels_column": "L"}, r"datasets\.d\.path_column: required"),
    (TABLE, r"datasets\.d\.labels_column: source 'csv' needs exactly one of labels_column .* or label_columns"),
    ({**TABLE, "labels_column": "L", "label_columns": ["A"]}, r"exactly one of .*, not both"),
    ({**TABLE, "label_columns": ["A"], "separator": ";"}, r"datasets\.d\.separator: only used with labels_column"),
    ({**TABLE, "label_columns": ["A"], "none_label": "N"}, r"datasets\.d\.none_label: only used with labels_column"),
    ({**TABLE, "labels_column": "L", "uncertain": "one"}, r"datasets\.d\.uncertain: only used with label_columns"),
    ({**TABLE, "label_columns": ["Path"]}, r"datasets\.d\.path_column: 'Path' is also a label column"),
    ({**TABLE, "labels_column": "L", "partitions": ["train"]}, r"datasets\.d\.partitions: unknown partition"),
    ({**TABLE, "labels_column": "L", "uncertain": "maybe"}, r"invalid configuration"),
    ({"source": "folder", "channels": 2}, r"invalid configuration"),
    ({"source": "folder", "subset": {"kind": "long_tail", "reference": "nope"}}, r"unknown reference"),
    ({"source": "chexpert", "subset": {"kind": "counts", "reference": "cadcap"}},
     r"datasets\.d\.subset\.kind: 'counts' needs a single-label dataset"),
])
def test_user_source_config_checks(ds, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_config({"d": dict(ds)}))


def test_each_folder_dataset_has_its_own_root_and_the_check_names_a_missing_one(tmp_path):
    image_tree(tmp_path / "pets", {"cat": 3, "dog": 3}, hidden=False)
    image_tree(tmp_path / "birds", {"owl": 2, "tit": 4, "wren": 2}, hidden=False)
    config = validate_config(_config({"a": {"source": "folder", "root": str(tmp_path / "pets")},
                                      "b": {"source": "folder", "root": str(tmp_path / "birds")}}))
    specs = check_specs(config, "folder", tmp_path / "downloads")
    assert sorted(s["root"] for s in specs) == [str(tmp_path / "birds"), str(tmp_path / "pets")]
    info = ensure_raw("folder", tmp_path / "unused", specs)
    assert sorted((t["root"], t["images"]) for t in info["trees"]) == [(str(tmp_path / "birds"), 8),
                                                                       (str(tmp_path / "pets"), 6)]
    specs[1]["root"] = str(tmp_path / "gone")
    with pytest.raises(RawDataMissing, match=f"raw data not found under {tmp_path / 'gone'}"):
        ensure_raw("folder", tmp_path / "unused", specs)


def test_the_check_sees_the_table_keys(tmp_path, capsys):
    x = chestxray_csv(tmp_path / "cxr", n_patients=3)
    config = validate_config(_config({"xray": _cxr(x, group_column="Patient ID"),
                                      "xray_lt": _cxr(x, image_size=8)}))
    specs = check_specs(config, "csv", tmp_path / "dl")
    assert [s["group_column"] for s in specs] == ["Patient ID", "none"]
    assert all(s["csv"] == str(x.csv) and s["path_column"] == "Image Index" and s["separator"] == "|"
               and "image_size" not in s for s in specs)
    marker = tmp_path / "marker"
    info = ensure_raw("csv", x.images, specs, marker=marker)
    assert info["tables"][0]["images"] == len(x.files) and info["tables"][0]["groups"] == 3
    bad = json.dumps([{**specs[0], "path_column": "Image"}])
    assert sources_main(["check", "csv", "--root", str(x.images), "--specs", bad, "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "column 'Image' (datasets.xray.path_column) not found (did you mean 'Image Index'?)" in err


@pytest.mark.slow
def test_the_workflow_prepares_both_sources(tmp_path):
    tree = image_tree(tmp_path / "pets", {"cat": 5, "dog": 4}, hidden=True)
    x = chestxray_csv(tmp_path / "cxr", n_patients=10)
    config = {"folds": [0, 1, 2], "train": {"device": "cpu", "epochs": 1},
              "datasets": {"pets": {"source": "folder", "root": str(tree.root), "image_size": 8},
                           "xray": {**_cxr(x, group_column="Patient ID", channels=1), "image_size": 8}},
              "experiments": {"e": {"dataset": "pets", "backbones": ["small_cnn"], "losses": ["bce"]}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(tmp_path, "data/prepared/pets/meta.json", "data/prepared/xray/meta.json",
                  configfile=tmp_path / "config.yaml")
    for source in ("folder", "csv"):
        marker = json.loads((tmp_path / "data" / "raw" / source / ".verified").read_text())
        assert marker["source"] == source and not marker["downloaded"]
    pets = json.loads((tmp_path / "data/prepared/pets/meta.json").read_text())
    xray = json.loads((tmp_path / "data/prepared/xray/meta.json").read_text())
    assert pets["n_samples"] == 9 and pets["image_shape"] == [8, 8, 3]
    assert xray["n_groups"] == 10 and xray["image_shape"] == [8, 8, 1]


def test_a_folder_dataset_without_root_reads_its_own_default_folder_not_another_datasets(tmp_path):
    from lfa.pipeline.plan import Layout, prepared_datasets

    config = validate_config(_config({"a": {"source": "folder", "root": str(tmp_path / "pets")},
                                      "b": {"source": "folder"}}))
    config["data_dir"] = str(tmp_path / "data")
    layout, specs = Layout.from_config(config), prepared_datasets(config)
    assert layout.dataset_raw(specs["a"]) == tmp_path / "pets"
    assert layout.dataset_raw(specs["b"]) == tmp_path / "data/raw/folder" == layout.raw("folder")


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path):
    from lfa.sources.images import decode

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "xray16.png")
    with Image.open(tmp_path / "xray16.png") as im:
        assert im.mode == "I;16"
    pixels = decode(tmp_path / "xray16.png", 0, channels=1)[..., 0]
    np.testing.assert_array_equal(pixels, np.rint(ramp / 257).astype(np.uint8))
    assert len(np.unique(pixels)) == 256


def test_the_ratio_subsets_of_a_folder_dataset_get_one_channel_count(tmp_path):
    """One colour image among grayscale ones makes the whole dataset RGB, whichever subset draws it."""
    tree = image_tree(tmp_path / "pets", {"cat": 200, "dog": 6}, size=8, hidden=False, all_grayscale=True)
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "pets" / tree.by_class["dog"][0])
    ds = {"source": "folder", "root": str(tree.root), "image_size": 8,
          "subset": {"kind": "binary_ratio", "positive_class": 1, "ratios": [1, 5]}}
    shapes = set()
    for k in (1, 5):
        out = prepare(f"pets_k{k}", dataset_spec(ds, "pets", ratio_k=k), tree.root, tmp_path / f"k{k}", 5, 0,
                      tmp_path / "dl")
        shapes.add(tuple(load_prepared(out).images.shape[1:]))
    assert shapes == {(8, 8, 3)}


def test_a_table_not_in_utf8_too_few_groups_and_an_unknown_partition_are_named(tmp_path):
    x = chestxray_csv(tmp_path / "cxr", n_patients=3, partition_column="Split")
    with pytest.raises(RawDataInvalid, match=r"datasets\.xray: 3 group\(s\) cannot fill 5 folds .*\(grouping: "
                                             r"group_column 'Patient ID'\)"):
        prepare("xray", dataset_spec(_cxr(x, group_column="Patient ID", partition_column="Split"), "xray"),
                x.images, tmp_path / "out", 5, 0, tmp_path / "dl")
    config = validate_config(_config({"xray": _cxr(x, partition_column="Split", partitions=["tain"])}))
    with pytest.raises(RawDataInvalid, match=r"datasets\.xray\.partitions: unknown partition\(s\) \['tain'\]"):
        ensure_raw("csv", x.images, check_specs(config, "csv", tmp_path / "dl"))
    latin1 = x.csv.read_bytes().replace(b"View Position", "Vue (é)".encode("latin-1"))
    assert latin1 != x.csv.read_bytes()
    x.csv.write_bytes(latin1)
    with pytest.raises(RawDataInvalid, match=r"Data_Entry_2017\.csv: not UTF-8 text .*save the table as UTF-8"):
        get_source("csv").load(x.images, _cxr(x))
