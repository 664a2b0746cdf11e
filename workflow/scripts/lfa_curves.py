"""Snakemake adapter: LFA and gradient curves of the configured losses (lfa.curves.compute_curves)."""

from lfa.curves import compute_curves
from lfa.io import write_parquet
from lfa.logs import logged
from lfa.losses import lfa_grid
from lfa.plugins import use_config_plugins

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    use_config_plugins(sm.config)  # the user's losses, before the registry is read
    grid = lfa_grid(sm.params.grid_points)
    curves, gradients = compute_curves(sm.wildcards.convention, list(sm.params.losses),
                                       dict(sm.params.loss_params), grid=grid)
    write_parquet(curves, sm.output.curves, {"lfa.convention": sm.wildcards.convention})
    write_parquet(gradients, sm.output.gradients, {"lfa.convention": sm.wildcards.convention})
