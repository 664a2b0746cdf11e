"""Snakemake adapter: take a GPU slot (lfa.gpu), then train one job (lfa.train.train)."""

import contextlib
import sys
from pathlib import Path

from lfa.config import train_settings
from lfa.estimate import RUNTIME_KEYS
from lfa.gpu import gpu_slot
from lfa.logs import logged

sm = snakemake  # noqa: F821  (injected by Snakemake)
w = sm.wildcards
runtime = {k: v for k, v in train_settings(sm.config, w.experiment).items() if k in RUNTIME_KEYS}
settings = {**dict(sm.params.settings), **runtime}
job_path = f"{w.experiment}/{w.dataset}/{w.backbone}/{w.loss}/s{w.seed}_f{w.fold}"
with logged(sm.log[0]):
    wants_gpu = settings.get("device", "auto") != "cpu"
    gpu = dict(sm.config.get("gpu") or {})
    slots_dir = Path(sm.config.get("results_dir", "results")) / ".gpu_slots"
    # The slot (and CUDA_VISIBLE_DEVICES) is taken before torch initialises CUDA, and dropped on any exit.
    slot_cm = (gpu_slot(slots_dir, devices=int(gpu.get("devices", 0)),
                        jobs_per_device=int(gpu.get("jobs_per_device", 1)), job=job_path)
               if wants_gpu else contextlib.nullcontext(None))
    with slot_cm as slot:
        from lfa.train import EXIT_INTERRUPTED, Interrupted, TrainJob, train

        job = TrainJob(w.experiment, w.dataset, w.backbone, w.loss, int(w.seed), int(w.fold), settings,
                       dict(sm.params.loss_params))
        extra = {"gpu_slot": slot.index, "cuda_visible_devices": slot.device} if slot is not None else {}
        try:
            train(job, Path(sm.input.index).parent, Path(sm.output.model).parent, sm.params.state_dir,
                  extra_info=extra)
        except Interrupted as stop:
            print(f"interrupted: {stop}; a rerun resumes", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
