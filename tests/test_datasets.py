from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import dataset_spec

from lfa.data.datasets import assign_folds, load_prepared, long_tail_counts, prepare, ratio_counts, subset_indices
from lfa.data.reference import CIFAR10_LT
from lfa.sources.base import RawData
from lfa.sources.digits import load_digits_raw


def test_long_tail_counts_reproduce_the_reference_table_at_full_size():
    ref = list(CIFAR10_LT.values())
    assert long_tail_counts(np.full(10, 5000), ref).tolist() == ref


def test_long_tail_counts_on_digits_follow_the_proportions():
    raw = load_digits_raw()
    available = raw.labels.sum(axis=0)
    counts = long_tail_counts(available, list(CIFAR10_LT.values()))
    # dog (class 5) keeps 228/5000 of its 182 digits, rounded: 8
    assert available[5] == 182 and counts[5] == 8
    assert counts[0] == available[0]  # airplane: 5000/5000
    expected = np.maximum(np.rint(available * np.array(list(CIFAR10_LT.values())) / 5000), 2)
    assert counts.tolist() == expected.astype(int).tolist()


def test_long_tail_keeps_at_least_two():
    assert long_tail_counts(np.array([100, 10]), [5000, 1]).tolist() == [100, 2]


def test_ratio_unit_arithmetic_at_the_paper_size():
    # Breast Histopathology: 78,786 IDC+ and 198,738 IDC-; the paper keeps 44,200 negatives and k*221 positives
    assert ratio_counts(11_050, 44_200, 50) == 221
    assert [k * 221 for k in (50, 25, 12, 6, 3, 1)] == [11050, 5525, 2652, 1326, 663, 221]
    with pytest.raises(ValueError, match="only 10 positives"):
        ratio_counts(10, 44_200, 50, unit=221)


def test_binary_ratio_subsets_are_nested_and_exact():
    raw = load_digits_raw()
    subset = {"kind": "binary_ratio", "positive_class": 8, "ratios": [50, 25, 1], "seed": 0}
    kept = {}
    for k in (50, 25, 1):
        idx, labels, names, _ = subset_indices(raw.labels, raw.class_names, raw.task, subset, k)
        pos = labels[idx, 1].sum()
        neg = labels[idx, 0].sum()
        assert (neg, pos) == (600, 3 * k)  # unit = min(174 // 50, 1623 // 200) = 3
        kept[k] = set(np.asarray(raw.ids)[idx])
        assert names == ["not 8", "8"]
    assert kept[1] < kept[25] < kept[50]


def test_folds_are_stratified_deterministic_and_balanced():
    raw = load_digits_raw()
    folds = assign_folds(raw.labels, 5, seed=0)
    assert np.array_equal(folds, assign_folds(raw.labels, 5, seed=0))
    assert not np.array_equal(folds, assign_folds(raw.labels, 5, seed=1))
    target = raw.labels.argmax(1)
    for c in range(10):
        per_fold = np.bincount(folds[target == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1


def test_multilabel_folds_spread_rare_labels():
    rng = np.random.default_rng(0)
    labels = (rng.random((500, 4)) < [0.5, 0.3, 0.05, 0.02]).astype(np.int8)
    folds = assign_folds(labels, 5, seed=0)
    rare = np.bincount(folds[labels[:, 3] == 1], minlength=5)
    assert rare.max() - rare.min() <= 1


def test_prepare_writes_the_documented_files(tmp_path):
    spec = dataset_spec({"source": "digits", "subset": {"kind": "long_tail", "reference": "cifar10_lt"}})
    out = prepare("digits_lt", spec, "", tmp_path / "digits_lt", n_splits=5, split_seed=0, downloads=tmp_path)
    index = pd.read_parquet(out / "index.parquet")
    counts = pd.read_csv(out / "counts.csv")
    meta = json.loads((out / "meta.json").read_text())
    images = np.load(out / "images.npy")
    assert list(index.columns[:3]) == ["id", "row", "fold"]
    assert [c for c in index.columns if c.startswith("label_")] == [f"label_{c}" for c in range(10)]
    assert images.dtype == np.uint8 and images.shape == (len(index), 8, 8, 1)
    assert counts["count"].tolist() == index.filter(like="label_").sum().tolist()
    assert counts.loc[5, "count"] == 8 and meta["class_names"][5] == "5"
    data = load_prepared(out)
    split = data.split(4)
    assert set(np.unique(data.folds[split["test"]])) == {4}
    assert set(np.unique(data.folds[split["val"]])) == {0}
    assert set(np.unique(data.folds[split["train"]])) == {1, 2, 3}
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == len(index)


def test_raw_data_checks_shapes():
    with pytest.raises(ValueError, match="uint8"):
        RawData(np.zeros((2, 4, 4, 1), np.float32), np.zeros((2, 2), np.int8), ["a", "b"], ["x", "y"])
