"""Snakemake adapter: render reports/report.html (lfa.report.render_report). Never imports torch."""

from pathlib import Path

from lfa.logs import logged
from lfa.report import ReportInputs, render_report

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    inputs = ReportInputs(
        metrics=sm.input.metrics, summary=sm.input.summary, per_class=sm.input.per_class,
        comparisons=sm.input.comparisons, runs=sm.input.runs, curves=list(sm.input.curves),
        gradients=list(sm.input.gradients), config=dict(sm.params.config), config_hash=sm.params.config_hash,
        config_files=list(sm.params.config_files), tables_dir=str(Path(sm.output.tables[0]).parent),
    )
    render_report(inputs, sm.output.html, figures_dir=sm.output.figures)
