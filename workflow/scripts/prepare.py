"""Snakemake adapter: prepare one dataset (lfa.datasets.prepare)."""

from pathlib import Path

from lfa.datasets import prepare
from lfa.logs import logged

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    prepare(sm.wildcards.dataset, sm.params.spec, Path(sm.output[0]).parent, sm.params.n_splits,
            sm.params.split_seed)
