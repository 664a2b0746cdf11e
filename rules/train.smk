# One job per experiment × dataset × backbone × loss × seed × fold.
# The resume state lives in results/state/, which is not an output: Snakemake deletes the outputs of a
# failed job, and the state is what lets its rerun resume.


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
        settings=lambda w: train_settings(config, w.experiment),
        loss_params=lambda w: loss_params(config, w.loss),
        state_dir=f"{RESULTS}/state/{JOB_DIR}",
    resources:
        gpu=gpus_wanted,
    threads: 1
    log:
        f"{LOGS}/train/{JOB_DIR}.log",
    script:
        "../workflow/scripts/train.py"
