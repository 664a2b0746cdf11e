# One job per lfa.pipeline.plan.Job: each (prepared dataset, backbone, loss, settings, seed, fold) trains once, in
# <results_dir>/runs/<job.path>/, whichever experiments use it (Table 5's 1:4 ratio is Table 4's ResNet-50
# block: one folder, read by both tables). params.key is the job's identity hash: a change of anything that
# shapes the result reruns the job; runtime knobs (threads, the data path) and the gpu block do not.
# The resume state lives in <results_dir>/state/<job.path>/, which is not an output: Snakemake deletes the
# outputs of a failed job, and the state is what lets its rerun resume.
# GPU jobs take a free GPU slot themselves (lfa.training.gpu: a lock file per slot, CUDA_VISIBLE_DEVICES set before
# CUDA starts); under SLURM they use the GPU SLURM gave.


rule train:
    input:
        unpack(prepared_inputs),
        plugins=plugin_inputs,
    output:
        **run_outputs("{run}"),
    params:
        key=lambda w: job(w).key,
    resources:
        gpu=lambda w: 0 if on_cpu(w) else 1,  # --resources gpu=N caps the concurrent GPU jobs
        runtime=train_runtime,
        mem_mb=train_mem_mb,
        disk_mb=train_disk_mb,
    threads: lambda w: max(1, int(job(w).runtime["threads"] or 1))
    log:
        str(LAYOUT.log("train", "{run}")),
    script:
        "../workflow/scripts/train.py"
