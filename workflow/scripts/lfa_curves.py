"""Snakemake adapter: LFA and gradient curves of the configured losses (lfa.curves.compute_curves)."""

import numpy as np

from lfa.curves import compute_curves
from lfa.io import write_parquet
from lfa.logs import logged

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    grid = np.linspace(0.1, 0.999, sm.params.grid_points)
    curves, gradients = compute_curves(sm.wildcards.convention, list(sm.params.losses),
                                       dict(sm.params.loss_params), grid=grid)
    write_parquet(curves, sm.output.curves, {"lfa.convention": sm.wildcards.convention})
    write_parquet(gradients, sm.output.gradients, {"lfa.convention": sm.wildcards.convention})
