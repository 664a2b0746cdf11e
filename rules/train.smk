# One job per experiment × dataset × backbone × loss × seed × fold.
# The resume state lives in results/state/, which is not an output: Snakemake deletes the outputs of a
# failed job, and the state is what lets its rerun resume.
# A job identical to one of an earlier experiment (same prepared data, backbone, loss, seed, fold and
# settings: Table 5's 1:4 ratio is Table 4's ResNet-50 block) does not train again: train_shared links the
# outputs of the one that trains into its folder (lfa.estimate.shared_jobs).
# GPU jobs take a free GPU slot themselves (lfa.gpu: a lock file per slot under results/.gpu_slots/, and
# CUDA_VISIBLE_DEVICES set before CUDA starts); under SLURM they use the GPU SLURM gave.
import os
import re

from lfa.estimate import OUTPUTS, result_settings, shared_jobs

SHARED = shared_jobs(config)
# Wildcard constraints that route a shared job's paths to train_shared and every other path to train.
# The look-ahead reads the rest of the path (experiment/dataset/backbone/loss/s<seed>_f<fold>/).
_SHARED_RE = "|".join(re.escape(f"{path}/") for path in sorted(SHARED)) or "(?!)"


rule train:
    input:
        index=prepared("{dataset}", "index.parquet"),
        images=prepared("{dataset}", "images.npy"),
        meta=prepared("{dataset}", "meta.json"),
    output:
        model=f"{RESULTS}/runs/{JOB_DIR}/model.pt",
        log=f"{RESULTS}/runs/{JOB_DIR}/train_log.csv",
        info=f"{RESULTS}/runs/{JOB_DIR}/train_info.json",
        predictions=f"{RESULTS}/runs/{JOB_DIR}/predictions.parquet",
    params:
        # what shapes the result: a change reruns the job (runtime settings and the gpu block are read from
        # the config by the script, so changing them neither retrains nor discards resume states)
        settings=lambda w: result_settings(train_settings(config, w.experiment)),
        loss_params=lambda w: dict(sorted(loss_params(config, w.loss).items())),
        state_dir=f"{RESULTS}/state/{JOB_DIR}",
    wildcard_constraints:
        experiment=f"(?!{_SHARED_RE})[^/]+",
    resources:
        gpu=gpus_wanted,
        runtime=train_runtime,
        mem_mb=train_mem_mb,
    threads: lambda w: max(1, int(train_settings(config, w.experiment).get("threads", 1) or 1))
    log:
        f"{LOGS}/train/{JOB_DIR}.log",
    script:
        "../workflow/scripts/train.py"


rule train_shared:
    input:
        lambda w: [f"{RESULTS}/runs/{SHARED[JOB_DIR.format(**dict(w.items()))]}/{name}" for name in OUTPUTS],
    output:
        model=f"{RESULTS}/runs/{JOB_DIR}/model.pt",
        log=f"{RESULTS}/runs/{JOB_DIR}/train_log.csv",
        info=f"{RESULTS}/runs/{JOB_DIR}/train_info.json",
        predictions=f"{RESULTS}/runs/{JOB_DIR}/predictions.parquet",
    wildcard_constraints:
        experiment=f"(?={_SHARED_RE})[^/]+",
    localrule: True
    log:
        f"{LOGS}/train/{JOB_DIR}.log",
    run:
        from lfa.estimate import share_outputs

        share_outputs(os.path.dirname(input[0]), os.path.dirname(output.model), log[0])
