# Parquet files → reports/report.html (self-contained). Reads Parquet/CSV/JSON only, never torch.
# The outputs are also marked for Snakemake's own report: snakemake --report reports/snakemake-report.zip
import os


rule report:
    input:
        metrics=f"{RESULTS}/metrics.parquet",
        summary=f"{RESULTS}/summary.parquet",
        per_class=f"{RESULTS}/per_class.parquet",
        comparisons=f"{RESULTS}/comparisons.parquet",
        curves=expand(f"{RESULTS}/lfa/curves_{{c}}.parquet", c=["trained", "figure2"]),
        gradients=expand(f"{RESULTS}/lfa/gradients_{{c}}.parquet", c=["trained", "figure2"]),
        datasets=sorted({prepared(job.dataset, "meta.json") for job in JOBS}),
        train_info=job_files("train_info.json"),
        train_logs=job_files("train_log.csv"),
    output:
        html=report(f"{REPORTS}/report.html", caption="../report/report.rst", category="Report"),
        figures=report(
            directory(f"{REPORTS}/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        tables=report(
            expand(f"{RESULTS}/tables/{{experiment}}.{{ext}}", experiment=list(config["experiments"]), ext=["csv", "tex"]),
            caption="../report/tables.rst",
            category="Tables",
        ),
    params:
        config=config,
        config_hash=CONFIG_HASH,
        config_files=[os.path.relpath(f) for f in workflow.configfiles],
    log:
        f"{LOGS}/report.log",
    script:
        "../workflow/scripts/report.py"
