"""What an imbalance researcher reads, checked on the tiny workflow run: every new number against an independent
computation (scikit-learn / NumPy) from the runs' predictions.parquet, and the report's sections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metrics_reference import reference_calibration_error
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
)

from lfa.evaluation.aggregate import COMPARED_METRICS


def _runs(work):
    return sorted((work / "results" / "runs").rglob("predictions.parquet"))


def test_new_per_class_metrics_equal_scikit_learn_on_each_runs_predictions(tiny_run):
    for path in _runs(tiny_run):
        predictions = pd.read_parquet(path)
        test = predictions[predictions.split == "test"]
        metrics = pd.read_parquet(path.with_name("metrics.parquet")).set_index("class")
        for c in metrics.index:
            y, s = test[f"label_{c}"].to_numpy(), test[f"score_{c}"].to_numpy(np.float64)
            row = metrics.loc[c]
            if y.any():
                assert row["average_precision"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
            assert row["brier"] == pytest.approx(brier_score_loss(y, s, labels=[0, 1]), abs=1e-12)
            assert row["calibration_error"] == pytest.approx(reference_calibration_error(y, s), abs=1e-12)
            if np.isnan(row["threshold"]):
                continue
            tn, fp, fn, tp = confusion_matrix(y, (s > row["threshold"]).astype(int), labels=[0, 1]).ravel()
            assert row["sensitivity"] == pytest.approx(tp / (tp + fn) if tp + fn else np.nan, nan_ok=True)
            assert row["specificity"] == pytest.approx(tn / (tn + fp), abs=1e-15)


def test_overall_rows_equal_scikit_learn_and_are_aggregated(tiny_run):
    overall = pd.read_parquet(tiny_run / "results" / "overall.parquet")
    runs = pd.read_parquet(tiny_run / "results" / "runs.parquet")
    assert len(overall) == len(runs)  # one row per experiment x run
    for path in _runs(tiny_run):
        test = pd.read_parquet(path)
        test = test[test.split == "test"]
        n = len([c for c in test.columns if c.startswith("score_")])
        true = test[[f"label_{c}" for c in range(n)]].to_numpy().argmax(1)
        scores = test[[f"score_{c}" for c in range(n)]].to_numpy()
        row = pd.read_parquet(path.with_name("overall.parquet")).iloc[0]
        predicted = scores.argmax(1)
        assert row["task"] == "single_label"
        assert row["top1_accuracy"] == pytest.approx(accuracy_score(true, predicted), abs=1e-15)
        assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, predicted), abs=1e-15)
        assert row["macro_f1"] == pytest.approx(f1_score(true, predicted, average="macro"), abs=1e-15)
        assert np.array_equal(np.asarray(row["confusion"]).reshape(n, n),
                              confusion_matrix(true, predicted, labels=range(n)))


def test_between_run_spread_and_holm_adjusted_p_values(tiny_run):
    metrics = pd.read_parquet(tiny_run / "results" / "metrics.parquet")
    summary = pd.read_parquet(tiny_run / "results" / "summary.parquet")
    keys = ["experiment", "dataset", "backbone", "loss"]
    for metric in ("auc", "sensitivity", "calibration_error"):
        per_run = metrics.groupby([*keys, "seed", "fold"])[metric].mean()
        expected = per_run.groupby(level=keys).std(ddof=1)
        got = summary[summary.metric == metric].set_index(keys)["run_std"]
        assert np.allclose(got.loc[expected.index], expected, equal_nan=True)
    comparisons = pd.read_parquet(tiny_run / "results" / "comparisons.parquet")
    for _, rows in comparisons[comparisons.metric.isin(COMPARED_METRICS)].groupby("experiment"):
        p = rows["p_value"].to_numpy()
        valid = np.flatnonzero(~np.isnan(p))
        order, m = valid[np.argsort(p[valid])], len(valid)
        expected, running = np.full(len(p), np.nan), 0.0
        for rank, i in enumerate(order):  # Holm's step-down, written out
            running = max(running, min(1.0, (m - rank) * p[i]))
            expected[i] = running
        assert np.allclose(rows["p_holm"], expected, equal_nan=True)
        assert (rows["p_holm"].dropna() >= rows["p_value"].dropna()).all()


def test_the_report_shows_what_an_imbalance_researcher_reads(tiny_run):
    page = (tiny_run / "reports" / "report.html").read_text()
    for text in ("Sensitivity, specificity, average precision and calibration", "between-run",
                 "Calibration error (15 bins)", "Per-class sensitivity", "Reliability diagram",
                 "Confusion matrices, row-normalised", "Single-label reading", "Shot groups · digits_lt",
                 "many-shot", "p<sub>Holm</sub>", "is the support-weighted recall"):
        assert text in page, text
    assert "Published values" not in page  # no experiment of the tiny config is compared with a paper table
    assert "unknown (" not in page.split("Pipeline commit", 1)[1][:200]  # the Snakefile's checkout, run elsewhere
    for name in ("tiny_lt", "tiny_ratio"):
        table = pd.read_csv(tiny_run / "results" / "tables" / "imbalance" / f"{name}.csv")
        assert list(table.columns)[3:] == ["Sensitivity", "Specificity", "Average precision",
                                           "Calibration error (15 bins)", "Brier score"]
