# Names and paths shared by all rules, derived once from the validated config.
from lfa.config import jobs, prepared_datasets, train_settings, loss_params, config_hash

DATA = config["data_dir"]
RESULTS = config["results_dir"]
REPORTS = config["reports_dir"]
LOGS = config["logs_dir"]

PREPARED = prepared_datasets(config)
JOBS = jobs(config)
CONFIG_HASH = config_hash(config)
JOB_DIR = "{experiment}/{dataset}/{backbone}/{loss}/s{seed}_f{fold}"


wildcard_constraints:
    experiment="[^/]+",
    dataset="[^/]+",
    backbone="[^/]+",
    loss="[^/]+",
    seed=r"\d+",
    fold=r"\d+",


def prepared(dataset, name):
    return f"{DATA}/prepared/{dataset}/{name}"


def job_files(name):
    """One file per training job (e.g. its metrics.parquet)."""
    return [f"{RESULTS}/runs/{job.path}/{name}" for job in JOBS]


def gpus_wanted(wildcards):
    """1 unless the experiment trains on the CPU; `--resources gpu=N` then caps concurrent GPU jobs."""
    return 0 if train_settings(config, wildcards.experiment)["device"] == "cpu" else 1


# SLURM time limit and memory of a training job (profiles/slurm, docs/slurm.md), from the config: its images,
# epochs and backbone through lfa.estimate (throughput measured on an H100; the packed data's meta.json once
# prepared, the published counts before). Snakemake evaluates them again when the job is ready to run.
TRAIN_TIME_MARGIN = 4  # a cluster GPU slower than an H100 (A100 ~1.5-2x, V100 ~3-4x), a busy file system
TRAIN_CPU_SLOWDOWN = 50  # train.device: cpu
_TRAIN_SECONDS = {}


def _train_seconds(job_dir):
    import math
    import os

    from lfa.estimate import job_costs

    ready = frozenset(d for d in PREPARED if os.path.exists(prepared(d, "meta.json")))
    if ready not in _TRAIN_SECONDS:
        _TRAIN_SECONDS[ready] = {c.job.path: c.gpu_seconds for c in job_costs(config)}
    seconds = _TRAIN_SECONDS[ready].get(job_dir, math.nan)
    return seconds if math.isfinite(seconds) else None


def train_runtime(wildcards, attempt):
    """Minutes: 15 + the estimated time × TRAIN_TIME_MARGIN, doubled on each retry (which resumes anyway)."""
    import math

    seconds = _train_seconds(JOB_DIR.format(**dict(wildcards.items())))
    if seconds is None:  # a backbone without a measured throughput: one day
        return 24 * 60 * attempt
    if train_settings(config, wildcards.experiment).get("device") == "cpu":
        from lfa.estimate import JOB_START_S

        seconds = JOB_START_S + (seconds - JOB_START_S) * TRAIN_CPU_SLOWDOWN
    return (15 + math.ceil(seconds * TRAIN_TIME_MARGIN / 60)) * 2 ** (attempt - 1)


def train_mem_mb(wildcards, input, attempt):
    """MB of host memory: 4 GB for the process (torch, CUDA) and 1.5x the packed images (2.5x on the CPU,
    where they are read into memory), half as much again on each retry (an out-of-memory kill)."""
    import os

    images = os.path.getsize(input.images) / 2**20 if os.path.exists(input.images) else 0
    on_cpu = train_settings(config, wildcards.experiment).get("device") == "cpu"
    return int((4000 + (2.5 if on_cpu else 1.5) * images) * (1 + 0.5 * (attempt - 1)))
