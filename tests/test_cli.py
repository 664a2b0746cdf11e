"""The `lfa` command: each step by hand, without Snakemake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run_snakemake, same_file, tiny_config

from lfa.pipeline.config import validate_config
from lfa.pipeline.plan import plan

LFA = str(Path(sys.executable).with_name("lfa"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([LFA, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("command", ["prepare", "train", "evaluate", "curves", "losses", "report"])
def test_every_step_has_help(command):
    proc = run(command, "--help")
    assert proc.returncode == 0 and "usage: lfa " + command in proc.stdout


def test_losses_lists_the_registry():
    proc = run("losses")
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert {"asl", "bce", "ece", "fece", "focal"} <= set(names)


def test_curves_writes_both_tables(tmp_path):
    proc = run("curves", "--convention", "figure2", "--losses", "bce", "fece", "--out", str(tmp_path / "c.csv"))
    assert proc.returncode == 0, proc.stderr
    curves = pd.read_csv(tmp_path / "c.csv")
    grads = pd.read_csv(tmp_path / "c_gradients.csv")
    assert set(curves.columns) >= {"loss", "direction", "p", "lfa"} and set(curves["loss"]) == {"bce", "fece"}
    assert set(grads.columns) >= {"loss", "label", "p", "gradient"}
    end = curves[(curves.loss == "bce") & (curves.direction == "+/-")].sort_values("p")["lfa"].iloc[-1]
    assert abs(end - 0.393) < 0.01  # sigmoid(-1/ln 10), as in the published Figure 2


def test_bad_config_gives_one_clear_line(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"datasets": {"d": {"source": "digits"}},
                                                       "experiments": {"e": {"dataset": "d", "backbones": ["x"],
                                                                             "losses": ["bce"]}}}))
    proc = run("prepare", "--configfile", str(tmp_path / "bad.yaml"), "--dataset", "d")
    assert proc.returncode == 2
    assert "experiments.e.backbones: unknown backbone 'x'; known backbones:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_steps_by_hand_and_a_partial_report(tiny_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, ignore=shutil.ignore_patterns(".snakemake", "reports"))
    the_plan = plan(validate_config(tiny_config()))
    runs = {(j.loss, j.fold): work / "results/runs" / j.path for j in the_plan.experiments["tiny_lt"]}
    job = runs["fece", 1]
    proc = run("evaluate", "--predictions", str(job / "predictions.parquet"), "--out", str(tmp_path / "m.parquet"),
               cwd=work)
    assert proc.returncode == 0, proc.stderr
    same_file(tmp_path / "m.parquet", job / "metrics.parquet")
    # Take two jobs' evaluations away: the partial report still renders and marks their cells.
    for f in (0, 1, 2):
        (runs["bce", f] / "metrics.parquet").unlink()
    proc = run("report", "--configfile", "config.yaml", "--partial", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "15 of 18 jobs evaluated" in proc.stderr
    html = (work / "reports/report.html").read_text()
    assert "not run" in html and "tiny_lt · digits_lt · small_cnn · bce" in html


@pytest.mark.slow
def test_train_by_hand_never_touches_the_workflows_runs(tiny_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, ignore=shutil.ignore_patterns("locks"))
    job = plan(validate_config(tiny_config())).experiments["tiny_lt"][0]
    run_dir = work / "results/runs" / job.path
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    args = ["train", "--configfile", "config.yaml", "--experiment", "tiny_lt", "--dataset", job.dataset,
            "--backbone", job.backbone, "--loss", job.loss, "--fold", str(job.fold), "--epochs", "1"]
    refused = run(*args, "--out", str(run_dir), cwd=work)
    assert refused.returncode == 2 and "which the workflow owns" in refused.stderr and "--force" in refused.stderr
    done = run(*args, cwd=work)
    assert done.returncode == 0, done.stderr
    manual = work / done.stderr.split("written: ")[1].split()[0]
    assert manual.parent.parent == work / "results/manual" / job.dataset / job.backbone / job.loss
    assert (manual / "predictions.parquet").exists()  # under its own settings key: 1 epoch
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # the workflow's run is untouched
    proc = run_snakemake(work, "-n", configfile=work / "config.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_loss_added_in_one_class_appears_in_the_cli_and_the_lfa_curves(tmp_path, capsys):
    """Adding a loss is one class and its registry entry: the CLI and the LFA curves pick it up."""
    import torch

    from lfa.cli import main
    from lfa.losses import Loss, register_loss, unregister_loss

    @register_loss
    class SquaredError(Loss):
        """Brier-style loss: ``L+ = (1 - p)**2``, ``L- = p**2``."""

        name = "squared_error_test"
        display = "Squared error"
        defaults = {}

        def compute_terms(self, z):
            p = torch.sigmoid(z)
            return (1 - p) ** 2, p**2

    try:
        assert main(["losses"]) == 0
        assert "squared_error_test" in capsys.readouterr().out
        assert main(["curves", "--out", str(tmp_path / "c.csv")]) == 0
        curves = pd.read_csv(tmp_path / "c.csv")
        mine = curves[(curves.loss == "squared_error_test") & (curves.direction == "+/-")].sort_values("p")
        # g+(q) = 2(1 - q); L-(q) = (1 - q)^2, so S/(1-ŷ) = 2(1-ŷ) - (1-ŷ) = 1 - ŷ: LFA = sigmoid(-ŷ)
        expected = 1 / (1 + np.exp(mine["p"].to_numpy()))
        assert np.allclose(mine["lfa"].to_numpy(), expected, atol=1e-6)
    finally:
        unregister_loss("squared_error_test")


def test_evaluate_outside_the_results_tree_asks_for_the_keys(tmp_path):
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "split": ["val", "val", "test", "test"],
                       "label_0": [0, 1, 0, 1], "score_0": [0.1, 0.9, 0.2, 0.8]})
    df.to_parquet(tmp_path / "p.parquet")
    proc = run("evaluate", "--predictions", str(tmp_path / "p.parquet"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    where = tmp_path / "p.parquet"
    assert f"no dataset, backbone, loss, seed, fold for {where}: give --dataset --backbone" in proc.stderr
    proc = run("evaluate", "--predictions", str(tmp_path / "p.parquet"), "--dataset", "mine", "--backbone", "b",
               "--loss", "bce", "--seed", "0", "--fold", "0", "--out", str(tmp_path / "m.parquet"))
    assert proc.returncode == 0, proc.stderr
    metrics = pd.read_parquet(tmp_path / "m.parquet")
    assert metrics["dataset"].tolist() == ["mine"] and "experiment" not in metrics.columns
    assert metrics["auc"].tolist() == [1.0]


@pytest.mark.slow
def test_a_partial_report_leaves_out_runs_evaluated_on_other_data(tiny_run, tmp_path):
    from lfa.io import read_table, write_parquet

    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, ignore=shutil.ignore_patterns(".snakemake", "reports"))
    job = plan(validate_config(tiny_config())).experiments["tiny_lt"][0]
    metrics = work / "results/runs" / job.path / "metrics.parquet"
    write_parquet(read_table(metrics), metrics, {"lfa.data_hash": "0123456789abcdef"})  # before a re-prepare
    proc = run("report", "--configfile", "config.yaml", "--partial", cwd=work)
    assert proc.returncode == 0, proc.stderr
    where = metrics.relative_to(work)
    assert f"1 evaluated run(s) left out: made from other data than today's prepared set (e.g. {where})" in proc.stderr
    assert "17 of 18 jobs evaluated" in proc.stderr
    html = (work / "reports/report.html").read_text()
    assert (work / "reports/tables/tiny_lt.csv").exists() and "only 2 of 3 runs" in html
