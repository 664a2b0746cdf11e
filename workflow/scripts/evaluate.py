"""Snakemake adapter: per-class metrics of one run (lfa.evaluate.evaluate_job)."""

import json

from lfa.evaluate import evaluate_job
from lfa.io import write_parquet
from lfa.logs import logged
from lfa.plan import plan

sm = snakemake  # noqa: F821  (injected by Snakemake)
job = plan(sm.config).job(sm.wildcards.run)
with logged(sm.log[0]):
    meta = json.load(open(sm.input.meta))
    keys = {"dataset": job.dataset, "backbone": job.backbone, "loss": job.loss, "seed": job.seed, "fold": job.fold}
    diverged = "diverged" in json.load(open(sm.input.info))
    df = evaluate_job(sm.input.predictions, keys, meta["class_names"], meta.get("ratio_k"), diverged)
    write_parquet(df, sm.output.metrics, {"lfa.job_key": job.key})
