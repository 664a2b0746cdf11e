"""lfa status: where a run stands, from the files a run leaves (its outputs and its job logs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_config

from lfa.errors import DivergenceError
from lfa.logs import logged
from lfa.pipeline.config import validate_config
from lfa.pipeline.plan import RUN_OUTPUTS, Layout, plan

pytestmark = pytest.mark.slow
LFA = str(Path(sys.executable).with_name("lfa"))


def test_status_tells_finished_running_stopped_failed_and_waiting_runs(tiny_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, ignore=shutil.ignore_patterns(".snakemake"))
    config = validate_config(tiny_config())
    layout = Layout.from_config({**config, "results_dir": str(work / "results"), "logs_dir": str(work / "logs")})
    jobs = {(j.loss, j.fold): j for j in plan(config).experiments["tiny_lt"]}
    for key in (("bce", 0), ("bce", 1), ("bce", 2), ("fece", 0)):
        for name in RUN_OUTPUTS:
            layout.run_file(jobs[key], name).unlink()
    old = time.time() - 3600
    os.utime(layout.log("train", jobs["bce", 0].path), (old, old))  # killed an hour ago: stopped
    log = layout.log("train", jobs["bce", 1].path)  # still training: its log up to the first epoch, written now
    text = log.read_text()
    log.write_text(text[: text.index("[lfa train] epoch 2/2")])
    log = layout.log("train", jobs["bce", 2].path)  # failed: its last attempt ended in an error
    with pytest.raises(SystemExit), logged(log):  # an error the user can fix: one line, exit 1
        print(f"[lfa train] {jobs['bce', 2].label}: a second attempt")
        raise DivergenceError("loss became nan at epoch 1 step 3")
    layout.log("train", jobs["fece", 0].path).unlink()  # never started

    proc = subprocess.run([LFA, "status", "--configfile", "config.yaml"], cwd=work, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[1:3]}
    assert rows == {"tiny_lt": ["2", "1", "1", "1", "1"], "tiny_ratio": ["12", "0", "0", "0", "0"]}, proc.stdout
    out = proc.stdout
    assert f"tiny_lt: running {jobs['bce', 1].path}: epoch 1/2 done, step" in out and "ETA" in out
    assert f"tiny_lt: stopped {jobs['bce', 0].path}: no log line for 60 min" in out
    assert f"tiny_lt: failed {jobs['bce', 2].path}: DivergenceError: loss became nan at epoch 1 step 3" in out
    assert "cells a report rendered now would mark incomplete: 1" in out
    assert "tiny_lt · digits_lt · small_cnn · fece: 2 of 3 runs" in out
