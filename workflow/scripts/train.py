"""Snakemake adapter: train one job (lfa.pipeline.stages.train_stage, as `lfa train`): a GPU slot, then the job."""

import sys

from lfa.logs import logged
from lfa.pipeline.plan import Layout, plan
from lfa.pipeline.stages import train_stage

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    code = train_stage(plan(sm.config).job(sm.wildcards.run), Layout.from_config(sm.config), sm.config["gpu"])
sys.exit(code)
