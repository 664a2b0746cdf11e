"""A results folder of the layout before job keys: the workflow stops and says what to do; `lfa migrate`
moves every finished run and resume state into today's layout, and nothing trains again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, run_snakemake, tiny_config

from lfa.pipeline.config import validate_config
from lfa.pipeline.migrate import _legacy_fingerprint
from lfa.pipeline.plan import plan

pytestmark = pytest.mark.slow
LFA = str(Path(sys.executable).with_name("lfa"))


def _to_legacy(work: Path) -> tuple[int, Path]:
    """Rewrite a finished run of today's layout into the earlier one: runs and states under the experiment's
    name, train_info.json's job as it was (experiment, every train setting, the config's loss parameters)."""
    config = validate_config(tiny_config())
    n = 0
    for name, jobs in plan(config).experiments.items():
        for job in jobs:
            tail = f"{name}/{job.dataset}/{job.backbone}/{job.loss}/s{job.seed}_f{job.fold}"
            old, new = work / "results/runs" / tail, work / "results/runs" / job.path
            old.parent.mkdir(parents=True, exist_ok=True)
            new.rename(old)
            info = json.loads((old / "train_info.json").read_text())
            info["job"] = {"experiment": name, "dataset": job.dataset, "backbone": job.backbone, "loss": job.loss,
                           "seed": job.seed, "fold": job.fold, "settings": {**job.settings, **job.runtime},
                           "loss_params": {}}
            (old / "train_info.json").write_text(json.dumps(info))
            meta = json.loads((work / "data/prepared" / job.dataset / "meta.json").read_text())
            state = work / "results/state" / tail
            state.parent.mkdir(parents=True, exist_ok=True)
            (work / "results/state" / job.path).rename(state)
            for f in state.iterdir():
                ckpt = torch.load(f, weights_only=True)
                torch.save({**ckpt, "fingerprint": _legacy_fingerprint(name, job, {}, meta)}, f)
            n += 1
    for meta_path in (work / "data/prepared").glob("*/meta.json"):  # prepared before content hashes
        meta = json.loads(meta_path.read_text())
        del meta["data_hash"]
        meta_path.write_text(json.dumps(meta))
    unfinished = work / "results/runs" / tail
    shutil.rmtree(unfinished)  # the last job: only its resume state is left, as after a kill
    for stale in ("runs", "state"):
        for d in sorted((work / "results" / stale).glob("*/*/*/*/*"), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return n, unfinished


def test_an_old_results_layout_is_moved_not_retrained(tiny_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, ignore=shutil.ignore_patterns("locks"))
    n, unfinished = _to_legacy(work)
    proc = run_snakemake(work, "-n", configfile=work / "config.yaml", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert f"holds {n - 1} finished run(s) and {n} resume state(s) in the layout before job keys" in text, text
    assert "lfa migrate --configfile" in text

    dry = subprocess.run([LFA, "migrate", "--configfile", "config.yaml", "--dry-run"], cwd=work, capture_output=True,
                         text=True, timeout=300)
    assert dry.returncode == 0 and f"{n - 1} finished run(s) moved" in dry.stdout
    assert (work / "results/runs/tiny_lt").is_dir()  # a dry run moves nothing
    done = subprocess.run([LFA, "migrate", "--configfile", "config.yaml", "--snakefile", str(REPO / "Snakefile")],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{n - 1} finished run(s) moved, {n} resume state(s) moved" in done.stdout
    assert "3 prepared dataset(s) given their content hash" in done.stdout
    assert json.loads((work / "data/prepared/digits_lt/meta.json").read_text())["data_hash"]
    assert not (work / "results/runs/tiny_lt").exists() and not (work / "results/state/tiny_lt").exists()

    proc = run_snakemake(work, "-n", "--quiet", "rules", configfile=work / "config.yaml")
    counts = {p[0]: int(p[1]) for p in (line.split() for line in proc.stdout.splitlines())
              if len(p) == 2 and p[1].isdigit()}
    assert counts["train"] == 1 and "prepare_digits" not in counts  # only the unfinished run trains: it resumes
    assert counts["evaluate"] == n  # the metrics files' columns changed: evaluated again, cheaply
    run_snakemake(work, configfile=work / "config.yaml")
    job = plan(validate_config(tiny_config())).jobs[-1]
    log = (work / "logs/train" / f"{job.path}.log").read_text()
    assert "resuming from epoch 2" in log
    assert json.loads((work / "results/runs" / plan(validate_config(tiny_config())).jobs[0].path
                       / "train_info.json").read_text())["migrated_from"].endswith("s0_f0")


def test_old_resume_states_alone_are_found_and_moved(tiny_run, tmp_path):
    """Only resume states of the old layout (every run was unfinished): still found, still moved."""
    from lfa.pipeline.migrate import check_results_layout, migrate

    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, ignore=shutil.ignore_patterns(".snakemake"))
    n, _ = _to_legacy(work)
    for old in (work / "results/runs").glob("*/*/*/*/s*_f*"):
        shutil.rmtree(old)
    config = validate_config({**tiny_config(), **{k: str(work / v) for k, v in
                                                 (("data_dir", "data"), ("results_dir", "results"))}})
    with pytest.raises(Exception, match=rf"holds 0 finished run\(s\) and {n} resume state\(s\)"):
        check_results_layout(config)
    done = migrate(config)
    assert (len(done.moved), len(done.states)) == (0, n)
    from lfa.training.checkpoints import fingerprint

    job = plan(config).jobs[0]
    state = torch.load(work / "results/state" / job.path / "last.pt", weights_only=True)
    meta = json.loads((work / "data/prepared" / job.dataset / "meta.json").read_text())
    assert state["fingerprint"] == fingerprint(job, meta)  # today's training resumes it


def test_an_old_run_with_other_loss_parameters_is_not_taken_for_the_job():
    from lfa.pipeline.migrate import _same_job

    config = validate_config({**tiny_config(), "loss_params": {"fece": {"gamma": 1.0}}})
    job = next(j for j in plan(config).jobs if j.loss == "fece")
    old = {"job": {"settings": {**job.settings, **job.runtime}, "loss_params": {}}}  # trained with the default gamma 2
    assert not _same_job(old, job)
    assert _same_job({"job": {"settings": {**job.settings, **job.runtime}, "loss_params": {"gamma": 1}}}, job)
