"""The ``lfa`` command: run one step of the pipeline by hand, without Snakemake.

    lfa prepare  --configfile config.yaml --dataset digits_lt
    lfa train    --configfile config.yaml --experiment demo_lt --dataset digits_lt --backbone small_cnn \\
                 --loss fece --fold 0 [--epochs 200 --batch-size 128 --lr 0.1] [--out DIR]
    lfa evaluate --predictions results/runs/.../predictions.parquet [--prepared DIR] [--out metrics.parquet]
    lfa aggregate --configfile config.yaml [--out DIR]   (results/{metrics,summary,per_class,comparisons,runs})
    lfa curves   --plugin my_loss.py --loss my_loss --loss bce --out lfa/   (tables and Figure 2, no training)
    lfa report   --configfile config.yaml [--partial]
    lfa status   --configfile config.yaml   (runs finished / running / failed / waiting, incomplete cells)
    lfa migrate  --configfile config.yaml [--dry-run]   (runs of the layout before job keys → today's)
    lfa estimate --configfile configs/paper.yaml [--gpus 4]   (jobs and GPU-hours per table)
    lfa losses   (list the registered losses and their hyper-parameters)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lfa.errors import ConfigError, LfaError


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configfile", default="config.yaml", help="pipeline config (default: %(default)s)")


def _config(path: str) -> dict[str, Any]:
    from lfa.pipeline.config import load_config

    return load_config(path)


def cmd_prepare(args: argparse.Namespace) -> int:
    from lfa.pipeline.stages import prepare_stage

    print(prepare_stage(_config(args.configfile), args.dataset))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from lfa.pipeline.plan import Layout, make_job
    from lfa.pipeline.stages import train_stage

    config = _config(args.configfile)
    if args.experiment not in config["experiments"]:
        raise ConfigError(f"unknown experiment {args.experiment!r}; known: {', '.join(config['experiments'])}")
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "device": args.device}
    job = make_job(config, args.experiment, args.dataset, args.backbone, args.loss, args.seed, args.fold,
                   {k: v for k, v in overrides.items() if v is not None})
    layout = Layout.from_config(config)
    out_dir = Path(args.out) if args.out else layout.manual(job)
    owned = [d for d in (layout.runs, layout.states) if _inside(out_dir, d)]
    if owned and not args.force:
        raise ConfigError(f"{out_dir} is inside {owned[0]}, which the workflow owns (its runs and resume states); "
                          "give another --out, or --force to write there anyway")
    code = train_stage(job, layout, config["gpu"], out_dir, out_dir / ".state")
    if code == 0:
        info = json.loads((out_dir / "train_info.json").read_text())
        print(json.dumps({k: info[k] for k in ("device", "wall_seconds", "best_val_loss")}, default=str))
        print(f"written: {out_dir}", file=sys.stderr)
    return code


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lfa.evaluation.evaluate import RUN_COLUMNS, evaluate_run

    predictions = Path(args.predictions)
    out = Path(args.out) if args.out else predictions.with_name("metrics.parquet")
    metrics = evaluate_run(predictions, out, _prepared_folder(args, predictions),
                           {k: getattr(args, k) for k in RUN_COLUMNS})
    cols = ["class", "class_name", "auc", "threshold", "accuracy", "precision", "recall", "f1"]
    print(metrics[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nwritten: {out}")
    return 0


def _prepared_folder(args: argparse.Namespace, predictions: Path) -> Path | None:
    """``--prepared``, else the config's prepared folder of the run's dataset where both exist (as the workflow
    evaluates), else None: predictions made elsewhere are evaluated without a data check."""
    from lfa.io import read_json
    from lfa.pipeline.plan import Layout

    if args.prepared:
        return Path(args.prepared)
    info = predictions.with_name("train_info.json")
    dataset = args.dataset or (read_json(info).get("job", {}).get("dataset") if info.is_file() else None)
    if not dataset or not Path(args.configfile).is_file():
        return None
    folder = Layout.from_config(_config(args.configfile)).prepared(dataset)
    return folder if (folder / "meta.json").is_file() else None


def cmd_aggregate(args: argparse.Namespace) -> int:
    """Every experiment's evaluated runs → the aggregated Parquet files, as the aggregate rule writes them."""
    from lfa.pipeline.plan import Layout
    from lfa.pipeline.stages import aggregate_stage, run_metrics

    config = _config(args.configfile)
    layout = Layout.from_config(config)
    metrics = run_metrics(config)
    missing = [path for paths in metrics.values() for path in paths if not path.exists()]
    if missing:
        raise ConfigError(f"{len(missing)} run(s) not evaluated yet (e.g. {missing[0]}): run snakemake first, or "
                          "'lfa report --partial' to report the runs evaluated so far")
    out_dir = Path(args.out) if args.out else layout.aggregate("metrics").parent
    for path in aggregate_stage(config, metrics, out_dir).values():
        print(path)
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    """One table pair (``--out x.csv`` or ``x.parquet``), or a folder of tables and Figure-2 PNGs."""
    from lfa.assessment.conventions import CONVENTIONS
    from lfa.assessment.curves import write_curves, write_lfa_folder
    from lfa.losses import lfa_grid

    losses = [*(args.losses or []), *args.loss] or None
    params = _loss_params(args.param)
    grid = lfa_grid(args.grid_points or _schema_default("lfa_grid_points"))
    if Path(args.out).suffix.lower() in (".csv", ".parquet"):
        paths = write_curves(args.convention or "trained", args.out, losses, params, grid)
    else:
        if not losses:
            raise ConfigError("lfa curves: name the losses to draw with --loss (e.g. --loss fece --loss bce)")
        conventions = [args.convention] if args.convention else list(CONVENTIONS)
        paths = write_lfa_folder(args.out, losses, params, conventions, grid)
    for path in paths:
        print(path)
    return 0


def _schema_default(key: str) -> Any:
    from lfa.pipeline.config import load_schema

    return load_schema()["properties"][key]["default"]


def _grid_points(text: str) -> int:
    from lfa.pipeline.config import load_schema

    least = load_schema()["properties"]["lfa_grid_points"]["minimum"]
    if not text.isdigit() or int(text) < least:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of at least {least}")
    return int(text)


def _loss_params(items: list[str]) -> dict[str, dict[str, float]]:
    """``["focal.gamma=3", ...]`` → ``{"focal": {"gamma": 3.0}}``."""

    out: dict[str, dict[str, float]] = {}
    for item in items:
        key, _, value = item.partition("=")
        loss, _, name = key.partition(".")
        try:
            out.setdefault(loss, {})[name] = float(value)
        except ValueError:
            raise ConfigError(f"--param {item}: expected LOSS.NAME=NUMBER, e.g. focal.gamma=3") from None
        if not (loss and name):
            raise ConfigError(f"--param {item}: expected LOSS.NAME=NUMBER, e.g. focal.gamma=3")
    return out


def cmd_losses(args: argparse.Namespace) -> int:
    from lfa.losses import display_name, loss_defaults, loss_names

    for name in loss_names():
        print(f"{name:14s} {display_name(name):16s} {loss_defaults(name)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Render the report from the results of a finished run, or (``--partial``) of whatever jobs finished."""
    from lfa.pipeline.plan import Layout, plan
    from lfa.pipeline.stages import evaluated_runs, report_stage

    config = _config(args.configfile)
    layout = Layout.from_config(config)
    out_html = Path(args.out) if args.out else layout.report
    if not args.partial:
        print(report_stage(config, [args.configfile], out_html))
        return 0
    done, stale = evaluated_runs(config)
    n_done, n_all = sum(map(len, done.values())), sum(map(len, plan(config).experiments.values()))
    if stale:
        print(f"{len(stale)} evaluated run(s) left out: made from other data than today's prepared set "
              f"(e.g. {stale[0]}); snakemake trains them again", file=sys.stderr)
    if not n_done:
        raise ConfigError("no job has finished its evaluation yet: nothing to report")
    print(f"{n_done} of {n_all} jobs evaluated; the others show as 'not run'", file=sys.stderr)
    # the workflow's own tables are left as they are
    print(report_stage(config, [args.configfile], out_html, out_html.parent / "tables",
                       metrics={name: paths for name, paths in done.items() if paths}))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Per experiment: runs finished, running, stopped, failed, waiting; the cells that are incomplete now."""
    from lfa.pipeline.status import format_status

    print(format_status(_config(args.configfile)))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Move finished runs of the layout before job keys into today's layout (nothing is retrained)."""
    from lfa.pipeline.migrate import migrate

    config = _config(args.configfile)
    snakefile = Path(args.snakefile)
    if not args.dry_run and not snakefile.is_file():
        print(f"lfa migrate: no Snakefile at {snakefile}: give the workflow's with --snakefile", file=sys.stderr)
        return 2
    report = migrate(config, dry_run=args.dry_run, snakefile=snakefile, configfile=args.configfile)
    print(report.summary())
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    """Jobs and GPU-hours per table, from the measured throughput table (lfa.pipeline.estimate)."""
    from lfa.pipeline.estimate import estimate, format_estimate
    from lfa.pipeline.resources import disk_by_table, format_disk

    config = _config(args.configfile)
    if args.json:
        print(json.dumps({"jobs": estimate(config), "disk_gb": disk_by_table(config)}, indent=2))
    else:
        print(format_estimate(config, args.gpus))
        print(format_disk(config))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lfa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="a plugin file or module (your losses, backbones, sources), imported first; repeatable")
    sub = _Subparsers(parser.add_subparsers(dest="command", required=True), common)

    p = sub.add_parser("prepare", help="build one prepared dataset (data/prepared/<dataset>/)")
    _add_config(p)
    p.add_argument("--dataset", required=True)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train one job by hand, apart from the workflow's runs (resumes if rerun)")
    _add_config(p)
    p.add_argument("--experiment", required=True)
    p.add_argument("--dataset", required=True, help="prepared dataset name (e.g. digits_binary_k50)")
    p.add_argument("--backbone", required=True)
    p.add_argument("--loss", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fold", type=int, default=0, help="test fold of the 5-fold rotation (validation: fold+1)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", help="output folder (default: <results_dir>/manual/<job path>)")
    p.add_argument("--force", action="store_true", help="allow --out inside the workflow's runs or states")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="per-class metrics from a predictions.parquet")
    p.add_argument("--predictions", required=True)
    _add_config(p)
    p.add_argument("--prepared", help="the prepared dataset folder the run trained on (default: the config's "
                   "folder of the run's dataset, where it exists): checks the predictions against it")
    p.add_argument("--out", help="output Parquet (default: metrics.parquet beside the predictions)")
    for key in ("dataset", "backbone", "loss"):
        p.add_argument(f"--{key}", help=f"{key} column (default: from the train_info.json beside the predictions)")
    for key in ("seed", "fold"):
        p.add_argument(f"--{key}", type=int, help=f"{key} column (default: from train_info.json)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("aggregate", help="the aggregated Parquet files from every evaluated run of a config")
    _add_config(p)
    p.add_argument("--out", help="output folder (default: the config's results_dir)")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("curves", help="LFA curves and Figure 2 of any registered losses, without training")
    p.add_argument("--loss", action="append", default=[], help="a loss to draw (repeat for several)")
    p.add_argument("--losses", nargs="*", help="loss names (with a .csv/.parquet --out: default every loss)")
    p.add_argument("--param", action="append", default=[], metavar="LOSS.NAME=VALUE",
                   help="a hyper-parameter override, e.g. focal.gamma=3 (repeat for several)")
    p.add_argument("--convention", choices=["trained", "figure2"],
                   help="one convention (default: both into a folder, trained into a file)")
    p.add_argument("--grid-points", type=_grid_points, help="points of the LFA grid (default: the config "
                   "schema's lfa_grid_points)")
    p.add_argument("--out", required=True,
                   help="a folder (CSV and Parquet tables, figure2_<convention>.png), or one .csv/.parquet table")
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser("losses", help="list the registered losses")
    p.set_defaults(func=cmd_losses)

    p = sub.add_parser("estimate", help="number of training jobs and GPU-hours of a config, per table")
    _add_config(p)
    p.add_argument("--gpus", type=int, default=1, help="GPUs working in parallel, for the wall-clock line")
    p.add_argument("--json", action="store_true", help="one JSON object per experiment instead of a table")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("report", help="render reports/report.html from the results of a run")
    _add_config(p)
    p.add_argument("--out", help="output HTML (default: <reports_dir>/report.html)")
    p.add_argument("--partial", action="store_true",
                   help="render from the jobs evaluated so far (the rest show as 'not run')")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("status", help="where a run stands, from its files (works under SLURM too)")
    _add_config(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("migrate", help="move the runs of an older results layout into today's (no retraining)")
    _add_config(p)
    p.add_argument("--dry-run", action="store_true", help="only say what would move")
    p.add_argument("--snakefile", default="Snakefile",
                   help="the workflow's Snakefile (default: %(default)s), to make Snakemake keep the prepared data")
    p.set_defaults(func=cmd_migrate)
    return parser


class _Subparsers:
    """``add_subparsers()`` whose every command also takes the common options (``--plugin``)."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self.sub, self.common = sub, common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self.sub.add_parser(name, parents=[self.common], **kwargs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from lfa.plugins import load_plugins

        load_plugins(args.plugin, "--plugin")
        return args.func(args)
    except LfaError as err:  # the user sees one line naming the cause and the fix; a bug keeps its traceback
        print(f"lfa {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
