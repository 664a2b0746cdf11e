"""Snakemake adapter: prepare one dataset (lfa.pipeline.stages.prepare_stage, as `lfa prepare`)."""

from lfa.logs import logged
from lfa.pipeline.stages import prepare_stage

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    prepare_stage(sm.config, sm.wildcards.dataset)
