"""Evaluation: the predictions of one job → its per-class metrics (``metrics.parquet`` of the run).

This module never imports torch: evaluation and aggregation run from ``predictions.parquet`` alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfa.io import read_table
from lfa.metrics import METRIC_COLUMNS, per_class_metrics

#: Columns identifying a run in its metrics; the aggregate adds ``experiment`` in front (lfa.aggregate).
RUN_COLUMNS = ["dataset", "backbone", "loss", "seed", "fold"]


class PredictionsMismatch(ValueError):
    """Predictions that do not belong to the prepared dataset they are evaluated against; names file and field."""


def check_predictions(path: str | Path, meta: dict[str, Any], index: pd.DataFrame | None = None,
                      fold: int | None = None) -> str:
    """Refuse predictions made from other data, with other classes, or on other splits than the prepared set's.

    ``meta``: the prepared dataset's ``meta.json``; with its ``index`` and the job's ``fold`` the validation
    and test samples must be exactly that fold rotation's. Reads the file's schema and its ``id`` and
    ``split`` columns only (the scores are read once, by :func:`evaluate_job`). Returns the data hash the
    predictions carry ("" for predictions written before content hashes).
    """
    from lfa.io import parquet_columns, read_parquet_metadata

    path = Path(path)
    stamped = read_parquet_metadata(path, "train the job again").get("lfa.data_hash")
    expected = meta.get("data_hash")
    if stamped and expected and stamped != expected:
        raise PredictionsMismatch(f"{path}: lfa.data_hash {stamped} differs from the prepared dataset's data_hash "
                                  f"{expected} (meta.json of {meta['name']}): the data changed after training; "
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
        val_fold = (fold + 1) % meta["n_splits"]
        for split, f in (("val", val_fold), ("test", fold)):
            want = set(index.loc[index["fold"] == f, "id"].astype(str))
            have = set(df.loc[df["split"] == split, "id"].astype(str))
            if want != have:
                raise PredictionsMismatch(
                    f"{path}: the {split} ids are not fold {f} of the prepared dataset {meta['name']} "
                    f"({len(have - want)} foreign, {len(want - have)} missing): train the job again")
    return stamped or ""


def read_predictions(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'val': (scores, labels), 'test': (scores, labels)} from a predictions.parquet."""
    df = read_table(path, fix="train the job again")
    n = len([c for c in df.columns if re.fullmatch(r"score_\d+", c)])
    score_cols = [f"score_{c}" for c in range(n)]
    label_cols = [f"label_{c}" for c in range(n)]
    out = {}
    for split in ("val", "test"):
        part = df[df["split"] == split]
        out[split] = (part[score_cols].to_numpy(np.float32), part[label_cols].to_numpy(np.int8))
    return out


def evaluate_job(predictions: str | Path, keys: dict[str, Any], class_names: list[str] | None = None,
                 ratio_k: int | None = None, diverged: bool = False) -> pd.DataFrame:
    """Per-class metrics of one job, with its run columns, class names (default: the class indices) and ratio.

    A job whose training diverged (recorded with ``train.on_divergence: record``) has every metric NaN and
    ``diverged`` True, so its cells are left out of the means and marked in the report.
    """
    pred = read_predictions(predictions)
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
