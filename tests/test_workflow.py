"""Real Snakemake runs of the tiny config: the whole DAG, dry runs, reruns and the lint."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from helpers import REPO, SNAKEMAKE, TINY, run_snakemake, tiny_config

from lfa.io import read_parquet_metadata
from lfa.pipeline.config import config_hash, validate_config
from lfa.pipeline.plan import jobs

pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_dry_run_lists_every_job_of_the_default_config(tmp_path):
    proc = run_snakemake(tmp_path, "-n", "--quiet", "rules", configfile=REPO / "config.yaml")
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts["train"] == 105 and counts["evaluate"] == 105
    assert counts["prepare_digits"] == 7  # digits_lt and six ratio subsets
    assert counts["report"] == 1 and counts["aggregate"] == 1 and counts["lfa_curves"] == 2


def test_full_run_produces_parquet_and_report(tiny_run):
    config = validate_config(tiny_config())
    metrics = pd.read_parquet(tiny_run / "results/metrics.parquet")
    expected_cols = ["experiment", "dataset", "backbone", "loss", "seed", "fold", "class", "auc", "threshold",
                     "accuracy", "precision", "recall", "f0_5", "f0", "f1"]
    assert set(expected_cols) <= set(metrics.columns)
    # digits_lt: 10 classes x 2 losses x 3 folds; ratio subsets: 2 classes x 2 losses x 3 folds x 2 ratios
    assert len(metrics) == 10 * 2 * 3 + 2 * 2 * 3 * 2
    assert len(metrics.groupby(["experiment", "dataset", "loss", "fold"])) == len(jobs(config))
    summary = pd.read_parquet(tiny_run / "results/summary.parquet")
    assert {"experiment", "dataset", "backbone", "loss", "metric", "mean", "std"} <= set(summary.columns)
    assert len(summary[["experiment", "dataset", "backbone", "loss"]].drop_duplicates()) == 2 + 2 * 2
    lt_auc = summary[(summary.dataset == "digits_lt") & (summary.metric == "auc")]
    assert (lt_auc["mean"] > 0.6).all()  # two epochs already beat chance clearly
    meta = read_parquet_metadata(tiny_run / "results/summary.parquet")
    assert meta["lfa.config_hash"] == config_hash(config)
    html = (tiny_run / "reports/report.html").read_text()
    assert html.count("<table class=\"results\">") == 2
    assert "Loss Function Assessment" in html and "data:image/png;base64," in html
    for table in ("tiny_lt", "tiny_ratio"):
        assert (tiny_run / f"results/tables/{table}.csv").exists()
        assert (tiny_run / f"results/tables/{table}.tex").exists()


def test_rerun_is_a_no_op_and_a_changed_setting_reruns_exactly_the_affected_jobs(tiny_run, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(tiny_run, work, ignore=shutil.ignore_patterns(".snakemake"))
    shutil.copytree(tiny_run / ".snakemake", work / ".snakemake", ignore=shutil.ignore_patterns("locks"))
    proc = run_snakemake(work, "-n", "--quiet", "rules", configfile=work / "config.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    config = tiny_config()
    config["experiments"]["tiny_lt"]["train"] = {"epochs": 3}
    import yaml

    (work / "changed.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(work, "-n", "--quiet", "rules", configfile=work / "changed.yaml")
    counts = {p[0]: int(p[1]) for p in (line.split() for line in proc.stdout.splitlines())
              if len(p) == 2 and p[1].isdigit()}
    assert counts["train"] == 6  # tiny_lt: 2 losses x 3 folds; the ratio experiment is untouched
    assert "prepare_digits" not in counts


@pytest.mark.slow
@pytest.mark.parametrize("configfile", [TINY, REPO / "configs" / "paper.yaml"], ids=["tiny", "paper"])
def test_lint_has_no_finding_but_the_conda_one(configfile):
    import subprocess

    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(configfile), "--lint"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    text = proc.stdout + proc.stderr
    findings = [line.strip() for line in text.splitlines() if line.lstrip().startswith("* ")]
    # Accepted: no per-rule conda directive, since every rule imports the one installed package (README).
    assert findings, text  # the lint ran and reported
    assert all(f.startswith("* Specify a conda environment or container") for f in findings), findings


def test_snakemakes_own_report_holds_the_figures_and_tables(tiny_run, tmp_path):
    import zipfile

    out = tmp_path / "snakemake-report.zip"
    run_snakemake(tiny_run, "--report", str(out), configfile=tiny_run / "config.yaml")
    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("report.html") for n in names)
    assert any(n.endswith("figure2_trained.png") for n in names)
    assert any(n.endswith("tiny_ratio.csv") for n in names) and any(n.endswith("tiny_lt.tex") for n in names)
