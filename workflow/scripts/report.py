"""Snakemake adapter: render reports/report.html (lfa.pipeline.stages.report_stage, as `lfa report`).
Never imports torch."""

from pathlib import Path

from lfa.logs import logged
from lfa.pipeline.stages import report_stage

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    report_stage(dict(sm.config), list(sm.params.config_files), sm.output.html,
                 tables_dir=Path(sm.output.tables[0]).parent, figures_dir=sm.output.figures,
                 pipeline_dir=sm.scriptdir)  # the checkout of the Snakefile, not the working directory
