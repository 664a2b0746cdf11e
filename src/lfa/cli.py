"""The ``lfa`` command: run one step of the pipeline by hand, without Snakemake.

    lfa prepare  --configfile config.yaml --dataset digits_lt
    lfa train    --configfile config.yaml --experiment demo_lt --dataset digits_lt --backbone small_cnn \\
                 --loss fece --fold 0 [--epochs 200 --batch-size 128 --lr 0.1]
    lfa evaluate --predictions results/runs/.../predictions.parquet --out metrics.parquet
    lfa curves   --convention figure2 --out curves.csv
    lfa report   --configfile config.yaml
    lfa estimate --configfile configs/paper.yaml [--gpus 4]   (jobs and GPU-hours per table)
    lfa losses   (list the registered losses and their hyper-parameters)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configfile", default="config.yaml", help="pipeline config (default: %(default)s)")


def _config(path: str) -> dict[str, Any]:
    from lfa.config import load_config

    return load_config(path)


def cmd_prepare(args: argparse.Namespace) -> int:
    from lfa.config import prepared_datasets
    from lfa.datasets import prepare

    config = _config(args.configfile)
    specs = prepared_datasets(config)
    if args.dataset not in specs:
        print(f"unknown dataset {args.dataset!r}; prepared datasets of this config: {', '.join(specs)}",
              file=sys.stderr)
        return 2
    from lfa.sources import raw_roots

    spec = specs[args.dataset]
    spec = {**spec, "root": raw_roots(config)[spec["source"]], "data_dir": config["data_dir"]}
    out = prepare(args.dataset, spec, Path(config["data_dir"]) / "prepared" / args.dataset,
                  config["n_splits"], config["split_seed"])
    print(out)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from lfa.config import Job, loss_params, train_settings
    from lfa.train import EXIT_INTERRUPTED, Interrupted, TrainJob, train

    config = _config(args.configfile)
    if args.experiment not in config["experiments"]:
        print(f"unknown experiment {args.experiment!r}; known: {', '.join(config['experiments'])}",
              file=sys.stderr)
        return 2
    settings = train_settings(config, args.experiment)
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "device": args.device}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    job = Job(args.experiment, args.dataset, args.backbone, args.loss, args.seed, args.fold)
    results = Path(config["results_dir"])
    out_dir = Path(args.out) if args.out else results / "runs" / job.path
    state_dir = out_dir / ".state" if args.out else results / "state" / job.path
    tj = TrainJob(job.experiment, job.dataset, job.backbone, job.loss, job.seed, job.fold, settings,
                  loss_params(config, job.loss))
    try:
        info = train(tj, Path(config["data_dir"]) / "prepared" / args.dataset, out_dir, state_dir)
    except Interrupted as stop:
        print(f"interrupted: {stop}; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(json.dumps({k: info[k] for k in ("device", "wall_seconds", "best_val_loss")}, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lfa.aggregate import write_parquet
    from lfa.evaluate import evaluate_job

    pred = Path(args.predictions)
    parts = pred.parent.parts
    keys = {"experiment": args.experiment or parts[-5], "dataset": args.dataset or parts[-4],
            "backbone": args.backbone or parts[-3], "loss": args.loss or parts[-2]}
    seed, fold = parts[-1][1:].split("_f") if parts[-1].startswith("s") else (0, 0)
    keys.update(seed=int(seed), fold=int(fold))
    names = json.loads(Path(args.meta).read_text())["class_names"] if args.meta else None
    df = evaluate_job(pred, keys, names)
    out = Path(args.out) if args.out else pred.with_name("metrics.parquet")
    write_parquet(df, out, {})
    cols = ["class", "class_name", "auc", "threshold", "accuracy", "precision", "recall", "f1"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nwritten: {out}")
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from lfa.lfa import write_curves

    for path in write_curves(args.convention, args.out, args.losses or None):
        print(path)
    return 0


def cmd_losses(args: argparse.Namespace) -> int:
    from lfa.losses import display_name, loss_defaults, loss_names

    for name in loss_names():
        print(f"{name:14s} {display_name(name):16s} {loss_defaults(name)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Render the report from the results of a finished run, or (``--partial``) of whatever jobs finished."""
    import glob
    import tempfile

    from lfa.config import config_hash, jobs, load_config
    from lfa.report import ReportInputs, render_report

    config = load_config(args.configfile)
    res, data = Path(config["results_dir"]), Path(config["data_dir"])
    all_jobs = jobs(config)
    run_dirs = [res / "runs" / j.path for j in all_jobs]
    with tempfile.TemporaryDirectory(prefix="lfa-report-") as tmp:
        agg = res
        if args.partial:
            from lfa.evaluate import aggregate

            done = [d / "metrics.parquet" for d in run_dirs if (d / "metrics.parquet").exists()]
            if not done:
                print("lfa report: no job has finished its evaluation yet", file=sys.stderr)
                return 2
            print(f"{len(done)} of {len(all_jobs)} jobs evaluated; the others show as 'not run'", file=sys.stderr)
            agg = Path(tmp)
            aggregate(done, agg, {"lfa.config_hash": config_hash(config)})
        curves = sorted(glob.glob(str(res / "lfa" / "curves_*.parquet")))
        gradients = sorted(glob.glob(str(res / "lfa" / "gradients_*.parquet")))
        if len(curves) < 2:
            from lfa.lfa import CONVENTIONS, write_curves

            losses = sorted({loss for e in config["experiments"].values() for loss in e["losses"]})
            curves, gradients = [], []
            for convention in CONVENTIONS:
                c, g = write_curves(convention, Path(tmp) / f"curves_{convention}.parquet", losses,
                                    config["loss_params"])
                curves.append(c)
                gradients.append(g)
        inputs = ReportInputs(
            metrics=agg / "metrics.parquet", summary=agg / "summary.parquet", per_class=agg / "per_class.parquet",
            comparisons=agg / "comparisons.parquet", curves=curves, gradients=gradients,
            datasets=sorted({str(data / "prepared" / j.dataset / "meta.json") for j in all_jobs
                             if (data / "prepared" / j.dataset / "meta.json").exists()}),
            train_info=[d / "train_info.json" for d in run_dirs], train_logs=[d / "train_log.csv" for d in run_dirs],
            config=config, config_hash=config_hash(config), config_files=[args.configfile],
        )
        out = render_report(inputs, args.out or Path(config["reports_dir"]) / "report.html")
    print(out)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    """Jobs and GPU-hours per table, from the measured throughput table (lfa.estimate)."""
    from lfa.estimate import estimate, format_estimate

    config = _config(args.configfile)
    if args.json:
        print(json.dumps(estimate(config), indent=2))
    else:
        print(format_estimate(config, args.gpus))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lfa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="build one prepared dataset (data/prepared/<dataset>/)")
    _add_config(p)
    p.add_argument("--dataset", required=True)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train one job (resumes from its last checkpoint)")
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
    p.add_argument("--out", help="output folder (default: results/runs/<job>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="per-class metrics from a predictions.parquet")
    p.add_argument("--predictions", required=True)
    p.add_argument("--meta", help="the prepared dataset's meta.json (for class names)")
    p.add_argument("--out", help="output Parquet (default: metrics.parquet beside the predictions)")
    for key in ("experiment", "dataset", "backbone", "loss"):
        p.add_argument(f"--{key}", help=f"{key} key (default: read from the results/runs/... path)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("curves", help="LFA curves of the registered losses (Figure 2)")
    p.add_argument("--convention", choices=["trained", "figure2"], default="trained")
    p.add_argument("--losses", nargs="*", help="loss names (default: every registered loss)")
    p.add_argument("--out", required=True, help="output .csv or .parquet")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as err:  # the user sees one clear line; --debug style tracebacks are in the job logs
        from lfa.config import ConfigError

        if isinstance(err, ConfigError | FileNotFoundError | KeyError):
            print(f"lfa {args.command}: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
