# Raw data → <data_dir>/prepared/<dataset>/{index.parquet,images.npy,counts.csv,meta.json}, per source:
#   download_<source>: downloads (automatic sources) or only checks (manual ones) the raw data under its root
#                      (datasets.<name>.root, default <data_dir>/raw/<source>), then writes a marker file;
#                      a missing manual dataset fails here at once, saying where to get it and put it;
#   prepare_<source>:  subset, folds and packed images of each prepared dataset of that source.
import json
import shlex
import sys

from lfa.sources import check_specs, get_source

# The check runs as a short Python process (same interpreter as Snakemake) and prints its progress bars; it
# imports the config's plugins first (a plugin may register a source).
CHECK_RAW = " ".join([shlex.quote(sys.executable), "-m lfa.sources check",
                      *(f"--plugin {shlex.quote(p)}" for p in config["plugins"])])


def _prepare_spec(wildcards):
    return PREPARED[wildcards.dataset]


def _prepare_root(wildcards):
    """The raw folder a dataset is prepared from (its own root for the user's folder and csv sources)."""
    return str(LAYOUT.dataset_raw(PREPARED[wildcards.dataset]))


def _files_of(spec):
    """Files a dataset is read from besides its images (a csv source's table): editing one prepares it again."""
    return [str(f) for f in get_source(spec["source"]).input_files(LAYOUT.dataset_raw(spec), spec)]


def _source_files(wildcards):
    return _files_of(PREPARED[wildcards.dataset])


def _checked_files(source):
    """The same files, of every dataset of ``source``: inputs of its raw-data check."""
    return sorted({f for s in PREPARED.values() if s["source"] == source for f in _files_of(s)})


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
            input:
                plugin_files(sources=[_source]),
                _checked_files(_source),
            output:
                str(LAYOUT.raw_marker(_source)),
            params:
                source=_source,
                root=_raw_root(_source),
                specs=json.dumps(check_specs(config, _source, LAYOUT.downloads), sort_keys=True),
            localrule: True
            priority: 100
            resources:
                mem_mb=1000,  # checks files and tables, streams downloads
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
            plugin_files(sources=[_source]),
            _source_files,
        output:
            multiext(f"{LAYOUT.prepared('{dataset}')}/", *PREPARED_FILES),
        params:
            spec=_prepare_spec,
            root=_prepare_root,
            downloads=str(LAYOUT.downloads),
            n_splits=config["n_splits"],
            split_seed=config["split_seed"],
        wildcard_constraints:
            dataset="|".join(d for d, s in PREPARED.items() if s["source"] == _source),
        threads: get_source(_source).prepare_threads
        resources:
            mem_mb=prepare_mem_mb,
            disk_mb=prepare_disk_mb,
        log:
            str(LAYOUT.log("prepare", "{dataset}")),
        script:
            "../workflow/scripts/prepare.py"
