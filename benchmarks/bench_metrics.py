"""Benchmark and equivalence check: vectorized ``per_class_metrics`` vs a per-class scikit-learn loop.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_metrics.py            # C=1000, N=50,000 (about 2-4 min)
    PYTHONPATH=src python benchmarks/bench_metrics.py --quick    # C=100, N=5,000 (seconds)

Two cases are run: long-tailed single-label (one-hot, ImageNet-LT-like) targets with float32 sigmoid scores,
and the same scores rounded to 1e-3 (many ties).  For each case the script prints the time of the
scikit-learn loop and of the vectorized function, their ratio, and the peak memory (tracemalloc) of the
vectorized call; it exits with status 1 if the results differ (thresholds must be bit-identical, every
other metric within 1e-9 absolute, NaN in the same places) or, without ``--quick``, if the speed-up is
below ``--min-speedup`` (default 50).

:func:`sklearn_reference_metrics` is the reference implementation; the tests import it from this file.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    auc,
    confusion_matrix,
    f1_score,
    fbeta_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_curve,
)

try:
    from lfa.metrics import COLUMNS, METRIC_COLUMNS, per_class_metrics
except ImportError:  # running from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from lfa.metrics import COLUMNS, METRIC_COLUMNS, per_class_metrics

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
    return row


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


def run_case(name: str, n: int, n_classes: int, ties: bool, seed: int) -> tuple[bool, float]:
    """Run one case; returns (results identical, speed-up)."""
    vs, vl, ts, tl = make_data(n, n_classes, seed=seed, ties=ties)
    pos = vl.sum(axis=0)
    print(f"\n== {name}: C={n_classes}, N={n:,} per split, scores {vs.dtype}, "
          f"positives per class (val) {int(pos.min())}..{int(pos.max())}, "
          f"distinct test scores {np.unique(ts).size:,}")
    t0 = time.perf_counter()
    ref = sklearn_reference_metrics(vs, vl, ts, tl)
    t_ref = time.perf_counter() - t0
    per_class_metrics(vs[:, :2], vl[:, :2], ts[:, :2], tl[:, :2])  # warm-up (imports, first-call costs)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fast = per_class_metrics(vs, vl, ts, tl)
        times.append(time.perf_counter() - t0)
    t_fast = min(times)
    tracemalloc.start()
    per_class_metrics(vs, vl, ts, tl)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    vs_c, ts_c = np.ascontiguousarray(vs), np.ascontiguousarray(ts)
    t0 = time.perf_counter()
    fast_c = per_class_metrics(vs_c, vl, ts_c, tl)
    t_c = time.perf_counter() - t0
    problems = compare_frames(fast, ref) + [f"C-ordered input: {p}" for p in compare_frames(fast_c, ref)]
    input_mib = (vs.nbytes + vl.nbytes + ts.nbytes + tl.nbytes) / 2**20
    print(f"sklearn loop      : {t_ref:9.3f} s")
    print(f"vectorized        : {t_fast:9.3f} s   (best of 3; column-major input)")
    print(f"speed-up          : {t_ref / t_fast:9.1f} x")
    print(f"vectorized, C-order input (transposed in blocks): {t_c:.3f} s ({t_ref / t_c:.1f} x)")
    print(f"peak memory (tracemalloc) of the vectorized call: {peak / 2**20:.1f} MiB "
          f"(inputs, not counted: {input_mib:.0f} MiB)")
    nan = {c: int(fast[c].isna().sum()) for c in ("auc", "threshold", "f1", "miss")}
    print(f"classes with NaN: {nan}")
    if problems:
        print("RESULTS DIFFER:")
        for p in problems:
            print("  -", p)
    else:
        print("results identical: thresholds bit-identical, other metrics within "
              f"{ATOL:g}, NaN in the same places")
    return not problems, t_ref / t_fast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="C=100, N=5,000 (CI-sized)")
    parser.add_argument("--classes", type=int, default=None, help="number of classes C")
    parser.add_argument("--samples", type=int, default=None, help="samples N per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-speedup", type=float, default=None,
                        help="fail below this speed-up (default 50, none with --quick)")
    args = parser.parse_args(argv)
    n_classes = args.classes or (100 if args.quick else 1000)
    n = args.samples or (5_000 if args.quick else 50_000)
    min_speedup = args.min_speedup if args.min_speedup is not None else (0.0 if args.quick else 50.0)
    ok = True
    for name, ties in (("long-tailed, float32 scores", False), ("long-tailed, scores rounded to 1e-3", True)):
        same, speedup = run_case(name, n, n_classes, ties, args.seed)
        if not same:
            ok = False
        if speedup < min_speedup:
            print(f"speed-up {speedup:.1f}x is below the required {min_speedup:g}x")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
