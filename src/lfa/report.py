"""The HTML report: provenance, datasets, the paper's tables with our values, figures, per-class tables.

Reads Parquet/CSV/JSON files only and never imports torch. Figures are seaborn/matplotlib PNGs embedded
as base64, so ``report.html`` is one self-contained file that works offline and prints.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

from lfa.errors import MixedResults

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402

from lfa import __version__  # noqa: E402
from lfa.figures_lfa import loss_palette, plot_figure2  # noqa: E402
from lfa.io import atomic_path, read_csv, read_json, read_table  # noqa: E402
from lfa.paper import METRIC_LABELS, METRICS, TABLES, compare_with_paper, format_cell  # noqa: E402
from lfa.plan import Layout  # noqa: E402

#: Metrics where a larger value is better (bold marks the best per column and block); not the threshold.
HIGHER_IS_BETTER = ["auc", "accuracy", "precision", "recall", "f0_5", "f0", "f1"]
PACKAGES = ["torch", "torchvision", "snakemake", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy",
            "seaborn", "matplotlib", "jinja2"]


@dataclass
class ReportInputs:
    """The aggregated files a report is rendered from; per-run and per-dataset files come from the layout."""

    metrics: str | Path
    summary: str | Path
    per_class: str | Path
    comparisons: str | Path
    runs: str | Path  # which experiment uses which run (lfa.aggregate.runs_table)
    curves: list[str | Path]
    gradients: list[str | Path]
    config: dict[str, Any]
    config_hash: str
    config_files: list[str] = field(default_factory=list)
    tables_dir: str | Path | None = None  # default: the layout's tables folder


def loss_labels(curves: list[str | Path]) -> dict[str, str]:
    """Loss key → display name, as the loss registry gave them to the LFA curves (this module never imports
    torch, so it never reads the registry itself)."""
    frames = [read_table(p, ["loss", "display"]) for p in curves]
    pairs = pd.concat(frames).drop_duplicates() if frames else pd.DataFrame(columns=["loss", "display"])
    return dict(zip(pairs["loss"], pairs["display"], strict=True))


def _label(labels: dict[str, str] | None, loss: str) -> str:
    return (labels or {}).get(loss, loss)


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


def provenance(inputs: ReportInputs, infos: list[dict[str, Any]]) -> dict[str, Any]:
    """What was run, where and for how long (each run once, however many experiments use it)."""
    hours: dict[str, float] = {}
    devices: set[str] = set()
    for info in infos:
        kind = "GPU" if info["device_type"] == "cuda" else "CPU"
        hours[kind] = hours.get(kind, 0.0) + float(info["wall_seconds"]) / 3600
        devices.add(str(info["device"]))
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
    from lfa.plan import experiment_datasets, split_prepared_name

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


Cell = tuple[str, str, str, str]  # experiment, dataset, backbone, loss


def incomplete_cells(summary: pd.DataFrame, runs: pd.DataFrame) -> dict[Cell, tuple[int, int]]:
    """Cells with fewer runs evaluated than the config asks for (folds × seeds): cell → (runs, expected).

    Cells without any run are not listed here: they show as "not run".
    """
    cells = ["experiment", "dataset", "backbone", "loss"]
    expected = runs.groupby(cells).size()
    done = summary.drop_duplicates(cells).set_index(cells)["n_folds"]
    return {key: (int(done[key]), int(n)) for key, n in expected.items() if key in done.index and done[key] < n}


def _runs_note(cell: Cell, incomplete: dict[Cell, tuple[int, int]] | None) -> str | None:
    got = (incomplete or {}).get(cell)
    return f"{got[0]} of {got[1]} runs" if got else None


def table_rows(blocks: list[dict[str, Any]], losses: list[str], decimals: int, paper_table: str | None,
               diverged: dict[tuple[str, str, str, str], tuple[int, int]] | None = None,
               labels: dict[str, str] | None = None,
               incomplete: dict[Cell, tuple[int, int]] | None = None) -> list[dict[str, Any]]:
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
            cell_key = (block["experiment"], block["dataset"], block["backbone"], loss)
            div = (diverged or {}).get(cell_key)
            short = _runs_note(cell_key, incomplete)
            for metric in METRICS:
                r = rows[(rows.loss == loss) & (rows.metric == metric)]
                mean = float(r["mean"].iloc[0]) if len(r) else math.nan
                std = float(r["std"].iloc[0]) if len(r) else math.nan
                cell = {"text": format_cell(mean, std, decimals),
                        "bold": metric in best and best[metric] is not None and not math.isnan(mean)
                        and round(mean, decimals) == best[metric],
                        "missing": math.isnan(mean)}
                if short:
                    cell["incomplete"] = f"only {short}"
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
            out.append({"kind": "row", "loss": _label(labels, loss), "cells": cells})
    return out


def export_table(name: str, blocks: list[dict[str, Any]], losses: list[str], decimals: int,
                 out_dir: Path, labels: dict[str, str] | None = None,
                 incomplete: dict[Cell, tuple[int, int]] | None = None) -> dict[str, str]:
    """Write an experiment's table as CSV and LaTeX (results/tables/<experiment>.{csv,tex})."""
    records = []
    for block in blocks:
        rows = block["rows"]
        for loss in losses:
            short = _runs_note((block["experiment"], block["dataset"], block["backbone"], loss), incomplete)
            rec = {"block": block["label"], "loss": _label(labels, loss), "incomplete": short or ""}
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
            name_cell = f"{rec['loss']} ({rec['incomplete']})" if rec["incomplete"] else rec["loss"]
            latex.append(f"{name_cell} & " + " & ".join(cells) + " \\\\")
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
    long_names = len(counts) > 6 or counts["name"].astype(str).str.len().max() > 12
    ax.tick_params(axis="x", rotation=90 if long_names else 0)
    return fig_to_data_uri(fig)


def figure_ratio_family(base: str, rows: list[dict[str, Any]], class_names: list[str]) -> str:
    """The ratio subsets of one binary_ratio dataset in one chart: per ratio k, a bar per class (negatives,
    positives) with its count written on it."""
    n = len(rows)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * n + 2.0), 2.9))
    x = np.arange(n)
    width = 0.4
    colours = ["#8C8C8C", "#C44E52"]
    counts = np.array([r["counts"] for r in rows], dtype=float)
    for c, name in enumerate(class_names):
        bars = ax.bar(x + (c - (len(class_names) - 1) / 2) * width, counts[:, c], width, label=name,
                      color=colours[c % len(colours)])
        ax.bar_label(bars, labels=[f"{int(v):,}" for v in counts[:, c]], fontsize=7, padding=1)
    if counts.max() > 5 * max(counts.min(), 1):
        ax.set_yscale("log")
        ax.set_ylim(top=counts.max() * 3)
    else:
        ax.set_ylim(top=counts.max() * 1.15)
    ax.set_xticks(x, [f"k = {r['k']}\n{r['ratio']}" for r in rows])
    ax.set_ylabel("images")
    ax.set_title(f"{base}: {n} ratio subsets (k positives per 200 negatives)", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper right", ncols=len(class_names))
    return fig_to_data_uri(fig)


def hardest_under(losses: list[str]) -> str:
    """The loss whose recall orders the heatmap's classes: BCE, the common baseline, else the first loss."""
    return "bce" if "bce" in losses else losses[0]


def figure_recall_heatmap(per_class: pd.DataFrame, losses: list[str], title: str,
                          labels: dict[str, str] | None = None) -> str | None:
    rec = per_class[per_class.metric == "recall"]
    if rec.empty:
        return None
    table = rec.pivot_table(index="class_name", columns="loss", values="mean")
    by = hardest_under(losses)
    order = table[by].sort_values().index if by in table else table.mean(axis=1).sort_values().index
    table = table.loc[order, [loss for loss in losses if loss in table.columns]]
    table.columns = [_label(labels, c) for c in table.columns]
    fig, ax = plt.subplots(figsize=(1.1 * len(table.columns) + 2.5, 0.32 * len(table) + 1.4))
    sns.heatmap(table, annot=len(table) <= 40, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax,
                cbar_kws={"label": "recall"})
    ax.set_ylabel(f"class (hardest under {_label(labels, by)} first)")
    ax.set_xlabel("")
    ax.set_title(title)
    return fig_to_data_uri(fig)


def figure_metric_vs_ratio(metrics: pd.DataFrame, experiment: str, palette: dict[str, str],
                           metric: str = "auc", labels: dict[str, str] | None = None) -> str | None:
    df = metrics[(metrics.experiment == experiment) & metrics.ratio_k.notna()]
    if df.empty:
        return None
    fold_means = (df.groupby(["loss", "ratio_k", "seed", "fold"])[metric].mean().reset_index())
    fold_means["loss"] = fold_means["loss"].map(lambda n: _label(labels, n))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.lineplot(data=fold_means, x="ratio_k", y=metric, hue="loss", marker="o", errorbar="sd", ax=ax,
                 palette={_label(labels, k): v for k, v in palette.items()})
    ax.set_xscale("log")
    ticks = sorted(fold_means["ratio_k"].unique())
    ax.set_xticks(ticks, [f"{int(k)}\n({_ratio_label(int(k))})" for k in ticks])
    ax.set_xlabel("positives per 200 negatives")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric) + " (mean ± sd over folds)")
    ax.set_title(f"{METRIC_LABELS.get(metric, metric)} vs imbalance ratio")
    return fig_to_data_uri(fig)


def figure_auc_vs_frequency(per_class: pd.DataFrame, counts: pd.DataFrame, palette: dict[str, str],
                            title: str, labels: dict[str, str] | None = None) -> str | None:
    auc = per_class[per_class.metric == "auc"].merge(counts[["class", "count"]], on="class")
    if auc.empty or len(counts) < 3:
        return None
    auc = auc.assign(loss=auc["loss"].map(lambda n: _label(labels, n)))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.lineplot(data=auc.sort_values("count"), x="count", y="mean", hue="loss", marker="o", ax=ax,
                 palette={_label(labels, k): v for k, v in palette.items()})
    ax.set_xscale("log")
    ax.set_xlabel("class frequency (samples in the prepared dataset)")
    ax.set_ylabel("per-class AUC (mean over folds)")
    ax.set_title(title)
    return fig_to_data_uri(fig)


def figure_training_curves(logs: pd.DataFrame, palette: dict[str, str], title: str,
                           labels: dict[str, str] | None = None) -> str | None:
    if logs.empty:
        return None
    long = logs.melt(id_vars=["loss", "fold", "epoch"], value_vars=["train_loss", "val_loss"],
                     var_name="split", value_name="value")
    long["loss"] = long["loss"].map(lambda n: _label(labels, n))
    n_losses = long["loss"].nunique()
    g = sns.relplot(data=long, x="epoch", y="value", hue="loss", style="split", units="fold",
                    estimator=None, kind="line", col="loss", col_wrap=min(n_losses, 5), height=2.4, aspect=1.25,
                    facet_kws={"sharey": False}, palette={_label(labels, k): v for k, v in palette.items()},
                    alpha=0.8)
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", "loss value")
    from matplotlib.ticker import MaxNLocator

    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    g.figure.suptitle(title, y=1.04)
    return fig_to_data_uri(g.figure)


def figure_forest(comparisons: pd.DataFrame, metric: str, title: str,
                  labels: dict[str, str] | None = None) -> str | None:
    df = comparisons[comparisons.metric == metric]
    if df.empty:
        return None
    from lfa.plan import split_prepared_name

    order = [(split_prepared_name(d)[0], -(split_prepared_name(d)[1] or 0), b, _label(labels, x))
             for d, b, x in zip(df["dataset"], df["backbone"], df["loss"], strict=True)]
    df = df.iloc[sorted(range(len(df)), key=order.__getitem__)]
    names = df["loss"].map(lambda n: _label(labels, n))
    df = df.assign(label=df["dataset"] + " · " + df["backbone"] + f" · {_label(labels, 'fece')} − " + names)
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
def _load_logs(layout: Layout, runs: pd.DataFrame) -> pd.DataFrame:
    """Every experiment's training logs, tagged with experiment, dataset, backbone, loss, seed and fold."""
    frames, cache = [], {}
    for r in runs.itertuples(index=False):
        path = layout.run_file(r.run, "train_log.csv")
        if r.run not in cache:
            cache[r.run] = read_csv(path) if path.exists() and path.stat().st_size else None
        if cache[r.run] is not None:
            frames.append(cache[r.run].assign(experiment=r.experiment, dataset=r.dataset, backbone=r.backbone,
                                              loss=r.loss, seed=int(r.seed), fold=int(r.fold)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["experiment", "dataset", "backbone", "loss", "seed", "fold", "epoch", "train_loss", "val_loss"])


def _read_infos(layout: Layout, runs: pd.DataFrame) -> list[dict[str, Any]]:
    paths = [layout.run_file(run, "train_info.json") for run in runs["run"].drop_duplicates()]
    return [read_json(p) for p in paths if p.exists()]


def _dataset_meta(layout: Layout, name: str) -> dict[str, Any]:
    """A prepared dataset's meta.json and counts, each count beside the seed's where there is a table."""
    from lfa.datasets import dataset_summary

    meta = dataset_summary(layout.prepared(name))
    meta["scaled_demo"] = meta["source"] == "digits"  # follows a table's proportions, not its counts
    if meta["seed_counts"]:
        for row, seed in zip(meta["counts"], meta["seed_counts"], strict=True):
            row["seed"] = seed
            row["differs"] = not meta["scaled_demo"] and int(row["count"]) != int(seed)
    meta["extrapolated_note"] = meta.get("reference_table") == "imagenet_lt"
    return meta


def dataset_sections(layout: Layout, datasets: list[str]) -> list[dict[str, Any]]:
    """The Datasets section: each prepared dataset's provenance, counts beside the seed's, and its chart.

    The ratio subsets of one binary_ratio dataset (``idc_k50`` … ``idc_k1``) form one entry with one compact
    chart and a table of one row per subset (:func:`ratio_family`); a lone ratio subset stays as it is.
    """
    from lfa.plan import split_prepared_name

    metas = [_dataset_meta(layout, name) for name in datasets if layout.prepared_file(name, "meta.json").exists()]
    families: dict[str, list[dict[str, Any]]] = {}
    for meta in metas:
        if meta.get("ratio_k") is not None:
            families.setdefault(split_prepared_name(meta["name"])[0], []).append(meta)
    out, done = [], set()
    for meta in metas:
        base = split_prepared_name(meta["name"])[0] if meta.get("ratio_k") is not None else None
        if base is not None and len(families[base]) > 1:
            if base not in done:
                out.append(ratio_family(base, families[base]))
                done.add(base)
            continue
        meta["figure"] = figure_class_distribution(meta)
        out.append(meta)
    return out


def ratio_family(base: str, subsets: list[dict[str, Any]]) -> dict[str, Any]:
    """One Datasets entry for the ratio subsets of the binary_ratio dataset ``base`` (largest k first): what
    they share, one row of provenance per subset and one chart of their counts."""
    subsets = sorted(subsets, key=lambda m: -int(m["ratio_k"]))
    first = subsets[0]
    rows = []
    for meta in subsets:
        counts = [int(row["count"]) for row in meta["counts"]]
        expected = [int(c) for c in meta.get("expected_counts") or []]
        seed = [int(c) for c in meta["seed_counts"]] if meta["seed_counts"] else None
        rows.append({
            "name": meta["name"], "k": int(meta["ratio_k"]), "ratio": _ratio_label(int(meta["ratio_k"])),
            "n_samples": int(meta["n_samples"]), "counts": counts, "expected": expected,
            "short": bool(expected) and expected != counts, "seed": seed,
            "differs": bool(seed) and not meta["scaled_demo"] and seed != counts,
            "data_hash": str(meta.get("data_hash") or "")[:8],
            "skipped": int((meta.get("skipped_corrupt") or {}).get("count", 0)),
        })
    return {
        "family": True, "name": base, "source": first["source"], "title": first.get("title"),
        "root": first.get("root"), "source_options": first.get("source_options"),
        "group_column": first.get("group_column"), "n_groups": first.get("n_groups"),
        "image_shape": first["image_shape"],
        "class_names": first["class_names"], "n_splits": first["n_splits"], "split_seed": first["split_seed"],
        "unit": first.get("unit"), "scaled_demo": first["scaled_demo"], "subsets": rows,
        "has_seed": any(r["seed"] for r in rows), "n_differ": sum(r["differs"] for r in rows),
        "n_short": sum(r["short"] for r in rows), "skipped": sum(r["skipped"] for r in rows),
        "figure": figure_ratio_family(base, rows, first["class_names"]),
    }


def lfa_sections(inputs: ReportInputs) -> list[dict[str, Any]]:
    """Figure 2 redrawn in each convention, from the curve tables."""
    out = []
    for conv_path, grad_path in zip(sorted(inputs.curves), sorted(inputs.gradients), strict=True):
        curves, grads = read_table(conv_path), read_table(grad_path)
        convention = "figure2" if "figure2" in Path(conv_path).name else "trained"
        fig = plot_figure2(curves, grads, convention, palette=loss_palette(sorted(curves["loss"].unique())))
        out.append({"convention": convention, "figure": fig_to_data_uri(fig)})
    return sorted(out, key=lambda f: f["convention"] != "trained")


@dataclass
class _Results:
    """The aggregated tables and what the experiment sections need besides them."""

    metrics: pd.DataFrame
    summary: pd.DataFrame
    per_class: pd.DataFrame
    comparisons: pd.DataFrame
    runs: pd.DataFrame
    incomplete: dict[Cell, tuple[int, int]]
    logs: pd.DataFrame
    labels: dict[str, str]
    palette: dict[str, str]
    layout: Layout
    tables_dir: Path


def experiment_figures(res: _Results, config: dict[str, Any], name: str, losses: list[str]) -> list[dict[str, Any]]:
    """Per-class recall and AUC (one dataset) or metrics against the ratio (ratio subsets), training curves,
    and the paired comparisons' forest plot."""
    from lfa.plan import experiment_datasets

    exp, labels, palette = config["experiments"][name], res.labels, res.palette
    datasets_of = experiment_datasets(config, name)
    pc = res.per_class[res.per_class.experiment == name]
    figures = []
    if len(datasets_of) == 1:
        dataset = datasets_of[0]
        counts = read_csv(res.layout.prepared_file(dataset, "counts.csv"))
        long_tailed = counts["count"].max() > 5 * counts["count"].min()
        for backbone in exp["backbones"]:
            sub = pc[(pc.dataset == dataset) & (pc.backbone == backbone)]
            fig = figure_recall_heatmap(sub, losses, f"Per-class recall · {dataset} · {backbone}", labels)
            if fig:
                under = _label(labels, hardest_under(losses))
                figures.append({"title": f"Per-class recall, {backbone} (hardest classes under {under} first)",
                                "src": fig})
            fig = long_tailed and figure_auc_vs_frequency(sub, counts, palette,
                                                          f"Per-class AUC vs frequency · {dataset}", labels)
            if fig:
                figures.append({"title": f"Per-class AUC vs class frequency, {backbone}", "src": fig})
    else:
        for metric in ("auc", "recall", "f1"):
            fig = figure_metric_vs_ratio(res.metrics, name, palette, metric, labels)
            if fig:
                figures.append({"title": f"{METRIC_LABELS[metric]} vs imbalance ratio", "src": fig})
    exp_logs = res.logs[res.logs.experiment == name]
    if len(datasets_of) > 1:
        exp_logs = exp_logs[exp_logs.dataset == datasets_of[0]]
    fig = figure_training_curves(exp_logs, palette,
                                 f"Training curves · {exp_logs.dataset.iloc[0] if len(exp_logs) else ''}", labels)
    if fig:
        figures.append({"title": "Training curves (one line per fold)", "src": fig, "wide": True})
    cmp = res.comparisons[res.comparisons.experiment == name]
    fig = figure_forest(cmp, "auc", f"Paired comparison over folds: {_label(labels, 'fece')} − other loss (AUC)",
                        labels)
    if fig:
        figures.append({"title": "Paired comparisons (forest plot)", "src": fig})
    return figures


def per_class_tables(res: _Results, name: str) -> list[dict[str, Any]]:
    out = []
    pc = res.per_class[res.per_class.experiment == name]
    for (dataset, backbone), part in pc.groupby(["dataset", "backbone"], sort=False):
        wide = part[part.metric.isin(["auc", "recall", "f1", "threshold"])].copy()
        wide["cell"] = [format_cell(m, s, 2) for m, s in zip(wide["mean"], wide["std"], strict=True)]
        wide["col"] = wide["loss"].map(lambda n: _label(res.labels, n)) + " " + wide["metric"].map(METRIC_LABELS)
        t = wide.pivot_table(index=["class", "class_name"], columns="col", values="cell", aggfunc="first")
        t.columns.name = None  # no header cell naming the pivoted column
        out.append({"title": f"{dataset} · {backbone}",
                    "html": t.reset_index().to_html(index=False, classes="per-class")})
    return out


def shared_note(res: _Results, name: str) -> str | None:
    """Which other experiments' runs this experiment's table reads (identical jobs are trained once)."""
    runs = res.runs[res.runs.experiment == name]
    shared = runs[runs.trained_by != name]["trained_by"].value_counts()
    if shared.empty:
        return None
    parts = [f"{n} of its {len(runs)} runs with {other}" for other, n in shared.items()]
    return "Shares " + "; ".join(parts) + " (identical jobs, trained once)."


def experiment_section(res: _Results, config: dict[str, Any], name: str) -> dict[str, Any]:
    exp = config["experiments"][name]
    layout_name = exp.get("layout")
    decimals = TABLES[layout_name]["decimals"] if layout_name else 3
    blocks = experiment_blocks(config, name, res.summary)
    losses = sorted(exp["losses"], key=lambda n: _label(res.labels, n))
    cmp = res.comparisons[res.comparisons.experiment == name]
    nan_counts = res.summary[(res.summary.experiment == name)].groupby("metric")["n_nan"].sum()
    return {
        "name": name, "title": exp.get("title", name), "layout": layout_name, "paper_table": exp.get("paper_table"),
        "paper_title": TABLES[exp["paper_table"]]["title"] if exp.get("paper_table") else None,
        "columns": [METRIC_LABELS[m] for m in METRICS],
        "rows": table_rows(blocks, losses, decimals, exp.get("paper_table"), diverged_runs(res.metrics), res.labels,
                           res.incomplete),
        "exported": export_table(name, blocks, losses, decimals, res.tables_dir, res.labels, res.incomplete),
        "figures": experiment_figures(res, config, name, losses),
        "comparisons": [{**r, "loss": _label(res.labels, r["loss"]),
                         "metric": METRIC_LABELS.get(r["metric"], r["metric"])}
                        for r in cmp[cmp.metric.isin(["auc", "recall", "f1"])].to_dict("records")],
        "per_class_tables": per_class_tables(res, name),
        "n_nan": {METRIC_LABELS.get(k, k): int(v) for k, v in nan_counts.items() if v},
        "max_pairs": int(cmp["n_pairs"].max()) if len(cmp) else 0,
        "shared": shared_note(res, name),
    }


def check_config_hash(inputs: ReportInputs) -> None:
    """Refuse to show results aggregated under another config as if they were this config's."""
    from lfa.io import read_parquet_metadata

    for path in (inputs.metrics, inputs.summary, inputs.runs):
        written = read_parquet_metadata(path, "run snakemake again to rebuild it").get("lfa.config_hash")
        if written is not None and written != inputs.config_hash:
            raise MixedResults(
                f"{path} was aggregated under config hash {written}, and this report is for config hash "
                f"{inputs.config_hash} ({', '.join(inputs.config_files) or 'the given config'}): run snakemake with "
                "this config first, or 'lfa report --partial' to report the runs of this config that exist")


def build_context(inputs: ReportInputs) -> dict[str, Any]:
    from lfa.figures_lfa import CONVENTION_NOTE

    check_config_hash(inputs)
    config = inputs.config
    layout = Layout.from_config(config)
    runs = read_table(inputs.runs)
    labels = loss_labels(inputs.curves)
    summary = read_table(inputs.summary)
    incomplete = incomplete_cells(summary, runs)
    res = _Results(
        metrics=read_table(inputs.metrics), summary=summary, incomplete=incomplete,
        per_class=read_table(inputs.per_class), comparisons=read_table(inputs.comparisons), runs=runs,
        logs=_load_logs(layout, runs), labels=labels,
        palette=loss_palette(sorted({loss for e in config["experiments"].values() for loss in e["losses"]},
                                    key=lambda n: _label(labels, n))),
        layout=layout, tables_dir=Path(inputs.tables_dir or layout.tables))
    cells = ["experiment", "dataset", "backbone", "loss"]
    expected = set(map(tuple, runs[cells].drop_duplicates().to_numpy()))
    done = set(map(tuple, res.summary[cells].drop_duplicates().to_numpy()))
    return {
        "title": "lfa-repro report",
        "prov": provenance(inputs, _read_infos(layout, runs)),
        "missing": [" · ".join(m) for m in sorted(expected - done)],
        "incomplete": [f"{' · '.join(k)} ({n} of {m} runs)" for k, (n, m) in sorted(incomplete.items())],
        "datasets": dataset_sections(layout, sorted(set(runs["dataset"]))),
        "lfa_figures": lfa_sections(inputs),
        "convention_note": CONVENTION_NOTE,
        "experiments": [experiment_section(res, config, name) for name in config["experiments"]],
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
