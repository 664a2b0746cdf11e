# LFA curves (Figure 2) of every loss in the config, from the same loss objects that train the models.


rule lfa_curves:
    output:
        curves=f"{RESULTS}/lfa/curves_{{convention}}.parquet",
        gradients=f"{RESULTS}/lfa/gradients_{{convention}}.parquet",
    params:
        losses=sorted({loss for exp in config["experiments"].values() for loss in exp["losses"]}),
        loss_params=config["loss_params"],
        grid_points=config["lfa_grid_points"],
    wildcard_constraints:
        convention="trained|figure2",
    log:
        f"{LOGS}/lfa_{{convention}}.log",
    script:
        "../workflow/scripts/lfa_curves.py"
