# Raw data → data/prepared/<dataset>/{index.parquet,images.npy,counts.csv,meta.json}, per source:
#   download_<source>: downloads (automatic sources) or only checks (manual ones) the raw data under its root
#                      (datasets.<name>.root, default <data_dir>/raw/<source>), then writes a marker file;
#                      a missing manual dataset fails here at once, saying where to get it and put it;
#   prepare_<source>:  subset, folds and packed images of each prepared dataset of that source.
import json
import shlex
import sys

from lfa.sources import REGISTRY, check_specs, raw_roots

RAW_ROOTS = raw_roots(config)
# The check runs as a short Python process (same interpreter as Snakemake) and prints its progress bars.
CHECK_RAW = shlex.quote(sys.executable) + " -m lfa.sources check"


def raw_marker(source):
    """Written after the raw data of ``source`` passed its check (JSON: root, counts, checksums)."""
    return f"{DATA}/raw/{source}/.verified"


def _raw_root(source):
    """The raw folder of ``source`` as a params function (it may lie outside data/: datasets.<name>.root)."""
    return lambda wildcards: RAW_ROOTS[source]


def _needs_raw(source):
    return source in REGISTRY and REGISTRY[source].needs_raw


def _prepare_outputs():
    return multiext(f"{DATA}/prepared/{{dataset}}/", "index.parquet", "images.npy", "counts.csv", "meta.json")


def _prepare_spec(wildcards):
    spec = PREPARED[wildcards.dataset]
    return {**spec, "root": RAW_ROOTS[spec["source"]], "data_dir": DATA}


for _source in sorted({spec["source"] for spec in PREPARED.values()}):
    if _needs_raw(_source):

        rule:
            name:
                f"download_{_source}"
            output:
                raw_marker(_source),
            params:
                source=_source,
                root=_raw_root(_source),
                specs=json.dumps(check_specs(config, _source), sort_keys=True),
            localrule: True
            priority: 100
            log:
                f"{LOGS}/download/{_source}.log",
            shell:
                f"{CHECK_RAW} {{params.source}} --root {{params.root:q}} --marker {{output:q}} --log {{log:q}}"
                " --specs {params.specs:q}"

    rule:
        name:
            f"prepare_{_source}"
        input:
            [raw_marker(_source)] if _needs_raw(_source) else [],
        output:
            _prepare_outputs(),
        params:
            spec=_prepare_spec,
            n_splits=config["n_splits"],
            split_seed=config["split_seed"],
        wildcard_constraints:
            dataset="|".join(d for d, s in PREPARED.items() if s["source"] == _source),
        threads: REGISTRY[_source].prepare_threads if _source in REGISTRY else 1
        log:
            f"{LOGS}/prepare/{{dataset}}.log",
        script:
            "../workflow/scripts/prepare.py"
