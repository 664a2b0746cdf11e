"""One path per step: each stage run by hand (``lfa <step>``) writes what the workflow's rule wrote."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import same_file, tiny_config

from lfa.pipeline.config import validate_config
from lfa.pipeline.plan import plan

LFA = str(Path(sys.executable).with_name("lfa"))


def lfa(*args: str, cwd: Path) -> str:
    proc = subprocess.run([LFA, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def work(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run, for the steps by hand to write into."""
    folder = tmp_path_factory.mktemp("stages") / "w"
    shutil.copytree(tiny_run, folder, ignore=shutil.ignore_patterns(".snakemake"))
    return folder


def test_prepare_by_hand_writes_the_workflows_prepared_dataset(tiny_run, work):
    shutil.rmtree(work / "data/prepared/digits_lt")
    lfa("prepare", "--configfile", "config.yaml", "--dataset", "digits_lt", cwd=work)
    made, rule = work / "data/prepared/digits_lt", tiny_run / "data/prepared/digits_lt"
    assert np.array_equal(np.load(made / "images.npy"), np.load(rule / "images.npy"))
    same_file(made / "index.parquet", rule / "index.parquet")
    assert (made / "counts.csv").read_text() == (rule / "counts.csv").read_text()
    made_meta, rule_meta = (json.loads((f / "meta.json").read_text()) for f in (made, rule))
    assert made_meta.pop("stamps") != rule_meta.pop("stamps")  # other files, other mtimes; the rest equal
    assert made_meta == rule_meta


def test_train_by_hand_predicts_what_the_workflow_predicted(tiny_run, work):
    job = plan(validate_config(tiny_config())).experiments["tiny_lt"][0]
    lfa("train", "--configfile", "config.yaml", "--experiment", "tiny_lt", "--dataset", job.dataset, "--backbone",
        job.backbone, "--loss", job.loss, "--fold", str(job.fold), "--out", "by_hand", cwd=work)
    same_file(work / "by_hand/predictions.parquet", tiny_run / "results/runs" / job.path / "predictions.parquet")
    columns = ["epoch", "train_loss", "val_loss", "lr", "train_images", "device"]
    pd.testing.assert_frame_equal(pd.read_csv(work / "by_hand/train_log.csv")[columns],
                                  pd.read_csv(tiny_run / "results/runs" / job.path / "train_log.csv")[columns])


def test_evaluate_by_hand_writes_the_workflows_metrics(tiny_run, work):
    for job in plan(validate_config(tiny_config())).jobs:
        run = tiny_run / "results/runs" / job.path
        lfa("evaluate", "--predictions", str(run / "predictions.parquet"), "--out", str(work / "m.parquet"), cwd=work)
        same_file(work / "m.parquet", run / "metrics.parquet")


def test_aggregate_by_hand_writes_the_workflows_aggregates(tiny_run, work):
    lfa("aggregate", "--configfile", "config.yaml", "--out", "by_hand_aggregates", cwd=work)
    for name in ("metrics", "summary", "per_class", "comparisons", "runs"):
        same_file(work / f"by_hand_aggregates/{name}.parquet", tiny_run / f"results/{name}.parquet")


def test_curves_by_hand_write_the_workflows_tables(tiny_run, work):
    losses = sorted({loss for exp in tiny_config()["experiments"].values() for loss in exp["losses"]})
    for convention in ("trained", "figure2"):
        lfa("curves", "--convention", convention, "--losses", *losses, "--out", f"c_{convention}.parquet", cwd=work)
        same_file(work / f"c_{convention}.parquet", tiny_run / f"results/lfa/curves_{convention}.parquet")
        same_file(work / f"c_{convention}_gradients.parquet", tiny_run / f"results/lfa/gradients_{convention}.parquet")


def test_report_by_hand_renders_the_workflows_report(tiny_run, work):
    lfa("report", "--configfile", "config.yaml", "--out", "by_hand.html", cwd=work)

    def undated(html: str) -> str:
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "DATE", html)

    assert undated((work / "by_hand.html").read_text()) == undated((tiny_run / "reports/report.html").read_text())
    tables = sorted(p for p in (tiny_run / "results/tables").rglob("*") if p.is_file())
    assert {p.parent.name for p in tables} == {"tables", "imbalance", "per_class"}
    for table in tables:  # the paper layout, the imbalance tables, the per-class CSVs
        by_hand = work / "results/tables" / table.relative_to(tiny_run / "results/tables")
        assert by_hand.read_text() == table.read_text()
