"""Datasets: raw sources, subsets (long-tail, imbalance ratio), stratified folds, packed prepared data.

A *prepared* dataset is a folder ``data/prepared/<name>/`` holding

- ``images.npy``: all images packed as one uint8 array of shape (N, H, W, C), read by a training job at once;
- ``index.parquet``: one row per sample: ``id`` (str), ``row`` (row in images.npy), ``fold`` (0..n_splits-1),
  and one ``label_<c>`` int8 column per class (one-hot for single-label data, several ones for multi-label);
- ``counts.csv``: class, name, count;
- ``meta.json``: name, source, task, class names, image shape, ratio_k.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfa.io import atomic_path


@dataclass
class RawData:
    """A raw dataset in memory: images (N, H, W, C) uint8, labels (N, C) int8, names and ids."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    task: str = "single_label"  # or "multi_label"

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError("images must be uint8 of shape (N, H, W, C)")
        if self.labels.shape != (len(self.images), len(self.class_names)):
            raise ValueError("labels must have shape (N, number of classes)")


def load_digits_raw(root: str | Path | None = None) -> RawData:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), shipped inside the package; no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    target = bunch.target.astype(np.int64)
    labels = np.eye(10, dtype=np.int8)[target]
    return RawData(images, labels, [str(d) for d in range(10)], [f"digits-{i:04d}" for i in range(len(target))])


#: Raw-data loaders by source name; issue-specific sources register here.
SOURCES: dict[str, Callable[[str | Path | None], RawData]] = {
    "digits": load_digits_raw,
}


def long_tail_counts(available: np.ndarray, reference: list[int]) -> np.ndarray:
    """Per-class counts following a reference table's proportions: round(n_c * ref_c / max(ref)), at least 2.

    With ``available == max(reference)`` for every class (CIFAR-10's 5,000 per class) this returns the
    reference counts exactly.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if len(ref) != len(available):
        raise ValueError(f"reference table has {len(ref)} classes, the dataset {len(available)}")
    counts = np.maximum(np.rint(available * ref / ref.max()).astype(np.int64), 2)
    return np.minimum(counts, available)


def ratio_counts(n_pos: int, n_neg: int, k_max: int, unit: int | None = None) -> int:
    """The largest ``unit`` such that k_max*unit positives and 200*unit negatives exist (or check a given one)."""
    fit = min(n_pos // k_max, n_neg // 200)
    if unit is None:
        unit = fit
    if unit < 1 or unit > fit:
        raise ValueError(
            f"imbalance ratios need {k_max}*unit positives and 200*unit negatives; "
            f"only {n_pos} positives and {n_neg} negatives exist (largest unit: {fit})"
        )
    return unit


def select_subset(raw: RawData, spec: dict[str, Any], ratio_k: int | None) -> tuple[np.ndarray, RawData]:
    """Indices of the samples kept by ``spec['subset']`` and the raw data relabelled for the subset."""
    from lfa.reference import COUNT_TABLES

    subset = spec.get("subset", {"kind": "all"})
    kind = subset.get("kind", "all")
    rng = np.random.default_rng(subset.get("seed", 0))
    if kind == "all":
        return np.arange(len(raw.images)), raw
    if raw.task != "single_label":
        raise ValueError(f"subset kind {kind!r} needs a single-label dataset")
    target = raw.labels.argmax(axis=1)
    if kind == "long_tail":
        ref = list(COUNT_TABLES[subset["reference"]].values())
        counts = long_tail_counts(np.bincount(target, minlength=len(raw.class_names)), ref)
        keep = [np.sort(rng.permutation(np.flatnonzero(target == c))[:n]) for c, n in enumerate(counts)]
        return np.sort(np.concatenate(keep)), raw
    if kind == "binary_ratio":
        pos_class = subset["positive_class"]
        pos = rng.permutation(np.flatnonzero(target == pos_class))
        neg = rng.permutation(np.flatnonzero(target != pos_class))
        unit = ratio_counts(len(pos), len(neg), max(subset["ratios"]), subset.get("unit"))
        # Positives are a prefix of one permutation, so smaller ratios are nested in larger ones.
        idx = np.sort(np.concatenate([neg[: 200 * unit], pos[: ratio_k * unit]]))
        is_pos = (target == pos_class).astype(np.int8)
        labels = np.stack([1 - is_pos, is_pos], axis=1)
        names = [f"not {raw.class_names[pos_class]}", raw.class_names[pos_class]]
        return idx, RawData(raw.images, labels, names, raw.ids, "single_label")
    raise ValueError(f"unknown subset kind {kind!r}")


def assign_folds(labels: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Stratified fold assignment: within each label pattern, samples are dealt round-robin in random order.

    Single-label data is stratified by class; multi-label data by each sample's rarest positive label, so
    rare attributes spread over all folds. The result depends only on labels, n_splits and seed.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    if labels.shape[1] == 1 or (labels.sum(axis=1) == 1).all():
        strata = labels.argmax(axis=1)
    else:
        freq = labels.sum(axis=0)
        masked = np.where(labels > 0, freq[None, :], np.iinfo(np.int64).max)
        strata = np.where(labels.any(axis=1), masked.argmin(axis=1), -1)
    folds = np.empty(n, dtype=np.int8)
    offset = 0
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        folds[members] = (np.arange(len(members)) + offset) % n_splits
        offset += len(members)  # continue the deal, so small strata do not all start at fold 0
    return folds


def prepare(name: str, spec: dict[str, Any], out_dir: str | Path, n_splits: int, split_seed: int) -> Path:
    """Build the prepared dataset ``name`` from its source into ``out_dir``; returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = SOURCES[spec["source"]](spec.get("root"))
    idx, raw = select_subset(raw, spec, spec.get("ratio_k"))
    labels = raw.labels[idx]
    folds = assign_folds(labels, n_splits, split_seed)

    with atomic_path(out / "images.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(raw.images[idx]))
    index = pd.DataFrame({"id": [raw.ids[i] for i in idx], "row": np.arange(len(idx)), "fold": folds})
    for c in range(labels.shape[1]):
        index[f"label_{c}"] = labels[:, c]
    with atomic_path(out / "index.parquet") as tmp:
        index.to_parquet(tmp, index=False)
    counts = pd.DataFrame({"class": range(labels.shape[1]), "name": raw.class_names,
                           "count": labels.sum(axis=0).astype(int)})
    with atomic_path(out / "counts.csv") as tmp:
        counts.to_csv(tmp, index=False)
    meta = {
        "name": name,
        "source": spec["source"],
        "task": raw.task,
        "class_names": raw.class_names,
        "image_shape": list(raw.images.shape[1:]),
        "n_samples": int(len(idx)),
        "n_splits": n_splits,
        "split_seed": split_seed,
        "ratio_k": spec.get("ratio_k"),
        "subset": spec.get("subset", {"kind": "all"}),
    }
    with atomic_path(out / "meta.json") as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2))
    return out


@dataclass
class Prepared:
    """A prepared dataset loaded for training: packed images, labels, folds, ids and metadata."""

    images: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    ids: np.ndarray
    meta: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def split(self, fold: int) -> dict[str, np.ndarray]:
        """Indices of the seed's rotation: test fold ``fold``, validation fold ``fold+1``, train the rest."""
        n_splits = self.meta["n_splits"]
        val_fold = (fold + 1) % n_splits
        return {
            "train": np.flatnonzero((self.folds != fold) & (self.folds != val_fold)),
            "val": np.flatnonzero(self.folds == val_fold),
            "test": np.flatnonzero(self.folds == fold),
        }


def load_prepared(path: str | Path) -> Prepared:
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    index = pd.read_parquet(path / "index.parquet")
    images = np.load(path / "images.npy", mmap_mode="r")
    label_cols = [f"label_{c}" for c in range(len(meta["class_names"]))]
    return Prepared(
        images=np.asarray(images[index["row"].to_numpy()]),
        labels=np.array(index[label_cols].to_numpy(np.int8)),
        folds=np.array(index["fold"].to_numpy(np.int64)),
        ids=index["id"].to_numpy(str),
        meta=meta,
    )


def dataset_summary(path: str | Path) -> dict[str, Any]:
    """Meta plus counts of a prepared dataset, for the report (no image data read)."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    meta["counts"] = pd.read_csv(path / "counts.csv").to_dict("records")
    meta["size_bytes"] = os.path.getsize(path / "images.npy")
    return meta
