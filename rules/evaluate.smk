# predictions.parquet → per-class metrics of each job → aggregated Parquet files (no torch, no GPU).


rule evaluate:
    input:
        predictions=f"{RESULTS}/runs/{JOB_DIR}/predictions.parquet",
        info=f"{RESULTS}/runs/{JOB_DIR}/train_info.json",
        meta=prepared("{dataset}", "meta.json"),
    output:
        metrics=f"{RESULTS}/runs/{JOB_DIR}/metrics.parquet",
    log:
        f"{LOGS}/evaluate/{JOB_DIR}.log",
    script:
        "../workflow/scripts/evaluate.py"


rule aggregate:
    input:
        job_files("metrics.parquet"),
    output:
        metrics=f"{RESULTS}/metrics.parquet",
        summary=f"{RESULTS}/summary.parquet",
        per_class=f"{RESULTS}/per_class.parquet",
        comparisons=f"{RESULTS}/comparisons.parquet",
    params:
        config_hash=CONFIG_HASH,
    log:
        f"{LOGS}/aggregate.log",
    script:
        "../workflow/scripts/aggregate.py"
