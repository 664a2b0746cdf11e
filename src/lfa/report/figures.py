"""The report's figures, drawn with seaborn/matplotlib and kept as PNG bytes until the page is rendered
(:func:`data_uri` embeds them; :func:`lfa.report.render.export_figures` writes them as files)."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from lfa.evaluation.metrics import METRIC_NAMES  # noqa: E402
from lfa.report.inputs import label_of  # noqa: E402
from lfa.report.tables import ratio_label  # noqa: E402


def png(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes (then closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def data_uri(image: bytes) -> str:
    """PNG bytes as a ``data:`` URI, for a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(image).decode()


#: Up to this many classes a figure names every class (bars, heatmap rows); beyond, it shows classes by rank.
NAMED_CLASSES = 50


def figure_class_distribution(meta: dict[str, Any]) -> bytes:
    """A bar per class, named (up to :data:`NAMED_CLASSES`); beyond, the counts sorted by rank on a log scale."""
    counts = pd.DataFrame(meta["counts"])
    skewed = counts["count"].max() > 5 * max(counts["count"].min(), 1)
    if len(counts) > NAMED_CLASSES:
        ranked = np.sort(counts["count"].to_numpy())[::-1]
        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.fill_between(np.arange(1, len(ranked) + 1), ranked, step="mid", color="#4C72B0", alpha=0.8)
        ax.set(xlabel=f"class rank (of {len(ranked):,}, most frequent first)", ylabel="count", title=meta["name"],
               xlim=(1, len(ranked)))
        if skewed:
            ax.set_yscale("log")
        return png(fig)
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(counts) + 1.5), 2.8))
    sns.barplot(data=counts, x="name", y="count", color="#4C72B0", ax=ax)
    if skewed:
        ax.set_yscale("log")
    ax.set_xlabel("class")
    ax.set_title(meta["name"])
    long_names = len(counts) > 6 or counts["name"].astype(str).str.len().max() > 12
    ax.tick_params(axis="x", rotation=90 if long_names else 0)
    return png(fig)


def figure_class_profile(per_class: pd.DataFrame, counts: pd.DataFrame, losses: list[str], palette: dict[str, str],
                         title: str, labels: dict[str, str] | None = None, metric: str = "sensitivity"
                         ) -> bytes | None:
    """Where a heatmap cannot be read: per loss, the per-class ``metric`` against the class's rank by frequency
    (most frequent first), as a running mean over 2% of the classes, with the points faint behind it."""
    values = per_class[per_class.metric == metric].merge(counts[["class", "count"]], on="class")
    if values.empty or values["mean"].isna().all():
        return None
    rank = counts.sort_values("count", ascending=False, kind="stable")["class"].reset_index(drop=True)
    position = pd.Series(np.arange(1, len(rank) + 1), index=rank.to_numpy())
    window = max(5, len(rank) // 50)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for loss in losses:
        part = values[values.loss == loss].assign(rank=lambda d: position[d["class"]].to_numpy()).sort_values("rank")
        if part.empty:
            continue
        color = palette.get(loss)
        ax.scatter(part["rank"], part["mean"], s=3, alpha=0.15, color=color)
        ax.plot(part["rank"], part["mean"].rolling(window, center=True, min_periods=1).mean(), color=color,
                label=label_of(labels, loss))
    ax.set(xlabel="class rank by frequency (most frequent first)", ylabel=f"{METRIC_NAMES.get(metric, metric)} "
           f"(running mean over {window} classes)", title=title)
    ax.legend(fontsize=7)
    return png(fig)


def figure_ratio_family(base: str, rows: list[dict[str, Any]], class_names: list[str]) -> bytes:
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
    return png(fig)


def hardest_under(losses: list[str]) -> str:
    """The loss whose recall orders the heatmap's classes: BCE, the common baseline, else the first loss."""
    return "bce" if "bce" in losses else losses[0]


def figure_class_heatmap(per_class: pd.DataFrame, losses: list[str], title: str,
                         labels: dict[str, str] | None = None, metric: str = "sensitivity") -> bytes | None:
    """A class × loss heatmap of one per-class metric (mean over runs), the hardest classes first."""
    rec = per_class[per_class.metric == metric]
    if rec.empty or rec["mean"].isna().all():
        return None
    table = rec.pivot_table(index="class_name", columns="loss", values="mean")
    by = hardest_under(losses)
    order = table[by].sort_values().index if by in table else table.mean(axis=1).sort_values().index
    table = table.loc[order, [loss for loss in losses if loss in table.columns]]
    table.columns = [label_of(labels, c) for c in table.columns]
    fig, ax = plt.subplots(figsize=(1.1 * len(table.columns) + 2.5, 0.32 * len(table) + 1.4))
    sns.heatmap(table, annot=len(table) <= 40, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax,
                cbar_kws={"label": metric})
    ax.set_ylabel(f"class (hardest under {label_of(labels, by)} first)")
    ax.set_xlabel("")
    ax.set_title(title)
    return png(fig)


def figure_metric_vs_ratio(metrics: pd.DataFrame, experiment: str, palette: dict[str, str],
                           metric: str = "auc", labels: dict[str, str] | None = None) -> bytes | None:
    df = metrics[(metrics.experiment == experiment) & metrics.ratio_k.notna()]
    if df.empty or metric not in df.columns:  # runs evaluated before the metric existed
        return None
    fold_means = (df.groupby(["loss", "ratio_k", "seed", "fold"])[metric].mean().reset_index())
    fold_means["loss"] = fold_means["loss"].map(lambda n: label_of(labels, n))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.lineplot(data=fold_means, x="ratio_k", y=metric, hue="loss", marker="o", errorbar="sd", ax=ax,
                 palette={label_of(labels, k): v for k, v in palette.items()})
    ax.set_xscale("log")
    ticks = sorted(fold_means["ratio_k"].unique())
    ax.set_xticks(ticks, [f"{int(k)}\n({ratio_label(int(k))})" for k in ticks])
    ax.set_xlabel("positives per 200 negatives")
    ax.set_ylabel(METRIC_NAMES.get(metric, metric) + " (mean ± sd over folds)")
    ax.set_title(f"{METRIC_NAMES.get(metric, metric)} vs imbalance ratio")
    return png(fig)


def figure_auc_vs_frequency(per_class: pd.DataFrame, counts: pd.DataFrame, palette: dict[str, str],
                            title: str, labels: dict[str, str] | None = None) -> bytes | None:
    auc = per_class[per_class.metric == "auc"].merge(counts[["class", "count"]], on="class")
    if auc.empty or len(counts) < 3:
        return None
    auc = auc.assign(loss=auc["loss"].map(lambda n: label_of(labels, n)))
    colors = {label_of(labels, k): v for k, v in palette.items()}
    fig, ax = plt.subplots(figsize=(6, 3.4))
    many = len(counts) > NAMED_CLASSES
    sns.scatterplot(data=auc, x="count", y="mean", hue="loss", ax=ax, palette=colors, s=8 if many else 25,
                    alpha=0.25 if many else 0.7, legend=False)
    edges = np.unique(np.quantile(auc["count"], np.linspace(0, 1, min(12, len(counts)) + 1)))
    binned = auc.assign(bin=pd.cut(auc["count"], edges, include_lowest=True))
    means = binned.groupby(["loss", "bin"], observed=True).agg(count=("count", "median"), mean=("mean", "mean"))
    sns.lineplot(data=means.reset_index(), x="count", y="mean", hue="loss", marker="o", ax=ax, palette=colors)
    ax.set_xscale("log")
    ax.set_xlabel("class frequency (samples in the prepared dataset)")
    ax.set_ylabel("per-class AUC (mean over folds;\nline: mean per frequency bin)")
    ax.set_title(title)
    return png(fig)


def figure_training_curves(logs: pd.DataFrame, palette: dict[str, str], title: str,
                           labels: dict[str, str] | None = None) -> bytes | None:
    if logs.empty:
        return None
    long = logs.melt(id_vars=["loss", "fold", "epoch"], value_vars=["train_loss", "val_loss"],
                     var_name="split", value_name="value")
    long["loss"] = long["loss"].map(lambda n: label_of(labels, n))
    n_losses = long["loss"].nunique()
    g = sns.relplot(data=long, x="epoch", y="value", hue="loss", style="split", units="fold",
                    estimator=None, kind="line", col="loss", col_wrap=min(n_losses, 5), height=2.4, aspect=1.25,
                    facet_kws={"sharey": False}, palette={label_of(labels, k): v for k, v in palette.items()},
                    alpha=0.8)
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", "loss value")
    from matplotlib.ticker import MaxNLocator

    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    g.figure.suptitle(title, y=1.04)
    return png(g.figure)


def figure_forest(comparisons: pd.DataFrame, metric: str, title: str,
                  labels: dict[str, str] | None = None, reference: str = "fece") -> bytes | None:
    df = comparisons[comparisons.metric == metric]
    if df.empty:
        return None
    from lfa.pipeline.plan import split_prepared_name

    order = [(split_prepared_name(d)[0], -(split_prepared_name(d)[1] or 0), b, label_of(labels, x))
             for d, b, x in zip(df["dataset"], df["backbone"], df["loss"], strict=True)]
    df = df.iloc[sorted(range(len(df)), key=order.__getitem__)]
    names = df["loss"].map(lambda n: label_of(labels, n))
    df = df.assign(label=df["dataset"] + " · " + df["backbone"] + f" · {label_of(labels, reference)} − " + names)
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(df) + 1.2))
    y = np.arange(len(df))
    ax.errorbar(df["mean_diff"], y, xerr=[df["mean_diff"] - df["ci_low"], df["ci_high"] - df["mean_diff"]],
                fmt="o", color="#C44E52", ecolor="#888", capsize=2)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, df["label"])
    ax.invert_yaxis()
    ax.set_xlabel(f"difference in {METRIC_NAMES.get(metric, metric)} (bootstrap 95% interval)")
    ax.set_title(title)
    return png(fig)


def figure_reliability(bins: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], palette: dict[str, str],
                       title: str) -> bytes | None:
    """Reliability diagram: per loss (display name → pooled bin counts, score sums, label sums), the mean label
    against the mean score of each non-empty bin, the diagonal, and the calibration error in the legend."""
    from lfa.evaluation.metrics import calibration_error

    if not bins:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    for name, (count, score_sum, label_sum) in bins.items():
        seen = count > 0
        error = float(calibration_error(count, score_sum, label_sum))
        ax.plot(score_sum[seen] / count[seen], label_sum[seen] / count[seen], marker="o", ms=3,
                color=palette.get(name), label=f"{name} (calibration error {error:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean score in the bin (15 equal-width bins)",
           ylabel="fraction of positives in the bin", title=title)
    ax.legend(fontsize=7, loc="upper left")
    return png(fig)


def figure_confusion(matrices: dict[str, np.ndarray], class_names: list[str], title: str) -> bytes | None:
    """Row-normalised confusion matrices (rows: true class, columns: predicted), one panel per loss."""
    if not matrices:
        return None
    n = len(class_names)
    side = max(3.2, 0.3 * n + 1.6)
    columns = min(3, len(matrices))
    rows = -(-len(matrices) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(side * columns, side * rows), squeeze=False)
    for ax in axes.flat[len(matrices):]:
        ax.set_visible(False)
    for ax, (name, counts) in zip(axes.flat, matrices.items(), strict=False):
        rows = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
        percent = np.vectorize(lambda v: f"{100 * v:.0f}" if v >= 0.005 else "")(share)  # share of the true row, in %
        sns.heatmap(share, vmin=0, vmax=1, cmap="Blues", annot=percent if n <= 12 else False, fmt="", cbar=False,
                    square=True, ax=ax, xticklabels=class_names, yticklabels=class_names, annot_kws={"fontsize": 7})
        ax.set(title=name, xlabel="predicted", ylabel="true (cells: % of the row)")
    fig.suptitle(title)
    return png(fig)
