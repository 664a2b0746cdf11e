"""Snakemake adapter: LFA and gradient curves of the configured losses (lfa.assessment.curves.write_curves,
as `lfa curves`)."""

from lfa.assessment.curves import write_curves
from lfa.logs import logged
from lfa.losses import lfa_grid
from lfa.plugins import use_config_plugins

sm = snakemake  # noqa: F821  (injected by Snakemake)
with logged(sm.log[0]):
    use_config_plugins(sm.config)  # the user's losses, before the registry is read
    write_curves(sm.wildcards.convention, sm.output.curves, list(sm.params.losses), dict(sm.params.loss_params),
                 lfa_grid(sm.params.grid_points), gradients_path=sm.output.gradients)
