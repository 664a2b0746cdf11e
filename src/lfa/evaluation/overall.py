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
    count, score_sum, label_sum = reliability_bins(scores, labels)
    row.update(reliability_count=count.tolist(), reliability_score=score_sum.tolist(),
               reliability_label=label_sum.tolist())
    return row


#: Scores binned per pass by :func:`reliability_bins` (its working memory is a few times this, in bytes × 8).
BIN_ELEMENTS = 1 << 20


def reliability_bins(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The :func:`lfa.evaluation.metrics.calibration_bins` of every one-vs-rest score (all classes pooled), a block
    of rows at a time; all zero where a score is not a probability (outside [0, 1], or NaN of a diverged run)."""
    totals = np.zeros((3, CALIBRATION_BINS + 1))
    step = max(1, BIN_ELEMENTS // max(scores.shape[1], 1))
    for r0 in range(0, len(scores), step):
        block = np.ascontiguousarray(scores[r0:r0 + step]).reshape(1, -1)
        if not ((block >= 0) & (block <= 1)).all():
            return np.zeros(CALIBRATION_BINS + 1), np.zeros(CALIBRATION_BINS + 1), np.zeros(CALIBRATION_BINS + 1)
        totals += np.concatenate(calibration_bins(block, labels[r0:r0 + step].reshape(1, -1), CALIBRATION_BINS))
    return totals[0], totals[1], totals[2]
