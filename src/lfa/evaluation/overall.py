"""What a run says over all its classes at once: top-1 metrics and the confusion matrix of single-label data,
and the reliability bins of its scores (``overall.parquet`` per run, ``results/overall.parquet``; docs/schema.md).

Single-label data is read by the argmax of the scores on the test split: ``top1_accuracy``, ``balanced_accuracy``
(the mean over the classes present in the test split of their recall; ISIC's official metric),
``macro_f1`` (the mean F1 over the classes present among the labels or the predictions) and
``top_label_calibration_error`` (15 equal-width bins of the top score against whether the argmax is right).
Every task gets the reliability bins of its one-vs-rest scores, pooled over classes, which a reliability diagram
pools over runs.
"""

from __future__ import annotations

import numpy as np

from lfa.evaluation.metrics import CALIBRATION_BINS, calibration_bins, calibration_error

#: The per-run metrics of single-label data, in order.
OVERALL_METRICS = ["top1_accuracy", "balanced_accuracy", "macro_f1", "top_label_calibration_error"]


def confusion(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Counts (true class, argmax class) of one-hot ``labels`` and their ``scores``, (C, C) int64."""
    n_classes = labels.shape[1]
    true, predicted = labels.argmax(axis=1), scores.argmax(axis=1)
    return np.bincount(true * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def top1_metrics(counts: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """:data:`OVERALL_METRICS` from a confusion matrix and the scores and labels it counts."""
    tp = np.diag(counts).astype(np.float64)
    support, predicted = counts.sum(axis=1).astype(np.float64), counts.sum(axis=0).astype(np.float64)
    present = support > 0
    either = present | (predicted > 0)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=(support + predicted) > 0)
    right = (scores.argmax(axis=1) == labels.argmax(axis=1)).astype(np.float64)
    top = scores.max(axis=1).astype(np.float64)
    bins = calibration_bins(top[None, :], right[None, :])
    total = counts.sum()
    return {"top1_accuracy": float(tp.sum() / total) if total else np.nan,
            "balanced_accuracy": float((tp[present] / support[present]).mean()) if present.any() else np.nan,
            "macro_f1": float(f1[either].mean()) if either.any() else np.nan,
            "top_label_calibration_error": float(calibration_error(*bins)[0])}


def run_overview(scores: np.ndarray, labels: np.ndarray, task: str) -> dict[str, object]:
    """One run's overall row (without its keys): the top-1 metrics and flattened confusion matrix of
    single-label data (NaN and empty otherwise) and the reliability bins of all its one-vs-rest scores."""
    row: dict[str, object] = dict.fromkeys(OVERALL_METRICS, np.nan)
    row["confusion"] = []
    if task == "single_label" and len(labels):
        counts = confusion(labels, scores)
        row.update(top1_metrics(counts, scores, labels))
        row["confusion"] = counts.ravel().tolist()
    probabilities = bool(((scores >= 0) & (scores <= 1)).all()) and scores.size > 0
    flat_scores = scores.reshape(1, -1) if probabilities else np.zeros((1, 0))
    count, score_sum, label_sum = calibration_bins(flat_scores, labels.reshape(1, -1)[:, : flat_scores.shape[1]],
                                                   CALIBRATION_BINS)
    row.update(reliability_count=count[0].tolist(), reliability_score=score_sum[0].tolist(),
               reliability_label=label_sum[0].tolist())
    return row
