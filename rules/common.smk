# The plan (every job, once) and the layout (every path) of the validated config: what all rules read.
from lfa.config import config_hash
from lfa.plan import AGGREGATES, PREPARED_FILES, RUN_OUTPUTS, Layout, plan, prepared_datasets

LAYOUT = Layout.from_config(config)
PLAN = plan(config)
PREPARED = prepared_datasets(config)
CONFIG_HASH = config_hash(config)
RUNS = [job.path for job in PLAN.jobs]


wildcard_constraints:
    dataset="[^/]+",
    run=r"[^/]+/[^/]+/[^/]+/[0-9a-f]{8}/s\d+_f\d+",


def job(wildcards):
    """The lfa.plan.Job of a rule's {run} wildcard (its path under <results_dir>/runs/)."""
    return PLAN.job(wildcards.run)


def run_outputs(run):
    """The outputs of the train rule for ``run``, named by file stem (model, train_log, train_info, predictions)."""
    return {name.split(".")[0]: str(LAYOUT.run_file(run, name)) for name in RUN_OUTPUTS}


def prepared_inputs(wildcards):
    """The prepared dataset of a run's job, named by file stem (index, images, counts, meta)."""
    return {name.split(".")[0]: str(LAYOUT.prepared_file(job(wildcards).dataset, name)) for name in PREPARED_FILES}
