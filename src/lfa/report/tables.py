"""The experiment tables: one model per table (:class:`ExperimentTable`, built from one lookup of the summary per
block, loss and metric), shown in the page (:func:`html_rows`) and written as CSV and TeX (:func:`write_table`).

Each experiment has two: the paper's layout (exactly the seed's columns, mean ± std pooled over classes and runs)
and the imbalance table (:data:`IMBALANCE_METRICS`, mean ± the between-run std)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lfa.evaluation.metrics import METRIC_NAMES
from lfa.evaluation.paper import METRICS, compare_with_paper, format_cell
from lfa.io import atomic_path
from lfa.report.inputs import label_of

#: Metrics where a larger value is better (bold marks the best per column and block); not the threshold.
HIGHER_IS_BETTER = ["auc", "accuracy", "precision", "recall", "f0_5", "f0", "f1", "sensitivity", "specificity",
                    "average_precision"]
#: Metrics where a smaller value is better.
LOWER_IS_BETTER = ["calibration_error", "brier"]
#: The second table of each experiment: what an imbalance researcher reads first, per loss.
IMBALANCE_METRICS = ["sensitivity", "specificity", "average_precision", "calibration_error", "brier"]


def experiment_blocks(config: dict[str, Any], name: str, summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The blocks of an experiment's table: one per backbone, or one per ratio for ratio experiments."""
    from lfa.pipeline.plan import experiment_datasets, split_prepared_name

    exp = config["experiments"][name]
    labels = exp.get("block_labels", {})
    blocks = []
    for dataset in experiment_datasets(config, name):
        _, k = split_prepared_name(dataset)
        for backbone in exp["backbones"]:
            if k is not None:
                key, label = str(k), f"{k} ({ratio_label(k)})"
                if len(exp["backbones"]) > 1:
                    label += f", {backbone}"
            else:
                key, label = labels.get(backbone, backbone), backbone
            rows = summary[(summary.experiment == name) & (summary.dataset == dataset)
                           & (summary.backbone == backbone)]
            blocks.append({"key": key, "label": label, "experiment": name, "dataset": dataset,
                           "backbone": backbone, "rows": rows})
    return blocks


def ratio_label(k: int) -> str:
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


@dataclass
class TableCell:
    """One metric of one loss in one block: its mean ± std as the paper prints it, and what the page adds."""

    text: str  # format_cell(mean, std): "not run" where there is no value
    mean: float
    bold: bool = False  # the best of its column and block
    incomplete: str | None = None  # "only 2 of 3 runs"
    diverged: str | None = None  # "diverged in 1 of 3 runs"
    paper: str | None = None  # the published mean ± std
    delta: str | None = None  # ours − paper
    verdict: str | None = None


@dataclass
class TableRow:
    loss: str  # display name
    short: str | None  # "2 of 3 runs" where runs are missing
    cells: list[TableCell]


@dataclass
class TableBlock:
    label: str
    rows: list[TableRow] = field(default_factory=list)


@dataclass
class ExperimentTable:
    """An experiment's table: blocks (backbones or ratios) × losses × ``metrics`` (the paper's layout:
    :data:`METRICS`, spread ``std``; the imbalance table: :data:`IMBALANCE_METRICS`, spread ``run_std``)."""

    name: str
    blocks: list[TableBlock]
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    kind: str = ""  # "" (the paper's layout) or "imbalance": the sub-folder of its files


def build_table(name: str, blocks: list[dict[str, Any]], losses: list[str], decimals: int, paper_table: str | None,
                diverged: dict[tuple[str, str, str, str], tuple[int, int]] | None = None,
                labels: dict[str, str] | None = None,
                incomplete: dict[Cell, tuple[int, int]] | None = None, kind: str = "") -> ExperimentTable:
    """The table of experiment ``name``: each block's rows of the summary looked up once per loss and metric.

    ``kind`` "" is the paper's layout (:data:`METRICS`, the pooled std, the published values where
    ``paper_table``); "imbalance" the second table (:data:`IMBALANCE_METRICS`, the between-run std)."""
    metrics, spread = (IMBALANCE_METRICS, "run_std") if kind == "imbalance" else (list(METRICS), "std")
    table = ExperimentTable(name, [], metrics, kind)
    for block in blocks:
        rows = block["rows"]
        best = {metric: _best(rows, metric, decimals) for metric in metrics}
        paper = _paper_rows(rows, block["key"], paper_table if not kind else None)
        out = TableBlock(block["label"])
        for loss in losses:
            key = (block["experiment"], block["dataset"], block["backbone"], loss)
            short, div = _runs_note(key, incomplete), (diverged or {}).get(key)
            cells = [_cell(rows, loss, metric, decimals, best.get(metric), paper, short, div, spread)
                     for metric in metrics]
            out.rows.append(TableRow(label_of(labels, loss), short, cells))
        table.blocks.append(out)
    return table


def _best(rows: pd.DataFrame, metric: str, decimals: int) -> float | None:
    """The best mean of ``metric`` among the losses (as printed), or None where no direction is better."""
    values = rows[rows.metric == metric].set_index("loss")["mean"].round(decimals)
    if not len(values) or metric not in HIGHER_IS_BETTER + LOWER_IS_BETTER:
        return None
    return values.max() if metric in HIGHER_IS_BETTER else values.min()


def _paper_rows(rows: pd.DataFrame, key: str, paper_table: str | None) -> pd.DataFrame | None:
    """The paper's values beside ours for one block (``None``: the experiment is not a paper table)."""
    if paper_table is None:
        return None
    ours = rows.assign(block=key)[["block", "loss", "metric", "mean", "std"]]
    cmp = compare_with_paper(ours, paper_table)
    return cmp[cmp.block == key].set_index(["loss", "metric"])


def _cell(rows: pd.DataFrame, loss: str, metric: str, decimals: int, best: float | None,
          paper: pd.DataFrame | None, short: str | None, div: tuple[int, int] | None, spread: str = "std"
          ) -> TableCell:
    found = rows[(rows.loss == loss) & (rows.metric == metric)]
    mean = float(found["mean"].iloc[0]) if len(found) else math.nan
    std = float(found[spread].iloc[0]) if len(found) and spread in found else math.nan
    cell = TableCell(format_cell(mean, std, decimals), mean,
                     bold=best is not None and not math.isnan(mean) and round(mean, decimals) == best,
                     incomplete=f"only {short}" if short else None,
                     diverged=f"diverged in {div[0]} of {div[1]} runs" if div else None)
    if paper is not None and (loss, metric) in paper.index:
        c = paper.loc[(loss, metric)]
        cell.paper = format_cell(c.paper_mean, c.paper_std, decimals)
        cell.delta = None if pd.isna(c.delta) else f"{c.delta:+.{decimals}f}"
        cell.verdict = c.verdict
    return cell


def html_rows(table: ExperimentTable) -> list[dict[str, Any]]:
    """Rows for the page: a header per block, then a row per loss whose cells say what the page marks."""
    out: list[dict[str, Any]] = []
    for block in table.blocks:
        out.append({"kind": "block", "label": block.label})
        for row in block.rows:
            cells = [{**vars(cell), "missing": math.isnan(cell.mean),
                      "text": "diverged" if cell.diverged and math.isnan(cell.mean) else cell.text}
                     for cell in row.cells]
            out.append({"kind": "row", "loss": row.loss, "cells": cells})
    return out


def table_frame(table: ExperimentTable) -> pd.DataFrame:
    """The CSV form: block, loss, incomplete, then one column per metric (the paper's labels)."""
    records = [{"block": block.label, "loss": row.loss, "incomplete": row.short or "",
                **{METRIC_NAMES[m]: cell.text for m, cell in zip(table.metrics, row.cells, strict=True)}}
               for block in table.blocks for row in block.rows]
    return pd.DataFrame(records)


def table_tex(table: ExperimentTable) -> str:
    """The TeX form: a tabular with a header row per block where there are several."""
    latex = ["\\begin{tabular}{l" + "c" * len(table.metrics) + "}", "\\hline",
             "Loss & " + " & ".join(METRIC_NAMES[m] for m in table.metrics) + " \\\\", "\\hline"]
    for block in table.blocks:
        if len(table.blocks) > 1:
            latex.append(f"\\multicolumn{{{len(table.metrics) + 1}}}{{c}}{{{block.label}}} \\\\")
        for row in block.rows:
            cells = [cell.text.replace("±", "$\\pm$") for cell in row.cells]
            name_cell = f"{row.loss} ({row.short})" if row.short else row.loss
            latex.append(f"{name_cell} & " + " & ".join(cells) + " \\\\")
    latex += ["\\hline", "\\end{tabular}"]
    return "\n".join(latex) + "\n"


def table_files(name: str, out_dir: str | Path, kind: str = "") -> dict[str, str]:
    """Where an experiment's table is written: ``<tables>/[<kind>/]<experiment>.{csv,tex}``."""
    folder = Path(out_dir) / kind if kind else Path(out_dir)
    return {"csv": str(folder / f"{name}.csv"), "tex": str(folder / f"{name}.tex")}


def write_table(table: ExperimentTable, out_dir: str | Path) -> dict[str, str]:
    """Write the table as CSV and TeX (``results/tables/[imbalance/]<experiment>.{csv,tex}``); returns their paths."""
    paths = table_files(table.name, out_dir, table.kind)
    Path(paths["csv"]).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths["csv"]) as tmp:
        table_frame(table).to_csv(tmp, index=False)
    with atomic_path(paths["tex"]) as tmp:
        Path(tmp).write_text(table_tex(table))
    return paths
