"""Snakemake adapter: each experiment's runs → the aggregated Parquet files (lfa.stages.aggregate_stage)."""

from pathlib import Path

from lfa.logs import logged
from lfa.plan import Layout
from lfa.stages import aggregate_stage

sm = snakemake  # noqa: F821  (injected by Snakemake)
layout = Layout.from_config(sm.config)
with logged(sm.log[0]):
    metrics = {name: [layout.run_file(run, "metrics.parquet") for run in runs] for name, runs in sm.params.runs.items()}
    aggregate_stage(sm.config, metrics, Path(sm.output.metrics).parent)
