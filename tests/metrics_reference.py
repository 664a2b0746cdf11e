"""The reference the vectorised per-class metrics are checked against: a per-class scikit-learn loop, and
long-tailed test data (used by tests/test_metrics.py and by benchmarks/bench_metrics.py as its baseline)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    auc,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    fbeta_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_curve,
)

from lfa.evaluation.metrics import COLUMNS, METRIC_COLUMNS

ATOL = 1e-9


def _undefined(caught: list[warnings.WarningMessage]) -> bool:
    """scikit-learn signals an undefined curve (single label present) with a UserWarning subclass."""
    return any(issubclass(w.category, UserWarning) for w in caught)


def _reference_class(yv: np.ndarray, sv: np.ndarray, yt: np.ndarray, st: np.ndarray) -> dict[str, float]:
    """The seed's per-class metrics with scikit-learn; NaN wherever scikit-learn warns or raises."""
    row: dict[str, float] = dict.fromkeys(METRIC_COLUMNS, np.nan)
    # Threshold: first argmax of F1 over the validation precision-recall curve.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            precision, recall, thresholds = precision_recall_curve(yv, sv)
            denom = precision + recall
            f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom != 0)
            threshold = thresholds[np.argmax(f1[:-1])]
        except (ValueError, IndexError):
            threshold = np.nan
    if _undefined(caught):
        threshold = np.nan
    row["threshold"] = float(threshold)
    # AUC on test.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fpr, tpr, _ = roc_curve(yt, st)
            row["auc"] = float(auc(fpr, tpr))
        except ValueError:
            row["auc"] = np.nan
    if _undefined(caught):
        row["auc"] = np.nan
    row.update(_score_metrics(yt, st))
    if np.isnan(row["threshold"]) or yt.size == 0:
        return row
    pred = (st > threshold).astype(np.int64)
    kw = {"average": "weighted", "zero_division": 0}
    row["accuracy"] = float(accuracy_score(yt, pred))
    row["precision"] = float(precision_score(yt, pred, **kw))
    row["recall"] = float(recall_score(yt, pred, **kw))
    row["f0_5"] = float(fbeta_score(yt, pred, beta=0.5, **kw))
    row["f0"] = float(fbeta_score(yt, pred, beta=0, **kw))
    row["f1"] = float(f1_score(yt, pred, **kw))
    tn, fp, fn, tp = confusion_matrix(yt, pred, labels=[0, 1]).ravel()
    row["miss"] = fn / (tp + fn) if tp + fn else np.nan
    row["overflow"] = fp / (fp + tn) if fp + tn else np.nan
    row["sensitivity"] = tp / (tp + fn) if tp + fn else np.nan
    row["specificity"] = tn / (tn + fp) if tn + fp else np.nan
    return row


def reference_calibration_error(yt: np.ndarray, st: np.ndarray, n_bins: int = 15) -> float:
    """torchmetrics' BinaryCalibrationError(n_bins, norm="l1") in plain loops: bins [i/n, (i+1)/n) and one of the
    scores equal to 1 (torchmetrics' bucketize over n + 1 edges), sum over bins of |mean label - mean score| times
    the bin's share of the samples."""
    total, n = 0.0, len(st)
    for i in range(n_bins + 1):
        lo, hi = i / n_bins, (i + 1) / n_bins
        inside = [(float(s), int(y)) for s, y in zip(st, yt, strict=True)
                  if (lo <= s < hi if i < n_bins else s >= 1.0)]
        if inside:
            mean_score = sum(s for s, _ in inside) / len(inside)
            mean_label = sum(y for _, y in inside) / len(inside)
            total += abs(mean_label - mean_score) * len(inside) / n
    return total if n else float("nan")


def _score_metrics(yt: np.ndarray, st: np.ndarray) -> dict[str, float]:
    """Average precision (scikit-learn), Brier score (scikit-learn) and calibration error of one class's test
    scores; NaN where undefined (no test sample; no positive for average precision)."""
    if yt.size == 0:
        return {}
    scores = np.asarray(st, dtype=np.float64)
    out = {"average_precision": float(average_precision_score(yt, scores)) if yt.any() else np.nan}
    if ((scores >= 0) & (scores <= 1)).all():  # probabilities only
        out.update(brier=float(brier_score_loss(yt, scores, labels=[0, 1])),
                   calibration_error=reference_calibration_error(yt, scores))
    return out


def sklearn_reference_metrics(
    val_scores: np.ndarray, val_labels: np.ndarray, test_scores: np.ndarray, test_labels: np.ndarray
) -> pd.DataFrame:
    """Loop over classes with scikit-learn; same columns and NaN rules as ``per_class_metrics``."""
    rows = []
    for c in range(val_scores.shape[1]):
        yv = np.asarray(val_labels[:, c]).astype(np.int64)
        yt = np.asarray(test_labels[:, c]).astype(np.int64)
        row = _reference_class(yv, val_scores[:, c], yt, test_scores[:, c])
        n_pos = int(yt.sum())
        rows.append({"class": c, **row, "n_pos": n_pos, "n_neg": int(yt.size - n_pos)})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"class": np.int64, "n_pos": np.int64, "n_neg": np.int64, **dict.fromkeys(
        METRIC_COLUMNS, np.float64)})


def compare_frames(fast: pd.DataFrame, ref: pd.DataFrame, atol: float = ATOL) -> list[str]:
    """Differences between two metric frames (empty list when equivalent)."""
    problems: list[str] = []
    if list(fast.columns) != list(ref.columns):
        return [f"columns differ: {list(fast.columns)} vs {list(ref.columns)}"]
    if len(fast) != len(ref):
        return [f"row counts differ: {len(fast)} vs {len(ref)}"]
    for col in ("class", "n_pos", "n_neg"):
        if fast[col].dtype != np.int64 or not np.array_equal(fast[col].to_numpy(), ref[col].to_numpy()):
            problems.append(f"{col}: integer column differs")
    for col in METRIC_COLUMNS:
        a = fast[col].to_numpy(dtype=np.float64)
        b = ref[col].to_numpy(dtype=np.float64)
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            bad = np.flatnonzero(nan_a != nan_b)
            problems.append(f"{col}: NaN at different classes, e.g. {bad[:5].tolist()}")
            continue
        ok = ~nan_a
        if col == "threshold":
            same = a[ok].view(np.uint64) == b[ok].view(np.uint64)  # bit-identical, -0.0 != +0.0
            if not same.all():
                bad = np.flatnonzero(ok)[~same]
                problems.append(f"threshold: not identical for {bad.size} classes, e.g. {bad[:5].tolist()}")
            continue
        err = np.abs(a[ok] - b[ok])
        if err.size and err.max() > atol:
            problems.append(f"{col}: max abs difference {err.max():.3e} > {atol:g}")
    return problems


def long_tail_counts(n: int, n_classes: int, head: float, tail: float) -> np.ndarray:
    """Class probabilities p_c = A * (tail/head) ** (x_c ** g), x_c in [0, 1], with n*p_0 ~ head."""
    x = np.linspace(0.0, 1.0, n_classes)
    target = n / head  # required sum of (tail/head) ** (x ** g)
    lo, hi = 1e-3, 1.0
    for _ in range(60):
        g = (lo + hi) / 2
        total = np.sum((tail / head) ** (x**g))
        lo, hi = (lo, g) if total > target else (g, hi)
    w = (tail / head) ** (x ** ((lo + hi) / 2))
    return w / w.sum()


def make_data(
    n: int, n_classes: int, seed: int = 0, ties: bool = False, head: float = 1500.0, tail: float = 5.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validation and test splits of n samples each: one-hot long-tailed labels and float32 scores.

    Expected positives per class go from ``head`` (scaled by n / 50,000) down to ``tail`` (scaled by the
    mean class size / 50), i.e. about 1500 to 5 at n=50,000 and C=1000.

    Scores are sigmoid outputs of a plausible classifier: negative logits ~ N(-4, 1.5), positive logits
    ~ N(mu_c, 1.5) with mu_c from -2 (rarest class) to +2 (most frequent).  Arrays are (N, C) and
    column-major, the layout ``DataFrame.to_numpy()`` returns for ``predictions.parquet``.
    With ``ties`` the scores are rounded to 1e-3.  To exercise the undefined cases, the last class has
    no validation positive and the one before it no test positive (their samples are relabelled to
    class 0, so every sample keeps exactly one label).
    """
    rng = np.random.default_rng(seed)
    p = long_tail_counts(n, n_classes, head * n / 50_000, tail * n / n_classes / 50)
    mu = np.linspace(2.0, -2.0, n_classes).astype(np.float32)
    out = []
    for _ in range(2):
        y = rng.choice(n_classes, size=n, p=p)
        labels = np.zeros((n_classes, n), dtype=np.int8)
        labels[y, np.arange(n)] = 1
        logits = rng.normal(-4.0, 1.5, size=(n_classes, n)).astype(np.float32)
        logits[y, np.arange(n)] = mu[y] + rng.normal(0.0, 1.5, size=n).astype(np.float32)
        scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        if ties:
            scores = np.round(scores, 3).astype(np.float32)
        out += [scores.T, labels.T]
    for labels, empty in ((out[1], n_classes - 1), (out[3], n_classes - 2)):
        if n_classes >= 3:
            labels[:, 0] |= labels[:, empty]
            labels[:, empty] = 0
    return out[0], out[1], out[2], out[3]
