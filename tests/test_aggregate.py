"""Aggregation on small hand-computable frames, and the Parquet writer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.stats import wilcoxon

from lfa.evaluation.aggregate import KEYS, compare, per_class_summary, summarize
from lfa.io import read_parquet_metadata, write_parquet

NAN = float("nan")


def job(loss, seed, fold, auc, f1, dataset="d", ratio_k=10):
    """One job's per-class rows (two classes) with the given per-class auc / f1 values."""
    return pd.DataFrame(
        {
            "experiment": "e",
            "dataset": dataset,
            "backbone": "b",
            "loss": loss,
            "seed": seed,
            "fold": fold,
            "ratio_k": pd.array([ratio_k] * len(auc), dtype="Int64"),
            "class": np.arange(len(auc)),
            "class_name": [f"c{i}" for i in range(len(auc))],
            "auc": auc,
            "f1": f1,
        }
    )


@pytest.fixture
def small() -> pd.DataFrame:
    return pd.concat(
        [
            job("fece", 0, 0, [0.5, 0.7], [0.1, 0.2]),
            job("fece", 0, 1, [0.9, NAN], [0.3, 0.4]),
            job("bce", 0, 0, [0.4, 0.4], [NAN, NAN]),
            job("bce", 0, 1, [0.6, 0.6], [0.2, NAN]),
        ],
        ignore_index=True,
    )


def test_summarize_mean_std_ddof0_nan_dropped(small):
    out = summarize(small)
    assert list(out.columns) == [*KEYS, "ratio_k", "metric", "mean", "std", "run_std", "n", "n_nan", "n_folds"]
    row = out.set_index(["loss", "metric"]).loc[("fece", "auc")]
    assert row["mean"] == pytest.approx(0.7)
    assert row["std"] == pytest.approx(math.sqrt(0.08 / 3))  # population std of 0.5, 0.7, 0.9
    assert row["run_std"] == pytest.approx(np.std([0.6, 0.9], ddof=1))  # the runs' class means: 0.6 and 0.9
    assert np.isnan(out.set_index(["loss", "metric"]).loc[("bce", "f1"), "run_std"])  # one run with a value
    assert (row["n"], row["n_nan"], row["n_folds"]) == (3, 1, 2)
    assert row["ratio_k"] == 10
    f1 = out.set_index(["loss", "metric"]).loc[("bce", "f1")]
    assert f1["mean"] == pytest.approx(0.2) and f1["std"] == 0.0
    assert (f1["n"], f1["n_nan"]) == (1, 3)
    # Metrics keep METRIC_COLUMNS order (auc before f1) within each configuration.
    assert out[out["loss"] == "fece"]["metric"].tolist() == ["auc", "f1"]
    assert out["n"].dtype == np.int64 and out["ratio_k"].dtype == "Int64"
    np.testing.assert_allclose(out.set_index(["loss", "metric"]).loc[("fece", "f1"), "std"],
                               np.std([0.1, 0.2, 0.3, 0.4]))


def test_summarize_all_nan_and_without_ratio_k(small):
    frame = small.drop(columns="ratio_k")
    frame.loc[frame["loss"] == "bce", "f1"] = NAN
    out = summarize(frame)
    assert "ratio_k" not in out.columns
    row = out.set_index(["loss", "metric"]).loc[("bce", "f1")]
    assert np.isnan(row["mean"]) and np.isnan(row["std"]) and row["n"] == 0 and row["n_nan"] == 4


def test_summarize_rejects_ratio_k_varying_within_configuration(small):
    frame = small.copy()
    frame.loc[0, "ratio_k"] = 3
    with pytest.raises(ValueError, match="ratio_k"):
        summarize(frame)


def test_per_class_summary(small):
    out = per_class_summary(small)
    assert list(out.columns) == [*KEYS, "class", "class_name", "metric", "mean", "std", "n"]
    idx = out.set_index(["loss", "class", "metric"])
    assert idx.loc[("fece", 0, "auc"), "mean"] == pytest.approx(0.7)
    assert idx.loc[("fece", 0, "auc"), "std"] == pytest.approx(0.2)
    assert idx.loc[("fece", 0, "auc"), "n"] == 2
    assert idx.loc[("fece", 1, "auc"), "mean"] == pytest.approx(0.7)
    assert idx.loc[("fece", 1, "auc"), "std"] == 0.0 and idx.loc[("fece", 1, "auc"), "n"] == 1
    assert idx.loc[("bce", 1, "f1"), "n"] == 0 and np.isnan(idx.loc[("bce", 1, "f1"), "mean"])
    assert idx.loc[("fece", 1, "auc"), "class_name"] == "c1"
    assert len(out) == 2 * 2 * 2  # losses x classes x metrics


def paired_frame(diffs, n_seeds=1, other="bce", base=0.5):
    """fece fold means base + i/100; ``other`` fold means lower by diffs[i] (two classes per job)."""
    jobs = []
    i = 0
    for seed in range(n_seeds):
        for fold in range(len(diffs) // n_seeds):
            m = base + i / 100
            jobs.append(job("fece", seed, fold, [m - 0.1, m + 0.1], [m, m]))
            o = m - diffs[i]
            jobs.append(job(other, seed, fold, [o - 0.05, o + 0.05], [o, o]))
            i += 1
    return pd.concat(jobs, ignore_index=True)


def test_compare_known_differences_and_pvalues():
    diffs = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, -0.015])
    frame = paired_frame(diffs, n_seeds=2)
    out = compare(frame, reference="fece", n_boot=500, seed=1)
    assert list(out.columns) == ["experiment", "dataset", "backbone", "loss", "reference", "metric",
                                 "n_pairs", "mean_diff", "ci_low", "ci_high", "p_value", "note"]
    assert len(out) == 2 and set(out["metric"]) == {"auc", "f1"}
    for _, row in out.iterrows():
        assert row["loss"] == "bce" and row["reference"] == "fece" and row["n_pairs"] == 8
        assert row["mean_diff"] == pytest.approx(diffs.mean())
        assert row["p_value"] == pytest.approx(wilcoxon(diffs).pvalue)
        assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
        assert diffs.min() <= row["ci_low"] and row["ci_high"] <= diffs.max()
        assert row["note"] == ""
    # All positive differences: the exact two-sided p-value is 2 / 2^n.
    pos = compare(paired_frame(np.full(8, 0.02) + np.arange(8) / 1000), n_boot=100)
    assert pos["p_value"].tolist() == pytest.approx([2 / 2**8, 2 / 2**8])
    # Constant differences: a degenerate bootstrap interval.
    const = compare(paired_frame(np.full(7, 0.03)), n_boot=100)
    assert const["ci_low"].tolist() == pytest.approx([0.03, 0.03])
    assert const["ci_high"].tolist() == pytest.approx([0.03, 0.03])


def test_compare_bootstrap_is_reproducible_and_independent_of_other_losses():
    diffs = np.array([0.01, -0.02, 0.03, 0.05, 0.02, 0.04])
    frame = paired_frame(diffs)
    a = compare(frame, n_boot=300, seed=7)
    b = compare(pd.concat([frame, paired_frame(diffs[::-1], other="asl")]), n_boot=300, seed=7)
    pd.testing.assert_frame_equal(a, b[b["loss"] == "bce"].reset_index(drop=True))
    c = compare(frame, n_boot=300, seed=8)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    rng = np.random.default_rng(7)  # the documented recipe
    boot = diffs[rng.integers(0, 6, size=(300, 6))].mean(axis=1)
    assert a.loc[0, "ci_low"] == pytest.approx(np.percentile(boot, 2.5))
    assert a.loc[0, "ci_high"] == pytest.approx(np.percentile(boot, 97.5))


def test_compare_small_samples_zeros_unpaired_and_missing_reference():
    few = compare(paired_frame(np.array([0.01, 0.02, 0.03, 0.04])), n_boot=50)
    np.testing.assert_allclose(few["p_value"], wilcoxon([0.01, 0.02, 0.03, 0.04]).pvalue)
    assert few.loc[0, "p_value"] == pytest.approx(2 / 2**4)
    assert few.loc[0, "note"].startswith("n_pairs < 6: Wilcoxon cannot reach p<0.05")
    assert "2/2^4 = 0.125" in few.loc[0, "note"]

    zeros = compare(paired_frame(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01])), n_boot=50)
    assert zeros["p_value"].isna().all()
    assert "1 non-zero difference(s)" in zeros.loc[0, "note"]

    frame = paired_frame(np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07]))
    frame = frame[~((frame["loss"] == "bce") & (frame["fold"] == 6))]  # one unpaired reference run
    frame.loc[(frame["loss"] == "bce") & (frame["fold"] == 0), "f1"] = NAN  # one NaN fold mean
    out = compare(frame, n_boot=50).set_index("metric")
    assert out.loc["auc", "n_pairs"] == 6 and out.loc["f1", "n_pairs"] == 5
    assert "1 unpaired (seed, fold) run(s) left out" in out.loc["auc", "note"]
    assert "1 pair(s) with a NaN fold mean left out" in out.loc["f1", "note"]
    assert out.loc["f1", "mean_diff"] == pytest.approx(np.mean([0.02, 0.03, 0.04, 0.05, 0.06]))

    none = compare(paired_frame(np.array([0.01, 0.02])), reference="missing")
    assert len(none) == 0 and "p_value" in none.columns


def test_write_parquet_metadata_round_trip(tmp_path, small):
    path = tmp_path / "summary.parquet"
    meta = {"lfa.config_hash": "3f2a9c", "lfa.version": "0.1.0", "lfa.note": "F-ECE ✓"}
    frame = small.set_index("class")  # the index is not written
    write_parquet(frame, path, meta)
    assert read_parquet_metadata(path) == meta
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame.reset_index(drop=True), check_dtype=True)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.parquet"]
    with pytest.raises(TypeError):
        write_parquet(small, path, {"lfa.seed": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="reserved"):
        write_parquet(small, path, {"pandas": "x"})
    assert read_parquet_metadata(path) == meta


def test_write_parquet_is_atomic(tmp_path, small, monkeypatch):
    path = tmp_path / "metrics.parquet"
    write_parquet(small, path, {"lfa.version": "old"})
    before = path.read_bytes()

    def broken_write_table(table, where, *args, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 partial garbage")
        raise OSError(28, "No space left on device (disk full)")

    monkeypatch.setattr(pq, "write_table", broken_write_table)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(small.head(1), path, {"lfa.version": "new"})
    assert path.read_bytes() == before
    assert read_parquet_metadata(path) == {"lfa.version": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.parquet"]  # temporary file removed
    monkeypatch.undo()
    write_parquet(small.head(1), path, {"lfa.version": "new"})
    assert read_parquet_metadata(path) == {"lfa.version": "new"} and len(pd.read_parquet(path)) == 1


def test_any_loss_can_be_the_reference_and_holm_adjusts_one_experiments_table():
    from lfa.evaluation.aggregate import holm, holm_per_experiment

    diffs = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, -0.015])
    frame = pd.concat([paired_frame(diffs), paired_frame(diffs / 2, other="my_loss").query("loss == 'my_loss'")],
                      ignore_index=True)
    out = compare(frame, reference="my_loss", n_boot=100)
    assert set(out["reference"]) == {"my_loss"} and set(out["loss"]) == {"bce", "fece"}
    fece = out[(out.loss == "fece") & (out.metric == "auc")].iloc[0]
    assert fece["mean_diff"] == pytest.approx(-(diffs / 2).mean())  # my_loss - fece
    adjusted = holm_per_experiment(out.assign(metric=np.where(out.metric == "f1", "f1", "sensitivity")))
    assert np.allclose(adjusted["p_holm"], holm(out["p_value"].to_numpy()))
    # Holm by hand: p = 0.01, 0.04, 0.03 -> sorted 0.01*3, 0.03*2, max(0.04*1, 0.06)
    assert holm(np.array([0.01, 0.04, 0.03, np.nan])).tolist()[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm(np.array([0.01, np.nan]))[1]) and holm(np.array([0.6, 0.7])).tolist() == [1.0, 1.0]
