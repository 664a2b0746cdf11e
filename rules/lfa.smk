# LFA curves (Figure 2) of every loss in the config, from the same loss objects that train the models.


rule lfa_curves:
    output:
        curves=str(LAYOUT.curves("{convention}")),
        gradients=str(LAYOUT.gradients("{convention}")),
    params:
        losses=sorted({loss for exp in config["experiments"].values() for loss in exp["losses"]}),
        loss_params=config["loss_params"],
        grid_points=config["lfa_grid_points"],
    wildcard_constraints:
        convention="|".join(CONVENTIONS),
    log:
        str(LAYOUT.log("lfa", "{convention}")),
    script:
        "../workflow/scripts/lfa_curves.py"
