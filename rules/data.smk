# Raw data → data/prepared/<dataset>/{index.parquet,images.npy,counts.csv,meta.json}, one rule per source.


def _prepare_outputs():
    return multiext(f"{DATA}/prepared/{{dataset}}/", "index.parquet", "images.npy", "counts.csv", "meta.json")


for _source in sorted({spec["source"] for spec in PREPARED.values()}):

    rule:
        name:
            f"prepare_{_source}"
        output:
            _prepare_outputs(),
        params:
            spec=lambda w: PREPARED[w.dataset],
            n_splits=config["n_splits"],
            split_seed=config["split_seed"],
        wildcard_constraints:
            dataset="|".join(d for d, s in PREPARED.items() if s["source"] == _source),
        log:
            f"{LOGS}/prepare/{{dataset}}.log",
        script:
            "../workflow/scripts/prepare.py"
