"""Datasets: raw sources, subsets (long-tail, class counts, imbalance ratio), stratified folds, packed data.

A *prepared* dataset is a folder ``data/prepared/<name>/`` holding

- ``images.npy``: all images packed as one uint8 array of shape (N, H, W, C), read by a training job at once
  (row i is sample i of the index; large images are resized once to ``image_size`` when packed);
- ``index.parquet``: one row per sample: ``id`` (str: the image's path relative to the raw root, or a
  batch/position id), ``row`` (row in images.npy), ``fold`` (0..n_splits-1), one ``label_<c>`` int8 column
  per class (one-hot for single-label data, several ones for multi-label), ``partition`` (the official
  partition the sample comes from, e.g. CIFAR-10's train/test or CelebA's train/valid/test; "all" if none),
  and, only for a source with groups (a table with ``group_column`` or ``group_pattern``, a named release),
  ``group`` (str: the sample's group, e.g. its patient; every group lies in one fold). ``fold`` is
  :data:`TEST_FOLD` (-1) for the samples of a fixed test split (``test_split``);
- ``counts.csv``: class, name, count;
- ``meta.json``: name, source, task, class names, image shape, ratio_k, and the provenance the report shows
  (raw root, partitions, expected counts, the seed's reference table, skipped corrupt files).

Raw data comes from the sources in :mod:`lfa.sources` (one module per dataset); ``docs/datasets.md``
describes each source's layout, download and subset rule.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfa.errors import ConfigError, CorruptImageError, RawDataInvalid, RawDataMissing
from lfa.io import atomic_path, load_array, read_csv, read_json, read_table
from lfa.sources import get_source
from lfa.sources.base import FileList, RawData
from lfa.sources.images import compact_rows, image_channels, pack_files, save_rows

__all__ = ["TEST_FOLD", "CorruptImageError", "DataCheck", "Prepared", "assign_folds", "assign_group_folds",
           "dataset_summary", "folds_without_positives", "groups_across_folds", "load_prepared", "long_tail_counts",
           "prepare", "ratio_counts", "split_rows", "subset_indices", "verify_prepared"]


def long_tail_counts(available: np.ndarray, reference: list[int]) -> np.ndarray:
    """Per-class counts following a reference table's proportions: round(n_c * ref_c / max(ref)), at least 2.

    With ``available == max(reference)`` for every class (CIFAR-10's 5,000 per class) this returns the
    reference counts exactly.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if len(ref) != len(available):
        raise ConfigError(f"reference table has {len(ref)} classes, the dataset {len(available)}")
    counts = np.maximum(np.rint(available * ref / ref.max()).astype(np.int64), 2)
    return np.minimum(counts, available)


def ratio_counts(n_pos: int, n_neg: int, k_max: int, unit: int | None = None) -> int:
    """The largest ``unit`` such that k_max*unit positives and 200*unit negatives exist (or check a given one)."""
    fit = min(n_pos // k_max, n_neg // 200)
    if unit is None:
        unit = fit
    if unit < 1 or unit > fit:
        raise ConfigError(
            f"imbalance ratios need {k_max}*unit positives and 200*unit negatives; "
            f"only {n_pos} positives and {n_neg} negatives exist (largest unit: {fit})"
        )
    return unit


def requested_counts(subset: dict[str, Any], class_names: list[str], downloads: str | Path) -> tuple[np.ndarray, str]:
    """Per-class counts of ``subset.kind: counts``, in class order, and where they come from."""
    from lfa.data.reference import COUNT_TABLES
    from lfa.sources.counts import counts_csv_path, read_counts_csv

    n = len(class_names)
    if subset.get("counts_csv"):
        table = read_counts_csv(counts_csv_path(subset, downloads))
        keys = table["class"].tolist()
        if all(k.isdigit() for k in keys) and not set(keys) & set(class_names):
            index = [int(k) for k in keys]  # class indices
        else:
            lookup = {name: c for c, name in enumerate(class_names)}
            lookup.update({name.lower(): c for c, name in enumerate(class_names)})
            unknown = [k for k in keys if k not in lookup and k.lower() not in lookup]
            if unknown:
                raise ConfigError(f"subset.counts_csv: classes not in the dataset: {unknown[:5]}")
            index = [lookup.get(k, lookup.get(k.lower())) for k in keys]
        if sorted(index) != list(range(n)):
            raise ConfigError(f"subset.counts_csv: it lists {len(index)} classes, they must be the dataset's {n} "
                              "(by index 0..n-1 or by name), each once")
        counts = np.zeros(n, dtype=np.int64)
        counts[index] = table["count"].to_numpy()
        return counts, f"counts_csv {subset['counts_csv']}"
    ref = COUNT_TABLES[subset["reference"]]
    if len(ref) != n:
        raise ConfigError(f"reference table {subset['reference']!r} has {len(ref)} classes, the dataset {n}")
    return np.asarray(list(ref.values()), dtype=np.int64), f"reference {subset['reference']}"


def _pick(rng: np.random.Generator, target: np.ndarray, counts: np.ndarray) -> np.ndarray:
    keep = [np.sort(rng.permutation(np.flatnonzero(target == c))[:k]) for c, k in enumerate(counts)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def subset_indices(labels: np.ndarray, class_names: list[str], task: str, subset: dict[str, Any],
                   ratio_k: int | None, downloads: str | Path = "",
                   ) -> tuple[np.ndarray, np.ndarray | None, list[str] | None, dict[str, Any]]:
    """Rows kept by ``subset``, the new labels and class names if they change, and provenance.

    The provenance dict holds ``expected_counts`` (per class, what the rule asks for) and, for
    ``kind: counts`` with ``allow_short``, the classes that had fewer samples than asked (``shortfall``).
    """
    kind = subset["kind"]
    rng = np.random.default_rng(subset["seed"])
    if kind == "all":
        return np.arange(len(labels)), None, None, {}
    if task != "single_label":
        raise ConfigError(f"subset kind {kind!r} needs a single-label dataset")
    target = labels.argmax(axis=1)
    available = np.bincount(target, minlength=len(class_names))
    if kind == "long_tail":
        from lfa.data.reference import COUNT_TABLES

        ref = list(COUNT_TABLES[subset["reference"]].values())
        counts = long_tail_counts(available, ref)
        return _pick(rng, target, counts), None, None, {"expected_counts": counts.tolist()}
    if kind == "counts":
        wanted, origin = requested_counts(subset, class_names, downloads)
        short = np.flatnonzero(wanted > available)
        shortfall = [{"class": int(c), "name": class_names[c], "requested": int(wanted[c]),
                      "available": int(available[c])} for c in short]
        if len(short) and not subset["allow_short"]:
            listed = "; ".join(f"{s['name']}: {s['requested']} requested, {s['available']} available"
                               for s in shortfall[:5])
            raise ConfigError(f"{len(short)} class(es) have fewer samples than the counts ask for ({origin}): "
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
    raise ConfigError(f"unknown subset kind {kind!r}")


#: The fold of the samples of a fixed test split (``test_split``): never trained or validated on.
TEST_FOLD = -1


def assign_folds(labels: np.ndarray, n_splits: int, seed: int, groups: np.ndarray | list | None = None) -> np.ndarray:
    """Stratified fold assignment: within each label pattern, samples are dealt round-robin in random order.

    Single-label data is stratified by class; multi-label data by each sample's rarest positive label, so
    rare attributes spread over all folds (a single label column: by that label). The result depends only on
    labels, n_splits and seed. With ``groups`` (one value per sample, e.g. a patient id) every group lands in
    one fold: :func:`assign_group_folds`.
    """
    if groups is not None:
        return assign_group_folds(labels, groups, n_splits, seed)
    rng = np.random.default_rng(seed)
    n = len(labels)
    if labels.shape[1] == 1:
        strata = labels[:, 0].astype(np.int64)
    elif (labels.sum(axis=1) == 1).all():
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


def assign_group_folds(labels: np.ndarray, groups: np.ndarray | list, n_splits: int, seed: int) -> np.ndarray:
    """Stratified group k-fold: every group (e.g. a patient's images) in one fold, labels spread over the folds.

    Each group is summarised by its positives per label; its stratum is its rarest positive label (by the
    number of samples with that label; groups without positives come last). Strata are placed rarest first;
    within a stratum the groups are shuffled (``seed``) and then taken larger first. Each group goes to the
    fold whose share of the group's labels is smallest so far (the sum over the group's positive labels of
    fold positives / all positives; a group without positives: the fold's share of samples), ties broken by
    the fold's number of samples, then by fold index. So rare labels are spread first, and fold sizes stay
    balanced by samples, not by groups. Deterministic in labels, groups, n_splits and seed.
    """
    labels = np.asarray(labels)
    names, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = len(names)
    if n_groups < n_splits:
        raise ConfigError(f"{n_groups} group(s) cannot fill {n_splits} folds (every group lies in one fold); "
                          "lower n_splits or give more groups")
    rng = np.random.default_rng(seed)
    positives = np.zeros((n_groups, labels.shape[1]), dtype=np.int64)
    np.add.at(positives, inverse, labels.astype(np.int64))
    sizes = np.bincount(inverse, minlength=n_groups)
    freq = labels.astype(np.int64).sum(axis=0)
    masked = np.where(positives > 0, freq[None, :], np.iinfo(np.int64).max)
    rarest = masked.min(axis=1)  # frequency of each group's rarest label (max: no positives)
    strata = np.where(positives.any(axis=1), masked.argmin(axis=1), -1)
    order = rng.permutation(n_groups)
    # rarest stratum first (stratum index breaks ties between equally rare labels), then larger groups first
    order = order[np.lexsort((-sizes[order], strata[order], rarest[order]))]
    total = np.maximum(freq, 1).astype(np.float64)
    fold_pos = np.zeros((n_splits, labels.shape[1]), dtype=np.float64)
    fold_n = np.zeros(n_splits, dtype=np.int64)
    group_fold = np.empty(n_groups, dtype=np.int8)
    n = max(len(labels), 1)
    for g in order:
        has = positives[g] > 0
        share = (fold_pos[:, has] / total[has]).sum(axis=1) if has.any() else fold_n / n
        f = np.lexsort((np.arange(n_splits), fold_n, share))[0]
        group_fold[g] = f
        fold_pos[f] += positives[g]
        fold_n[f] += sizes[g]
    return group_fold[inverse]


def folds_without_positives(labels: np.ndarray, folds: np.ndarray, n_splits: int,
                            class_names: list[str]) -> dict[str, list[int]]:
    """Classes without a positive sample in some run's test set, with those folds (their metrics are undefined
    there): the folds of the rotation, or :data:`TEST_FOLD` for a fixed test split."""
    tests = [TEST_FOLD] if (folds == TEST_FOLD).any() else list(range(n_splits))
    out = {}
    for c, name in enumerate(class_names):
        present = set(np.unique(folds[labels[:, c] > 0]).tolist())
        empty = [f for f in tests if f not in present]
        if empty:
            out[name] = empty
    return out


def _reference_table(spec: dict[str, Any], ratio_k: int | None) -> str | None:
    """The seed's count table (lfa.data.reference) this prepared dataset is meant to reproduce, if any."""
    subset = spec["subset"]
    src = get_source(spec["source"])
    if subset["kind"] in ("counts", "long_tail"):
        return subset.get("reference")
    if subset["kind"] == "all":
        return src.reference_table
    if subset["kind"] == "binary_ratio" and ratio_k == max(subset["ratios"]):
        return src.ratio_reference_table
    return None


@dataclass
class _Selected:
    """The samples of a prepared dataset, before packing: rows of the raw data and their labels."""

    labels: np.ndarray
    class_names: list[str]
    task: str
    ids: list[str]
    partition: list[str]
    provenance: dict[str, Any]
    groups: list[str] | None = None
    test: np.ndarray | None = None  # the fixed test split's rows (a release's official test list), or None

    def keep(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (e.g. after corrupt files were skipped)."""
        self.labels = self.labels[rows]
        self.ids = [self.ids[i] for i in rows]
        self.partition = [self.partition[i] for i in rows]
        if self.groups is not None:
            self.groups = [self.groups[i] for i in rows]
        if self.test is not None:
            self.test = self.test[rows]


def _select(raw: RawData | FileList, spec: dict[str, Any], downloads: str | Path) -> tuple[np.ndarray, _Selected]:
    idx, new_labels, new_names, provenance = subset_indices(raw.labels, raw.class_names, raw.task, spec["subset"],
                                                            spec.get("ratio_k"), downloads)
    partition = ["all"] * len(idx) if raw.partition is None else [raw.partition[i] for i in idx]
    return idx, _Selected(
        labels=raw.labels[idx] if new_labels is None else new_labels[idx],
        class_names=raw.class_names if new_names is None else new_names,
        task=raw.task if new_labels is None else "single_label",
        ids=[raw.ids[i] for i in idx], partition=partition, provenance={**raw.notes, **provenance},
        groups=None if raw.groups is None else [raw.groups[i] for i in idx],
        test=None if raw.test is None else np.asarray(raw.test, dtype=bool)[idx])


def _pack(raw: RawData | FileList, idx: np.ndarray, sel: _Selected, spec: dict[str, Any], target: str,
          image_size: int, workers: int | None, name: str) -> tuple[tuple[int, ...], list[tuple[int, str, str]]]:
    """Write the selected images to ``target``; corrupt files are skipped (``skip_corrupt``) or an error."""
    if isinstance(raw, RawData):
        return save_rows(raw.images, idx, target, image_size), []
    paths = [raw.paths[i] for i in idx]
    channels = 3
    if "channels" in get_source(spec["source"]).options:  # the user-data sources: 1 or 3, else by the files
        # decided on every file of the dataset, so that its subsets (e.g. ratios) all get the same channels
        channels = spec.get("channels") or image_channels(raw.root, raw.paths, workers)
    result = pack_files(raw.root, paths, target, image_size, workers, desc=name, channels=channels)
    if not result.failed:
        return result.shape, []
    if not spec["skip_corrupt"]:
        row, path, reason = result.failed[0]
        more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
        raise CorruptImageError(f"corrupt or unreadable image {raw.root / path}: {reason}{more}; set "
                                f"datasets.{spec['base']}.skip_corrupt: true to skip such files (they are counted "
                                "in meta.json)")
    keep = np.setdiff1d(np.arange(len(idx)), [r for r, _, _ in result.failed])
    compacted = f"{target}.compact.npy"
    try:
        shape = compact_rows(target, compacted, keep)
        os.replace(compacted, target)
    finally:
        if os.path.exists(compacted):
            os.unlink(compacted)
    sel.keep(keep)
    for _, path, reason in result.failed:
        print(f"skipped corrupt image {raw.root / path}: {reason}", flush=True)
    return shape, result.failed


def _folds(sel: _Selected, n_splits: int, split_seed: int, spec: dict[str, Any]) -> np.ndarray:
    """Each sample's fold: the stratified (group) k-fold over the samples outside a fixed test split, whose
    samples get :data:`TEST_FOLD`. No group may span two folds (checked here, and again by the report)."""
    if sel.test is not None and not sel.test.any():
        raise RawDataInvalid(f"datasets.{spec['base']}.test_split: no test image is left after the subset (and any "
                             "corrupt files skipped); the runs would test on a rotation fold instead")
    rest = np.arange(len(sel.labels)) if sel.test is None else np.flatnonzero(~sel.test)
    groups = None if sel.groups is None else [sel.groups[i] for i in rest]
    folds = np.full(len(sel.labels), TEST_FOLD, dtype=np.int8)
    try:
        folds[rest] = assign_folds(sel.labels[rest], n_splits, split_seed, groups=groups)
    except ConfigError as err:  # too few groups for the folds
        raise RawDataInvalid(f"datasets.{spec['base']}: {err} (grouping: "
                             f"{sel.provenance.get('grouping', spec.get('group_column'))})") from None
    if sel.groups is not None:
        spanning = groups_across_folds(sel.groups, folds)
        if spanning:
            raise RawDataInvalid(f"datasets.{spec['base']}: {len(spanning)} group(s) span two folds (e.g. "
                                 f"{', '.join(spanning[:5])}); the test split must hold whole groups")
    return folds


def groups_across_folds(groups: list[str] | np.ndarray, folds: np.ndarray) -> list[str]:
    """Groups with samples in more than one fold (the fixed test split counting as one), sorted."""
    frame = pd.DataFrame({"group": np.asarray(groups, dtype=str), "fold": folds})
    per_group = frame.groupby("group")["fold"].nunique()
    return sorted(per_group.index[per_group > 1].tolist())


def split_rows(folds: np.ndarray, fold: int, n_splits: int) -> dict[str, np.ndarray]:
    """The samples a run of fold ``fold`` trains, validates and tests on.

    The seed's rotation: test fold ``fold``, validation fold ``fold + 1`` (mod n_splits), training the rest. With
    a fixed test split (samples of :data:`TEST_FOLD`), the folds rotate over the other samples: validation fold
    ``fold``, training the other folds, test always the test split.
    """
    folds = np.asarray(folds)
    if (folds == TEST_FOLD).any():
        return {"train": np.flatnonzero((folds != TEST_FOLD) & (folds != fold)),
                "val": np.flatnonzero(folds == fold), "test": np.flatnonzero(folds == TEST_FOLD)}
    val_fold = (fold + 1) % n_splits
    return {"train": np.flatnonzero((folds != fold) & (folds != val_fold)),
            "val": np.flatnonzero(folds == val_fold), "test": np.flatnonzero(folds == fold)}


def content_hash(images: str | Path, index: pd.DataFrame, class_names: list[str], chunk: int = 4096) -> str:
    """16 hex digits of a prepared dataset's content: every pixel, and each sample's id, fold and labels.

    Read once right after packing (the array is then still in the page cache). A resume state, predictions
    and metrics carry it, so a change of the data or of the fold assignment is never mistaken for the same
    run (``docs/faults.md``).
    """
    import hashlib

    digest = hashlib.sha256(json.dumps(class_names).encode())
    array = load_array(images)
    digest.update(repr(array.shape).encode())
    for start in range(0, len(array), chunk):
        digest.update(np.ascontiguousarray(array[start:start + chunk]))  # the rows' bytes, not a copy of them
    columns = ["id", "fold", *[c for c in index.columns if c.startswith("label_")]]
    digest.update(pd.util.hash_pandas_object(index[columns], index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


#: The packed files a content hash covers (with the class names): what :func:`verify_prepared` stamps.
HASHED_FILES = ("images.npy", "index.parquet")


def file_stamps(folder: str | Path) -> dict[str, dict[str, int]]:
    """Size and modification time (ns) of each hashed file of a prepared dataset: a change of either means
    the file was written again, and its content is hashed again before it is trusted."""
    stamps = {}
    for name in HASHED_FILES:
        stat = os.stat(Path(folder) / name)
        stamps[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return stamps


@dataclass(frozen=True)
class DataCheck:
    """A prepared dataset as it is on disk now: its content hash, and why it differs from meta.json's (or "")."""

    data_hash: str
    changed: str = ""


def verify_prepared(folder: str | Path, meta: dict[str, Any] | None = None) -> DataCheck:
    """The content hash of the prepared dataset in ``folder`` as its files are now.

    Files whose stat stamp (size, mtime) is the one recorded when they were packed are trusted as they are
    (a ``stat`` each); otherwise the content is hashed again (about the disk's read speed), and a hash that
    differs from meta.json's is returned with a line saying what changed. Training then trusts no resume
    state of the old data, and evaluation refuses predictions of it (``docs/faults.md``).
    """
    folder = Path(folder)
    meta = meta if meta is not None else read_json(folder / "meta.json", f"delete {folder} and rerun")
    recorded, stamps = meta.get("data_hash") or "", meta.get("stamps")
    if not recorded:  # prepared before content hashes: nothing to compare with (lfa migrate stamps it)
        return DataCheck("")
    now = file_stamps(folder)
    if stamps == now:
        return DataCheck(recorded)
    actual = _hash_now(folder, tuple(sorted((k, v["size"], v["mtime_ns"]) for k, v in now.items())),
                       tuple(meta["class_names"]))
    if actual == recorded:
        return DataCheck(recorded)
    which = [name for name in HASHED_FILES if not stamps or stamps.get(name) != now[name]]
    return DataCheck(actual, f"{folder}: {' and '.join(which)} changed after the dataset was prepared (content "
                             f"hash now {actual}, meta.json records {recorded})")


@functools.lru_cache(maxsize=64)
def _hash_now(folder: Path, stamps: tuple[tuple[str, int, int], ...], class_names: tuple[str, ...]) -> str:
    """Content hash of ``folder``'s files, once per process for the same stamps (the report checks each dataset
    of every run)."""
    return content_hash(folder / "images.npy", read_table(folder / "index.parquet"), list(class_names))


def prepare(name: str, spec: dict[str, Any], root: str | Path, out_dir: str | Path, n_splits: int,
            split_seed: int, downloads: str | Path, workers: int | None = None,
            side_check: Callable[[int], None] | None = None) -> Path:
    """Build the prepared dataset ``name`` from its source's raw data under ``root`` into ``out_dir``.

    ``spec``: the dataset's validated config with ``base`` and ``ratio_k`` (:func:`lfa.pipeline.plan.prepared_datasets`).
    The raw data must be in place (the ``download_<source>`` rule runs first); a missing manual dataset
    raises :class:`RawDataMissing` with where to get it and put it. ``workers``: image-decoding threads
    (default: the Snakemake job's threads, else the usable CPUs). ``side_check`` is called with the packed
    side before packing where it is known (after it otherwise) and raises if a backbone cannot take it.
    Returns ``out_dir``.
    """
    from lfa.plugins import load_plugins

    load_plugins(spec.get("plugins", ()))  # a source of the user's, before the registry is read
    out, root = Path(out_dir), Path(root)
    out.mkdir(parents=True, exist_ok=True)
    src = get_source(spec["source"])
    if src.needs_raw and not src.present(root):
        raise RawDataMissing(src.missing_message(root))
    raw = src.load(root, spec)
    image_size = spec.get("image_size", src.default_image_size)
    idx, sel = _select(raw, spec, downloads)
    side = int(image_size or (raw.images.shape[1] if isinstance(raw, RawData) else 0))
    if side_check and side:
        side_check(side)
    with atomic_path(out / "images.npy") as tmp:
        shape, skipped = _pack(raw, idx, sel, spec, tmp, image_size, workers, name)
        if side_check and not side:
            side_check(int(shape[1]))
        folds = _folds(sel, n_splits, split_seed, spec)
        index = _index_frame(sel, folds)
        data_hash = content_hash(tmp, index, sel.class_names)
    for cls, empty in folds_without_positives(sel.labels, folds, n_splits, sel.class_names).items():
        where = "the test split" if empty == [TEST_FOLD] else f"fold(s) {empty}"
        print(f"WARNING: {name}: class {cls!r} has no positive sample in {where}; its per-class metrics "
              "are undefined there (left out of the means and counted in the report)", file=sys.stderr, flush=True)
    with atomic_path(out / "index.parquet") as tmp:
        index.to_parquet(tmp, index=False)
    counts = pd.DataFrame({"class": range(sel.labels.shape[1]), "name": sel.class_names,
                           "count": sel.labels.sum(axis=0).astype(int)})
    with atomic_path(out / "counts.csv") as tmp:
        counts.to_csv(tmp, index=False)
    meta = {
        "name": name, "source": spec["source"], "task": sel.task, "class_names": sel.class_names,
        "image_shape": list(shape[1:]), "n_samples": int(len(sel.ids)), "data_hash": data_hash, "n_splits": n_splits,
        "split_seed": split_seed, "ratio_k": spec.get("ratio_k"), "subset": spec["subset"], "title": src.title,
        "root": str(root) if src.needs_raw else None, "raw_samples": int(len(raw.labels)),
        "partitions": {p: sel.partition.count(p) for p in sorted(set(sel.partition))},
        "image_size": int(image_size), "checksums": bool(spec["checksums"]),
        "reference_table": _reference_table(spec, spec.get("ratio_k")), **sel.provenance,
        "skipped_corrupt": {"count": len(skipped), "files": [path for _, path, _ in skipped]},
        "stamps": file_stamps(out), **_meta_extras(spec, src.options, sel),
    }
    with atomic_path(out / "meta.json") as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2))
    return out


def _index_frame(sel: _Selected, folds: np.ndarray) -> pd.DataFrame:
    """``index.parquet``: id, row, fold, one ``label_<c>`` per class, partition and (with groups) group."""
    index = pd.DataFrame({"id": sel.ids, "row": np.arange(len(sel.ids)), "fold": folds})
    for c in range(sel.labels.shape[1]):
        index[f"label_{c}"] = sel.labels[:, c]
    index["partition"] = sel.partition
    if sel.groups is not None:
        index["group"] = sel.groups
    return index


def _meta_extras(spec: dict[str, Any], options: Any, sel: _Selected) -> dict[str, Any]:
    """The keys of ``meta.json`` only some datasets have: source options, images without a positive, groups."""
    extras: dict[str, Any] = {}
    given = {k: spec[k] for k in sorted(options) if k in spec}
    if given:
        extras["source_options"] = given
    if sel.task == "multi_label":  # e.g. ChestX-ray14's No Finding: negatives for every class
        extras["n_no_positive"] = int((sel.labels.sum(axis=1) == 0).sum())
    if sel.groups is not None:
        if spec.get("group_column"):
            extras["group_column"] = spec["group_column"]
        extras["n_groups"] = len(set(sel.groups))
    return extras


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
        """Indices of the run of fold ``fold`` (:func:`split_rows`)."""
        return split_rows(self.folds, fold, self.meta["n_splits"])


def load_prepared(path: str | Path, mmap: bool = False) -> Prepared:
    """A prepared dataset; ``mmap=True`` leaves the images memory-mapped (for sets larger than memory)."""
    path = Path(path)
    fix = f"delete {path} and rerun, to prepare it again"
    meta = read_json(path / "meta.json", fix)
    index = read_table(path / "index.parquet", fix=fix)
    images = load_array(path / "images.npy", fix)
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


def group_check(index_path: Path, fix: str) -> dict[str, Any] | None:
    """Whether any group of a prepared dataset spans two folds (the fixed test split counting as one), read from
    its index: ``{"n_groups", "n_spanning", "spanning"}`` (the first five), or None for a dataset without groups."""
    from lfa.io import parquet_columns

    if not index_path.exists() or "group" not in parquet_columns(index_path, fix):  # no index: nothing claimed
        return None
    index = read_table(index_path, ["group", "fold"], fix=fix)
    spanning = groups_across_folds(index["group"].to_numpy(str), index["fold"].to_numpy())
    return {"n_groups": int(index["group"].nunique()), "n_spanning": len(spanning), "spanning": spanning[:5]}


def train_counts(path: str | Path, folds: list[int], group: int = 64) -> np.ndarray:
    """Per class, the positives of the training split, averaged over the runs of ``folds`` (:func:`split_rows`):
    what the shot groups of the report are read from. The label columns are read ``group`` at a time (an
    ImageNet-sized index holds a million rows of a thousand of them)."""
    import pyarrow.parquet as pq

    from lfa.io import reading

    path = Path(path)
    fix = f"delete {path} and rerun, to prepare it again"
    meta = read_json(path / "meta.json", fix)
    n_classes = len(meta["class_names"])
    with reading(path / "index.parquet", fix):
        file = pq.ParquetFile(path / "index.parquet")
        fold_of = file.read(columns=["fold"]).column(0).to_numpy()
        trains = [split_rows(fold_of, fold, meta["n_splits"])["train"] for fold in folds] or [np.arange(len(fold_of))]
        totals = np.zeros(n_classes)
        for c0 in range(0, n_classes, group):
            part = file.read(columns=[f"label_{c}" for c in range(c0, min(n_classes, c0 + group))])
            labels = np.column_stack([column.to_numpy() for column in part.columns]).astype(np.int64)
            totals[c0:c0 + labels.shape[1]] = np.mean([labels[rows].sum(axis=0) for rows in trains], axis=0)
    return totals


def dataset_summary(path: str | Path) -> dict[str, Any]:
    """Meta plus counts of a prepared dataset, for the report (no image data read).

    With a ``reference_table`` in meta.json, ``seed_counts`` holds the seed's numbers in class order and
    ``count_differences`` the classes whose measured count differs from them (empty: the table is
    reproduced).
    """
    from lfa.data.reference import COUNT_TABLES

    path = Path(path)
    fix = f"delete {path} and rerun, to prepare it again"
    meta = read_json(path / "meta.json", fix)
    meta["counts"] = read_csv(path / "counts.csv", fix).to_dict("records")
    images = path / "images.npy"
    meta["size_bytes"] = os.path.getsize(images) if images.exists() else None
    meta["group_check"] = group_check(path / "index.parquet", fix)
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
