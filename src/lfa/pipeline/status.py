"""Where a long run stands, from its files alone (so it works the same on a workstation and under SLURM).

A job is *finished* when its four outputs exist; *failed* when its log's last attempt ends in an error;
*running* when its log was written to lately (with its epoch, step and an ETA from the epoch times it
logged); *stopped* when its log is older (a killed job, or one waiting for a retry, which resumes); and
*waiting* when it has no log yet.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from lfa.pipeline.plan import RUN_OUTPUTS, Job, Layout, plan

#: A log not written to for this long (or for three epochs, if longer) belongs to a job that is not running.
QUIET_S = 600.0
_START = "[lfa train] dataset="
_EPOCH = re.compile(r"\[lfa train\] epoch (\d+)/(\d+) .*?\(([\d.]+)s,")
_STEP = re.compile(r"(\d+)/(\d+) \[")


@dataclass
class RunStatus:
    job: Job
    state: str  # finished, running, stopped, failed, waiting
    detail: str = ""
    evaluated: bool = False  # its metrics.parquet exists (what a report counts)


def _last_attempt(text: str) -> str:
    return text[text.rfind(_START):] if _START in text else text


def _progress(attempt: str, now: float, mtime: float) -> tuple[str, float]:
    """'epoch E/N, step k/n, ETA …' from the attempt's log, and how long one epoch takes (0: not known)."""
    epochs = _EPOCH.findall(attempt)
    steps = _STEP.findall(attempt.replace("\r", "\n"))
    parts, per_epoch = [], 0.0
    if epochs:
        done, total = int(epochs[-1][0]), int(epochs[-1][1])
        per_epoch = sum(float(s) for _, _, s in epochs) / len(epochs)
        parts.append(f"epoch {done}/{total} done")
        parts.append(f"ETA {max(0.0, (total - done) * per_epoch - (now - mtime)) / 60:.0f} min")
    if steps:
        parts.insert(1 if epochs else 0, f"step {steps[-1][0]}/{steps[-1][1]} of the job")
    return ", ".join(parts) or "started", per_epoch


def run_status(layout: Layout, job: Job, now: float | None = None) -> RunStatus:
    now = time.time() if now is None else now
    if all(layout.run_file(job, name).exists() for name in RUN_OUTPUTS):
        evaluated = layout.run_file(job, "metrics.parquet").exists()
        return RunStatus(job, "finished", "" if evaluated else "trained, not evaluated yet", evaluated)
    log = layout.log("train", job.path)
    if not log.exists():
        return RunStatus(job, "waiting")
    attempt = _last_attempt(log.read_text(errors="replace"))
    error = next((line for line in attempt.splitlines() if line.startswith("ERROR: ")), None)
    if error is not None:
        return RunStatus(job, "failed", error.removeprefix("ERROR: "))
    mtime = log.stat().st_mtime
    progress, per_epoch = _progress(attempt, now, mtime)
    if "interrupted:" in attempt:
        return RunStatus(job, "stopped", f"interrupted ({progress}); a rerun resumes")
    if now - mtime > max(QUIET_S, 3 * per_epoch):
        return RunStatus(job, "stopped", f"no log line for {(now - mtime) / 60:.0f} min ({progress}); "
                                         "a rerun resumes from its last checkpoint")
    return RunStatus(job, "running", progress)


def status(config: dict[str, Any], now: float | None = None) -> dict[str, list[RunStatus]]:
    """Every experiment's runs with their state (a shared run appears under each experiment using it)."""
    layout, the_plan = Layout.from_config(config), plan(config)
    cache = {job.key: run_status(layout, job, now) for job in the_plan.jobs}
    return {name: [cache[j.key] for j in jobs] for name, jobs in the_plan.experiments.items()}


STATES = ("finished", "running", "stopped", "failed", "waiting")


def format_status(config: dict[str, Any], now: float | None = None) -> str:
    lines: list[str] = [f"{'experiment':24s} " + " ".join(f"{s:>9s}" for s in STATES)]
    incomplete = []
    details = []
    for name, runs in status(config, now).items():
        counts = {s: sum(r.state == s for r in runs) for s in STATES}
        lines.append(f"{name:24s} " + " ".join(f"{counts[s]:9d}" for s in STATES))
        details += [f"  {name}: {r.state} {r.job.path}: {r.detail}" for r in runs if r.detail]
        cells: dict[tuple[str, str, str], list[bool]] = {}
        for r in runs:
            cells.setdefault((r.job.dataset, r.job.backbone, r.job.loss), []).append(r.evaluated)
        incomplete += [f"  {name} · {' · '.join(cell)}: {sum(done)} of {len(done)} runs"
                       for cell, done in cells.items() if 0 < sum(done) < len(done)]
    if details:
        lines += ["", "runs not finished:", *details]
    lines += ["", f"cells a report rendered now would mark incomplete: {len(incomplete)}", *incomplete]
    return "\n".join(lines)
