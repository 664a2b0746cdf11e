"""Published result tables of the LFA / F-ECE paper, as data.

The package data file ``data/paper_tables.csv`` is a cell-by-cell transcription (long format, one row per
printed cell) of the paper's result tables; see :data:`SOURCE`. It is the package's only copy of these
values, so nothing here needs the original documents at run time.

Columns of the CSV:

``table``
    ``table2``, ``table3``, ``table4``, ``table5`` (the paper's tables) or ``cifar10`` (CIFAR-10 results).
``block`` / ``block_label``
    the sub-table a row belongs to: a backbone key (``densenet121``, ``resnet50``, ``pgcon``, ``alexnet``,
    ``botnet``) for Tables 3 and 4, the ratio ``k`` as a string (``"50"`` ... ``"1"``) for Table 5 and
    ``resnet50`` for Table 2 and CIFAR-10; ``block_label`` is the block header as printed (``"DenseNet"``,
    ``"50 (1:4)"``, ``"ResNet-50"`` ...).
``row_order``
    1-based position of the row (loss) within its block, as printed.
``loss`` / ``loss_label``
    loss registry key (``asl``, ``bce``, ``ece``, ``fece``, ``focal``) and the label as printed.
``metric``
    one of :data:`METRICS`.
``mean`` / ``std`` / ``text`` / ``decimals``
    the printed value ``mean±std`` as numbers, the cell text as printed (without bold markers) and the
    number of digits after the point of the printed mean (3 for Table 2 and CIFAR-10, 2 otherwise, 1 for the
    single cell ``0.5±0.1`` of Table 3).
``bold_in_paper``
    whether the paper typesets the cell in bold (its best value in that block and column).
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

from lfa.evaluation.metrics import METRIC_DISPLAY, PAPER_METRICS

SOURCE = (
    "Published values transcribed from the paper's README (LFA-CIFAR10 repository, Tables 2–5) and the "
    "CIFAR-10 results table of the same repository (results/stats_resnet50_<loss>.json)"
)

DATA_FILE = "paper_tables.csv"

# The paper's metric columns and their printed labels are defined once, with the metrics themselves.
METRICS = PAPER_METRICS
METRIC_LABELS = METRIC_DISPLAY

LOSSES = ["asl", "bce", "ece", "fece", "focal"]

_BREAST_CAPTION = "Evaluation results of models trained on the Breast Histopathological dataset"

TABLES: dict[str, dict[str, Any]] = {
    "table2": {
        "title": (
            "Overall performance of ResNet-50 trained on the ImageNet-LT dataset with different loss "
            "functions. Reported values represent mean± standard deviation across all classes."
        ),
        "dataset": "ImageNet_LT",
        "decimals": 3,
        "block_kind": None,
        "blocks": ["resnet50"],
        "source": "paper README, Table 2",
    },
    "table3": {
        "title": "Quantitative evaluation of models trained on the CAD-CAP dataset",
        "dataset": "CAD-CAP",
        "decimals": 2,
        "block_kind": "backbone",
        "blocks": ["densenet121", "resnet50", "pgcon"],
        "source": "paper README, Table 3",
    },
    "table4": {
        "title": _BREAST_CAPTION,
        "dataset": "Breast Histopathology",
        "decimals": 2,
        "block_kind": "backbone",
        "blocks": ["alexnet", "botnet", "resnet50"],
        "source": "paper README, Table 4",
    },
    "table5": {
        # The README prints Table 5 with the same caption as Table 4; its blocks are imbalance ratios.
        "title": _BREAST_CAPTION,
        "dataset": "Breast Histopathology (imbalance ratios)",
        "decimals": 2,
        "block_kind": "ratio",
        "blocks": ["50", "25", "12", "6", "3", "1"],
        "source": "paper README, Table 5",
    },
    "cifar10": {
        "title": (
            "CIFAR-10 results of ResNet-50 (5 folds): mean ± SD over all per-class values of the 5 folds"
        ),
        "dataset": "CIFAR-10",
        "decimals": 3,
        "block_kind": None,
        "blocks": ["resnet50"],
        "source": "repository results, results/stats_resnet50_<loss>.json",
    },
}

COLUMNS = [
    "table",
    "block",
    "block_label",
    "row_order",
    "loss",
    "loss_label",
    "metric",
    "mean",
    "std",
    "text",
    "decimals",
    "bold_in_paper",
]

VERDICT_WITHIN = "within ± std"
VERDICT_OUTSIDE = "outside ± std"
VERDICT_NOT_RUN = "not run"

# Tolerance on float comparisons of |delta| with a printed bound (printed values are exact decimals).
_EPS = 1e-9


@cache
def _read() -> pd.DataFrame:
    ref = resources.files("lfa") / "data" / DATA_FILE
    with ref.open("r", encoding="utf-8") as fh:
        df = pd.read_csv(
            fh,
            dtype={
                "table": str,
                "block": str,
                "block_label": str,
                "row_order": int,
                "loss": str,
                "loss_label": str,
                "metric": str,
                "mean": float,
                "std": float,
                "text": str,
                "decimals": int,
                "bold_in_paper": bool,
            },
            keep_default_na=False,
        )
    if list(df.columns) != COLUMNS:
        raise ValueError(f"{DATA_FILE}: unexpected columns {list(df.columns)}; expected {COLUMNS}")
    return df


def load_paper_tables() -> pd.DataFrame:
    """All transcribed cells (every table), in printed order; a fresh copy on each call."""
    return _read().copy()


def _check_table(name: str) -> None:
    if name not in TABLES:
        raise KeyError(f"unknown paper table {name!r}; known tables: {', '.join(TABLES)}")


def paper_table(name: str) -> pd.DataFrame:
    """The cells of one table, in printed order (block, then row, then metric column)."""
    _check_table(name)
    df = load_paper_tables()
    out = df[df["table"] == name].copy()
    block_rank = {b: i for i, b in enumerate(TABLES[name]["blocks"])}
    metric_rank = {m: i for i, m in enumerate(METRICS)}
    out = out.assign(_b=out["block"].map(block_rank), _m=out["metric"].map(metric_rank)).sort_values(
        ["_b", "row_order", "_m"], kind="stable"
    )
    return out.drop(columns=["_b", "_m"]).reset_index(drop=True)


def _is_missing(x: Any) -> bool:
    if x is None or x is pd.NA:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def format_cell(mean: Any, std: Any, decimals: int) -> str:
    """Format ``mean±std`` as the paper prints it (``0.862±0.041``); ``"not run"`` for a missing mean.

    A missing ``std`` gives the mean alone.
    """
    if _is_missing(mean):
        return VERDICT_NOT_RUN
    if _is_missing(std):
        return f"{float(mean):.{decimals}f}"
    return f"{float(mean):.{decimals}f}±{float(std):.{decimals}f}"


def _tolerance(paper_std: float, decimals: int) -> float:
    """|delta| allowed for a cell: the paper's std, or half a printed unit where the std is printed as 0."""
    if paper_std == 0:
        return 0.5 * 10.0 ** (-decimals)
    return paper_std


def compare_with_paper(ours: pd.DataFrame, table: str) -> pd.DataFrame:
    """Compare our values with one paper table, one output row per paper cell (printed order).

    ``ours`` has columns ``block``, ``loss``, ``metric``, ``mean``, ``std`` (``block`` as in the CSV: a
    backbone key, or the ratio ``k``, which may be given as a number). Rows of ``ours`` that match no cell
    of the table (another block, loss or metric) are ignored; a cell without a row in ``ours``, or whose
    mean is NaN, is ``"not run"``.

    Returns columns ``block``, ``loss``, ``metric``, ``paper_mean``, ``paper_std``, ``ours_mean``,
    ``ours_std``, ``delta`` (ours − paper), ``within_std`` (nullable boolean: ``|delta| ≤ paper_std``, where a
    printed std of 0 allows half a unit of the printed last decimal; NA where not run) and ``verdict``
    (``"within ± std"``, ``"outside ± std"`` or ``"not run"``).
    """
    _check_table(table)
    needed = ["block", "loss", "metric", "mean", "std"]
    missing = [c for c in needed if c not in ours.columns]
    if missing:
        raise ValueError(f"ours: missing column(s) {missing}; expected {needed}")

    paper = paper_table(table)
    mine = ours[needed].copy()
    mine["block"] = mine["block"].map(_block_key)
    mine = mine.rename(columns={"mean": "ours_mean", "std": "ours_std"})
    keys = ["block", "loss", "metric"]
    dup = mine.duplicated(keys, keep=False)
    if dup.any():
        first = mine.loc[dup, keys].iloc[0].tolist()
        raise ValueError(f"ours: duplicate rows for (block, loss, metric) = {tuple(first)}")

    out = paper[keys + ["mean", "std", "decimals"]].rename(columns={"mean": "paper_mean", "std": "paper_std"})
    out = out.merge(mine, on=keys, how="left", validate="one_to_one")
    out["ours_mean"] = pd.to_numeric(out["ours_mean"], errors="coerce").astype(float)
    out["ours_std"] = pd.to_numeric(out["ours_std"], errors="coerce").astype(float)
    out["delta"] = out["ours_mean"] - out["paper_mean"]

    within: list[Any] = []
    verdict: list[str] = []
    for delta, pstd, dec in zip(out["delta"], out["paper_std"], out["decimals"], strict=True):
        if math.isnan(delta):
            within.append(pd.NA)
            verdict.append(VERDICT_NOT_RUN)
            continue
        ok = abs(delta) <= _tolerance(pstd, int(dec)) + _EPS
        within.append(ok)
        verdict.append(VERDICT_WITHIN if ok else VERDICT_OUTSIDE)
    out["within_std"] = pd.array(within, dtype="boolean")
    out["verdict"] = verdict
    cols = [
        "block",
        "loss",
        "metric",
        "paper_mean",
        "paper_std",
        "ours_mean",
        "ours_std",
        "delta",
        "within_std",
        "verdict",
    ]
    return out[cols].reset_index(drop=True)


def _block_key(value: Any) -> str:
    """Block keys as strings; a ratio given as a number (50, 50.0) becomes ``"50"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
