# lfa-repro: Loss Function Assessment (LFA) and F-ECE, from raw data to reports/report.html.
#   snakemake --cores all                        # the default config.yaml (offline demo, CPU)
#   snakemake --cores all --resources gpu=4      # a workstation with 4 GPUs
#   snakemake --configfile configs/paper.yaml    # the paper's experiments
from snakemake.utils import min_version, validate

min_version("9.0")


# config.yaml is the default; a --configfile on the command line replaces it (instead of being merged into
# it, which would add the demo's experiments to any other config).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



# Structure, types, ranges and defaults first; then names against the package registries; then results of an
# older layout, which must be moved (lfa migrate) before anything would train them again.
validate(config, "schemas/config.schema.yaml")

import sys

import lfa.pipeline.config as lfa_config
import lfa.pipeline.migrate as lfa_migrate
from lfa.errors import LfaError

try:
    lfa_config.check_config(config)
    lfa_migrate.check_results_layout(config)
except LfaError as err:  # one line naming the key or file and the fix; no job starts
    sys.exit(f"lfa: {err}")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/lfa.smk"
include: "rules/report.smk"


localrules:
    all,
    aggregate,
    lfa_curves,
    report,


rule all:
    default_target: True
    input:
        rules.report.output.html,
