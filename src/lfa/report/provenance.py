"""The report's provenance: when, from which commit and packages, on which devices, for how many hours."""

from __future__ import annotations

import datetime as dt
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from lfa import __version__
from lfa.report.inputs import ReportInputs

PACKAGES = ["torch", "torchvision", "snakemake", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy",
            "seaborn", "matplotlib", "jinja2"]


def git_commit(folder: str | Path) -> str:
    """The commit of the checkout that holds ``folder`` (the Snakefile's, wherever the run's working directory is),
    marked where tracked files changed since."""
    git = ["git", "-C", str(folder)]
    try:
        out = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             check=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"unknown ({folder} is not in a git checkout)"


def _versions() -> dict[str, str]:
    out = {"lfa-repro": __version__}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def provenance(inputs: ReportInputs, infos: list[dict[str, Any]]) -> dict[str, Any]:
    """What was run, where and for how long (each run once, however many experiments use it)."""
    hours: dict[str, float] = {}
    devices: set[str] = set()
    for info in infos:
        kind = "GPU" if info["device_type"] == "cuda" else "CPU"
        hours[kind] = hours.get(kind, 0.0) + float(info["wall_seconds"]) / 3600
        devices.add(str(info["device"]))
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(inputs.pipeline_dir or Path(__file__).resolve().parent),
        "config_files": inputs.config_files or ["config.yaml"],
        "config_hash": inputs.config_hash,
        "versions": _versions(),
        "devices": sorted(devices) or ["none recorded"],
        "hours": {k: f"{v:.3f}" for k, v in sorted(hours.items())},
        "n_jobs": len(infos),
    }
