# One job per lfa.plan.Job: each (prepared dataset, backbone, loss, settings, seed, fold) trains once, in
# <results_dir>/runs/<job.path>/, whichever experiments use it (Table 5's 1:4 ratio is Table 4's ResNet-50
# block: one folder, read by both tables). params.key is the job's identity hash: a change of anything that
# shapes the result reruns the job; runtime knobs (threads, the data path) and the gpu block do not.
# The resume state lives in <results_dir>/state/<job.path>/, which is not an output: Snakemake deletes the
# outputs of a failed job, and the state is what lets its rerun resume.
# GPU jobs take a free GPU slot themselves (lfa.gpu: a lock file per slot, CUDA_VISIBLE_DEVICES set before
# CUDA starts); under SLURM they use the GPU SLURM gave.


# SLURM time limit and memory of a training job (profiles/slurm, docs/slurm.md), from the config: its images,
# epochs and backbone through lfa.estimate (throughput measured on an H100; the packed data's meta.json once
# prepared, the published counts before). Snakemake evaluates them again when the job is ready to run.
TRAIN_TIME_MARGIN = 4  # a cluster GPU slower than an H100 (A100 ~1.5-2x, V100 ~3-4x), a busy file system
TRAIN_CPU_SLOWDOWN = 50  # train.device: cpu
_TRAIN_SECONDS = {}


def _train_seconds(run):
    import math
    import os

    from lfa.estimate import job_seconds

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

    from lfa.estimate import JOB_START_S

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


rule train:
    input:
        unpack(prepared_inputs),
    output:
        **run_outputs("{run}"),
    params:
        key=lambda w: job(w).key,
    resources:
        gpu=lambda w: 0 if on_cpu(w) else 1,  # --resources gpu=N caps the concurrent GPU jobs
        runtime=train_runtime,
        mem_mb=train_mem_mb,
    threads: lambda w: max(1, int(job(w).runtime["threads"] or 1))
    log:
        str(LAYOUT.log("train", "{run}")),
    script:
        "../workflow/scripts/train.py"
