"""GPU slots (lfa.training.gpu): each job takes a free slot itself; no slot is ever held twice at once.
No GPU needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, SNAKEMAKE, tiny_config

from lfa.pipeline.config import validate_config
from lfa.pipeline.plan import plan
from lfa.training.gpu import detect_devices, gpu_slot, overlapping_holds, parse_slot_log, scheduler_assigned

HOLD = """
import sys, time, os
from lfa.training.gpu import gpu_slot
with gpu_slot(sys.argv[1], devices=int(sys.argv[2]), jobs_per_device=int(sys.argv[3]), job=sys.argv[4],
              poll_seconds=0.05) as slot:
    print("SLOT", slot.index, os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    time.sleep(float(sys.argv[5]))
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "LFA_GPU_DEVICES")}


def _hold(slots: Path, devices: int, per_device: int, job: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(slots), str(devices), str(per_device), job, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env())


def _slot_line(proc: subprocess.Popen) -> tuple[int, str]:
    line = proc.stdout.readline().split()
    assert line and line[0] == "SLOT", proc.stderr.read()
    return int(line[1]), line[2]


def test_slots_spread_over_devices_and_set_cuda_visible_devices(tmp_path):
    env: dict[str, str] = {}
    logs: list[str] = []
    with gpu_slot(tmp_path, devices=2, jobs_per_device=2, job="a", env=env, log=logs.append) as a:
        assert (a.index, a.device, env["CUDA_VISIBLE_DEVICES"]) == (0, "0", "0")
        other = _hold(tmp_path, 2, 2, "b", 0.5)
        assert _slot_line(other) == (1, "1")  # the second job goes to the other GPU first
        third = _hold(tmp_path, 2, 2, "c", 0.5)
        assert _slot_line(third) == (2, "0")  # then a second job on GPU 0 (2 jobs per device)
        other.wait(), third.wait()
    assert "CUDA_VISIBLE_DEVICES" not in env  # restored on release
    events = parse_slot_log("\n".join(logs))
    assert [(e["slot"], e["event"], e["job"]) for e in events] == [(0, "acquired", "a"), (0, "released", "a")]


def test_a_busy_machine_makes_the_job_wait_for_a_free_slot(tmp_path):
    first = _hold(tmp_path, 1, 1, "first", 1.5)
    assert _slot_line(first)[0] == 0
    t0 = time.time()
    second = _hold(tmp_path, 1, 1, "second", 0)
    assert _slot_line(second)[0] == 0
    assert time.time() - t0 > 0.8  # it waited for the first to finish
    assert "all 1 slots busy; waiting" in second.stderr.read()
    first.wait(), second.wait()


def test_kill_9_releases_the_slot(tmp_path):
    holder = _hold(tmp_path, 1, 1, "killed", 60)
    assert _slot_line(holder)[0] == 0
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with gpu_slot(tmp_path, devices=1, env={}, log=lambda m: None, poll_seconds=0.05) as slot:
        assert slot.index == 0  # the kernel dropped the dead process's lock


def test_slurm_or_a_preset_device_is_used_as_given(tmp_path):
    env = {"SLURM_JOB_ID": "123", "CUDA_VISIBLE_DEVICES": "3"}
    assert "SLURM job 123" in scheduler_assigned(env)
    with gpu_slot(tmp_path, devices=4, env=env, log=lambda m: None) as slot:
        assert (slot.index, slot.device, env["CUDA_VISIBLE_DEVICES"]) == (None, "3", "3")
    env = {"CUDA_VISIBLE_DEVICES": "GPU-abc"}
    with gpu_slot(tmp_path, devices=4, env=env, log=lambda m: None) as slot:
        assert slot.index is None and slot.device == "GPU-abc"
    assert not list(tmp_path.glob("slot*.lock"))


def test_no_gpu_means_no_slot(tmp_path, monkeypatch):
    monkeypatch.setenv("LFA_GPU_DEVICES", "0")
    assert detect_devices() == 0
    with gpu_slot(tmp_path, devices=0, env={}, log=lambda m: None) as slot:
        assert slot.index is None and slot.device is None
    monkeypatch.setenv("LFA_GPU_DEVICES", "3")
    assert detect_devices() == 3


def test_overlap_detection_finds_a_double_hold():
    log = "\n".join([
        "[lfa gpu] gpu slot 0 acquired device=0 pid=1 t=10.0 job=a",
        "[lfa gpu] gpu slot 0 released device=0 pid=1 t=12.0 job=a",
        "[lfa gpu] gpu slot 0 acquired device=0 pid=2 t=11.0 job=b",
        "[lfa gpu] gpu slot 0 released device=0 pid=2 t=13.0 job=b",
        "[lfa gpu] gpu slot 1 acquired device=1 pid=3 t=11.0 job=c",
    ])
    clashes = overlapping_holds(parse_slot_log(log))
    assert [(a["job"], b["job"]) for a, b in clashes] == [("a", "b")]


@pytest.mark.slow
def test_snakemake_jobs_never_share_a_slot(tmp_path):
    """6 training jobs, --resources gpu=2, a fake count of 2 GPUs: the jobs' logs show disjoint holds per slot.

    The same run checks identical jobs: a second experiment whose jobs equal 3 of the first's adds no job; its
    table reads the first's run folders.
    """
    config = tiny_config()
    config["train"].update(epochs=1, device="auto")  # no CUDA here: "auto" trains on the CPU but asks for a GPU
    config["gpu"] = {"devices": 2, "jobs_per_device": 1}
    config["experiments"] = {
        "slots": {"dataset": "digits_binary", "ratios": [50], "backbones": ["small_cnn"], "losses": ["bce", "fece"]},
        "again": {"dataset": "digits_binary", "ratios": [50], "backbones": ["small_cnn"], "losses": ["bce"]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    the_plan = plan(validate_config(config))
    assert len(the_plan.jobs) == 6 and set(the_plan.experiments["again"]) < set(the_plan.experiments["slots"])
    targets = [f"results/runs/{job.path}/train_info.json" for job in the_plan.jobs]
    cmd = [SNAKEMAKE, *targets, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(tmp_path / "config.yaml"), "--cores", "4", "--resources", "gpu=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    logs = sorted((tmp_path / "logs/train").rglob("*.log"))
    assert len(logs) == 6
    events = []
    for log in logs:
        evs = parse_slot_log(log.read_text())
        assert [e["event"] for e in evs] == ["acquired", "released"], log.read_text()[-2000:]
        events += evs
    assert overlapping_holds(events) == []
    assert {e["slot"] for e in events} == {0, 1}  # two jobs ran at once, each on its own slot
    holds = sorted((a["time"], b["time"]) for a, b in zip(events[::2], events[1::2], strict=True))
    busiest = max(sum(1 for s, e in holds if s <= t < e) for t, _ in holds)
    assert busiest == 2  # --resources gpu=2 capped the concurrency at the two slots
    info = (tmp_path / "results/runs" / the_plan.experiments["again"][0].path / "train_info.json").read_text()
    assert '"gpu_slot":' in info and '"cuda_visible_devices":' in info
