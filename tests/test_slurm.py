"""The SLURM profile against a real SLURM: the single-node cluster that `.ci/slurm.sh up` brings up.

Runs only with ``LFA_TEST_SLURM=1`` (``.ci/run`` sets it after ``.ci/slurm.sh up``); fails, rather than
skips, when that is set and no SLURM answers. One run of ``tests/configs/slurm.yaml`` goes through
``--profile profiles/slurm --profile profiles/slurm-test``; one of its training jobs is cancelled with
``scancel`` after its first epoch. One local run of the same config is the reference. The tests check that
every job outside the ``localrules`` ran as a SLURM job, that concurrent training jobs got distinct
(simulated) GPUs, that the cancelled job was submitted again and resumed from its checkpoint, and that the
report's tables equal the local run's.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO, SNAKEMAKE

from lfa.pipeline.config import validate_config
from lfa.pipeline.plan import jobs

pytestmark = pytest.mark.slow

CONFIG = REPO / "tests" / "configs" / "slurm.yaml"
PROFILES = [REPO / "profiles" / "slurm", REPO / "profiles" / "slurm-test"]
STATE = Path(os.environ.get("LFA_SLURM_STATE", REPO / ".ci" / "slurm-state"))
RUN_TIMEOUT = 480  # seconds for the SLURM run (about 2 minutes on an idle 2-core machine)

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")
JOB_BLOCK = re.compile(r"^(local)?rule (\w+):\n((?:    .*\n)+)", re.MULTILINE)
TASK_LINE = re.compile(r"^slurm-task job=(\d+) step=(\S+) node=\S+ cuda_visible_devices=(\S+)$", re.MULTILINE)


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and proc.stdout.split()[:1] in (["idle"], ["mixed"], ["allocated"])


@pytest.fixture(scope="module", autouse=True)
def _require_slurm():
    if os.environ.get("LFA_TEST_SLURM") != "1":
        pytest.skip("SLURM tests run with LFA_TEST_SLURM=1 after `.ci/slurm.sh up`")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("LFA_TEST_SLURM=1 but snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    if not _slurm_up():
        pytest.fail("LFA_TEST_SLURM=1 but no SLURM node answers: run `.ci/slurm.sh up` first (as root)")


@dataclass
class SlurmRun:
    work: Path
    output: str
    returncode: int
    run_id: str
    victim: str  # the path (job.path) of the training job that was cancelled
    victim_slurm_id: str
    jobs: dict[str, dict] = field(default_factory=dict)  # SLURM id -> squeue record


def _squeue(*args: str) -> list[list[str]]:
    proc = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, timeout=30, check=True)
    return [line.split("|") for line in proc.stdout.splitlines() if line.strip()]


def _diagnostics() -> str:
    out = []
    for name in ("slurmctld.log", "slurmd.log"):
        path = STATE / "log" / name
        if path.exists():
            out.append(f"---- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-25:]))
    return "\n".join(out)


def _wildcards(value: str) -> str:
    """The plugin's wildcard string: the values joined by '_', with '/' also made '_' (a training job's one
    wildcard, {run}, is its path: a/b/c/d/s0_f1 -> a_b_c_d_s0_f1)."""
    return value.replace("/", "_")


def _cancel_first_training_job(work: Path, procs: list[subprocess.Popen], deadline: float) -> tuple[str, str]:
    """scancel the first SLURM training job whose log shows a finished epoch: (its job path, its SLURM id)."""
    logs = work / "logs" / "train"
    while time.time() < deadline and procs[0].poll() is None:
        for log in sorted(logs.rglob("*.log")) if logs.exists() else []:
            if "epoch 1/" not in log.read_text(errors="replace"):
                continue
            job_path = log.relative_to(logs).with_suffix("").as_posix()
            comment = f"rule_train_wildcards_{_wildcards(job_path)}"
            running = [r[0] for r in _squeue("-t", "RUNNING", "-o", "%i|%k") if r[1] == comment]
            if running:
                subprocess.run(["scancel", running[0]], check=True, timeout=30)
                return job_path, running[0]
        time.sleep(0.1)
    raise AssertionError("no training job was seen running after its first epoch")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # Snakemake cancels its SLURM jobs
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, SlurmRun]:
    """The SLURM run (one training job cancelled) and, at the same time, the local run of the same config."""
    work, local = tmp_path_factory.mktemp("slurm"), tmp_path_factory.mktemp("local")
    for d in (work, local):
        shutil.copy(CONFIG, d / "config.yaml")
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]
    slurm_cmd = cmd + [arg for profile in PROFILES for arg in ("--profile", str(profile))]
    deadline = time.time() + RUN_TIMEOUT
    with open(work / "snakemake.out", "w") as out, open(local / "snakemake.out", "w") as local_out:
        procs = [subprocess.Popen(slurm_cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT),
                 subprocess.Popen(cmd + ["--cores", "2"], cwd=local, stdout=local_out, stderr=subprocess.STDOUT)]
        try:
            victim, victim_id = _cancel_first_training_job(work, procs, deadline)
            for proc in procs:
                proc.wait(timeout=max(1.0, deadline - time.time()))
        except BaseException:
            for proc in procs:
                _stop(proc)
            print((work / "snakemake.out").read_text()[-6000:])
            print(_diagnostics())
            raise
    output = (work / "snakemake.out").read_text()
    assert procs[0].returncode == 0, f"the SLURM run failed:\n{output[-6000:]}\n{_diagnostics()}"
    assert procs[1].returncode == 0, "the local run failed:\n" + (local / "snakemake.out").read_text()[-6000:]
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, output[-3000:]
    run = SlurmRun(work, output, procs[0].returncode, match.group(1), victim, victim_id)
    fields = ["id", "state", "start", "end", "comment"]
    run.jobs = {r[0]: dict(zip(fields, r, strict=True))
                for r in _squeue("--states=all", "--name", run.run_id, "-o", "%i|%T|%S|%e|%k")}
    return local, run


def _submissions(run: SlurmRun) -> list[tuple[str, str, Path]]:
    """(Snakemake job id, SLURM job id, SLURM log) of every submission, in order."""
    return [(m[1], m[2], Path(m[3])) for m in SUBMITTED.finditer(run.output)]


def _rule_jobs(run: SlurmRun) -> dict[str, tuple[str, bool, str]]:
    """Snakemake job id -> (rule, is local, wildcard values joined by '_' as the plugin writes them)."""
    out = {}
    for local, rule, body in JOB_BLOCK.findall(run.output):
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, re.MULTILINE))
        values = [kv.split("=", 1)[1] for kv in fields.get("wildcards", "").split(", ") if "=" in kv]
        out[fields["jobid"]] = (rule, bool(local), _wildcards("_".join(values)))
    return out


def test_every_job_outside_the_localrules_ran_as_a_slurm_job(runs):
    _, run = runs
    rule_jobs = _rule_jobs(run)
    submitted: dict[str, list[tuple[str, Path]]] = {}
    for sm_id, slurm_id, log in _submissions(run):
        submitted.setdefault(sm_id, []).append((slurm_id, log))
    remote = {sm_id for sm_id, (_, local, _) in rule_jobs.items() if not local}
    local = {rule for rule, is_local, _ in rule_jobs.values() if is_local}
    assert {"train", "evaluate", "prepare_digits"} <= {rule_jobs[i][0] for i in remote}
    assert {"aggregate", "report", "all"} <= local
    assert set(submitted) == remote  # no local rule went to SLURM, every other job did
    for sm_id, subs in submitted.items():
        rule, _, wildcards = rule_jobs[sm_id]
        for slurm_id, log in subs:
            # SLURM's log of the job: logs/slurm/rule_<rule>/<wildcards>/<id>.log, naming its id
            assert log == run.work / "logs" / "slurm" / f"rule_{rule}" / wildcards / f"{slurm_id}.log"
            tasks = TASK_LINE.findall(log.read_text(errors="replace"))
            assert ("batch" in [s for j, s, _ in tasks if j == slurm_id]
                    and "0" in [s for j, s, _ in tasks if j == slurm_id]), (log, tasks)
            record = run.jobs[slurm_id]
            assert record["comment"] == f"rule_{rule}_wildcards_{wildcards}"
            expected = "CANCELLED" if slurm_id == run.victim_slurm_id else "COMPLETED"
            assert record["state"] == expected, record
    # readable names: the run's id with the profile's prefix
    assert run.run_id.startswith("lfa_")


def _task_devices(log: Path, slurm_id: str) -> set[str]:
    return {dev for job, step, dev in TASK_LINE.findall(log.read_text(errors="replace"))
            if job == slurm_id and step != "batch"}


def test_concurrent_training_jobs_saw_distinct_gpus(runs):
    _, run = runs
    rule_jobs = _rule_jobs(run)
    spans = []
    for sm_id, slurm_id, log in _submissions(run):
        rule = rule_jobs[sm_id][0]
        devices = _task_devices(log, slurm_id)
        if rule != "train":
            assert devices == {"none"}, (rule, log, devices)  # no GPU booked, none visible
            continue
        assert len(devices) == 1 and devices <= {"0", "1"}, (log, devices)
        rec = run.jobs[slurm_id]
        start, end = (datetime.fromisoformat(rec[k]) for k in ("start", "end"))
        spans.append((slurm_id, devices.pop(), start, end))
    overlapping = [(a, b) for a, b in combinations(spans, 2) if a[2] < b[3] and b[2] < a[3]]
    assert overlapping, f"no two training jobs ran at once: {spans}"
    for a, b in overlapping:
        assert a[1] != b[1], f"jobs {a[0]} and {b[0]} ran at once on GPU {a[1]}"
    assert {s[1] for s in spans} == {"0", "1"}


def test_training_logs_name_their_slurm_job(runs):
    """Where the training reports the devices it was given, they are its SLURM job's."""
    _, run = runs
    config = validate_config(yaml.safe_load(CONFIG.read_text()))
    for job in jobs(config):
        text = (run.work / "logs" / "train" / f"{job.path}.log").read_text(errors="replace")
        given = re.findall(r"SLURM job (\d+) \(CUDA_VISIBLE_DEVICES=(\S+)\)", text)
        for slurm_id, device in given:
            assert slurm_id in run.jobs, (job.path, slurm_id)
            logs = list((run.work / "logs" / "slurm" / "rule_train").rglob(f"{slurm_id}.log"))
            assert len(logs) == 1 and _task_devices(logs[0], slurm_id) == {device}, (job.path, slurm_id, logs)


def test_cancelled_training_job_was_resubmitted_and_resumed(runs):
    _, run = runs
    subs = [(sm, sl) for sm, sl, _ in _submissions(run)]
    sm_id = next(sm for sm, sl in subs if sl == run.victim_slurm_id)
    attempts = [sl for sm, sl in subs if sm == sm_id]
    assert attempts[0] == run.victim_slurm_id and len(attempts) == 2, attempts
    assert run.jobs[attempts[0]]["state"] == "CANCELLED"
    assert run.jobs[attempts[1]]["state"] == "COMPLETED"
    text = (run.work / "logs" / "train" / f"{run.victim}.log").read_text(errors="replace")
    resumed = re.search(r"resuming from epoch (\d+)", text)
    epochs = yaml.safe_load(CONFIG.read_text())["train"]["epochs"]
    assert resumed and 1 <= int(resumed[1]) < epochs, text[-3000:]  # cancelled mid-training
    history = pd.read_csv(run.work / "results" / "runs" / run.victim / "train_log.csv")
    assert list(history["epoch"]) == list(range(1, epochs + 1))


def test_slurm_report_equals_the_local_one(runs):
    local, run = runs
    assert (run.work / "reports" / "report.html").stat().st_size > 10_000
    for name in ("summary", "metrics", "per_class"):
        ours = pd.read_parquet(run.work / "results" / f"{name}.parquet")
        ref = pd.read_parquet(local / "results" / f"{name}.parquet")
        pd.testing.assert_frame_equal(ours, ref, check_exact=False, rtol=1e-9, atol=1e-12)
    tables = sorted(p.name for p in (local / "results" / "tables").glob("*.csv"))
    assert tables
    for name in tables:
        assert (run.work / "results" / "tables" / name).read_text() == (local / "results" / "tables" / name).read_text()
