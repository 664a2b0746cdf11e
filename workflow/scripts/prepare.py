"""Snakemake adapter: prepare one dataset (lfa.datasets.prepare)."""

from pathlib import Path

from lfa.datasets import prepare
from lfa.logs import logged

sm = snakemake  # noqa: F821  (injected by Snakemake)
p = sm.params
with logged(sm.log[0]):
    prepare(sm.wildcards.dataset, p.spec, p.root, Path(sm.output[0]).parent, p.n_splits, p.split_seed, p.downloads)
