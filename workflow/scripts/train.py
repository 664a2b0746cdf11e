"""Snakemake adapter: train one job (lfa.train.train)."""

import sys
from pathlib import Path

from lfa.logs import logged
from lfa.train import EXIT_INTERRUPTED, Interrupted, TrainJob, train

sm = snakemake  # noqa: F821  (injected by Snakemake)
w = sm.wildcards
job = TrainJob(w.experiment, w.dataset, w.backbone, w.loss, int(w.seed), int(w.fold),
               dict(sm.params.settings), dict(sm.params.loss_params))
with logged(sm.log[0]):
    try:
        train(job, Path(sm.input.index).parent, Path(sm.output.model).parent, sm.params.state_dir)
    except Interrupted as stop:
        print(f"interrupted: {stop}; a rerun resumes", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
