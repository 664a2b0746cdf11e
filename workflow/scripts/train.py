"""Snakemake adapter: take a GPU slot (lfa.gpu), then train one job (lfa.train.train)."""

import contextlib
import sys

from lfa.gpu import gpu_slot
from lfa.logs import logged
from lfa.plan import Layout, plan

sm = snakemake  # noqa: F821  (injected by Snakemake)
job = plan(sm.config).job(sm.wildcards.run)
layout = Layout.from_config(sm.config)
with logged(sm.log[0]):
    gpu = sm.config["gpu"]
    # The slot (and CUDA_VISIBLE_DEVICES) is taken before torch initialises CUDA, and dropped on any exit.
    slot_cm = (gpu_slot(layout.gpu_slots, devices=gpu["devices"], jobs_per_device=gpu["jobs_per_device"],
                        job=job.path)
               if job.settings["device"] != "cpu" else contextlib.nullcontext(None))
    with slot_cm as slot:
        from lfa.train import EXIT_INTERRUPTED, Interrupted, train

        extra = {"gpu_slot": slot.index, "cuda_visible_devices": slot.device} if slot is not None else {}
        try:
            train(job, layout.prepared(job.dataset), layout.run(job), layout.state(job), extra_info=extra)
        except Interrupted as stop:
            print(f"interrupted: {stop}; a rerun resumes", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
