"""Snakemake adapter: per-class metrics of one job (lfa.evaluate.evaluate_job)."""

import json

from lfa.aggregate import write_parquet
from lfa.evaluate import evaluate_job
from lfa.logs import logged

sm = snakemake  # noqa: F821  (injected by Snakemake)
w = sm.wildcards
with logged(sm.log[0]):
    meta = json.load(open(sm.input.meta))
    keys = {"experiment": w.experiment, "dataset": w.dataset, "backbone": w.backbone, "loss": w.loss,
            "seed": int(w.seed), "fold": int(w.fold)}
    diverged = "diverged" in json.load(open(sm.input.info))
    df = evaluate_job(sm.input.predictions, keys, meta["class_names"], meta.get("ratio_k"), diverged)
    write_parquet(df, sm.output.metrics, {})
