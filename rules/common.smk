# The plan (every job, once) and the layout (every path) of the validated config: what all rules read.
from lfa.pipeline.config import config_hash
from lfa.assessment.conventions import CONVENTIONS
from lfa.pipeline import resources as RESOURCES
from lfa.pipeline.plan import AGGREGATES, PREPARED_FILES, RUN_OUTPUTS, Layout, plan, prepared_datasets
from lfa.plugins import plugin_files

LAYOUT = Layout.from_config(config)
PLAN = plan(config)
PREPARED = prepared_datasets(config)
CONFIG_HASH = config_hash(config)
RUNS = [job.path for job in PLAN.jobs]


wildcard_constraints:
    dataset="[^/]+",
    run=r"[^/]+/[^/]+/[^/]+/[0-9a-f]{8}/s\d+_f\d+",


def job(wildcards):
    """The lfa.pipeline.plan.Job of a rule's {run} wildcard (its path under <results_dir>/runs/)."""
    return PLAN.job(wildcards.run)


def run_outputs(run):
    """The outputs of the train rule for ``run``, named by file stem (model, train_log, train_info, predictions)."""
    return {name.split(".")[0]: str(LAYOUT.run_file(run, name)) for name in RUN_OUTPUTS}


def plugin_inputs(wildcards):
    """The plugin files that registered a run's loss or backbone (editing one reruns exactly those jobs)."""
    return plugin_files(losses=[job(wildcards).loss], backbones=[job(wildcards).backbone])


def prepared_inputs(wildcards):
    """The prepared dataset of a run's job, named by file stem (index, images, counts, meta)."""
    return {name.split(".")[0]: str(LAYOUT.prepared_file(job(wildcards).dataset, name)) for name in PREPARED_FILES}


# SLURM time limit and memory of a training job (profiles/slurm, docs/slurm.md), from the config: its images,
# epochs and backbone through lfa.pipeline.estimate (throughput measured on an H100; the packed data's meta.json once
# prepared, the published counts before). Snakemake evaluates them again when the job is ready to run.
TRAIN_TIME_MARGIN = 4  # a cluster GPU slower than an H100 (A100 ~1.5-2x, V100 ~3-4x), a busy file system
TRAIN_CPU_SLOWDOWN = 50  # train.device: cpu
_TRAIN_SECONDS = {}


def _train_seconds(run):
    import math
    import os

    from lfa.pipeline.estimate import job_seconds

    ready = frozenset(d for d in PREPARED if os.path.exists(LAYOUT.prepared_file(d, "meta.json")))
    if ready not in _TRAIN_SECONDS:
        _TRAIN_SECONDS[ready] = job_seconds(config)
    seconds = _TRAIN_SECONDS[ready].get(run, math.nan)
    return seconds if math.isfinite(seconds) else None


def on_cpu(wildcards):
    return job(wildcards).settings["device"] == "cpu"


def train_runtime(wildcards, attempt):
    """Minutes: 15 + the estimated time × TRAIN_TIME_MARGIN, doubled on each retry (which resumes anyway)."""
    import math

    from lfa.pipeline.estimate import JOB_START_S

    seconds = _train_seconds(wildcards.run)
    if seconds is None:  # a backbone without a measured throughput: one day
        return 24 * 60 * attempt
    if on_cpu(wildcards):
        seconds = JOB_START_S + (seconds - JOB_START_S) * TRAIN_CPU_SLOWDOWN
    return (15 + math.ceil(seconds * TRAIN_TIME_MARGIN / 60)) * 2 ** (attempt - 1)


def train_mem_mb(wildcards, input, attempt):
    """MB of host memory: 4 GB for the process (torch, CUDA) and 1.5x the packed images (2.5x on the CPU,
    where they are read into memory), half as much again on each retry (an out-of-memory kill)."""
    import os

    images = os.path.getsize(input.images) / 2**20 if os.path.exists(input.images) else 0
    return int((4000 + (2.5 if on_cpu(wildcards) else 1.5) * images) * (1 + 0.5 * (attempt - 1)))


# Memory and disk of each job, from the sizes of its data (lfa.pipeline.resources). SLURM gets --mem, and the
# local scheduler counts them against --resources mem_mb=N. A retry after an out-of-memory kill asks for half more.
def _more(mb, attempt):
    return int(mb * (1 + 0.5 * (attempt - 1)))


def evaluate_mem_mb(wildcards, attempt):
    return _more(RESOURCES.evaluate_mem_mb(config, job(wildcards).dataset), attempt)


def train_disk_mb(wildcards):
    return RESOURCES.train_disk_mb(config, job(wildcards).dataset)


def prepare_mem_mb(wildcards, attempt):
    return _more(RESOURCES.prepare_mem_mb(config, wildcards.dataset), attempt)


def prepare_disk_mb(wildcards):
    return RESOURCES.prepare_disk_mb(config, wildcards.dataset)


def aggregate_mem_mb(wildcards, attempt):
    return _more(RESOURCES.aggregate_mem_mb(config, PLAN), attempt)


def report_mem_mb(wildcards, attempt):
    return _more(RESOURCES.report_mem_mb(config, PLAN), attempt)
