"""lfa.logs (job logs) and lfa.evaluation.evaluate (predictions → per-class metrics → aggregated files)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from lfa.evaluation.aggregate import aggregate
from lfa.evaluation.evaluate import evaluate_job, read_predictions
from lfa.evaluation.metrics import per_class_metrics
from lfa.io import read_parquet_metadata
from lfa.logs import logged


def test_logged_sends_output_to_the_log_and_reports_errors_on_stderr(tmp_path, capfd):
    log = tmp_path / "job.log"
    with pytest.raises(ValueError), logged(log):
        print("step 1")
        print("warning", file=sys.stderr)
        raise ValueError("scores must be finite")
    text = log.read_text()
    assert "step 1" in text and "warning" in text and "Traceback" in text
    assert "ERROR: ValueError: scores must be finite" in text
    assert f"ERROR ({log}): ValueError: scores must be finite" in capfd.readouterr().err
    with logged(log):  # appends: a resumed job keeps its history
        print("step 2")
    assert log.read_text().startswith("step 1") and "step 2" in log.read_text()


def _predictions(tmp_path, n=200, c=3, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for split in ("val", "test"):
        y = np.eye(c, dtype=np.int8)[rng.integers(0, c, n)]
        s = np.clip(y * 0.5 + rng.random((n, c)) * 0.6, 0, 1).astype(np.float32)
        df = pd.DataFrame({"id": [f"{split}{i}" for i in range(n)], "split": split})
        for k in range(c):
            df[f"label_{k}"], df[f"score_{k}"] = y[:, k], s[:, k]
        frames.append(df)
    path = tmp_path / "predictions.parquet"
    pd.concat(frames).to_parquet(path)
    return path


KEYS = {"dataset": "d", "backbone": "b", "loss": "fece", "seed": 0, "fold": 1}


def test_evaluate_job_is_per_class_metrics_with_keys(tmp_path):
    path = _predictions(tmp_path)
    df = evaluate_job(path, KEYS, ["a", "b", "c"], ratio_k=50)
    pred = read_predictions(path)
    expected = per_class_metrics(*pred["val"], *pred["test"])
    pd.testing.assert_frame_equal(df[expected.columns].reset_index(drop=True), expected)
    assert df["class_name"].tolist() == ["a", "b", "c"] and (df["fold"] == 1).all()
    assert df["ratio_k"].tolist() == [50, 50, 50] and not df["diverged"].any()
    assert (df["auc"] > 0.7).all()


def test_a_diverged_job_has_undefined_metrics_and_counted_labels(tmp_path):
    path = _predictions(tmp_path)
    df = evaluate_job(path, KEYS, ["a", "b", "c"], diverged=True)
    assert df["diverged"].all() and df["auc"].isna().all() and df["f1"].isna().all()
    assert (df["n_pos"] + df["n_neg"] == 200).all()


def test_aggregate_writes_the_four_files_with_metadata(tmp_path):
    files = []
    for fold in (0, 1, 2):
        for loss in ("bce", "fece"):
            p = tmp_path / f"m_{loss}_{fold}.parquet"
            evaluate_job(_predictions(tmp_path, seed=fold), {**KEYS, "loss": loss, "fold": fold},
                         ["a", "b", "c"]).to_parquet(p)
            files.append(p)
    paths = aggregate({"e": files, "again": files[:2]}, tmp_path / "out", {"lfa.config_hash": "abc"})
    assert set(paths) == {"metrics", "summary", "per_class", "comparisons", "overall"}
    metrics = pd.read_parquet(paths["metrics"])
    assert len(metrics) == 3 * 2 * 3 + 3 * 2  # a run used by two experiments counts in each
    assert metrics.columns[0] == "experiment" and metrics.groupby("experiment").size().to_dict() == {"e": 18,
                                                                                                     "again": 6}
    metrics = metrics[metrics.experiment == "e"]
    summary = pd.read_parquet(paths["summary"])
    auc = summary[(summary.experiment == "e") & (summary.loss == "fece") & (summary.metric == "auc")].iloc[0]
    values = metrics[metrics.loss == "fece"]["auc"]
    assert auc["mean"] == pytest.approx(values.mean()) and auc["std"] == pytest.approx(values.std(ddof=0))
    meta = read_parquet_metadata(paths["summary"])
    assert meta["lfa.config_hash"] == "abc" and "lfa.version" in meta


def _meta(n_classes=3, data_hash="abc", n_splits=5):
    return {"name": "d", "class_names": [f"c{k}" for k in range(n_classes)], "data_hash": data_hash,
            "n_splits": n_splits}


def _stamp(path, data_hash):
    from lfa.io import write_parquet

    write_parquet(pd.read_parquet(path), path, {"lfa.data_hash": data_hash})


def test_predictions_of_other_data_classes_or_splits_are_refused(tmp_path):
    from lfa.errors import PredictionsMismatch
    from lfa.evaluation.evaluate import check_predictions

    path = _predictions(tmp_path)
    _stamp(path, "abc")
    df = pd.read_parquet(path)
    index = pd.DataFrame({"id": df["id"], "fold": np.where(df["split"] == "test", 1, 2)})
    check_predictions(path, _meta(), index, fold=1)  # test fold 1, validation fold 2: as trained
    with pytest.raises(PredictionsMismatch, match=r"lfa.data_hash abc differs from the content hash xyz of "
                                                  r"the prepared dataset d as it is now.*train the job again"):
        check_predictions(path, _meta(data_hash="xyz"))
    with pytest.raises(PredictionsMismatch, match=r"scores for 3 classes .*the prepared dataset d has 4"):
        check_predictions(path, _meta(n_classes=4))
    with pytest.raises(PredictionsMismatch, match=r"the val ids are not those of fold 2's run on the prepared "
                                                  r"dataset d \(200 foreign, 0 missing\)"):
        check_predictions(path, _meta(), index, fold=2)  # the fold rotation of another job
    df[df.split == "val"].drop(columns=["label_2", "score_2"]).to_parquet(path)
    with pytest.raises(PredictionsMismatch, match="scores for 2 classes"):
        check_predictions(path, _meta())
    df[df.split == "val"].to_parquet(path)
    with pytest.raises(PredictionsMismatch, match=r"no rows with split == 'test'"):
        check_predictions(path, _meta())


def test_a_damaged_parquet_footer_names_the_file(tmp_path):
    from lfa.errors import UnreadableFile
    from lfa.evaluation.evaluate import check_predictions

    path = tmp_path / "predictions.parquet"
    path.write_bytes(b"not a parquet file at all")
    with pytest.raises(UnreadableFile, match=rf"{path}: unreadable \(.*\); train the job again"):
        check_predictions(path, _meta())


def test_the_overall_row_equals_scikit_learn_on_the_test_split(tmp_path):
    from metrics_reference import reference_calibration_error
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    from lfa.evaluation.evaluate import evaluate_run

    path = _predictions(tmp_path, n=300, c=4, seed=3)
    evaluate_run(path, tmp_path / "metrics.parquet", keys=KEYS)
    row = pd.read_parquet(tmp_path / "overall.parquet").iloc[0]
    scores, labels = read_predictions(path)["test"]
    true, predicted = labels.argmax(1), scores.argmax(1)
    assert row["task"] == "single_label" and row["n_classes"] == 4 and row["loss"] == "fece"
    assert row["top1_accuracy"] == pytest.approx(accuracy_score(true, predicted), abs=1e-15)
    assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, predicted), abs=1e-15)
    assert row["macro_f1"] == pytest.approx(f1_score(true, predicted, average="macro"), abs=1e-15)
    assert np.array_equal(np.asarray(row["confusion"]).reshape(4, 4), confusion_matrix(true, predicted))
    top = scores.max(1).astype(np.float64)
    assert row["top_label_calibration_error"] == pytest.approx(
        reference_calibration_error((predicted == true).astype(int), top), abs=1e-12)
    count = np.asarray(row["reliability_count"])
    flat = scores.ravel().astype(np.float64)
    expected = [*np.histogram(flat[flat < 1], bins=15, range=(0, 1))[0], (flat == 1).sum()]  # 1.0: a bin of its own
    assert count.sum() == flat.size and np.array_equal(count, expected)
    positives = np.asarray(row["reliability_label"])
    assert positives.sum() == labels.sum()


def test_multi_label_runs_have_no_top1_metrics_but_reliability(tmp_path):
    from lfa.evaluation.evaluate import evaluate_run

    path = _predictions(tmp_path, n=100, c=3)
    df = pd.read_parquet(path)
    df.loc[df.index[:5], [f"label_{k}" for k in range(3)]] = 1  # five test rows with three positives
    df.to_parquet(path)
    evaluate_run(path, tmp_path / "metrics.parquet", keys=KEYS)
    row = pd.read_parquet(tmp_path / "overall.parquet").iloc[0]
    assert row["task"] == "multi_label" and np.isnan(row["top1_accuracy"]) and len(row["confusion"]) == 0
    assert np.asarray(row["reliability_count"]).sum() == 100 * 3
