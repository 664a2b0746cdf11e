"""Snakemake adapter: each experiment's runs → the aggregated Parquet files (lfa.pipeline.stages.aggregate_stage)."""

from pathlib import Path

from lfa.logs import logged
from lfa.pipeline.stages import aggregate_stage, run_metrics

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    aggregate_stage(sm.config, run_metrics(sm.config), Path(sm.output.metrics).parent)
