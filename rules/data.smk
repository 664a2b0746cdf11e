# Raw data → <data_dir>/prepared/<dataset>/{index.parquet,images.npy,counts.csv,meta.json}, per source:
#   download_<source>: downloads (automatic sources) or only checks (manual ones) the raw data under its root
#                      (datasets.<name>.root, default <data_dir>/raw/<source>), then writes a marker file;
#                      a missing manual dataset fails here at once, saying where to get it and put it;
#   prepare_<source>:  subset, folds and packed images of each prepared dataset of that source.
import json
import shlex
import sys

from lfa.sources import check_specs, get_source

# The check runs as a short Python process (same interpreter as Snakemake) and prints its progress bars.
CHECK_RAW = shlex.quote(sys.executable) + " -m lfa.sources check"


def _prepare_spec(wildcards):
    return PREPARED[wildcards.dataset]


def _raw_root(source):
    """The raw folder of ``source`` as a params function (a plain string that prefixes the marker, an output,
    reads to the linter as a hard-coded path)."""
    return lambda wildcards: str(LAYOUT.raw(source))


for _source in sorted({spec["source"] for spec in PREPARED.values()}):
    _needs_raw = get_source(_source).needs_raw
    if _needs_raw:

        rule:
            name:
                f"download_{_source}"
            output:
                str(LAYOUT.raw_marker(_source)),
            params:
                source=_source,
                root=_raw_root(_source),
                specs=json.dumps(check_specs(config, _source, LAYOUT.downloads), sort_keys=True),
            localrule: True
            priority: 100
            log:
                str(LAYOUT.log("download", _source)),
            shell:
                f"{CHECK_RAW} {{params.source}} --root {{params.root:q}} --marker {{output:q}} --log {{log:q}}"
                " --specs {params.specs:q}"

    rule:
        name:
            f"prepare_{_source}"
        input:
            [str(LAYOUT.raw_marker(_source))] if _needs_raw else [],
        output:
            multiext(f"{LAYOUT.prepared('{dataset}')}/", *PREPARED_FILES),
        params:
            spec=_prepare_spec,
            root=_raw_root(_source),
            downloads=str(LAYOUT.downloads),
            n_splits=config["n_splits"],
            split_seed=config["split_seed"],
        wildcard_constraints:
            dataset="|".join(d for d, s in PREPARED.items() if s["source"] == _source),
        threads: get_source(_source).prepare_threads
        log:
            str(LAYOUT.log("prepare", "{dataset}")),
        script:
            "../workflow/scripts/prepare.py"
