# predictions.parquet → per-class metrics of each run → each experiment's aggregated Parquet files (no torch,
# no GPU). An experiment's rows come from the runs of its jobs (lfa.pipeline.plan.Plan.experiments), shared or not.


rule evaluate:
    input:
        predictions=rules.train.output.predictions,
        info=rules.train.output.train_info,
        meta=lambda w: str(LAYOUT.prepared_file(job(w).dataset, "meta.json")),
        index=lambda w: str(LAYOUT.prepared_file(job(w).dataset, "index.parquet")),
    output:
        metrics=str(LAYOUT.run_file("{run}", "metrics.parquet")),
        overall=str(LAYOUT.run_file("{run}", "overall.parquet")),
    resources:
        mem_mb=evaluate_mem_mb,
    log:
        str(LAYOUT.log("evaluate", "{run}")),
    script:
        "../workflow/scripts/evaluate.py"


rule aggregate:
    input:
        expand(rules.evaluate.output.metrics, run=RUNS),
        expand(rules.evaluate.output.overall, run=RUNS),
    output:
        **{name: str(LAYOUT.aggregate(name)) for name in AGGREGATES},
        runs=str(LAYOUT.aggregate("runs")),
    params:
        # which runs each experiment reads: a change reruns the aggregate (the script takes them from the plan)
        runs={name: [job.path for job in jobs] for name, jobs in PLAN.experiments.items()},
        config_hash=CONFIG_HASH,
    resources:
        mem_mb=aggregate_mem_mb,
    log:
        str(LAYOUT.log("aggregate")),
    script:
        "../workflow/scripts/aggregate.py"
