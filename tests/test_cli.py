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
    job = work / "results/runs/tiny_lt/digits_lt/small_cnn/fece/s0_f1"
    proc = run("evaluate", "--predictions", str(job / "predictions.parquet"),
               "--meta", str(work / "data/prepared/digits_lt/meta.json"), "--out", str(tmp_path / "m.parquet"))
    assert proc.returncode == 0, proc.stderr
    by_hand = pd.read_parquet(tmp_path / "m.parquet")
    by_rule = pd.read_parquet(job / "metrics.parquet")
    pd.testing.assert_frame_equal(by_hand, by_rule)
    # Take two jobs' evaluations away: the partial report still renders and marks their cells.
    for loss in ("bce",):
        for f in (0, 1, 2):
            (work / f"results/runs/tiny_lt/digits_lt/small_cnn/{loss}/s0_f{f}/metrics.parquet").unlink()
    proc = run("report", "--configfile", "config.yaml", "--partial", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "15 of 18 jobs evaluated" in proc.stderr
    html = (work / "reports/report.html").read_text()
    assert "not run" in html and "tiny_lt · digits_lt · small_cnn · bce" in html


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
