"""Vectorized per-class metrics vs the scikit-learn loop reference of ``tests/metrics_reference.py``."""

from __future__ import annotations

import metrics_reference as reference
import numpy as np
import pandas as pd
import pytest

import lfa.evaluation.metrics as metrics
from lfa.evaluation.metrics import COLUMNS, METRIC_COLUMNS, METRIC_DISPLAY, PAPER_METRICS, per_class_metrics


def assert_matches_reference(vs, vl, ts, tl) -> pd.DataFrame:
    """Run both implementations; thresholds bit-identical, others within 1e-9, NaN in the same places."""
    fast = per_class_metrics(vs, vl, ts, tl)
    ref = reference.sklearn_reference_metrics(vs, vl, ts, tl)
    problems = reference.compare_frames(fast, ref)
    assert not problems, "\n".join(problems)
    return fast


def random_split(rng, n, c, kind="multilabel", p=0.3, dtype=np.float32, decimals=None):
    if kind == "onehot":
        labels = np.zeros((n, c), dtype=np.int8)
        labels[np.arange(n), rng.integers(0, c, n)] = 1
    else:
        labels = (rng.random((n, c)) < p).astype(np.int8)
    scores = rng.random((n, c)).astype(dtype)
    if decimals is not None:
        scores = np.round(scores, decimals).astype(dtype)
    return scores, labels


def test_constants():
    assert METRIC_COLUMNS == ["auc", "threshold", "accuracy", "precision", "recall", "f0_5", "f0", "f1",
                              "miss", "overflow", "sensitivity", "specificity", "average_precision", "brier",
                              "calibration_error"]
    assert PAPER_METRICS == METRIC_COLUMNS[:8]
    assert list(METRIC_DISPLAY) == PAPER_METRICS
    assert METRIC_DISPLAY["f0_5"] == "F0.5" and METRIC_DISPLAY["accuracy"] == "acc"
    assert COLUMNS == ["class", *METRIC_COLUMNS, "n_pos", "n_neg"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_hot_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    vs, vl = random_split(rng, 600, 25, "onehot")
    ts, tl = random_split(rng, 500, 25, "onehot")
    fast = assert_matches_reference(vs, vl, ts, tl)
    assert list(fast.columns) == COLUMNS
    assert fast["class"].dtype == np.int64 and fast["n_pos"].dtype == np.int64
    assert fast["n_neg"].dtype == np.int64
    assert all(fast[c].dtype == np.float64 for c in METRIC_COLUMNS)
    assert fast["class"].tolist() == list(range(25))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multilabel_matches_sklearn(dtype):
    rng = np.random.default_rng(3)
    vs, vl = random_split(rng, 400, 12, p=0.3, dtype=dtype)
    ts, tl = random_split(rng, 300, 12, p=0.5, dtype=dtype)
    assert_matches_reference(vs, vl, ts, tl)


@pytest.mark.parametrize("decimals", [1, 2, 3])
def test_tied_scores_match_sklearn(decimals):
    rng = np.random.default_rng(4)
    vs, vl = random_split(rng, 700, 10, p=0.2, decimals=decimals)
    ts, tl = random_split(rng, 700, 10, p=0.2, decimals=decimals)
    assert_matches_reference(vs, vl, ts, tl)


def test_long_tailed_benchmark_data_matches_sklearn():
    for ties in (False, True):
        vs, vl, ts, tl = reference.make_data(3000, 40, seed=5, ties=ties)
        assert vs.flags.f_contiguous
        assert_matches_reference(vs, vl, ts, tl)
        assert_matches_reference(np.ascontiguousarray(vs), np.ascontiguousarray(vl), ts, tl)


def degenerate_problem():
    """Classes covering every undefined case (the comment gives the class index)."""
    rng = np.random.default_rng(6)
    n = 60
    vs, vl = random_split(rng, n, 10, p=0.3)
    ts, tl = random_split(rng, n, 10, p=0.3)
    vl[:, 0] = 0  # 0: no validation positive -> threshold and everything at it NaN
    tl[:, 1] = 0  # 1: no test positive -> auc, miss NaN
    tl[:, 2] = 1  # 2: no test negative -> auc, overflow NaN
    vl[:, 3] = 1  # 3: no validation negative -> threshold = min validation score
    vs[:, 4] = 0.25  # 4: constant validation scores
    ts[:, 5] = 0.75  # 5: constant test scores
    vs[:, 6] = 0.5  # 6: constant everywhere, threshold equals every test score -> nothing predicted
    ts[:, 6] = 0.5
    vl[:, 7], tl[:, 7] = 0, 0  # 7: no positive anywhere
    vl[:, 8], tl[:, 8] = 1, 1  # 8: no negative anywhere
    ts[:, 9] = ts[:, 9] + 10.0  # 9: threshold below every test score -> everything predicted positive
    return vs, vl, ts, tl


def test_degenerate_classes_match_sklearn_and_nan_rules():
    vs, vl, ts, tl = degenerate_problem()
    fast = assert_matches_reference(vs, vl, ts, tl).set_index("class")
    at_threshold = ["accuracy", "precision", "recall", "f0_5", "f0", "f1", "miss", "overflow"]
    assert fast.loc[0, ["threshold", *at_threshold]].isna().all()
    assert not np.isnan(fast.loc[0, "auc"])
    assert np.isnan(fast.loc[1, "auc"]) and np.isnan(fast.loc[1, "miss"])
    assert not fast.loc[1, ["threshold", "accuracy", "precision", "f1", "overflow"]].isna().any()
    assert np.isnan(fast.loc[2, "auc"]) and np.isnan(fast.loc[2, "overflow"])
    assert not np.isnan(fast.loc[2, "miss"])
    assert fast.loc[3, "threshold"] == np.float64(vs[:, 3].min())
    assert fast.loc[4, "threshold"] == 0.25
    assert fast.loc[5, "auc"] == 0.5
    assert fast.loc[6, "threshold"] == 0.5 and fast.loc[6, "miss"] == 1.0 and fast.loc[6, "overflow"] == 0.0
    # no positive anywhere: undefined but for the Brier score and the calibration error, which need none
    assert fast.loc[7].drop(["n_pos", "n_neg", "brier", "calibration_error"]).isna().all()
    assert fast.loc[7, "n_pos"] == 0
    assert fast.loc[7, "brier"] == np.mean(ts[:, 7].astype(np.float64) ** 2)
    assert np.isnan(fast.loc[8, "auc"]) and fast.loc[8, "n_neg"] == 0
    assert fast.loc[9, "miss"] == 0.0 and fast.loc[9, "overflow"] == 1.0
    defined = fast["miss"].notna()
    assert np.allclose(fast.loc[defined, "sensitivity"], 1 - fast.loc[defined, "miss"], rtol=0, atol=1e-15)
    defined = fast["overflow"].notna()
    assert np.allclose(fast.loc[defined, "specificity"], 1 - fast.loc[defined, "overflow"], rtol=0, atol=1e-15)


def test_calibration_error_of_known_bins():
    """Three bins by hand: scores 0.1 (labels 0, 0, 1, 1), 0.9 (labels 1, 1, 1) and exactly 1.0 (label 0), a bin of
    its own as in torchmetrics: |0.5 - 0.1| * 4/8 + |1 - 0.9| * 3/8 + |0 - 1| * 1/8."""
    ts = np.array([[0.1], [0.1], [0.1], [0.1], [0.9], [0.9], [0.9], [1.0]])
    tl = np.array([[0], [0], [1], [1], [1], [1], [1], [0]], dtype=np.int8)
    fast = per_class_metrics(ts, tl, ts, tl)
    expected = 0.5 * abs(0.5 - 0.1) + 3 / 8 * abs(1.0 - 0.9) + 1 / 8 * 1.0
    assert fast.loc[0, "calibration_error"] == pytest.approx(expected, abs=1e-15)
    assert fast.loc[0, "brier"] == pytest.approx(np.mean((ts[:, 0] - tl[:, 0]) ** 2), abs=1e-15)
    count, score_sum, label_sum = metrics.calibration_bins(ts.T, tl.T)
    expected_count = np.zeros(16)
    expected_count[[1, 13, 15]] = [4, 3, 1]  # 0.1 in [1/15, 2/15), 0.9 in [13/15, 14/15), 1.0 alone in the 16th
    assert np.array_equal(count[0], expected_count) and label_sum[0, 1] == 2 and score_sum[0, 15] == 1.0


def test_weighted_recall_is_accuracy_and_f0_is_precision():
    rng = np.random.default_rng(7)
    vs, vl = random_split(rng, 500, 20, p=0.1)
    ts, tl = random_split(rng, 500, 20, p=0.1)
    fast = per_class_metrics(vs, vl, ts, tl)
    np.testing.assert_allclose(fast["recall"], fast["accuracy"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fast["f0"], fast["precision"])


def test_negative_scores_and_signed_zeros():
    """Logit-like scores: negative values and both zeros (the threshold keeps scikit-learn's zero)."""
    rng = np.random.default_rng(8)
    values = np.array([0.0, -0.0, 0.5, -0.5, 1.0, -3.0], dtype=np.float32)
    vs = rng.choice(values, (50, 40))
    ts = rng.choice(values, (50, 40))
    vl = (rng.random((50, 40)) < 0.4).astype(np.int8)
    tl = (rng.random((50, 40)) < 0.4).astype(np.int8)
    fast = assert_matches_reference(vs, vl, ts, tl)
    assert (fast["threshold"] == 0).any() and np.signbit(fast["threshold"]).any()
    assert_matches_reference(
        rng.normal(0, 3, (300, 8)),
        (rng.random((300, 8)) < 0.3).astype(np.int8),
        rng.normal(0, 3, (200, 8)),
        (rng.random((200, 8)) < 0.3).astype(np.int8),
    )


@pytest.mark.parametrize(("dtype", "step", "big"), [(np.float64, 1e-12, 1e300), (np.float32, 1e-7, 3e38)])
def test_extreme_range_and_crowded_cells(monkeypatch, dtype, step, big):
    """Huge key ranges put many queries into one histogram cell (the exact within-cell search)."""
    monkeypatch.setattr(metrics, "_cell_bits", lambda n: 8)
    rng = np.random.default_rng(9)
    n, c = 400, 6
    vs = (0.5 + rng.integers(0, 50, (n, c)) * step).astype(dtype)
    ts = (0.5 + rng.integers(0, 50, (n, c)) * step).astype(dtype)
    assert np.unique(vs).size > 40
    vs[0], ts[0] = big, big
    vs[1], ts[1] = -big, np.finfo(dtype).tiny
    vl = (rng.random((n, c)) < 0.3).astype(np.int8)
    tl = (rng.random((n, c)) < 0.3).astype(np.int8)
    assert_matches_reference(vs, vl, ts, tl)


def test_layouts_dtypes_and_chunking_agree(monkeypatch):
    rng = np.random.default_rng(10)
    vs, vl = random_split(rng, 300, 23, p=0.2)
    ts, tl = random_split(rng, 250, 23, p=0.2)
    base = assert_matches_reference(vs, vl, ts, tl)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1000)  # several chunks, a partial last one
    variants = [
        (vs, vl, ts, tl),
        (np.asfortranarray(vs), np.asfortranarray(vl), np.asfortranarray(ts), np.asfortranarray(tl)),
        (vs[:, ::-1][:, ::-1], vl.astype(bool), ts, tl.astype(np.float64)),  # non-contiguous view, bool
        (vs, vl.astype(np.int64), ts.astype(np.float64), tl),  # mixed score dtypes (compared in float64)
    ]
    for args in variants:
        pd.testing.assert_frame_equal(per_class_metrics(*args), base)


def test_integer_scores():
    rng = np.random.default_rng(11)
    vs = rng.integers(-5, 5, (200, 7))
    ts = rng.integers(-5, 5, (150, 7))
    vl = (rng.random((200, 7)) < 0.3).astype(np.int8)
    tl = (rng.random((150, 7)) < 0.3).astype(np.int8)
    assert_matches_reference(vs, vl, ts, tl)


def test_tiny_and_empty_splits():
    rng = np.random.default_rng(12)
    for n_val, n_test in [(1, 1), (2, 3), (0, 5), (5, 0)]:
        vs, vl = random_split(rng, n_val, 4, p=0.5)
        ts, tl = random_split(rng, n_test, 4, p=0.5)
        assert_matches_reference(vs, vl, ts, tl)
    empty = per_class_metrics(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((4, 3)), np.ones((4, 3)))
    assert empty["threshold"].isna().all() and (empty["n_pos"] == 4).all()
    no_class = per_class_metrics(np.zeros((5, 0)), np.zeros((5, 0)), np.zeros((5, 0)), np.zeros((5, 0)))
    assert list(no_class.columns) == COLUMNS and len(no_class) == 0
    assert no_class["n_pos"].dtype == np.int64


def test_invalid_inputs():
    ok_s, ok_l = np.full((4, 2), 0.5), np.zeros((4, 2), dtype=np.int8)
    with pytest.raises(ValueError, match="0 and 1"):
        per_class_metrics(ok_s, ok_l + 2, ok_s, ok_l)
    with pytest.raises(ValueError, match="0 and 1"):
        per_class_metrics(ok_s, ok_l, ok_s, np.full((4, 2), 0.5))
    bad = ok_s.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        per_class_metrics(ok_s, ok_l, bad, ok_l)
    bad[1, 1] = -np.inf
    with pytest.raises(ValueError, match="finite"):
        per_class_metrics(bad, ok_l, ok_s, ok_l)
    with pytest.raises(ValueError, match="finite"):
        per_class_metrics(ok_s.astype(np.float32), ok_l, np.full((4, 2), np.inf, np.float32), ok_l)
    with pytest.raises(ValueError, match="shape"):
        per_class_metrics(ok_s, ok_l[:3], ok_s, ok_l)
    with pytest.raises(ValueError, match="classes"):
        per_class_metrics(ok_s, ok_l, ok_s[:, :1], ok_l[:, :1])
    with pytest.raises(ValueError, match="2-D"):
        per_class_metrics(ok_s[:, 0], ok_l[:, 0], ok_s, ok_l)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(13)
    vs, vl = random_split(rng, 100, 5)
    ts, tl = random_split(rng, 100, 5)
    vs[0, 0] = -0.0
    copies = [a.copy() for a in (vs, vl, ts, tl)]
    per_class_metrics(np.asfortranarray(vs), vl, ts, tl)
    per_class_metrics(vs, vl, ts, tl)
    for a, b in zip((vs, vl, ts, tl), copies, strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("ks", [metrics._KEYS_32, metrics._KEYS_64])
@pytest.mark.parametrize("cell_bits", [1, 3, 8])
def test_rank_counts_against_brute_force(ks, cell_bits):
    rng = np.random.default_rng(14)
    k, n = 5, 300
    x = np.round(rng.normal(0, 1, (k, n)), 2).astype(ks.float_dtype)
    x[2] = 0.0  # a constant row
    x[3, ::7] = -0.0
    b, flip = metrics._chunk_keys(x, ks)
    keys = b.astype(np.uint64) + np.uint64(flip)
    q_vals = np.concatenate([rng.choice(x.ravel(), 60), rng.normal(0, 2, 40).astype(ks.float_dtype)])
    q_rows = rng.integers(0, k, q_vals.size)
    q_row, q_key, _ = metrics._unique_row_keys(q_rows, ks.keys(q_vals))
    ws = metrics._Workspace(k * n, k << cell_bits)
    less, equal = metrics._rank_counts(b, flip, q_row, q_key, cell_bits, ws)
    for i, (r, q) in enumerate(zip(q_row, q_key.astype(np.uint64), strict=True)):
        assert less[i] == np.count_nonzero(keys[r] < q)
        assert equal[i] == np.count_nonzero(keys[r] == q)
    # The workspace tables are left in their neutral state.
    assert (ws.first == -1).all() and not ws.is_query.any()
