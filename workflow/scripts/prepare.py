"""Snakemake adapter: prepare one dataset (lfa.datasets.prepare)."""

from pathlib import Path

from lfa.datasets import prepare
from lfa.logs import logged
from lfa.plugins import use_config_plugins

sm = snakemake  # noqa: F821  (injected by Snakemake)
use_config_plugins(sm.config)  # the user's dataset sources, before the registry is read
p = sm.params
with logged(sm.log[0]):
    prepare(sm.wildcards.dataset, p.spec, p.root, Path(sm.output[0]).parent, p.n_splits, p.split_seed, p.downloads)
