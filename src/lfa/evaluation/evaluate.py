"""Evaluation: the predictions of one job → its per-class metrics (``metrics.parquet`` of the run).

This module never imports torch: evaluation and aggregation run from ``predictions.parquet`` alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfa.data.datasets import split_rows
from lfa.errors import ConfigError, PredictionsMismatch
from lfa.evaluation.metrics import METRIC_COLUMNS, per_class_metrics
from lfa.io import read_json, read_parquet_metadata, read_table, write_parquet

#: Columns identifying a run in its metrics; the aggregate adds ``experiment`` in front (lfa.evaluation.aggregate).
RUN_COLUMNS = ["dataset", "backbone", "loss", "seed", "fold"]


def check_predictions(path: str | Path, meta: dict[str, Any], index: pd.DataFrame | None = None,
                      fold: int | None = None, data_hash: str | None = None) -> str:
    """Refuse predictions made from other data, with other classes, or on other splits than the prepared set's.

    ``meta``: the prepared dataset's ``meta.json``; with its ``index`` and the job's ``fold`` the validation
    and test samples must be exactly that fold rotation's. Reads the file's schema and its ``id`` and
    ``split`` columns only (the scores are read once, by :func:`evaluate_job`). ``data_hash``: the prepared
    data's content hash as it is now (:func:`lfa.data.datasets.verify_prepared`; default meta.json's). Returns the
    data hash the predictions carry ("" for predictions written before content hashes).
    """
    from lfa.io import parquet_columns, read_parquet_metadata

    path = Path(path)
    stamped = read_parquet_metadata(path, "train the job again").get("lfa.data_hash")
    expected = data_hash if data_hash is not None else meta.get("data_hash")
    if stamped and expected and stamped != expected:
        raise PredictionsMismatch(f"{path}: lfa.data_hash {stamped} differs from the content hash {expected} of the "
                                  f"prepared dataset {meta['name']} as it is now: the data changed after training; "
                                  "train the job again")
    columns = parquet_columns(path, "train the job again")
    n = len([c for c in columns if re.fullmatch(r"score_\d+", c)])
    if n != len(meta["class_names"]) or any(f"label_{c}" not in columns for c in range(n)):
        raise PredictionsMismatch(f"{path}: scores for {n} classes (score_0..score_{n - 1}); the prepared dataset "
                                  f"{meta['name']} has {len(meta['class_names'])}")
    df = read_table(path, ["id", "split"], fix="train the job again")
    for split in ("val", "test"):
        if not (df["split"] == split).any():
            raise PredictionsMismatch(f"{path}: no rows with split == {split!r}; nothing to evaluate")
    if index is not None and fold is not None:
        rows = split_rows(index["fold"].to_numpy(), fold, meta["n_splits"])
        for split in ("val", "test"):
            want = set(index["id"].to_numpy(str)[rows[split]])
            have = set(df.loc[df["split"] == split, "id"].astype(str))
            if want != have:
                raise PredictionsMismatch(
                    f"{path}: the {split} ids are not those of fold {fold}'s run on the prepared dataset "
                    f"{meta['name']} ({len(have - want)} foreign, {len(want - have)} missing): train the job again")
    return stamped or ""


#: Classes read per pass over a predictions file: the transient copy is this many columns of every row.
READ_CLASSES = 64

Predictions = dict[str, tuple[np.ndarray, np.ndarray]]


def read_predictions(path: str | Path) -> Predictions:
    """{'val': (scores, labels), 'test': (scores, labels)} from a predictions.parquet: float32 scores and int8
    labels of shape (N, C), column-major (the per-class metrics read each class's column without a copy).

    Read :data:`READ_CLASSES` classes at a time straight into the arrays, so the memory it takes is the arrays
    plus one group of columns (not a DataFrame of the whole file and copies of it)."""
    import pyarrow.parquet as pq

    from lfa.io import reading

    fix = "train the job again"
    with reading(path, fix):
        file = pq.ParquetFile(path)
        n = len([c for c in file.schema_arrow.names if re.fullmatch(r"score_\d+", c)])
        split = file.read(columns=["split"]).column(0).to_numpy(zero_copy_only=False).astype(str)
        rows = {name: np.flatnonzero(split == name) for name in ("val", "test")}
        out = {name: (np.empty((len(r), n), np.float32, order="F"), np.empty((len(r), n), np.int8, order="F"))
               for name, r in rows.items()}
        for c0 in range(0, n, READ_CLASSES):
            classes = range(c0, min(n, c0 + READ_CLASSES))
            part = file.read(columns=[f"{kind}_{c}" for c in classes for kind in ("score", "label")])
            for c in classes:
                scores = part.column(f"score_{c}").to_numpy()
                labels = part.column(f"label_{c}").to_numpy()
                for name, r in rows.items():
                    out[name][0][:, c] = scores[r]
                    out[name][1][:, c] = labels[r]
            del part
    return out


def evaluate_job(predictions: str | Path | Predictions, keys: dict[str, Any], class_names: list[str] | None = None,
                 ratio_k: int | None = None, diverged: bool = False) -> pd.DataFrame:
    """Per-class metrics of one job, with its run columns, class names (default: the class indices) and ratio.

    A job whose training diverged (recorded with ``train.on_divergence: record``) has every metric NaN and
    ``diverged`` True, so its cells are left out of the means and marked in the report.
    """
    pred = predictions if isinstance(predictions, dict) else read_predictions(predictions)
    if diverged:  # no scores to evaluate: count the labels, leave every metric undefined
        pred = {split: (np.zeros_like(scores), labels) for split, (scores, labels) in pred.items()}
    metrics = per_class_metrics(pred["val"][0], pred["val"][1], pred["test"][0], pred["test"][1])
    if diverged:
        metrics[METRIC_COLUMNS] = np.nan
    metrics["diverged"] = diverged
    front = pd.DataFrame({k: [keys[k]] * len(metrics) for k in RUN_COLUMNS})
    front["ratio_k"] = pd.array([ratio_k] * len(metrics), dtype="Int64")
    metrics.insert(1, "class_name", [class_names[c] if class_names else str(c) for c in metrics["class"]])
    return pd.concat([front, metrics], axis=1)


def overall_row(predictions: Predictions, keys: dict[str, Any], task: str | None, ratio_k: int | None,
                diverged: bool) -> pd.DataFrame:
    """A run's ``overall.parquet`` row: its keys, task and :func:`lfa.evaluation.overall.run_overview` of the test
    split (``task`` None: single-label when every test image has exactly one positive)."""
    from lfa.evaluation.overall import OVERALL_METRICS, run_overview

    scores, labels = predictions["test"]
    if task is None:
        task = "single_label" if len(labels) and (labels.sum(axis=1) == 1).all() else "multi_label"
    row = run_overview(scores, labels, task)
    if diverged:
        row.update(dict.fromkeys(OVERALL_METRICS, np.nan))
    frame = pd.DataFrame([{**{k: keys[k] for k in RUN_COLUMNS}, "task": task, "n_classes": labels.shape[1],
                           "diverged": diverged, **row}])
    frame.insert(len(RUN_COLUMNS), "ratio_k", pd.array([ratio_k], dtype="Int64"))
    return frame


def evaluate_run(predictions: str | Path, out: str | Path, prepared: str | Path | None = None,
                 keys: dict[str, Any] | None = None, overall_out: str | Path | None = None) -> pd.DataFrame:
    """The evaluate stage: a run's ``predictions.parquet`` → its per-class ``metrics.parquet`` at ``out`` and its
    ``overall.parquet`` (``overall_out``, default beside ``out``: top-1 metrics, confusion, reliability bins).

    What the run is (its keys, job key, whether it diverged) comes from the ``train_info.json`` beside the
    predictions, which ``keys`` may complete for predictions made elsewhere. With the ``prepared`` dataset
    folder the predictions are checked against the data as it is now (content hash, classes, fold rotation)
    and take its class names and ratio. The workflow's rule and ``lfa evaluate`` both call this; the file's
    metadata records the job key and the data hash the metrics were made from.
    """
    predictions = Path(predictions)
    info_path = predictions.with_name("train_info.json")
    info = read_json(info_path) if info_path.is_file() else {}
    given = {k: v for k, v in (keys or {}).items() if v is not None}
    run_keys = {k: given.get(k, info.get("job", {}).get(k)) for k in RUN_COLUMNS}
    missing = [k for k, v in run_keys.items() if v is None]
    if missing:
        raise ConfigError(f"no {', '.join(missing)} for {predictions}: give --{' --'.join(missing)} (or keep the "
                          "train_info.json that lfa train writes beside it)")
    run_keys.update(seed=int(run_keys["seed"]), fold=int(run_keys["fold"]))
    names, ratio_k, made_from, task = info.get("class_names"), None, None, None
    if prepared is not None:
        from lfa.data.datasets import verify_prepared

        prepared = Path(prepared)
        meta = read_json(prepared / "meta.json", f"delete {prepared} and rerun, to prepare it again")
        index = read_table(prepared / "index.parquet", ["id", "fold"])
        made_from = check_predictions(predictions, meta, index, run_keys["fold"],
                                      verify_prepared(prepared, meta).data_hash)
        names, ratio_k, task = meta["class_names"], meta.get("ratio_k"), meta.get("task")
    if made_from is None:
        made_from = read_parquet_metadata(predictions, "train the job again").get("lfa.data_hash", "")
    read = read_predictions(predictions)  # once, for both files
    metrics = evaluate_job(read, run_keys, names, ratio_k, "diverged" in info)
    stamp = {"lfa.job_key": str(info.get("key", "")), "lfa.data_hash": made_from}
    write_parquet(overall_row(read, run_keys, task, ratio_k, "diverged" in info),
                  overall_out or Path(out).with_name("overall.parquet"), stamp)
    write_parquet(metrics, out, stamp)
    return metrics
