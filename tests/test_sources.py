"""Every dataset of the paper from a fixture in its real raw format, prepared by the real rules."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fixtures_datasets import (
    CADCAP_COUNTS,
    IMAGENET_WNIDS,
    class_colour,
    corrupt,
    make_cadcap,
    make_celeba,
    make_cifar,
    make_idc,
    make_imagenet,
    write_split_lists,
)
from helpers import dataset_spec, run_snakemake

from lfa.data.datasets import load_prepared, prepare, subset_indices
from lfa.data.reference import CIFAR10_LT, imagenet_lt_counts
from lfa.errors import ConfigError, CorruptImageError, RawDataInvalid, RawDataMissing
from lfa.pipeline.config import validate_config
from lfa.sources import ensure_raw
from lfa.sources.cifar import load_batch

IDC_RATIOS = [50, 25, 12, 6, 3, 1]
IMAGENET_CSV = {"n01440764": 10, "n01443537": 9, "n01484850": 4, "n01491361": 5, "n01494475": 1}
CORRUPT_CADCAP = "Vascular Lesions/vascular_lesions_003.jpg"


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict[str, Path]:
    """Raw fixtures of all six datasets; CIFAR at full size (5,000 training images per class, 2x2 pixels)."""
    base = tmp_path_factory.mktemp("raw")
    make_cifar(base / "cifar")
    make_imagenet(base / "imagenet")
    pd.DataFrame({"Class": list(IMAGENET_CSV), "Count": list(IMAGENET_CSV.values())}).to_csv(
        base / "imagenet_counts.csv", index=False)
    lists = write_split_lists(base / "imagenet", base / "lists")
    make_idc(base / "idc")
    make_cadcap(base / "cadcap")
    corrupt(base / "cadcap" / CORRUPT_CADCAP)
    _, attrs = make_celeba(base / "celeba")
    np.save(base / "celeba_attrs.npy", attrs)
    return {"base": base, "lists": lists}


def _config(base: Path, lists: dict[str, str]) -> dict:
    return {
        "folds": [0, 1, 2],
        "train": {"device": "cpu", "epochs": 1},
        "datasets": {
            "cifar10": {"source": "cifar10", "root": str(base / "cifar"), "checksums": False},
            "cifar10_lt": {"source": "cifar10", "root": str(base / "cifar"), "checksums": False,
                           "partitions": ["train"], "subset": {"kind": "counts", "reference": "cifar10_lt"}},
            "imagenet_lt": {"source": "imagenet", "root": str(base / "imagenet"), "checksums": False,
                            "image_size": 8,
                            "subset": {"kind": "counts", "counts_csv": str(base / "imagenet_counts.csv")}},
            "imagenet_lists": {"source": "imagenet", "root": str(base / "imagenet"), "checksums": False,
                               "image_size": 8, "split_lists": lists},
            "idc": {"source": "idc", "root": str(base / "idc"), "checksums": False, "image_size": 16,
                    "subset": {"kind": "binary_ratio", "positive_class": 1, "ratios": IDC_RATIOS, "unit": 1}},
            "cadcap": {"source": "cadcap", "root": str(base / "cadcap"), "image_size": 16, "skip_corrupt": True},
            "celeba": {"source": "celeba", "root": str(base / "celeba"), "checksums": False, "image_size": 8},
        },
        "experiments": {"lt": {"dataset": "cifar10_lt", "backbones": ["small_cnn"], "losses": ["bce"]}},
    }


PREPARED = ["cifar10", "cifar10_lt", "imagenet_lt", "imagenet_lists", "cadcap", "celeba"] + [
    f"idc_k{k}" for k in IDC_RATIOS]


@pytest.fixture(scope="module")
def workflow(raw, tmp_path_factory) -> Path:
    """One real Snakemake run that checks every source and prepares every dataset of the fixture config."""
    work = tmp_path_factory.mktemp("sources_run")
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(_config(raw["base"], raw["lists"])))
    targets = [f"data/prepared/{name}/meta.json" for name in PREPARED]
    run_snakemake(work, *targets, configfile=config)
    return work


def _prepared(workflow: Path, name: str):
    path = workflow / "data" / "prepared" / name
    meta = json.loads((path / "meta.json").read_text())
    return path, meta, pd.read_parquet(path / "index.parquet"), pd.read_csv(path / "counts.csv")


@pytest.mark.slow
def test_every_source_is_checked_once_and_marked(workflow):
    for source in ("cifar10", "imagenet", "idc", "cadcap", "celeba"):
        marker = json.loads((workflow / "data" / "raw" / source / ".verified").read_text())
        assert marker["source"] == source and not marker["downloaded"]


@pytest.mark.slow
def test_cifar10_keeps_the_published_partitions(workflow):
    path, meta, index, counts = _prepared(workflow, "cifar10")
    assert meta["partitions"] == {"test": 10_000, "train": 50_000}
    assert counts["count"].tolist() == [6000] * 10
    assert counts["name"].tolist()[:2] == ["airplane", "automobile"]
    assert list(index.columns) == ["id", "row", "fold"] + [f"label_{c}" for c in range(10)] + ["partition"]
    assert index["id"].iloc[0] == "data_batch_1/00000" and index["id"].is_unique


@pytest.mark.slow
def test_cifar10_lt_has_exactly_the_seed_counts(workflow):
    path, meta, index, counts = _prepared(workflow, "cifar10_lt")
    assert counts["count"].tolist() == list(CIFAR10_LT.values())
    assert meta["expected_counts"] == list(CIFAR10_LT.values()) and meta["reference_table"] == "cifar10_lt"
    assert set(index["partition"]) == {"train"}
    data = load_prepared(path)
    target = data.labels.argmax(1)
    assert np.array_equal(data.images[:, 0, 0, 0], target * 20)  # images still match their labels
    for c in range(10):  # stratified folds
        per_fold = np.bincount(data.folds[target == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    assert np.array_equal(load_prepared(path, mmap=True).images, data.images)


@pytest.mark.slow
def test_cifar10_lt_draw_is_seeded(workflow, raw, tmp_path):
    config = _config(raw["base"], raw["lists"])
    spec = dataset_spec(config["datasets"]["cifar10_lt"], "cifar10_lt")
    again = prepare("cifar10_lt", spec, spec["root"], tmp_path / "again", n_splits=5, split_seed=0,
                    downloads=tmp_path)
    first = pd.read_parquet(workflow / "data" / "prepared" / "cifar10_lt" / "index.parquet")
    second = pd.read_parquet(again / "index.parquet")
    assert first.equals(second)


@pytest.mark.slow
def test_imagenet_lt_takes_the_csv_counts_and_resizes_once(workflow):
    path, meta, index, counts = _prepared(workflow, "imagenet_lt")
    assert counts["name"].tolist() == IMAGENET_WNIDS
    assert counts["count"].tolist() == list(IMAGENET_CSV.values())
    assert meta["image_shape"] == [8, 8, 3] and meta["counts_from"].startswith("counts_csv")
    data = load_prepared(path)
    for img, c in zip(data.images, data.labels.argmax(1), strict=True):
        assert np.abs(img.reshape(-1, 3).mean(0) - class_colour(c)).max() < 12  # JPEG noise only
    assert index["id"].str.match(r"train/n\d{8}/n\d{8}_\d+\.JPEG").all()


@pytest.mark.slow
def test_imagenet_split_lists_define_the_dataset(workflow, raw):
    path, meta, index, counts = _prepared(workflow, "imagenet_lists")
    listed = {part: len(Path(f).read_text().splitlines()) for part, f in raw["lists"].items()}
    assert meta["partitions"] == listed
    assert set(index.loc[index["partition"] == "test", "id"].str.slice(0, 4)) == {"val/"}
    assert counts["name"].tolist() == IMAGENET_WNIDS


@pytest.mark.slow
def test_idc_ratios_are_exact_and_nested(workflow):
    kept = {}
    for k in IDC_RATIOS:
        path, meta, index, counts = _prepared(workflow, f"idc_k{k}")
        assert counts["name"].tolist() == ["IDC-", "IDC+"]
        assert counts["count"].tolist() == [200, k]  # unit 1: 200 negatives, k positives
        assert meta["expected_counts"] == [200, k]
        assert not index["id"].str.startswith("IDC_regular_ps50_idx5").any()
        kept[k] = set(index["id"])
        assert load_prepared(path).images.shape[1:] == (16, 16, 3)  # 50x35 edge patches resized too
    assert all(kept[a] < kept[b] for a, b in zip(IDC_RATIOS[1:], IDC_RATIOS[:-1], strict=True))
    assert _prepared(workflow, "idc_k50")[1]["reference_table"] == "idc_subset"


@pytest.mark.slow
def test_cadcap_skips_and_counts_the_corrupt_image(workflow):
    path, meta, index, counts = _prepared(workflow, "cadcap")
    assert meta["skipped_corrupt"] == {"count": 1, "files": [CORRUPT_CADCAP]}
    expected = dict(CADCAP_COUNTS, **{"Vascular Lesions": CADCAP_COUNTS["Vascular Lesions"] - 1})
    assert dict(zip(counts["name"], counts["count"], strict=True)) == expected
    assert CORRUPT_CADCAP not in set(index["id"])
    data = load_prepared(path)
    assert len(data.images) == len(index) == sum(expected.values())
    for img, c in zip(data.images, data.labels.argmax(1), strict=True):
        assert np.abs(img.reshape(-1, 3).mean(0) - class_colour(c)).max() < 12
    assert meta["reference_table"] == "cadcap"


@pytest.mark.slow
def test_celeba_is_multi_label_with_its_partitions(workflow, raw):
    path, meta, index, counts = _prepared(workflow, "celeba")
    attrs = np.load(raw["base"] / "celeba_attrs.npy")
    assert meta["task"] == "multi_label" and len(meta["class_names"]) == 40
    assert meta["class_names"][0] == "5_o_Clock_Shadow"
    assert counts["count"].tolist() == attrs.sum(0).tolist()
    assert meta["partitions"] == {"test": 8, "train": 24, "valid": 8}
    assert np.array_equal(index.filter(like="label_").to_numpy(), attrs)
    assert index["id"].iloc[0] == "000001.jpg"


# ------------------------------------------------------------------------------ failures and messages

def test_a_corrupt_image_names_the_file(tmp_path):
    root = make_cadcap(tmp_path / "cadcap")
    corrupt(root / CORRUPT_CADCAP)
    spec = dataset_spec({"source": "cadcap", "root": str(root), "image_size": 16}, "cadcap")
    with pytest.raises(CorruptImageError) as err:
        prepare("cadcap", spec, root, tmp_path / "out", n_splits=3, split_seed=0, downloads=tmp_path)
    assert str(root / CORRUPT_CADCAP) in str(err.value) and "skip_corrupt" in str(err.value)
    assert not (tmp_path / "out" / "images.npy").exists()


def test_a_truncated_idc_patch_names_the_file(tmp_path):
    root = make_idc(tmp_path / "idc", n_neg=10, n_pos=3, duplicate=False)
    bad = next(iter(sorted(root.rglob("*_class1.png"))))
    corrupt(bad)
    spec = dataset_spec({"source": "idc", "root": str(root)}, "idc")
    with pytest.raises(CorruptImageError, match=str(bad)):
        prepare("idc", spec, root, tmp_path / "out", n_splits=3, split_seed=0, downloads=tmp_path)


def test_idc_ratio_arithmetic_at_the_paper_size():
    # 78,786 IDC+ and 198,738 IDC-: unit 221 keeps 44,200 negatives and k*221 positives, nested
    target = np.r_[np.zeros(198_738, dtype=np.int64), np.ones(78_786, dtype=np.int64)]
    labels = np.eye(2, dtype=np.int8)[target]
    subset = {"kind": "binary_ratio", "positive_class": 1, "ratios": IDC_RATIOS, "unit": 221, "seed": 0}
    kept = {}
    for k in IDC_RATIOS:
        idx, new_labels, names, info = subset_indices(labels, ["IDC-", "IDC+"], "single_label", subset, k)
        assert np.bincount(target[idx], minlength=2).tolist() == [44_200, k * 221]
        assert names == ["IDC-", "IDC+"] and info["expected_counts"] == [44_200, k * 221]
        kept[k] = set(idx.tolist())
    assert [len(kept[k]) - 44_200 for k in IDC_RATIOS] == [11_050, 5_525, 2_652, 1_326, 663, 221]
    assert all(kept[a] < kept[b] for a, b in zip(IDC_RATIOS[1:], IDC_RATIOS[:-1], strict=True))
    assert len(kept[50]) == 55_250  # the README's 55,259 is a typo


def test_imagenet_lt_default_counts_follow_the_readme_rule():
    counts = list(imagenet_lt_counts().values())
    assert len(counts) == 1000
    # rows of the seed's README table
    assert counts[:5] == [50, 87, 124, 161, 198] and counts[34] == 1308 and counts[40] == 1530
    assert counts[41] == 67 and counts[49] == 363


def test_counts_short_of_samples_fail_or_are_recorded():
    target = np.repeat(np.arange(3), [10, 2, 5])
    labels = np.eye(3, dtype=np.int8)[target]
    names = ["a", "b", "c"]
    subset = {"kind": "counts", "reference": "cadcap", "seed": 0, "allow_short": False}  # asks for 607, 605, 600
    with pytest.raises(ValueError, match="Inflammatory|a: 607 requested, 10 available"):
        subset_indices(labels, names, "single_label", subset, None)
    subset["allow_short"] = True
    idx, _, _, info = subset_indices(labels, names, "single_label", subset, None)
    assert len(idx) == 17 and info["shortfall"][1] == {"class": 1, "name": "b", "requested": 605, "available": 2}


def test_counts_csv_by_class_index(tmp_path):
    csv = tmp_path / "counts.csv"
    csv.write_text("Class,Count\n0,3\n1,1\n2,\"2\"\n")
    labels = np.eye(3, dtype=np.int8)[np.repeat(np.arange(3), 4)]
    subset = {"kind": "counts", "counts_csv": str(csv), "seed": 0, "allow_short": False}
    idx, _, _, info = subset_indices(labels, ["x", "y", "z"], "single_label", subset, None, tmp_path)
    assert np.bincount(labels[idx].argmax(1)).tolist() == [3, 1, 2]


def test_cifar_batches_are_read_without_running_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    bad = tmp_path / "data_batch_1"
    bad.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(RawDataInvalid, match="not allowed"):
        load_batch(bad)
    assert not (tmp_path / "pwned").exists()


def test_a_cifar_copy_that_is_not_official_fails_the_checksum(tmp_path):
    root = make_cifar(tmp_path / "cifar", train_per_class=2, test_per_class=1)
    with pytest.raises(RawDataInvalid, match="expected c99cafc152244af753f735de768cd75f"):
        ensure_raw("cifar10", root, [{"checksums": True}])
    assert ensure_raw("cifar10", root, [{"checksums": False}])["checksums_verified"] is False


def test_celeba_with_missing_images_says_which(tmp_path):
    root, _ = make_celeba(tmp_path / "celeba", n=6)
    (root / "img_align_celeba" / "000004.jpg").unlink()
    with pytest.raises(RawDataMissing, match="000004.jpg"):
        ensure_raw("celeba", root, [{"checksums": False}])


def test_imagenet_strict_check_wants_the_whole_of_ilsvrc(tmp_path):
    root = make_imagenet(tmp_path / "imagenet", per_class=(1, 1, 1, 1, 1), val_per_class=0)
    with pytest.raises(RawDataInvalid, match="5 class folders, ILSVRC-2012 has 1000"):
        ensure_raw("imagenet", root, [{"checksums": True}])


@pytest.mark.slow
def test_a_missing_manual_dataset_fails_before_any_training(tmp_path):
    empty = tmp_path / "nowhere" / "cadcap"
    config = {
        "folds": [0, 1, 2],
        "train": {"device": "cpu", "epochs": 1},
        "datasets": {"digits_lt": {"source": "digits", "subset": {"kind": "long_tail", "reference": "cifar10_lt"}},
                     "cadcap": {"source": "cadcap", "root": str(empty)}},
        "experiments": {"demo": {"dataset": "digits_lt", "backbones": ["small_cnn"], "losses": ["bce"]},
                        "cadcap": {"dataset": "cadcap", "backbones": ["small_cnn"], "losses": ["bce"]}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "--cores", "1", configfile=tmp_path / "config.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "CAD-CAP" in out and str(empty) in out and "Vascular Lesions/" in out and "on request" in out
    assert not (tmp_path / "results" / "runs").exists()  # no training job ran
    assert "ERROR" in (tmp_path / "logs" / "download" / "cadcap.log").read_text()


@pytest.mark.slow
def test_the_paper_sources_plan_without_any_raw_data(tmp_path):
    datasets = {
        "cifar10": {"source": "cifar10"},
        "cifar10_lt": {"source": "cifar10", "partitions": ["train"],
                       "subset": {"kind": "counts", "reference": "cifar10_lt"}},
        "imagenet_lt": {"source": "imagenet", "subset": {"kind": "counts", "reference": "imagenet_lt",
                                                         "allow_short": True}},
        "idc": {"source": "idc", "subset": {"kind": "binary_ratio", "positive_class": 1, "ratios": IDC_RATIOS,
                                            "unit": 221}},
        "cadcap": {"source": "cadcap"},
        "celeba": {"source": "celeba"},
    }
    config = {"datasets": datasets, "experiments": {
        name: {"dataset": name, "backbones": ["small_cnn"], "losses": ["bce"]} for name in datasets}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", configfile=tmp_path / "config.yaml")
    for source in ("cifar10", "imagenet", "idc", "cadcap", "celeba"):
        assert f"download_{source}" in proc.stdout and f"prepare_{source}" in proc.stdout


def _base_config() -> dict:
    return {"datasets": {"a": {"source": "cifar10"}},
            "experiments": {"e": {"dataset": "a", "backbones": ["small_cnn"], "losses": ["bce"]}}}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["a"].update(subset={"kind": "counts", "counts_csv": "https://raw.githubusercontent.com/x/y.csv"}),
     r"datasets\.a\.subset\.counts_csv_md5: required"),
    (lambda d: d["a"].update(subset={"kind": "counts", "counts_csv": "http://example.org/y.csv",
                                     "counts_csv_md5": "0" * 32}),
     r"datasets\.a\.subset\.counts_csv: refusing"),
    (lambda d: d["a"].update(subset={"kind": "counts"}), r"datasets\.a\.subset\.reference: unknown reference"),
    (lambda d: d.update(b={"source": "cifar10", "root": "/elsewhere"}), r"datasets\.b\.root: .* share one raw root"),
    (lambda d: d["a"].update(split_lists={"train": "x.txt"}), r"datasets\.a\.split_lists: not used"),
    (lambda d: d["a"].update(partitions=["valid"]), r"datasets\.a\.partitions: unknown partition"),
    (lambda d: d.update(c={"source": "celeba", "subset": {"kind": "counts", "reference": "celeba"}}),
     r"datasets\.c\.subset\.kind: 'counts' needs a single-label dataset"),
])
def test_dataset_config_checks(edit, message):
    config = _base_config()
    edit(config["datasets"])
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_a_counts_csv_url_with_its_checksum_is_accepted():
    config = _base_config()
    config["datasets"]["a"]["subset"] = {"kind": "counts", "counts_csv_md5": "0" * 32,
                                         "counts_csv": "https://raw.githubusercontent.com/o/r/main/data/c.csv"}
    validate_config(config)


def test_prepare_without_raw_data_explains(tmp_path):
    spec = dataset_spec({"source": "imagenet", "root": str(tmp_path / "ilsvrc")}, "imagenet_lt")
    with pytest.raises(RawDataMissing) as err:
        prepare("imagenet_lt", spec, tmp_path / "ilsvrc", tmp_path / "out", n_splits=5, split_seed=0,
                downloads=tmp_path)
    assert "image-net.org" in str(err.value) and f"{tmp_path / 'ilsvrc'}/train/n01440764/" in str(err.value)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


@pytest.mark.slow
def test_summaries_compare_with_the_seed_tables(workflow):
    from lfa.data.datasets import dataset_summary

    lt = dataset_summary(workflow / "data" / "prepared" / "cifar10_lt")
    assert lt["seed_counts"] == list(CIFAR10_LT.values()) and lt["count_differences"] == []
    cadcap = dataset_summary(workflow / "data" / "prepared" / "cadcap")  # a fixture: every class differs
    assert [d["seed"] for d in cadcap["count_differences"]] == [607, 605, 600]
    assert dataset_summary(workflow / "data" / "prepared" / "cifar10")["seed_counts"] is None
