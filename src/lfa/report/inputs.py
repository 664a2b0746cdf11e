"""What a report is rendered from: the aggregated files, the loss names to show, and the check that they
belong to the config the report is for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lfa.errors import MixedResults
from lfa.io import read_parquet_metadata, read_table


@dataclass
class ReportInputs:
    """The aggregated files a report is rendered from; per-run and per-dataset files come from the layout."""

    metrics: str | Path
    summary: str | Path
    per_class: str | Path
    comparisons: str | Path
    runs: str | Path  # which experiment uses which run (lfa.evaluation.aggregate.runs_table)
    curves: list[str | Path]
    gradients: list[str | Path]
    config: dict[str, Any]
    config_hash: str
    config_files: list[str] = field(default_factory=list)
    tables_dir: str | Path | None = None  # default: the layout's tables folder
    pipeline_dir: str | Path | None = None  # the checkout whose commit the report names (default: the package's)
    overall: str | Path | None = None  # the runs' overall rows (top-1 metrics, confusion, reliability)


def loss_labels(curves: list[str | Path]) -> dict[str, str]:
    """Loss key → display name, as the loss registry gave them to the LFA curves (this module never imports
    torch, so it never reads the registry itself)."""
    frames = [read_table(p, ["loss", "display"]) for p in curves]
    pairs = pd.concat(frames).drop_duplicates() if frames else pd.DataFrame(columns=["loss", "display"])
    return dict(zip(pairs["loss"], pairs["display"], strict=True))


def label_of(labels: dict[str, str] | None, loss: str) -> str:
    """The display name of ``loss`` (its key where the curves name none)."""
    return (labels or {}).get(loss, loss)


def check_config_hash(inputs: ReportInputs) -> None:
    """Refuse to show results aggregated under another config as if they were this config's."""
    for path in (inputs.metrics, inputs.summary, inputs.runs):
        written = read_parquet_metadata(path, "run snakemake again to rebuild it").get("lfa.config_hash")
        if written is not None and written != inputs.config_hash:
            raise MixedResults(
                f"{path} was aggregated under config hash {written}, and this report is for config hash "
                f"{inputs.config_hash} ({', '.join(inputs.config_files) or 'the given config'}): run snakemake with "
                "this config first, or 'lfa report --partial' to report the runs of this config that exist")
