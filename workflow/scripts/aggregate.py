"""Snakemake adapter: aggregate all per-job metrics (lfa.evaluate.aggregate)."""

from pathlib import Path

from lfa.evaluate import aggregate
from lfa.logs import logged

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    aggregate(sm.input, Path(sm.output.metrics).parent, {"lfa.config_hash": sm.params.config_hash})
