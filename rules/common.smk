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
