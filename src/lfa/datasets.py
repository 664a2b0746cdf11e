"""Datasets: raw sources, subsets (long-tail, class counts, imbalance ratio), stratified folds, packed data.

A *prepared* dataset is a folder ``data/prepared/<name>/`` holding

- ``images.npy``: all images packed as one uint8 array of shape (N, H, W, C), read by a training job at once
  (row i is sample i of the index; large images are resized once to ``image_size`` when packed);
- ``index.parquet``: one row per sample: ``id`` (str: the image's path relative to the raw root, or a
  batch/position id), ``row`` (row in images.npy), ``fold`` (0..n_splits-1), one ``label_<c>`` int8 column
  per class (one-hot for single-label data, several ones for multi-label), and ``partition`` (the official
  partition the sample comes from, e.g. CIFAR-10's train/test or CelebA's train/valid/test; "all" if none);
- ``counts.csv``: class, name, count;
- ``meta.json``: name, source, task, class names, image shape, ratio_k, and the provenance the report shows
  (raw root, partitions, expected counts, the seed's reference table, skipped corrupt files).

Raw data comes from the sources in :mod:`lfa.sources` (one module per dataset); ``docs/datasets.md``
describes each source's layout, download and subset rule.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfa.io import atomic_path
from lfa.sources import REGISTRY, default_root
from lfa.sources.base import FileList, RawData, RawDataInvalid, RawDataMissing
from lfa.sources.digits import load_digits_raw
from lfa.sources.images import CorruptImageError, compact_rows, pack_files, save_rows

__all__ = ["SOURCES", "CorruptImageError", "FileList", "Prepared", "RawData", "RawDataInvalid", "RawDataMissing",
           "assign_folds", "counts_csv_path", "dataset_summary", "load_digits_raw", "load_prepared",
           "long_tail_counts", "prepare", "ratio_counts", "read_counts_csv", "select_subset"]


def _loader(name: str) -> Callable[..., RawData | FileList]:
    def load(root: str | Path | None = None, spec: dict[str, Any] | None = None) -> RawData | FileList:
        return REGISTRY[name].load(Path(root) if root else default_root(name), spec or {})

    load.__name__ = f"load_{name}"
    load.__doc__ = f"Raw data of source {name!r} ({REGISTRY[name].title})."
    return load


#: Raw-data loaders by source name: ``SOURCES[name](root, spec)`` returns :class:`RawData` (in memory) or
#: :class:`FileList` (paths and labels, decoded when packed). Sources live in :mod:`lfa.sources`; a bare
#: loader added here (returning RawData) also works, without a download rule.
SOURCES: dict[str, Callable[..., RawData | FileList]] = {
    name: (load_digits_raw if name == "digits" else _loader(name)) for name in REGISTRY
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


def read_counts_csv(path: str | Path) -> pd.DataFrame:
    """A class-count CSV (columns Class and Count, any case; also Label/Name and Quantity) as class, count."""
    table = pd.read_csv(path, thousands=",", skipinitialspace=True)
    columns = {c.strip().lower(): c for c in table.columns}
    cls = next((columns[c] for c in ("class", "label", "name") if c in columns), None)
    cnt = next((columns[c] for c in ("count", "quantity", "n") if c in columns), None)
    if cls is None or cnt is None:
        raise ValueError(f"{path}: a class-count CSV needs the columns Class and Count; it has {list(table.columns)}")
    out = pd.DataFrame({"class": table[cls].astype(str).str.strip(), "count": pd.to_numeric(table[cnt])})
    if out["count"].isna().any() or (out["count"] < 0).any() or (out["count"] % 1 != 0).any():
        raise ValueError(f"{path}: counts must be non-negative integers")
    if out["class"].duplicated().any():
        raise ValueError(f"{path}: classes listed twice: {sorted(out['class'][out['class'].duplicated()])[:5]}")
    return out.assign(count=out["count"].astype(np.int64))


def counts_csv_path(spec: dict[str, Any]) -> Path:
    """The local file of ``subset.counts_csv``: the path itself, or the URL's download (checksum verified).

    A URL is fetched once into ``<data_dir>/raw/downloads/<md5>-<file name>`` (official HTTPS hosts only,
    ``subset.counts_csv_md5`` required).
    """
    from urllib.parse import urlsplit

    from lfa.download import fetch, is_url, md5sum

    subset = spec.get("subset", {})
    where, md5 = str(subset["counts_csv"]), subset.get("counts_csv_md5")
    if is_url(where):
        if not md5:
            raise ValueError(f"subset.counts_csv is a URL ({where}); subset.counts_csv_md5 must give its MD5")
        name = Path(urlsplit(where).path).name or "counts.csv"
        dest = Path(spec.get("data_dir", "data")) / "raw" / "downloads" / f"{md5}-{name}"
        return fetch(where, dest, md5, desc=name)
    path = Path(where)
    if not path.is_file():
        raise FileNotFoundError(f"subset.counts_csv: {path} not found")
    if md5 and md5sum(path) != md5:
        raise RawDataInvalid(f"{path}: md5 {md5sum(path)}, expected {md5} (subset.counts_csv_md5)")
    return path


def requested_counts(spec: dict[str, Any], class_names: list[str]) -> tuple[np.ndarray, str]:
    """Per-class counts of ``subset.kind: counts``, in class order, and where they come from."""
    from lfa.reference import COUNT_TABLES

    subset = spec.get("subset", {})
    n = len(class_names)
    if subset.get("counts_csv"):
        table = read_counts_csv(counts_csv_path(spec))
        keys = table["class"].tolist()
        if all(k.isdigit() for k in keys) and not set(keys) & set(class_names):
            index = [int(k) for k in keys]  # class indices
        else:
            lookup = {name: c for c, name in enumerate(class_names)}
            lookup.update({name.lower(): c for c, name in enumerate(class_names)})
            unknown = [k for k in keys if k not in lookup and k.lower() not in lookup]
            if unknown:
                raise ValueError(f"subset.counts_csv: classes not in the dataset: {unknown[:5]}")
            index = [lookup.get(k, lookup.get(k.lower())) for k in keys]
        if sorted(index) != list(range(n)):
            raise ValueError(f"subset.counts_csv: it lists {len(index)} classes, they must be the dataset's {n} "
                             "(by index 0..n-1 or by name), each once")
        counts = np.zeros(n, dtype=np.int64)
        counts[index] = table["count"].to_numpy()
        return counts, f"counts_csv {subset['counts_csv']}"
    ref = COUNT_TABLES[subset["reference"]]
    if len(ref) != n:
        raise ValueError(f"reference table {subset['reference']!r} has {len(ref)} classes, the dataset {n}")
    return np.asarray(list(ref.values()), dtype=np.int64), f"reference {subset['reference']}"


def _pick(rng: np.random.Generator, target: np.ndarray, counts: np.ndarray) -> np.ndarray:
    keep = [np.sort(rng.permutation(np.flatnonzero(target == c))[:k]) for c, k in enumerate(counts)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def subset_indices(labels: np.ndarray, class_names: list[str], task: str, spec: dict[str, Any],
                   ratio_k: int | None) -> tuple[np.ndarray, np.ndarray | None, list[str] | None, dict[str, Any]]:
    """Rows kept by ``spec['subset']``, the new labels and class names if they change, and provenance.

    The provenance dict holds ``expected_counts`` (per class, what the rule asks for) and, for
    ``kind: counts`` with ``allow_short``, the classes that had fewer samples than asked (``shortfall``).
    """
    subset = spec.get("subset", {"kind": "all"})
    kind = subset.get("kind", "all")
    rng = np.random.default_rng(subset.get("seed", 0))
    if kind == "all":
        return np.arange(len(labels)), None, None, {}
    if task != "single_label":
        raise ValueError(f"subset kind {kind!r} needs a single-label dataset")
    target = labels.argmax(axis=1)
    available = np.bincount(target, minlength=len(class_names))
    if kind == "long_tail":
        from lfa.reference import COUNT_TABLES

        ref = list(COUNT_TABLES[subset["reference"]].values())
        counts = long_tail_counts(available, ref)
        return _pick(rng, target, counts), None, None, {"expected_counts": counts.tolist()}
    if kind == "counts":
        wanted, origin = requested_counts(spec, class_names)
        short = np.flatnonzero(wanted > available)
        shortfall = [{"class": int(c), "name": class_names[c], "requested": int(wanted[c]),
                      "available": int(available[c])} for c in short]
        if len(short) and not subset.get("allow_short", False):
            listed = "; ".join(f"{s['name']}: {s['requested']} requested, {s['available']} available"
                               for s in shortfall[:5])
            raise ValueError(f"{len(short)} class(es) have fewer samples than the counts ask for ({origin}): "
                             f"{listed}{' ...' if len(short) > 5 else ''}; set subset.allow_short: true to take "
                             "all samples of such classes (recorded in meta.json)")
        info = {"expected_counts": wanted.tolist(), "counts_from": origin}
        if shortfall:
            info["shortfall"] = shortfall
        return _pick(rng, target, np.minimum(wanted, available)), None, None, info
    if kind == "binary_ratio":
        pos_class = subset["positive_class"]
        pos = rng.permutation(np.flatnonzero(target == pos_class))
        neg = rng.permutation(np.flatnonzero(target != pos_class))
        unit = ratio_counts(len(pos), len(neg), max(subset["ratios"]), subset.get("unit"))
        # Positives are a prefix of one permutation, so smaller ratios are nested in larger ones.
        idx = np.sort(np.concatenate([neg[: 200 * unit], pos[: ratio_k * unit]]))
        is_pos = (target == pos_class).astype(np.int8)
        new_labels = np.stack([1 - is_pos, is_pos], axis=1)
        if len(class_names) == 2:  # a binary dataset keeps its own names
            names = [class_names[1 - pos_class], class_names[pos_class]]
        else:
            names = [f"not {class_names[pos_class]}", class_names[pos_class]]
        return idx, new_labels, names, {"expected_counts": [200 * unit, ratio_k * unit], "unit": unit}
    raise ValueError(f"unknown subset kind {kind!r}")


def select_subset(raw: RawData | FileList, spec: dict[str, Any],
                  ratio_k: int | None) -> tuple[np.ndarray, RawData | FileList]:
    """Indices of the samples kept by ``spec['subset']`` and the raw data relabelled for the subset."""
    idx, labels, names, _ = subset_indices(raw.labels, raw.class_names, raw.task, spec, ratio_k)
    if labels is None:
        return idx, raw
    return idx, dataclasses.replace(raw, labels=labels, class_names=names, task="single_label")


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


def _reference_table(spec: dict[str, Any], ratio_k: int | None) -> str | None:
    """The seed's count table (lfa.reference) this prepared dataset is meant to reproduce, if any."""
    subset = spec.get("subset", {})
    kind = subset.get("kind", "all")
    src = REGISTRY.get(spec["source"])
    if kind in ("counts", "long_tail"):
        return subset.get("reference")
    if kind == "all" and src is not None:
        return src.reference_table
    if kind == "binary_ratio" and src is not None and ratio_k == max(subset["ratios"]):
        return src.ratio_reference_table
    return None


def raw_root(spec: dict[str, Any]) -> Path:
    """``spec['root']``, or ``<data_dir>/raw/<source>``."""
    return Path(spec.get("root") or default_root(spec["source"], spec.get("data_dir", "data")))


def prepare(name: str, spec: dict[str, Any], out_dir: str | Path, n_splits: int, split_seed: int,
            workers: int | None = None) -> Path:
    """Build the prepared dataset ``name`` from its source into ``out_dir``; returns ``out_dir``.

    The raw data must be in place (the ``download_<source>`` rule runs first); a missing manual dataset
    raises :class:`RawDataMissing` with where to get it and put it. ``workers``: image-decoding threads
    (default: the Snakemake job's threads, else the usable CPUs).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = spec["source"]
    ratio_k = spec.get("ratio_k")
    base = spec.get("base", name)
    src = REGISTRY.get(source)
    root = raw_root(spec)
    if src is not None:
        if src.needs_raw and not src.present(root):
            raise RawDataMissing(src.missing_message(root))
        raw = src.load(root, spec)
        image_size = spec.get("image_size", src.default_image_size)
    else:
        raw = SOURCES[source](spec.get("root"))
        image_size = spec.get("image_size", 0)
    n_raw = len(raw.labels)
    idx, new_labels, new_names, provenance = subset_indices(raw.labels, raw.class_names, raw.task, spec, ratio_k)
    labels = raw.labels[idx] if new_labels is None else new_labels[idx]
    class_names = raw.class_names if new_names is None else new_names
    task = raw.task if new_labels is None else "single_label"
    ids = [raw.ids[i] for i in idx]
    partition = ["all"] * len(idx) if raw.partition is None else [raw.partition[i] for i in idx]

    skipped: list[tuple[int, str, str]] = []
    with atomic_path(out / "images.npy") as tmp:
        if isinstance(raw, RawData):
            shape = save_rows(raw.images, idx, tmp, image_size)
        else:
            result = pack_files(raw.root, [raw.paths[i] for i in idx], tmp, image_size, workers, desc=name)
            shape = result.shape
            if result.failed:
                row, path, reason = result.failed[0]
                if not spec.get("skip_corrupt", False):
                    more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
                    raise CorruptImageError(
                        f"corrupt or unreadable image {raw.root / path}: {reason}{more}; set "
                        f"datasets.{base}.skip_corrupt: true to skip such files (they are counted in meta.json)")
                skipped = result.failed
                keep = np.setdiff1d(np.arange(len(idx)), [r for r, _, _ in skipped])
                compacted = f"{tmp}.compact.npy"
                try:
                    shape = compact_rows(tmp, compacted, keep)
                    os.replace(compacted, tmp)
                finally:
                    if os.path.exists(compacted):
                        os.unlink(compacted)
                labels = labels[keep]
                ids = [ids[i] for i in keep]
                partition = [partition[i] for i in keep]
                for _, path, reason in skipped:
                    print(f"skipped corrupt image {raw.root / path}: {reason}", flush=True)
    folds = assign_folds(labels, n_splits, split_seed)

    index = pd.DataFrame({"id": ids, "row": np.arange(len(ids)), "fold": folds})
    for c in range(labels.shape[1]):
        index[f"label_{c}"] = labels[:, c]
    index["partition"] = partition
    with atomic_path(out / "index.parquet") as tmp:
        index.to_parquet(tmp, index=False)
    counts = pd.DataFrame({"class": range(labels.shape[1]), "name": class_names,
                           "count": labels.sum(axis=0).astype(int)})
    with atomic_path(out / "counts.csv") as tmp:
        counts.to_csv(tmp, index=False)
    meta = {
        "name": name,
        "source": source,
        "task": task,
        "class_names": class_names,
        "image_shape": list(shape[1:]),
        "n_samples": int(len(ids)),
        "n_splits": n_splits,
        "split_seed": split_seed,
        "ratio_k": ratio_k,
        "subset": spec.get("subset", {"kind": "all"}),
        "title": src.title if src is not None else source,
        "root": str(root) if src is None or src.needs_raw else None,
        "raw_samples": int(n_raw),
        "partitions": {p: partition.count(p) for p in sorted(set(partition))},
        "image_size": int(image_size),
        "checksums": bool(spec.get("checksums", True)),
        "reference_table": _reference_table(spec, ratio_k),
        **provenance,
        "skipped_corrupt": {"count": len(skipped), "files": [path for _, path, _ in skipped]},
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


def load_prepared(path: str | Path, mmap: bool = False) -> Prepared:
    """A prepared dataset; ``mmap=True`` leaves the images memory-mapped (for sets larger than memory)."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    index = pd.read_parquet(path / "index.parquet")
    images = np.load(path / "images.npy", mmap_mode="r")
    label_cols = [f"label_{c}" for c in range(len(meta["class_names"]))]
    rows = index["row"].to_numpy()
    if mmap and np.array_equal(rows, np.arange(len(images))):
        selected = images
    else:
        selected = np.asarray(images[rows])
    return Prepared(
        images=selected,
        labels=np.array(index[label_cols].to_numpy(np.int8)),
        folds=np.array(index["fold"].to_numpy(np.int64)),
        ids=index["id"].to_numpy(str),
        meta=meta,
    )


def dataset_summary(path: str | Path) -> dict[str, Any]:
    """Meta plus counts of a prepared dataset, for the report (no image data read).

    With a ``reference_table`` in meta.json, ``seed_counts`` holds the seed's numbers in class order and
    ``count_differences`` the classes whose measured count differs from them (empty: the table is
    reproduced).
    """
    from lfa.reference import COUNT_TABLES

    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    meta["counts"] = pd.read_csv(path / "counts.csv").to_dict("records")
    images = path / "images.npy"
    meta["size_bytes"] = os.path.getsize(images) if images.exists() else None
    table = COUNT_TABLES.get(meta.get("reference_table") or "")
    meta["seed_counts"] = None
    meta["count_differences"] = []
    if table is not None and len(table) == len(meta["counts"]):
        meta["seed_counts"] = list(table.values())
        meta["count_differences"] = [
            {"class": row["class"], "name": row["name"], "count": int(row["count"]), "seed": int(seed)}
            for row, seed in zip(meta["counts"], table.values(), strict=True) if int(row["count"]) != int(seed)
        ]
    return meta
