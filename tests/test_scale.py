"""Results at a class count where a page stops being readable: the predictions written in one pass and read back
into column-major arrays (same numbers, to the bit), evaluation's memory bounded by its score matrix, and a report
of 120 classes that folds its long tables and draws profiles instead of heatmaps."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lfa.data.datasets import Prepared
from lfa.evaluation.evaluate import evaluate_job, evaluate_run, read_predictions
from lfa.evaluation.metrics import per_class_metrics
from lfa.training.predict import write_predictions

KEYS = {"dataset": "d", "backbone": "b", "loss": "fece", "seed": 0, "fold": 0}


def _write(tmp_path: Path, n: int, c: int, seed: int = 0) -> tuple[Path, dict, Prepared]:
    rng = np.random.default_rng(seed)
    labels = np.eye(c, dtype=np.int8)[rng.integers(0, c, 2 * n)]
    data = Prepared(np.zeros(0), labels, np.zeros(2 * n, dtype=np.int64), np.array([f"i{k}" for k in range(2 * n)]),
                    {})
    split = {"val": np.arange(n), "test": np.arange(n, 2 * n)}
    scores = {name: torch.from_numpy(rng.random((n, c), dtype=np.float32)) for name in split}
    path = tmp_path / "predictions.parquet"
    write_predictions(path, data, split, scores, {"lfa.job_key": "k", "lfa.data_hash": "h"})
    return path, {"split": split, "scores": scores}, data


def test_predictions_are_written_in_the_documented_layout_and_read_back_to_the_bit(tmp_path):
    path, made, data = _write(tmp_path, 300, 7)
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["id", "split", *[f"{k}_{c}" for c in range(7) for k in ("label", "score")]]
    assert frame["label_3"].dtype == np.int8 and frame["score_3"].dtype == np.float32
    assert frame["split"].tolist() == ["val"] * 300 + ["test"] * 300 and frame["id"].iloc[300] == "i300"
    read = read_predictions(path)
    for name in ("val", "test"):
        scores, labels = read[name]
        assert scores.flags.f_contiguous and labels.flags.f_contiguous  # each class's column without a copy
        assert np.array_equal(scores, made["scores"][name].numpy())
        assert np.array_equal(labels, data.labels[made["split"][name]])
        part = frame[frame.split == name]  # what a reader of the DataFrame gets, column by column
        assert np.array_equal(scores, part[[f"score_{c}" for c in range(7)]].to_numpy())
    from_path = evaluate_job(path, KEYS)
    expected = per_class_metrics(*[np.ascontiguousarray(a) for a in (*read["val"], *read["test"])])
    pd.testing.assert_frame_equal(from_path.drop(columns=["dataset", "backbone", "loss", "seed", "fold", "ratio_k",
                                                          "class_name", "diverged"]), expected)


def test_evaluation_holds_its_score_matrix_about_once(tmp_path):
    """Python-level allocations (numpy's, which tracemalloc sees) at a size where the fixed working set is small
    beside the matrix: the peak stays within 2.5x the float32 score matrix of the file."""
    path, _, _ = _write(tmp_path, 60_000, 400)
    matrix = 2 * 60_000 * 400 * 4
    tracemalloc.start()
    evaluate_run(path, tmp_path / "metrics.parquet", keys=KEYS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2.5 * matrix, f"peak {peak / 2**20:.0f} MB for a {matrix / 2**20:.0f} MB score matrix"
    assert len(pd.read_parquet(tmp_path / "metrics.parquet")) == 400


@pytest.fixture(scope="module")
def wide_report(tmp_path_factory):
    """A report of one experiment on 120 long-tailed classes (3 folds, 2 losses), from synthetic per-run files."""
    from lfa.assessment.curves import compute_curves
    from lfa.evaluation.aggregate import aggregate, runs_table
    from lfa.io import write_parquet
    from lfa.pipeline.config import validate_config
    from lfa.pipeline.plan import Layout, plan
    from lfa.report import ReportInputs, render_report

    tmp = tmp_path_factory.mktemp("wide")
    n_classes = 120
    config = validate_config({
        "data_dir": str(tmp / "data"), "results_dir": str(tmp / "results"), "reports_dir": str(tmp / "reports"),
        "folds": [0, 1, 2], "datasets": {"wide": {"source": "digits"}},
        "experiments": {"wide": {"dataset": "wide", "backbones": ["small_cnn"], "losses": ["bce", "fece"]}}})
    layout, rng = Layout.from_config(config), np.random.default_rng(0)
    folder = layout.prepared("wide")
    folder.mkdir(parents=True)
    counts = (2000 / np.arange(1, n_classes + 1) ** 0.9).astype(int) + 3
    names = [f"class_{c:03d}" for c in range(n_classes)]
    pd.DataFrame({"class": range(n_classes), "name": names, "count": counts}).to_csv(folder / "counts.csv", index=False)
    target = np.repeat(np.arange(n_classes), counts)
    index = pd.DataFrame({"id": [f"i{k}" for k in range(len(target))], "row": np.arange(len(target)),
                          "fold": np.arange(len(target)) % 5})
    index = pd.concat([index, pd.DataFrame({f"label_{c}": (target == c).astype(np.int8) for c in range(n_classes)})],
                      axis=1)
    index.to_parquet(folder / "index.parquet")
    (folder / "meta.json").write_text(json.dumps({"name": "wide", "source": "digits", "task": "single_label",
                                                  "class_names": names, "image_shape": [8, 8, 1],
                                                  "n_samples": len(target), "n_splits": 5, "split_seed": 0,
                                                  "ratio_k": None}))
    files = []
    for job in plan(config).jobs:
        run = layout.run(job)
        run.mkdir(parents=True)
        frame = pd.DataFrame({"dataset": "wide", "backbone": job.backbone, "loss": job.loss, "seed": 0,
                              "fold": job.fold, "ratio_k": pd.array([None] * n_classes, dtype="Int64"),
                              "class": np.arange(n_classes), "class_name": names, "n_pos": 5, "n_neg": 500})
        for metric in ("auc", "threshold", "accuracy", "precision", "recall", "f0_5", "f0", "f1", "sensitivity",
                       "specificity", "average_precision", "brier", "calibration_error"):
            frame[metric] = rng.uniform(0.3, 1.0, n_classes)
        frame.to_parquet(run / "metrics.parquet")
        (run / "train_info.json").write_text(json.dumps({"device_type": "cpu", "device": "cpu", "wall_seconds": 1}))
        files.append(run / "metrics.parquet")
    results = layout.results
    paths = aggregate({"wide": files}, results, {"lfa.config_hash": "x"})
    write_parquet(runs_table(plan(config)), results / "runs.parquet", {})
    curves, grads = [], []
    for convention in ("trained", "figure2"):
        c, g = compute_curves(convention, ["bce", "fece"], grid=np.linspace(0.1, 0.99, 20))
        curves.append(results / f"curves_{convention}.parquet")
        grads.append(results / f"gradients_{convention}.parquet")
        c.to_parquet(curves[-1])
        g.to_parquet(grads[-1])
    inputs = ReportInputs(metrics=paths["metrics"], summary=paths["summary"], per_class=paths["per_class"],
                          comparisons=paths["comparisons"], runs=results / "runs.parquet", curves=curves,
                          gradients=grads, config=config, config_hash="x", overall=paths["overall"])
    html = render_report(inputs, tmp / "report.html", figures_dir=tmp / "figures")
    return tmp, html.read_text(), layout


def test_a_report_of_many_classes_folds_its_tables_and_draws_profiles(wide_report):
    from PIL import Image

    tmp, page, layout = wide_report
    assert "Per-class sensitivity by class frequency" in page and "too many for a heatmap" in page
    assert "120 classes: counts from" in page  # the class-count table folded, its summary in the fold's title
    datasets_part = page.split('<h2 id="lfa"')[0].split('<h2 id="datasets"')[-1]
    assert datasets_part.count("<tr>") <= 20 + 2  # the first 20 rows of counts, and the header
    assert 'class="dataframe per-class sortable"' in page and "<script>" in page
    per_class = pd.read_csv(layout.table("wide", "csv", "per_class"))
    assert len(per_class) == 120 and list(per_class.columns[:4]) == ["dataset", "backbone", "class", "class_name"]
    heights = [Image.open(p).size[1] for p in (tmp / "figures").glob("*.png")]
    assert heights and max(heights) < 1100  # no figure taller than a screen of readable content
    assert (tmp / "report.html").stat().st_size < 4 * 2**20


def test_resources_follow_the_data_and_a_fixed_test_split(tmp_path):
    from lfa.pipeline import resources
    from lfa.pipeline.config import validate_config

    config = validate_config({"data_dir": str(tmp_path), "datasets": {"d": {"source": "digits"}},
                              "experiments": {"e": {"dataset": "d", "backbones": ["small_cnn"], "losses": ["bce"]}}})
    assert resources.evaluated_rows(config, "d") == -(-2 * 1797 // 5)  # published size, two folds of five
    folder = tmp_path / "prepared" / "d"
    folder.mkdir(parents=True)
    meta = {"n_samples": 1000, "image_shape": [8, 8, 1], "class_names": ["a", "b", "c"], "test_split": {"images": 500}}
    (folder / "meta.json").write_text(json.dumps(meta))
    assert resources.evaluated_rows(config, "d") == 100 + 500  # a fold of the other 500, and the test split
    assert resources.score_matrix_mb(config, "d") == pytest.approx(600 * 3 * 4 / 2**20)
    assert resources.evaluate_mem_mb(config, "d") == int(resources.PROCESS_MB + 2.5 * 600 * 12 / 2**20)
