# LFA curves (Figure 2) of every loss in the config, from the same loss objects that train the models.


LOSSES = sorted({loss for exp in config["experiments"].values() for loss in exp["losses"]})


rule lfa_curves:
    input:
        plugins=plugin_files(losses=LOSSES),
    output:
        curves=str(LAYOUT.curves("{convention}")),
        gradients=str(LAYOUT.gradients("{convention}")),
    params:
        losses=LOSSES,
        loss_params=config["loss_params"],
        grid_points=config["lfa_grid_points"],
    wildcard_constraints:
        convention="|".join(CONVENTIONS),
    resources:
        mem_mb=1500,  # torch and the loss objects on a grid of a few hundred points
    log:
        str(LAYOUT.log("lfa", "{convention}")),
    script:
        "../workflow/scripts/lfa_curves.py"
