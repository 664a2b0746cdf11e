"""The pipeline's stages as functions that read and write their own files: the workflow's scripts and the ``lfa``
command call the same ones, so a step run by hand writes what the rule writes.

| stage | function | called by |
|---|---|---|
| prepare | :func:`prepare_stage` | ``prepare_<source>`` rules, ``lfa prepare`` |
| train | :func:`train_stage` | ``train`` rule, ``lfa train`` |
| evaluate | :func:`lfa.evaluation.evaluate.evaluate_run` | ``evaluate`` rule, ``lfa evaluate`` |
| aggregate | :func:`aggregate_stage` | ``aggregate`` rule, ``lfa report --partial`` |
| LFA curves | :func:`lfa.assessment.curves.write_curves` | ``lfa_curves`` rule, ``lfa curves --out x.parquet`` |
| report | :func:`report_stage` | ``report`` rule, ``lfa report`` |

Heavy imports (torch) happen inside the functions: a training job takes its GPU slot before torch starts.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lfa.errors import ConfigError, MixedResults
from lfa.pipeline.plan import AGGREGATES, Job, Layout, plan, prepared_datasets


def prepare_stage(config: dict[str, Any], dataset: str) -> Path:
    """Build the prepared dataset ``dataset`` of ``config`` into its folder of the layout; returns the folder.

    Backbones whose smallest input the config could not check (a source that keeps the images' own size)
    are checked against the images before anything is packed.
    """
    from lfa.data.datasets import prepare

    specs = prepared_datasets(config)
    if dataset not in specs:
        raise ConfigError(f"unknown dataset {dataset!r}; prepared datasets of this config: {', '.join(specs)}")
    layout, spec = Layout.from_config(config), specs[dataset]
    return prepare(dataset, spec, layout.dataset_raw(spec), layout.prepared(dataset), config["n_splits"],
                   config["split_seed"], layout.downloads, side_check=_side_check(config, dataset))


def _side_check(config: dict[str, Any], dataset: str) -> Any:
    """A check of the packed side against every backbone that trains on ``dataset`` (lfa.models.input_size)."""
    from lfa.models import input_size

    uses = sorted({(job.backbone, int(job.settings["image_size"])) for job in plan(config).jobs
                   if job.dataset == dataset})

    def check(side: int) -> None:
        for backbone, wanted in uses:
            try:
                input_size(backbone, wanted, side)
            except ConfigError as err:
                raise ConfigError(f"datasets.{dataset}: {err}") from None

    return check


def train_stage(job: Job, layout: Layout, gpu: Mapping[str, Any], out_dir: Path | None = None,
                state_dir: Path | None = None) -> int:
    """Train ``job`` into its run folder (or ``out_dir``), resuming from its state; returns the exit code.

    A GPU job first takes a free GPU slot (``gpu``: the config's ``gpu`` block), before torch starts CUDA;
    a stop signal saves the state and returns :data:`lfa.training.train.EXIT_INTERRUPTED`, so a rerun resumes.
    """
    from lfa.training.gpu import gpu_slot

    slot_cm = (gpu_slot(layout.gpu_slots, devices=gpu["devices"], jobs_per_device=gpu["jobs_per_device"],
                        job=job.path)
               if job.settings["device"] != "cpu" else contextlib.nullcontext(None))
    with slot_cm as slot:
        from lfa.training.train import EXIT_INTERRUPTED, Interrupted, train

        extra = {"gpu_slot": slot.index, "cuda_visible_devices": slot.device} if slot is not None else {}
        try:
            train(job, layout.prepared(job.dataset), out_dir or layout.run(job), state_dir or layout.state(job),
                  extra_info=extra, board_dir=layout.tensorboard(job) if job.runtime.get("tensorboard") else None)
        except Interrupted as stop:
            print(f"interrupted: {stop}; run the same step again to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
    return 0


def aggregate_stage(config: dict[str, Any], metrics: Mapping[str, Sequence[str | Path]],
                    out_dir: str | Path) -> dict[str, Path]:
    """Each experiment's runs (``metrics``: experiment → the runs' ``metrics.parquet``) → ``metrics``,
    ``summary``, ``per_class``, ``comparisons`` and ``runs`` Parquet files in ``out_dir``, stamped with the
    config's hash."""
    from lfa.evaluation.aggregate import aggregate, runs_table
    from lfa.io import write_parquet
    from lfa.pipeline.config import config_hash

    stamp = {"lfa.config_hash": config_hash(config)}
    paths = aggregate(metrics, out_dir, stamp, config["report"]["reference_loss"])
    paths["runs"] = Path(out_dir) / "runs.parquet"
    write_parquet(runs_table(plan(config)), paths["runs"], stamp)
    return paths


def report_stage(config: dict[str, Any], config_files: Sequence[str], out_html: str | Path,
                 tables_dir: str | Path | None = None, figures_dir: str | Path | None = None,
                 metrics: Mapping[str, Sequence[Path]] | None = None, pipeline_dir: str | Path | None = None
                 ) -> Path:
    """Render the report of ``config`` from its aggregated results; with ``metrics`` (experiment → the
    ``metrics.parquet`` of the runs to show, as ``lfa report --partial`` finds them) from those runs instead,
    aggregated into a temporary folder. Runs evaluated on other data than the prepared datasets as they are
    now are refused (:func:`evaluated_runs`). LFA curves the run has not drawn yet are computed for the report."""
    from lfa.pipeline.config import config_hash
    from lfa.report import ReportInputs, render_report

    layout = Layout.from_config(config)
    if metrics is None:
        _, stale = evaluated_runs(config)
        if stale:
            raise MixedResults(f"{len(stale)} run(s) were evaluated on other data than the prepared datasets as they "
                               f"are now (e.g. {stale[0]}): run snakemake again (it trains them again), or "
                               "'lfa report --partial' to leave them out")
    with tempfile.TemporaryDirectory(prefix="lfa-report-") as tmp:
        files = ({name: layout.aggregate(name) for name in (*AGGREGATES, "runs")} if metrics is None
                 else aggregate_stage(config, metrics, tmp))
        curves, gradients = _curve_files(config, layout, Path(tmp))
        inputs = ReportInputs(**files, curves=curves, gradients=gradients, config=config,
                              config_hash=config_hash(config), config_files=list(config_files),
                              tables_dir=str(tables_dir or layout.tables), pipeline_dir=pipeline_dir)
        return render_report(inputs, out_html, figures_dir=figures_dir)


def _curve_files(config: dict[str, Any], layout: Layout, tmp: Path) -> tuple[list[Path], list[Path]]:
    """The LFA curve tables of the run, or computed now (into ``tmp``) where the run has none yet."""
    from lfa.assessment.conventions import CONVENTIONS

    curves, gradients = [layout.curves(c) for c in CONVENTIONS], [layout.gradients(c) for c in CONVENTIONS]
    if all(path.exists() for path in curves + gradients):
        return curves, gradients
    from lfa.assessment.curves import write_curves
    from lfa.losses import lfa_grid
    from lfa.plugins import use_config_plugins

    use_config_plugins(config)
    losses = sorted({loss for exp in config["experiments"].values() for loss in exp["losses"]})
    pairs = [write_curves(c, tmp / f"curves_{c}.parquet", losses, config["loss_params"],
                          lfa_grid(config["lfa_grid_points"])) for c in CONVENTIONS]
    return [c for c, _ in pairs], [g for _, g in pairs]


def run_metrics(config: dict[str, Any]) -> dict[str, list[Path]]:
    """Experiment → the ``metrics.parquet`` of each of its runs (a shared run in every experiment using it)."""
    layout = Layout.from_config(config)
    return {name: [layout.run_file(job, "metrics.parquet") for job in jobs]
            for name, jobs in plan(config).experiments.items()}


def evaluated_runs(config: dict[str, Any]) -> tuple[dict[str, list[Path]], list[Path]]:
    """The ``metrics.parquet`` of each experiment's runs that exist and were made from its prepared data as
    it is now, and those left out because they were made from other data (each file read once)."""
    from lfa.data.datasets import verify_prepared
    from lfa.io import read_parquet_metadata

    layout = Layout.from_config(config)
    today: dict[str, str] = {}
    fresh: dict[Path, bool] = {}
    for path in {path for paths in run_metrics(config).values() for path in paths if path.exists()}:
        dataset = path.relative_to(layout.runs).parts[0]  # job.path begins with its prepared dataset
        if dataset not in today:
            folder = layout.prepared(dataset)
            today[dataset] = verify_prepared(folder).data_hash if (folder / "meta.json").exists() else ""
        made_from = read_parquet_metadata(path).get("lfa.data_hash")
        fresh[path] = not (made_from and today[dataset] and made_from != today[dataset])
    done = {name: [path for path in paths if fresh.get(path)] for name, paths in run_metrics(config).items()}
    return done, sorted(path for path, ok in fresh.items() if not ok)
