"""Snakemake adapter: per-class metrics of one run (lfa.evaluation.evaluate.evaluate_run, as `lfa evaluate`)."""

from pathlib import Path

from lfa.evaluation.evaluate import evaluate_run
from lfa.logs import logged

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    evaluate_run(sm.input.predictions, sm.output.metrics, prepared=Path(sm.input.meta).parent,
                 overall_out=sm.output.overall)
