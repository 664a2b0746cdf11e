"""Snakemake adapter: each experiment's runs → the aggregated Parquet files (lfa.aggregate.aggregate)."""

from pathlib import Path

from lfa.aggregate import aggregate, runs_table
from lfa.io import write_parquet
from lfa.logs import logged
from lfa.plan import Layout, plan

sm = snakemake  # noqa: F821  (injected by Snakemake)
layout = Layout.from_config(sm.config)
with logged(sm.log[0]):
    runs = {name: [layout.run_file(path, "metrics.parquet") for path in paths]
            for name, paths in sm.params.runs.items()}
    metadata = {"lfa.config_hash": sm.params.config_hash}
    aggregate(runs, Path(sm.output.metrics).parent, metadata)
    write_parquet(runs_table(plan(sm.config)), sm.output.runs, metadata)
