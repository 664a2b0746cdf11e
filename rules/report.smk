# Parquet files → <reports_dir>/report.html (self-contained). Reads Parquet/CSV/JSON only, never torch.
# The outputs are also marked for Snakemake's own report: snakemake --report reports/snakemake-report.zip
import os

from lfa.data.datasets import HASHED_FILES


rule report:
    input:
        **{name: getattr(rules.aggregate.output, name) for name in (*AGGREGATES, "runs")},
        curves=[str(LAYOUT.curves(c)) for c in CONVENTIONS],
        gradients=[str(LAYOUT.gradients(c)) for c in CONVENTIONS],
        meta=sorted({str(LAYOUT.prepared_file(j.dataset, "meta.json")) for j in PLAN.jobs}),
        counts=sorted({str(LAYOUT.prepared_file(j.dataset, "counts.csv")) for j in PLAN.jobs}),
        train_info=expand(rules.train.output.train_info, run=RUNS),
        train_log=expand(rules.train.output.train_log, run=RUNS),
        # read to refuse runs evaluated on other data than the prepared datasets hold now (lfa.pipeline.stages)
        run_metrics=expand(rules.evaluate.output.metrics, run=RUNS),
        packed=sorted({str(LAYOUT.prepared_file(j.dataset, f)) for j in PLAN.jobs for f in HASHED_FILES}),
    output:
        html=report(str(LAYOUT.report), caption="../report/report.rst", category="Report"),
        figures=report(
            directory(str(LAYOUT.figures)),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        tables=report(
            [str(LAYOUT.table(name, ext, kind)) for name in config["experiments"] for ext in ("csv", "tex")
             for kind in ("", "imbalance")]
            + [str(LAYOUT.table(name, "csv", "per_class")) for name in config["experiments"]],
            caption="../report/tables.rst",
            category="Tables",
        ),
    params:
        config=config,
        config_hash=CONFIG_HASH,
        config_files=[os.path.relpath(f) for f in workflow.configfiles],
    resources:
        mem_mb=report_mem_mb,
    log:
        str(LAYOUT.log("report")),
    script:
        "../workflow/scripts/report.py"
