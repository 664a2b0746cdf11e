"""The HTML report: provenance, datasets, the paper's tables with our values, figures, per-class tables.

Reads Parquet/CSV/JSON files only and never imports torch. Figures are seaborn/matplotlib PNGs embedded
as base64, so ``report.html`` is one self-contained file that works offline and prints.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402

from lfa import __version__  # noqa: E402
from lfa.figures_lfa import loss_palette, plot_figure2  # noqa: E402
from lfa.io import atomic_path  # noqa: E402
from lfa.paper import METRIC_LABELS, METRICS, TABLES, compare_with_paper, format_cell  # noqa: E402

#: Metrics where a larger value is better (bold marks the best per column and block); not the threshold.
HIGHER_IS_BETTER = ["auc", "accuracy", "precision", "recall", "f0_5", "f0", "f1"]
PACKAGES = ["torch", "torchvision", "snakemake", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy",
            "seaborn", "matplotlib", "jinja2"]
LOSS_DISPLAY = {"asl": "ASL", "asl_original": "ASL (original)", "bce": "BCE", "ece": "ECE",
                "fece": "F-ECE", "focal": "Focal"}


@dataclass
class ReportInputs:
    metrics: str | Path
    summary: str | Path
    per_class: str | Path
    comparisons: str | Path
    curves: list[str | Path]
    gradients: list[str | Path]
    datasets: list[str | Path]
    train_info: list[str | Path]
    train_logs: list[str | Path]
    config: dict[str, Any]
    config_hash: str
    config_files: list[str] = field(default_factory=list)
    tables_dir: str | Path | None = None  # default: <results_dir>/tables


def loss_label(name: str) -> str:
    return LOSS_DISPLAY.get(name, name)


def fig_to_data_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def _versions() -> dict[str, str]:
    out = {"lfa-repro": __version__}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _read_json_files(paths: list[str | Path]) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text()) for p in paths if Path(p).exists()]


def provenance(inputs: ReportInputs) -> dict[str, Any]:
    infos = _read_json_files(inputs.train_info)
    hours: dict[str, float] = {}
    devices: set[str] = set()
    for info in infos:
        kind = "GPU" if info.get("device_type") == "cuda" else "CPU"
        hours[kind] = hours.get(kind, 0.0) + float(info.get("wall_seconds", 0.0)) / 3600
        devices.add(str(info.get("device")))
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "config_files": inputs.config_files or ["config.yaml"],
        "config_hash": inputs.config_hash,
        "versions": _versions(),
        "devices": sorted(devices) or ["none recorded"],
        "hours": {k: f"{v:.3f}" for k, v in sorted(hours.items())},
        "n_jobs": len(infos),
    }


# ----------------------------------------------------------------------------------------------- tables
def experiment_blocks(config: dict[str, Any], name: str, summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The blocks of an experiment's table: one per backbone, or one per ratio for ratio experiments."""
    from lfa.config import experiment_datasets, split_prepared_name

    exp = config["experiments"][name]
    labels = exp.get("block_labels", {})
    blocks = []
    for dataset in experiment_datasets(config, name):
        _, k = split_prepared_name(dataset)
        for backbone in exp["backbones"]:
            if k is not None:
                key, label = str(k), f"{k} ({_ratio_label(k)})"
                if len(exp["backbones"]) > 1:
                    label += f", {backbone}"
            else:
                key, label = labels.get(backbone, backbone), backbone
            rows = summary[(summary.experiment == name) & (summary.dataset == dataset)
                           & (summary.backbone == backbone)]
            blocks.append({"key": key, "label": label, "experiment": name, "dataset": dataset,
                           "backbone": backbone, "rows": rows})
    return blocks


def _ratio_label(k: int) -> str:
    g = math.gcd(k, 200)
    return f"{k // g}:{200 // g}"


def diverged_runs(metrics: pd.DataFrame) -> dict[tuple[str, str, str, str], tuple[int, int]]:
    """(experiment, dataset, backbone, loss) → (runs that diverged, runs), for runs recorded as diverged."""
    if "diverged" not in metrics.columns or not metrics["diverged"].any():
        return {}
    runs = metrics.groupby(["experiment", "dataset", "backbone", "loss", "seed", "fold"])["diverged"].any()
    per = runs.groupby(level=[0, 1, 2, 3]).agg(["sum", "count"])
    return {key: (int(r["sum"]), int(r["count"])) for key, r in per.iterrows() if r["sum"]}


def table_rows(blocks: list[dict[str, Any]], losses: list[str], decimals: int, paper_table: str | None,
               diverged: dict[tuple[str, str, str, str], tuple[int, int]] | None = None) -> list[dict[str, Any]]:
    """Rows for the template: block headers and loss rows with formatted cells, bold and paper deltas."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        out.append({"kind": "block", "label": block["label"]})
        rows = block["rows"]
        best = {}
        for metric in HIGHER_IS_BETTER:
            vals = rows[rows.metric == metric].set_index("loss")["mean"].round(decimals)
            best[metric] = vals.max() if len(vals) else None
        cmp = None
        if paper_table is not None:
            ours = rows.assign(block=block["key"])[["block", "loss", "metric", "mean", "std"]]
            cmp = compare_with_paper(ours, paper_table)
            cmp = cmp[cmp.block == block["key"]].set_index(["loss", "metric"])
        for loss in losses:
            cells = []
            div = (diverged or {}).get((block["experiment"], block["dataset"], block["backbone"], loss))
            for metric in METRICS:
                r = rows[(rows.loss == loss) & (rows.metric == metric)]
                mean = float(r["mean"].iloc[0]) if len(r) else math.nan
                std = float(r["std"].iloc[0]) if len(r) else math.nan
                cell = {"text": format_cell(mean, std, decimals),
                        "bold": metric in best and best[metric] is not None and not math.isnan(mean)
                        and round(mean, decimals) == best[metric],
                        "missing": math.isnan(mean)}
                if div:
                    cell["diverged"] = f"diverged in {div[0]} of {div[1]} runs"
                    if math.isnan(mean):
                        cell["text"] = "diverged"
                if cmp is not None and (loss, metric) in cmp.index:
                    c = cmp.loc[(loss, metric)]
                    cell["paper"] = format_cell(c.paper_mean, c.paper_std, decimals)
                    cell["delta"] = None if pd.isna(c.delta) else f"{c.delta:+.{decimals}f}"
                    cell["verdict"] = c.verdict
                cells.append(cell)
            out.append({"kind": "row", "loss": loss_label(loss), "cells": cells})
    return out


def export_table(name: str, blocks: list[dict[str, Any]], losses: list[str], decimals: int,
                 out_dir: Path) -> dict[str, str]:
    """Write an experiment's table as CSV and LaTeX (results/tables/<experiment>.{csv,tex})."""
    records = []
    for block in blocks:
        rows = block["rows"]
        for loss in losses:
            rec = {"block": block["label"], "loss": loss_label(loss)}
            for metric in METRICS:
                r = rows[(rows.loss == loss) & (rows.metric == metric)]
                rec[METRIC_LABELS[metric]] = (format_cell(float(r["mean"].iloc[0]), float(r["std"].iloc[0]),
                                                          decimals) if len(r) else "not run")
            records.append(rec)
    df = pd.DataFrame(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    latex = ["\\begin{tabular}{l" + "c" * len(METRICS) + "}", "\\hline",
             "Loss & " + " & ".join(METRIC_LABELS[m] for m in METRICS) + " \\\\", "\\hline"]
    for block, part in df.groupby("block", sort=False):
        if len(blocks) > 1:
            latex.append(f"\\multicolumn{{{len(METRICS) + 1}}}{{c}}{{{block}}} \\\\")
        for _, rec in part.iterrows():
            cells = [str(rec[METRIC_LABELS[m]]).replace("±", "$\\pm$") for m in METRICS]
            latex.append(f"{rec['loss']} & " + " & ".join(cells) + " \\\\")
    latex += ["\\hline", "\\end{tabular}"]
    with atomic_path(out_dir / f"{name}.tex") as tmp:
        Path(tmp).write_text("\n".join(latex) + "\n")
    return {"csv": str(out_dir / f"{name}.csv"), "tex": str(out_dir / f"{name}.tex")}


# ---------------------------------------------------------------------------------------------- figures
def figure_class_distribution(meta: dict[str, Any]) -> str:
    counts = pd.DataFrame(meta["counts"])
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(counts) + 1.5), 2.8))
    sns.barplot(data=counts, x="name", y="count", color="#4C72B0", ax=ax)
    if counts["count"].max() > 5 * max(counts["count"].min(), 1):
        ax.set_yscale("log")
    ax.set_xlabel("class")
    ax.set_title(meta["name"])
    ax.tick_params(axis="x", rotation=45 if len(counts) > 6 else 0)
    return fig_to_data_uri(fig)


def figure_recall_heatmap(per_class: pd.DataFrame, losses: list[str], title: str) -> str | None:
    rec = per_class[per_class.metric == "recall"]
    if rec.empty:
        return None
    table = rec.pivot_table(index="class_name", columns="loss", values="mean")
    order = table["bce"].sort_values().index if "bce" in table else table.mean(axis=1).sort_values().index
    table = table.loc[order, [loss for loss in losses if loss in table.columns]]
    table.columns = [loss_label(c) for c in table.columns]
    fig, ax = plt.subplots(figsize=(1.1 * len(table.columns) + 2.5, 0.32 * len(table) + 1.4))
    sns.heatmap(table, annot=len(table) <= 40, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax,
                cbar_kws={"label": "recall"})
    ax.set_ylabel("class (hardest under BCE first)")
    ax.set_xlabel("")
    ax.set_title(title)
    return fig_to_data_uri(fig)


def figure_metric_vs_ratio(metrics: pd.DataFrame, experiment: str, palette: dict[str, str],
                           metric: str = "auc") -> str | None:
    df = metrics[(metrics.experiment == experiment) & metrics.ratio_k.notna()]
    if df.empty:
        return None
    fold_means = (df.groupby(["loss", "ratio_k", "seed", "fold"])[metric].mean().reset_index())
    fold_means["loss"] = fold_means["loss"].map(loss_label)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.lineplot(data=fold_means, x="ratio_k", y=metric, hue="loss", marker="o", errorbar="sd", ax=ax,
                 palette={loss_label(k): v for k, v in palette.items()})
    ax.set_xscale("log")
    ticks = sorted(fold_means["ratio_k"].unique())
    ax.set_xticks(ticks, [f"{int(k)}\n({_ratio_label(int(k))})" for k in ticks])
    ax.set_xlabel("positives per 200 negatives")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric) + " (mean ± sd over folds)")
    ax.set_title(f"{METRIC_LABELS.get(metric, metric)} vs imbalance ratio")
    return fig_to_data_uri(fig)


def figure_auc_vs_frequency(per_class: pd.DataFrame, counts: pd.DataFrame, palette: dict[str, str],
                            title: str) -> str | None:
    auc = per_class[per_class.metric == "auc"].merge(counts[["class", "count"]], on="class")
    if auc.empty or len(counts) < 3:
        return None
    auc = auc.assign(loss=auc["loss"].map(loss_label))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.lineplot(data=auc.sort_values("count"), x="count", y="mean", hue="loss", marker="o", ax=ax,
                 palette={loss_label(k): v for k, v in palette.items()})
    ax.set_xscale("log")
    ax.set_xlabel("class frequency (samples in the prepared dataset)")
    ax.set_ylabel("per-class AUC (mean over folds)")
    ax.set_title(title)
    return fig_to_data_uri(fig)


def figure_training_curves(logs: pd.DataFrame, palette: dict[str, str], title: str) -> str | None:
    if logs.empty:
        return None
    long = logs.melt(id_vars=["loss", "fold", "epoch"], value_vars=["train_loss", "val_loss"],
                     var_name="split", value_name="value")
    long["loss"] = long["loss"].map(loss_label)
    n_losses = long["loss"].nunique()
    g = sns.relplot(data=long, x="epoch", y="value", hue="loss", style="split", units="fold",
                    estimator=None, kind="line", col="loss", col_wrap=min(n_losses, 5), height=2.4, aspect=1.25,
                    facet_kws={"sharey": False}, palette={loss_label(k): v for k, v in palette.items()},
                    alpha=0.8)
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", "loss value")
    g.figure.suptitle(title, y=1.04)
    return fig_to_data_uri(g.figure)


def figure_forest(comparisons: pd.DataFrame, metric: str, title: str) -> str | None:
    df = comparisons[comparisons.metric == metric]
    if df.empty:
        return None
    from lfa.config import split_prepared_name

    order = [(split_prepared_name(d)[0], -(split_prepared_name(d)[1] or 0), b, loss_label(x))
             for d, b, x in zip(df["dataset"], df["backbone"], df["loss"], strict=True)]
    df = df.iloc[sorted(range(len(df)), key=order.__getitem__)]
    df = df.assign(label=df["dataset"] + " · " + df["backbone"] + " · F-ECE − " + df["loss"].map(loss_label))
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(df) + 1.2))
    y = np.arange(len(df))
    ax.errorbar(df["mean_diff"], y, xerr=[df["mean_diff"] - df["ci_low"], df["ci_high"] - df["mean_diff"]],
                fmt="o", color="#C44E52", ecolor="#888", capsize=2)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, df["label"])
    ax.invert_yaxis()
    ax.set_xlabel(f"difference in {METRIC_LABELS.get(metric, metric)} (bootstrap 95% interval)")
    ax.set_title(title)
    return fig_to_data_uri(fig)


# ---------------------------------------------------------------------------------------------- render
def _load_logs(paths: list[str | Path]) -> pd.DataFrame:
    frames = []
    for p in paths:
        p = Path(p)
        if not p.exists() or p.stat().st_size == 0:
            continue
        df = pd.read_csv(p)
        # results/runs/<experiment>/<dataset>/<backbone>/<loss>/s<seed>_f<fold>/train_log.csv
        exp, dataset, backbone, loss, sf = p.parts[-6:-1]
        seed, fold = sf[1:].split("_f")
        frames.append(df.assign(experiment=exp, dataset=dataset, backbone=backbone, loss=loss,
                                seed=int(seed), fold=int(fold)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["experiment", "dataset", "backbone", "loss", "seed", "fold", "epoch", "train_loss", "val_loss"])


def build_context(inputs: ReportInputs) -> dict[str, Any]:
    from lfa.config import experiment_datasets, jobs
    from lfa.datasets import dataset_summary
    from lfa.figures_lfa import CONVENTION_NOTE

    config = inputs.config
    metrics = pd.read_parquet(inputs.metrics)
    summary = pd.read_parquet(inputs.summary)
    per_class = pd.read_parquet(inputs.per_class)
    comparisons = pd.read_parquet(inputs.comparisons)
    logs = _load_logs(inputs.train_logs)
    all_losses = sorted({loss for e in config["experiments"].values() for loss in e["losses"]},
                        key=loss_label)
    palette = loss_palette(all_losses)
    diverged = diverged_runs(metrics)
    tables_dir = Path(inputs.tables_dir or Path(config.get("results_dir", "results")) / "tables")

    expected = {(j.experiment, j.dataset, j.backbone, j.loss) for j in jobs(config)}
    done = set(map(tuple, summary[["experiment", "dataset", "backbone", "loss"]].drop_duplicates().to_numpy()))
    missing = sorted(expected - done)

    datasets = []
    for meta_path in inputs.datasets:
        meta = dataset_summary(Path(meta_path).parent)
        meta["scaled_demo"] = meta.get("source") == "digits"  # follows a table's proportions, not its counts
        if meta["seed_counts"]:
            for row, seed in zip(meta["counts"], meta["seed_counts"], strict=True):
                row["seed"] = seed
                row["differs"] = not meta["scaled_demo"] and int(row["count"]) != int(seed)
        meta["extrapolated_note"] = meta.get("reference_table") == "imagenet_lt"
        meta["figure"] = figure_class_distribution(meta)
        datasets.append(meta)

    lfa_figures = []
    for conv_path, grad_path in zip(sorted(inputs.curves), sorted(inputs.gradients), strict=True):
        curves, grads = pd.read_parquet(conv_path), pd.read_parquet(grad_path)
        convention = "figure2" if "figure2" in Path(conv_path).name else "trained"
        fig = plot_figure2(curves, grads, convention, palette=loss_palette(sorted(curves["loss"].unique())))
        lfa_figures.append({"convention": convention, "figure": fig_to_data_uri(fig)})
    lfa_figures.sort(key=lambda f: f["convention"] != "trained")

    experiments = []
    for name, exp in config["experiments"].items():
        layout = exp.get("layout")
        decimals = TABLES[layout]["decimals"] if layout else 3
        blocks = experiment_blocks(config, name, summary)
        losses = sorted(exp["losses"], key=loss_label)
        rows = table_rows(blocks, losses, decimals, exp.get("paper_table"), diverged)
        exported = export_table(name, blocks, losses, decimals, tables_dir)
        pc = per_class[per_class.experiment == name]
        figures = []
        datasets_of = experiment_datasets(config, name)
        if len(datasets_of) == 1:
            dataset = datasets_of[0]
            counts = pd.read_csv(Path(config.get("data_dir", "data")) / "prepared" / dataset / "counts.csv")
            long_tailed = counts["count"].max() > 5 * counts["count"].min()
            for backbone in exp["backbones"]:
                sub = pc[(pc.dataset == dataset) & (pc.backbone == backbone)]
                fig = figure_recall_heatmap(sub, losses, f"Per-class recall · {dataset} · {backbone}")
                if fig:
                    figures.append({"title": f"Per-class recall, {backbone} (hardest classes under BCE first)",
                                    "src": fig})
                fig = long_tailed and figure_auc_vs_frequency(sub, counts, palette,
                                                              f"Per-class AUC vs frequency · {dataset}")
                if fig:
                    figures.append({"title": f"Per-class AUC vs class frequency, {backbone}", "src": fig})
        if len(datasets_of) > 1:
            for metric in ("auc", "recall", "f1"):
                fig = figure_metric_vs_ratio(metrics, name, palette, metric)
                if fig:
                    figures.append({"title": f"{METRIC_LABELS[metric]} vs imbalance ratio", "src": fig})
        exp_logs = logs[logs.experiment == name]
        if len(datasets_of) > 1:
            exp_logs = exp_logs[exp_logs.dataset == datasets_of[0]]
        fig = figure_training_curves(exp_logs, palette,
                                     f"Training curves · {exp_logs.dataset.iloc[0] if len(exp_logs) else ''}")
        if fig:
            figures.append({"title": "Training curves (one line per fold)", "src": fig, "wide": True})
        cmp = comparisons[comparisons.experiment == name]
        fig = figure_forest(cmp, "auc", "Paired comparison over folds: F-ECE − other loss (AUC)")
        if fig:
            figures.append({"title": "Paired comparisons (forest plot)", "src": fig})
        cmp_rows = [
            {**r, "loss": loss_label(r["loss"]), "metric": METRIC_LABELS.get(r["metric"], r["metric"])}
            for r in cmp[cmp.metric.isin(["auc", "recall", "f1"])].to_dict("records")
        ]
        per_class_tables = []
        for (dataset, backbone), part in pc.groupby(["dataset", "backbone"], sort=False):
            wide = part[part.metric.isin(["auc", "recall", "f1", "threshold"])].copy()
            wide["cell"] = [format_cell(m, s, 2) for m, s in zip(wide["mean"], wide["std"], strict=True)]
            wide["col"] = wide["loss"].map(loss_label) + " " + wide["metric"].map(METRIC_LABELS)
            t = wide.pivot_table(index=["class", "class_name"], columns="col", values="cell", aggfunc="first")
            per_class_tables.append({"title": f"{dataset} · {backbone}",
                                     "html": t.reset_index().to_html(index=False, classes="per-class")})
        nan_counts = summary[(summary.experiment == name)].groupby("metric")["n_nan"].sum()
        experiments.append({
            "name": name, "title": exp.get("title", name), "layout": layout,
            "paper_table": exp.get("paper_table"),
            "paper_title": TABLES[exp["paper_table"]]["title"] if exp.get("paper_table") else None,
            "columns": [METRIC_LABELS[m] for m in METRICS], "rows": rows, "exported": exported,
            "figures": figures, "comparisons": cmp_rows, "per_class_tables": per_class_tables,
            "n_nan": {METRIC_LABELS.get(k, k): int(v) for k, v in nan_counts.items() if v},
            "max_pairs": int(cmp["n_pairs"].max()) if len(cmp) else 0,
        })

    return {
        "title": "lfa-repro report",
        "prov": provenance(inputs),
        "missing": [" · ".join(m) for m in missing],
        "datasets": datasets,
        "lfa_figures": lfa_figures,
        "convention_note": CONVENTION_NOTE,
        "experiments": experiments,
        "metric_labels": METRIC_LABELS,
    }


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")[:80]


def export_figures(ctx: dict[str, Any], figures_dir: str | Path) -> list[Path]:
    """Write every embedded figure of the report context as a PNG file (for Snakemake's own report)."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    named = [(f"dataset_{d['name']}", d["figure"]) for d in ctx["datasets"]]
    named += [(f"figure2_{f['convention']}", f["figure"]) for f in ctx["lfa_figures"]]
    named += [(f"{e['name']}_{i:02d}_{_slug(f['title'])}", f["src"])
              for e in ctx["experiments"] for i, f in enumerate(e["figures"], start=1)]
    paths = []
    for name, uri in named:
        path = figures_dir / f"{_slug(name)}.png"
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(base64.b64decode(uri.split(",", 1)[1]))
        paths.append(path)
    return paths


def render_report(inputs: ReportInputs, out_html: str | Path, figures_dir: str | Path | None = None) -> Path:
    """Render ``report.html`` (self-contained); optionally also write each figure as a PNG file."""
    env = Environment(loader=PackageLoader("lfa", "templates"), autoescape=select_autoescape(["html", "j2"]))
    ctx = build_context(inputs)
    html = env.get_template("report.html.j2").render(**ctx)
    out_html = Path(out_html)
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    if figures_dir is not None:
        export_figures(ctx, figures_dir)
    return out_html
