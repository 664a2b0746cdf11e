"""Snakemake adapter: per-class metrics of one run (lfa.evaluate.evaluate_job)."""

from lfa.evaluate import check_predictions, evaluate_job
from lfa.io import read_json, read_table, write_parquet
from lfa.logs import logged
from lfa.plan import plan

sm = snakemake  # noqa: F821  (injected by Snakemake)
job = plan(sm.config).job(sm.wildcards.run)
with logged(sm.log[0]):
    meta = read_json(sm.input.meta)
    made_from = check_predictions(sm.input.predictions, meta, read_table(sm.input.index, ["id", "fold"]), job.fold)
    keys = {"dataset": job.dataset, "backbone": job.backbone, "loss": job.loss, "seed": job.seed, "fold": job.fold}
    diverged = "diverged" in read_json(sm.input.info)
    df = evaluate_job(sm.input.predictions, keys, meta["class_names"], meta.get("ratio_k"), diverged)
    write_parquet(df, sm.output.metrics, {"lfa.job_key": job.key, "lfa.data_hash": made_from})
