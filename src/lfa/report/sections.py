"""The report's sections as data for the template: provenance, the datasets, Figure 2, and per experiment its
table model, figures (PNG bytes), comparisons and per-class tables. Building them reads files only; the page,
the tables and the figure files are written by :mod:`lfa.report.render`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfa.assessment.figures import loss_palette, plot_figure2
from lfa.evaluation.aggregate import COMPARED_METRICS
from lfa.evaluation.metrics import METRIC_NAMES
from lfa.evaluation.paper import METRIC_LABELS, METRICS, TABLES, format_cell
from lfa.io import read_csv, read_json, read_table
from lfa.pipeline.plan import Layout
from lfa.report.figures import (
    NAMED_CLASSES,
    figure_auc_vs_frequency,
    figure_class_distribution,
    figure_class_heatmap,
    figure_class_profile,
    figure_confusion,
    figure_forest,
    figure_metric_vs_ratio,
    figure_ratio_family,
    figure_reliability,
    figure_training_curves,
    hardest_under,
    png,
)
from lfa.report.inputs import ReportInputs, check_config_hash, label_of, loss_labels
from lfa.report.provenance import provenance
from lfa.report.tables import (
    Cell,
    build_table,
    diverged_runs,
    experiment_blocks,
    html_rows,
    incomplete_cells,
    ratio_label,
    table_files,
)


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
    from lfa.data.datasets import dataset_summary

    meta = dataset_summary(layout.prepared(name))
    meta["scaled_demo"] = meta["source"] == "digits"  # follows a table's proportions, not its counts
    if meta["seed_counts"]:
        for row, seed in zip(meta["counts"], meta["seed_counts"], strict=True):
            row["seed"] = seed
            row["differs"] = not meta["scaled_demo"] and int(row["count"]) != int(seed)
    meta["extrapolated_note"] = meta.get("reference_table") == "imagenet_lt"
    meta["counts_csv"] = str(layout.prepared_file(name, "counts.csv"))
    return meta


def dataset_sections(layout: Layout, datasets: list[str]) -> list[dict[str, Any]]:
    """The Datasets section: each prepared dataset's provenance, counts beside the seed's, and its chart.

    The ratio subsets of one binary_ratio dataset (``idc_k50`` … ``idc_k1``) form one entry with one compact
    chart and a table of one row per subset (:func:`ratio_family`); a lone ratio subset stays as it is.
    """
    from lfa.pipeline.plan import split_prepared_name

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


def _family_group_check(subsets: list[dict[str, Any]]) -> dict[str, Any] | None:
    checks = [meta["group_check"] for meta in subsets if meta.get("group_check")]
    if not checks:
        return None
    return {"n_groups": max(c["n_groups"] for c in checks), "n_spanning": sum(c["n_spanning"] for c in checks),
            "spanning": sorted({g for c in checks for g in c["spanning"]})[:5]}


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
            "name": meta["name"], "k": int(meta["ratio_k"]), "ratio": ratio_label(int(meta["ratio_k"])),
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
        **{key: first.get(key) for key in ("grouping", "test_split", "dropped_classes", "empty_classes")},
        "group_check": _family_group_check(subsets),
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
        out.append({"convention": convention, "figure": png(fig)})
    return sorted(out, key=lambda f: f["convention"] != "trained")


@dataclass
class _Results:
    """The aggregated tables and what the experiment sections need besides them."""

    metrics: pd.DataFrame
    overall: pd.DataFrame
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


def _figure(title: str, src: bytes | None, why_not: str) -> dict[str, Any]:
    """A figure of the page, or in its place the reason it could not be drawn."""
    return {"title": title, "src": src} if src else {"title": title, "src": None, "missing": why_not}


def _class_figure(sub: pd.DataFrame, counts: pd.DataFrame, losses: list[str], labels: dict[str, str],
                  palette: dict[str, str], where: str) -> dict[str, Any]:
    """Per-class sensitivity: a heatmap naming every class up to :data:`NAMED_CLASSES`, beyond a profile by rank."""
    why_not = "no per-class sensitivity: no run evaluated, or no class with a threshold"
    if len(counts) > NAMED_CLASSES:
        return _figure(f"Per-class sensitivity by class frequency, {where} ({len(counts):,} classes: too many for a "
                       "heatmap)", figure_class_profile(sub, counts, losses, palette, f"Per-class sensitivity · "
                                                        f"{where}", labels), why_not)
    under = label_of(labels, hardest_under(losses))
    return _figure(f"Per-class sensitivity, {where} (hardest classes under {under} first)",
                   figure_class_heatmap(sub, losses, f"Per-class sensitivity · {where}", labels), why_not)


def experiment_figures(res: _Results, config: dict[str, Any], name: str, losses: list[str]) -> list[dict[str, Any]]:
    """Per-class recall and AUC (one dataset) or metrics against the ratio (ratio subsets), training curves,
    and the paired comparisons' forest plot."""
    from lfa.pipeline.plan import experiment_datasets

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
            figures.append(_class_figure(sub, counts, losses, labels, palette, f"{dataset} · {backbone}"))
            title = f"Per-class AUC vs class frequency, {backbone}"
            if not long_tailed:
                figures.append(_figure(title, None, f"not drawn: the classes of {dataset} are balanced (the largest "
                                                    "count is at most 5 times the smallest)"))
                continue
            figures.append(_figure(title, figure_auc_vs_frequency(sub, counts, palette,
                                                                   f"Per-class AUC vs frequency · {dataset}", labels),
                                   "no per-class AUC: no class had positives and negatives in a test split"))
    else:
        for metric in ("auc", "sensitivity", "f1"):
            figures.append(_figure(f"{METRIC_NAMES[metric]} vs imbalance ratio",
                                   figure_metric_vs_ratio(res.metrics, name, palette, metric, labels),
                                   f"no {METRIC_NAMES[metric]} to plot: no ratio run evaluated"))
    exp_logs = res.logs[res.logs.experiment == name]
    if len(datasets_of) > 1:
        exp_logs = exp_logs[exp_logs.dataset == datasets_of[0]]
    fig = figure_training_curves(exp_logs, palette,
                                 f"Training curves · {exp_logs.dataset.iloc[0] if len(exp_logs) else ''}", labels)
    if fig:
        figures.append({"title": "Training curves (one line per fold)", "src": fig, "wide": True})
    cmp = res.comparisons[res.comparisons.experiment == name]
    reference = label_of(labels, config["report"]["reference_loss"])
    fig = figure_forest(cmp, "auc", f"Paired comparison over folds: {reference} − other loss (AUC)", labels,
                        config["report"]["reference_loss"])
    if fig:
        figures.append({"title": "Paired comparisons (forest plot)", "src": fig})
    return figures


#: A dataset's class-count table shows this many rows unfolded; a longer one is folded, its whole in counts.csv.
FOLDED_ROWS = 20
#: The columns of the per-class tables, per loss.
PER_CLASS_METRICS = ["auc", "sensitivity", "specificity", "average_precision", "f1", "threshold"]
#: A per-class cell whose class has no positive test image in any run: its metrics are undefined, not missing.
NO_POSITIVES = "no positives"


def _classes_without_positives(metrics: pd.DataFrame) -> set[tuple[str, str, int]]:
    """(dataset, backbone, class) whose test splits held no positive in any run evaluated."""
    if "n_pos" not in metrics.columns or metrics.empty:
        return set()
    totals = metrics.groupby(["dataset", "backbone", "class"])["n_pos"].sum()
    return {(str(d), str(b), int(c)) for (d, b, c), n in totals.items() if n == 0}


def per_class_tables(res: _Results, name: str) -> list[dict[str, Any]]:
    out = []
    pc = res.per_class[res.per_class.experiment == name]
    empty = _classes_without_positives(res.metrics[res.metrics.experiment == name])
    for (dataset, backbone), part in pc.groupby(["dataset", "backbone"], sort=False):
        wide = part[part.metric.isin(PER_CLASS_METRICS)].copy()
        wide["cell"] = [NO_POSITIVES if (dataset, backbone, c) in empty and math.isnan(m) else format_cell(m, s, 2)
                        for c, m, s in zip(wide["class"], wide["mean"], wide["std"], strict=True)]
        wide["col"] = wide["loss"].map(lambda n: label_of(res.labels, n)) + " " + wide["metric"].map(METRIC_NAMES)
        t = wide.pivot_table(index=["class", "class_name"], columns="col", values="cell", aggfunc="first")
        t.columns.name = None  # no header cell naming the pivoted column
        t = t.reset_index()
        out.append({"title": f"{dataset} · {backbone}", "rows": len(t), "frame": t.assign(dataset=dataset,
                                                                                        backbone=backbone),
                    "html": t.to_html(index=False, classes="per-class sortable")})
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
    """An experiment's part of the page: its table model and rows, figures, comparisons, per-class tables."""
    exp = config["experiments"][name]
    layout_name = exp.get("layout")
    decimals = TABLES[layout_name]["decimals"] if layout_name else 3
    blocks = experiment_blocks(config, name, res.summary)
    losses = sorted(exp["losses"], key=lambda n: label_of(res.labels, n))
    table = build_table(name, blocks, losses, decimals, exp.get("paper_table"), diverged_runs(res.metrics),
                        res.labels, res.incomplete)
    imbalance = build_table(name, blocks, losses, 3, None, diverged_runs(res.metrics), res.labels, res.incomplete,
                            kind="imbalance")
    cmp = res.comparisons[res.comparisons.experiment == name]
    nan_counts = res.summary[(res.summary.experiment == name)].groupby("metric")["n_nan"].sum()
    overall = overall_section(res, name, losses)
    return {
        "name": name, "title": exp.get("title", name), "layout": layout_name, "paper_table": exp.get("paper_table"),
        "paper_title": TABLES[exp["paper_table"]]["title"] if exp.get("paper_table") else None,
        "columns": [METRIC_LABELS[m] for m in METRICS],
        "table": table,
        "rows": html_rows(table),
        "exported": table_files(name, res.tables_dir),
        "imbalance": {"table": imbalance, "rows": html_rows(imbalance),
                      "columns": [METRIC_NAMES[m] for m in imbalance.metrics],
                      "exported": table_files(name, res.tables_dir, imbalance.kind)},
        "figures": experiment_figures(res, config, name, losses) + overall["figures"],
        "overall_table": overall["table"],
        "shot_groups": shot_groups(res, config, name, losses),
        "reproduction": reproduction(res, config, name, blocks),
        "reference": label_of(res.labels, config["report"]["reference_loss"]),
        "reference_missing": config["report"]["reference_loss"] not in exp["losses"] and len(exp["losses"]) > 1,
        "comparisons": [{**r, "loss": label_of(res.labels, r["loss"]),
                         "metric": METRIC_NAMES.get(r["metric"], r["metric"])}
                        for r in cmp[cmp.metric.isin(COMPARED_METRICS)].to_dict("records")],
        "per_class_tables": per_class_tables(res, name),
        "per_class_csv": table_files(name, res.tables_dir, "per_class")["csv"],
        "n_nan": {METRIC_LABELS.get(k, k): int(v) for k, v in nan_counts.items() if v},
        "max_pairs": int(cmp["n_pairs"].max()) if len(cmp) else 0,
        "n_tests": int(cmp[cmp.metric.isin(COMPARED_METRICS)]["p_value"].notna().sum()),
        "shared": shared_note(res, name),
    }


def build_context(inputs: ReportInputs) -> dict[str, Any]:
    """Everything the template shows, read from the report's inputs (nothing is written)."""
    from lfa.assessment.conventions import CONVENTION_NOTE

    check_config_hash(inputs)
    config = inputs.config
    layout = Layout.from_config(config)
    runs = read_table(inputs.runs)
    labels = loss_labels(inputs.curves)
    summary = read_table(inputs.summary)
    incomplete = incomplete_cells(summary, runs)
    res = _Results(
        metrics=read_table(inputs.metrics), summary=summary, incomplete=incomplete,
        overall=read_table(inputs.overall) if inputs.overall and Path(inputs.overall).exists() else pd.DataFrame(),
        per_class=read_table(inputs.per_class), comparisons=read_table(inputs.comparisons), runs=runs,
        logs=_load_logs(layout, runs), labels=labels,
        palette=loss_palette(sorted({loss for e in config["experiments"].values() for loss in e["losses"]},
                                    key=lambda n: label_of(labels, n))),
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
        "folded_rows": FOLDED_ROWS,
    }


def _pooled_bins(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reliability bins of several runs, summed."""
    return tuple(np.sum(np.stack(rows[column].map(np.asarray).to_list()), axis=0)  # type: ignore[return-value]
                 for column in ("reliability_count", "reliability_score", "reliability_label"))


def overall_section(res: _Results, name: str, losses: list[str]) -> dict[str, Any]:
    """An experiment's reading over all classes: the single-label metrics per loss (mean ± std over runs), the
    reliability diagram (every task) and the confusion matrices (single-label, one dataset, readable size)."""
    from lfa.evaluation.overall import OVERALL_METRICS

    rows = res.overall[res.overall.experiment == name] if "experiment" in res.overall else res.overall
    if rows.empty:
        return {"table": [], "figures": []}
    labels, palette = res.labels, res.palette
    named = {label_of(labels, loss): loss for loss in losses if loss in set(rows["loss"])}
    bins = {shown: _pooled_bins(rows[(rows.loss == loss) & ~rows.diverged]) for shown, loss in named.items()
            if (~rows[rows.loss == loss].diverged).any()}
    pooled = "classes, runs and backbones" if rows["backbone"].nunique() > 1 else "classes and runs"
    figures = [_figure(f"Reliability diagram (one-vs-rest scores, pooled over {pooled})",
                       figure_reliability(bins, {label_of(labels, k): v for k, v in palette.items()},
                                          f"Reliability · {name}"),
                       "no scores to bin (every run diverged)")]
    single = rows[rows.task == "single_label"]
    table = []
    for (dataset, backbone, loss), runs in single.groupby(["dataset", "backbone", "loss"], sort=True):
        cells = {m: format_cell(runs[m].mean(), runs[m].std(ddof=1) if len(runs) > 1 else math.nan, 3)
                 for m in OVERALL_METRICS}
        table.append({"dataset": dataset, "backbone": backbone, "loss": label_of(labels, loss), "runs": len(runs),
                      **cells})
    if not single.empty and single["dataset"].nunique() == 1:
        figures.append(_confusion_figure(res, single, named))
    return {"table": table, "figures": figures}


def _confusion_figure(res: _Results, single: pd.DataFrame, named: dict[str, str]) -> dict[str, Any]:
    dataset = str(single["dataset"].iloc[0])
    n = int(single["n_classes"].iloc[0])
    over = "runs and backbones" if single["backbone"].nunique() > 1 else "runs"
    title = f"Confusion matrices, row-normalised, summed over {over} · {dataset}"
    if n > NAMED_CLASSES:
        return _figure(title, None, f"not drawn: {n:,} classes (at most {NAMED_CLASSES} can be read)")
    matrices = {shown: np.sum(np.stack([np.asarray(c, dtype=np.int64).reshape(n, n)
                                        for c in single[(single.loss == loss) & ~single.diverged]["confusion"]]),
                              axis=0)
                for shown, loss in named.items() if ((single.loss == loss) & ~single.diverged).any()}
    names = read_json(res.layout.prepared_file(dataset, "meta.json"))["class_names"]
    return {**_figure(title, figure_confusion(matrices, names, title), "no run to count (every run diverged)"),
            "wide": True}


#: The shot groups, in the order the page shows them.
SHOT_GROUPS = ("many", "medium", "few")


def shot_group_of(counts: np.ndarray, many: int, few: int) -> np.ndarray:
    """Each class's shot group by its training images: many (more than ``many``), few (fewer than ``few``), else
    medium (ImageNet-LT: more than 100, 20 to 100, fewer than 20)."""
    return np.where(counts > many, "many", np.where(counts < few, "few", "medium"))


def shot_groups(res: _Results, config: dict[str, Any], name: str, losses: list[str]) -> list[dict[str, Any]]:
    """Per dataset and backbone of the experiment: mean sensitivity and AUC per shot group and loss (each the mean
    over the group's classes of their mean over runs), and how many classes each group holds."""
    from lfa.data.datasets import train_counts

    limits = config["report"]["shot_groups"]
    pc = res.per_class[(res.per_class.experiment == name) & res.per_class.metric.isin(["sensitivity", "auc"])]
    out = []
    for (dataset, backbone), part in pc.groupby(["dataset", "backbone"], sort=False):
        folder = res.layout.prepared(dataset)
        if not (folder / "index.parquet").exists():
            continue
        counts = train_counts(folder, config["folds"])
        group = shot_group_of(counts, limits["many"], limits["few"])
        part = part.assign(group=group[part["class"].to_numpy()])
        means = part.groupby(["loss", "group", "metric"])["mean"].mean()
        sizes = {g: int((group == g).sum()) for g in SHOT_GROUPS}
        rows = [{"loss": label_of(res.labels, loss),
                 **{f"{g}_{m}": format_cell(means.get((loss, g, m), math.nan), math.nan, 3) if sizes[g] else "–"
                    for g in SHOT_GROUPS for m in ("sensitivity", "auc")}}
                for loss in losses if loss in set(part["loss"])]
        only = [g for g in SHOT_GROUPS if sizes[g] == len(group)]
        out.append({"title": f"{dataset} · {backbone}", "sizes": sizes, "rows": rows,
                    "only": only[0] if only else None, "many": limits["many"], "few": limits["few"]})
    return out


def reproduction(res: _Results, config: dict[str, Any], name: str, blocks: list[dict[str, Any]]) -> list[dict]:
    """For an experiment compared with a paper table: per block and metric, the paper's best loss and ours, and
    whether ours beats the paper's winner significantly (the paired Wilcoxon test over fold means of the two,
    Holm-adjusted over this summary's tests) — which of the paper's rankings held."""
    from lfa.evaluation.aggregate import compare, holm
    from lfa.evaluation.paper import paper_table

    table = config["experiments"][name].get("paper_table")
    if not table:
        return []
    paper, rows = paper_table(table), []
    metrics = res.metrics[res.metrics.experiment == name]
    for block in blocks:
        printed = paper[paper.block == block["key"]]
        for metric in [m for m in METRICS if m != "threshold"]:
            cells = printed[printed.metric == metric]
            ours = block["rows"][(block["rows"].metric == metric) & block["rows"].loss.isin(cells["loss"])]
            if cells.empty or ours["mean"].isna().all():
                continue
            winners = cells.loc[cells["mean"] == cells["mean"].max(), "loss"].tolist()
            best = str(ours.loc[ours["mean"].idxmax(), "loss"])
            row = {"block": block["label"], "metric": METRIC_NAMES[metric], "paper": winners, "ours": best,
                   "p_value": math.nan}
            if best not in winners:
                pair = metrics[(metrics.dataset == block["dataset"]) & (metrics.backbone == block["backbone"])
                               & metrics.loss.isin([winners[0], best])]
                test = compare(pair[[c for c in pair.columns if c not in METRICS or c == metric]], winners[0])
                found = test[test.metric == metric]
                row["p_value"] = float(found["p_value"].iloc[0]) if len(found) else math.nan
            rows.append(row)
    adjusted = holm(np.array([r["p_value"] for r in rows])) if rows else np.zeros(0)
    for row, p_holm in zip(rows, adjusted, strict=True):
        verdict = _verdict(row["ours"] in row["paper"], p_holm)
        row.update(paper=", ".join(label_of(res.labels, w) for w in row["paper"]),
                   ours=label_of(res.labels, row["ours"]), p_holm=p_holm, verdict=verdict)
    return rows


def _verdict(same: bool, p_holm: float) -> str:
    if same:
        return "held: the same best loss"
    if math.isnan(p_holm):
        return "differs, untested (too few paired runs)"
    if p_holm < 0.05:
        return f"differs significantly (p_Holm = {p_holm:.3f})"
    return f"differs, not significantly (p_Holm = {p_holm:.3f})"
