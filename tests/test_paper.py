"""Tests of the transcribed paper tables (``lfa.evaluation.paper``) and of the comparison helpers.

The fixtures below are verbatim copies of the published tables: Tables 2-5 as printed in the paper's
README (LFA-CIFAR10 repository) and the CIFAR-10 results table of the same repository. The strongest check
regenerates every markdown row from the package CSV and compares it with these copies.
"""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from lfa.evaluation import paper

# Verbatim copy of the README from "### Table 2" up to (not including) "## Reproducibility Notes".
PAPER_README_TABLES = r"""
### Table 2

*Overall performance of ResNet-50 trained on the ImageNet-LT dataset with different loss functions. Reported values represent mean± standard deviation across all classes.*
| loss | AUC | threshold | acc | Precision | Recall | F0.5 | F0 | F1 |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
| ASL | 0.856±0.080 | 0.009±0.031 | 0.978±0.052 | 0.998±0.002 | 0.978±0.052 | 0.993±0.018 | 0.998±0.002 | 0.987±0.033 |
| BCE | 0.863±0.077 | 0.008±0.026 | 0.979±0.043 | 0.998±0.002 | 0.979±0.043 | 0.994±0.012 | 0.998±0.002 | 0.988±0.026 |
| ECE | 0.943±0.038 | 0.017±0.009 | 0.997±0.003 | 0.998±0.001 | 0.997±0.003 | 0.998±0.002 | 0.998±0.001 | 0.998±0.002 |
| F-ECE | 0.943±0.039 | 0.019±0.011 | 0.997±0.003 | 0.998±0.001 | 0.997±0.003 | 0.998±0.002 | 0.998±0.001 | 0.998±0.002 |
| focal | 0.857±0.084 | 0.009±0.027 | 0.982±0.040 | 0.998±0.002 | 0.982±0.040 | 0.994±0.011 | 0.998±0.002 | 0.989±0.024 |


### Table 3

*Quantitative evaluation of models trained on the CAD-CAP dataset~\cite{leenhardt2020cad*
| loss | AUC | threshold | acc | Precision | Recall | F0.5 | F0 | F1 |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
| \multicolumn{9}{c}{DenseNet \cite{huang2017densely}} |  |  |  |  |  |  |  |  |
| ASL | 0.70±0.02 | 0.56±0.05 | 0.58±0.05 | {0.70±0.02} | 0.58±0.05 | 0.63±0.04 | 0.70±0.02 | 0.58±0.06 |
| BCE | 0.70±0.03 | 0.41±0.09 | 0.60±0.04 | 0.69±0.03 | 0.60±0.04 | 0.64±0.02 | 0.69±0.03 | {0.61±0.04} |
| ECE | 0.67±0.03 | 0.5±0.1 | 0.56±0.05 | 0.69±0.04 | 0.56±0.05 | 0.61±0.05 | 0.69±0.04 | 0.56±0.07 |
| F-ECE | {0.71±0.03} | 0.56±0.05 | {0.61±0.04} | 0.69±0.03 | {0.61±0.04} | 0.65±0.03 | 0.69±0.03 | {0.61±0.04} |
| focal | 0.67±0.04 | 0.51±0.09 | 0.57±0.04 | 0.68±0.04 | 0.57±0.04 | 0.62±0.03 | 0.68±0.04 | 0.57±0.05 |
| \multicolumn{9}{c}{ResNet \cite{he2015deep}} |  |  |  |  |  |  |  |  |
| ASL | 0.76±0.04 | 0.53±0.04 | 0.65±0.05 | 0.73±0.03 | 0.65±0.05 | 0.69±0.03 | 0.73±0.03 | 0.65±0.05 |
| BCE | 0.77±0.04 | 0.26±0.04 | 0.65±0.06 | 0.74±0.03 | 0.65±0.06 | 0.70±0.04 | 0.74±0.03 | 0.66±0.06 |
| ECE | 0.78±0.03 | 0.38±0.05 | 0.66±0.07 | {0.75±0.03} | 0.66±0.07 | 0.70±0.04 | 0.75±0.03 | 0.66±0.07 |
| F-ECE | {0.80±0.04} | 0.54±0.05 | {0.70±0.05} | {0.75±0.03} | {0.70±0.05} | 0.73±0.04 | 0.75±0.03 | {0.70±0.05} |
| focal | 0.78±0.04 | 0.41±0.06 | 0.67±0.05 | 0.74±0.03 | 0.67±0.05 | 0.71±0.03 | 0.74±0.03 | 0.68±0.05 |
| \multicolumn{9}{c}{PGCon \cite{vats2022labels}} |  |  |  |  |  |  |  |  |
| ASL | 0.89±0.01 | 0.52±0.07 | 0.81±0.02 | 0.83±0.01 | 0.81±0.02 | 0.82±0.01 | 0.83±0.01 | 0.82±0.02 |
| BCE | 0.81±0.03 | 0.33±0.05 | 0.75±0.02 | 0.77±0.02 | 0.75±0.02 | 0.76±0.02 | 0.77±0.02 | 0.76±0.02 |
| ECE | 0.82±0.03 | 0.37±0.05 | 0.73±0.04 | 0.77±0.02 | 0.73±0.04 | 0.75±0.02 | 0.77±0.02 | 0.74±0.03 |
| F-ECE | {0.94±0.02} | 0.60±0.11 | {0.88±0.02} | {0.88±0.02} | 0.{88±0.02} | 0.88±0.02 | 0.88±0.02 | {0.88±0.02} |
| focal | 0.86±0.03 | 0.42±0.06 | 0.78±0.04 | 0.79±0.03 | 0.78±0.04 | 0.79±0.03 | 0.79±0.03 | 0.78±0.03 |


### Table 4

*Evaluation results of models trained on the Breast Histopathological dataset~\cite{janowczyk2016deep*
| Loss | AUC | Threshold | Acc | Precision | Recall | F0.5 | F0 | F1 |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
| \multicolumn{9}{c}{AlexNet \cite{10.1145/3065386}} |  |  |  |  |  |  |  |  |
| ASL | 0.94±0.00 | 0.60±0.01 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 |
| BCE | 0.94±0.00 | 0.38±0.05 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 |
| ECE | 0.94±0.00 | 0.44±0.02 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 |
| F-ECE | 0.94±0.00 | 0.59±0.02 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 |
| Focal | 0.94±0.03 | 0.43±0.02 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 |
| \multicolumn{9}{c}{BotNet \cite{srinivas2021bottlenecktransformersvisualrecognition}} |  |  |  |  |  |  |  |  |
| ASL | 0.95±0.00 | 0.59±0.03 | 0.89±0.01 | 0.89±0.00 | 0.89±0.01 | 0.89±0.00 | 0.89±0.00 | 0.89±0.00 |
| BCE | 0.94±0.00 | 0.40±0.09 | 0.88±0.00 | 0.89±0.00 | 0.88±0.00 | 0.89±0.00 | 0.89±0.00 | 0.89±0.00 |
| ECE | 0.94±0.00 | 0.43±0.03 | 0.88±0.01 | 0.89±0.01 | 0.88±0.01 | 0.89±0.01 | 0.89±0.01 | 0.88±0.01 |
| F-ECE | 0.94±0.00 | 0.59±0.05 | 0.88±0.00 | 0.89±0.00 | 0.88±0.00 | 0.89±0.00 | 0.89±0.00 | 0.88±0.00 |
| Focal | 0.94±0.01 | 0.45±0.03 | 0.89±0.01 | 0.89±0.01 | 0.89±0.01 | 0.89±0.01 | 0.89±0.01 | 0.89±0.01 |
| \multicolumn{9}{c}{ResNet \cite{he2015deep}} |  |  |  |  |  |  |  |  |
| ASL | 0.94±0.01 | 0.59±0.04 | 0.87±0.01 | 0.88±0.01 | 0.87±0.01 | 0.88±0.01 | 0.88±0.01 | 0.88±0.01 |
| BCE | 0.94±0.00 | 0.39±0.11 | 0.88±0.01 | 0.89±0.01 | 0.88±0.01 | 0.89±0.01 | 0.89±0.01 | 0.89±0.01 |
| ECE | 0.92±0.01 | 0.44±0.03 | 0.85±0.01 | 0.86±0.01 | 0.85±0.01 | 0.86±0.01 | 0.86±0.01 | 0.86±0.01 |
| F-ECE | 0.94±0.00 | 0.60±0.03 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 | 0.88±0.00 |
| Focal | 0.94±0.01 | 0.46±0.05 | 0.88±0.01 | 0.88±0.01 | 0.88±0.01 | 0.88±0.01 | 0.88±0.01 | 0.88±0.01 |


### Table 5

*Evaluation results of models trained on the Breast Histopathological dataset~\cite{janowczyk2016deep*
| Ratio | Loss | AUC | Threshold | Acc | Precision | Recall | F0.5 | F0 | F1 |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| \multirow{5}{*}{50 (1:4)} |  |  |  |  |  |  |  |  |  |
|  | ASL | 0.90±0.01 | 0.57±0.02 | 0.86±0.01 | 0.87±0.00 | 0.86±0.01 | 0.87±0.01 | 0.87±0.00 | 0.86±0.01 |
|  | BCE | 0.90±0.01 | 0.33±0.07 | 0.86±0.01 | 0.87±0.01 | 0.86±0.01 | 0.87±0.01 | 0.87±0.01 | 0.86±0.01 |
|  | ECE | 0.88±0.01 | 0.50±0.10 | 0.84±0.01 | 0.86±0.01 | 0.84±0.01 | 0.85±0.01 | 0.86±0.01 | 0.85±0.01 |
|  | F-ECE | 0.90±0.01 | 0.59±0.01 | 0.85±0.02 | 0.86±0.01 | 0.85±0.02 | 0.86±0.01 | 0.86±0.01 | 0.86±0.01 |
|  | Focal | 0.90±0.02 | 0.43±0.03 | 0.86±0.01 | 0.87±0.01 | 0.86±0.01 | 0.87±0.01 | 0.87±0.01 | 0.86±0.01 |
| \multirow{5}{*}{25 (1:8)} |  |  |  |  |  |  |  |  |  |
|  | ASL | 0.87±0.02 | 0.53±0.01 | 0.84±0.01 | 0.86±0.01 | 0.84±0.01 | 0.85±0.01 | 0.86±0.01 | 0.85±0.01 |
|  | BCE | 0.88±0.02 | 0.19±0.02 | 0.84±0.01 | 0.86±0.01 | 0.84±0.01 | 0.85±0.01 | 0.86±0.01 | 0.84±0.01 |
|  | ECE | 0.87±0.02 | 0.33±0.02 | 0.84±0.01 | 0.85±0.01 | 0.84±0.01 | 0.85±0.01 | 0.85±0.01 | 0.85±0.01 |
|  | F-ECE | 0.87±0.02 | 0.52±0.04 | 0.84±0.02 | 0.85±0.01 | 0.84±0.02 | 0.85±0.01 | 0.85±0.01 | 0.85±0.01 |
|  | Focal | 0.87±0.01 | 0.40±0.01 | 0.84±0.01 | 0.86±0.01 | 0.84±0.01 | 0.85±0.01 | 0.86±0.01 | 0.85±0.01 |
| \multirow{5}{*}{12 (3:50)} |  |  |  |  |  |  |  |  |  |
|  | ASL | 0.86±0.02 | 0.49±0.01 | 0.84±0.01 | 0.85±0.01 | 0.84±0.01 | 0.85±0.01 | 0.85±0.01 | 0.84±0.01 |
|  | BCE | 0.87±0.02 | 0.15±0.02 | 0.85±0.01 | 0.86±0.01 | 0.85±0.01 | 0.85±0.01 | 0.86±0.01 | 0.85±0.01 |
|  | ECE | 0.86±0.02 | 0.32±0.03 | 0.83±0.02 | 0.85±0.01 | 0.83±0.02 | 0.84±0.01 | 0.85±0.01 | 0.84±0.01 |
|  | F-ECE | 0.87±0.01 | 0.52±0.04 | 0.84±0.01 | 0.85±0.01 | 0.84±0.01 | 0.85±0.01 | 0.85±0.01 | 0.84±0.01 |
|  | Focal | 0.86±0.02 | 0.33±0.02 | 0.83±0.01 | 0.85±0.01 | 0.83±0.01 | 0.84±0.01 | 0.85±0.01 | 0.84±0.01 |
| \multirow{5}{*}{6 (3:100)} |  |  |  |  |  |  |  |  |  |
|  | ASL | 0.84±0.02 | 0.52±0.03 | 0.82±0.02 | 0.83±0.01 | 0.82±0.02 | 0.83±0.01 | 0.83±0.01 | 0.83±0.01 |
|  | BCE | 0.85±0.01 | 0.20±0.06 | 0.84±0.01 | 0.85±0.01 | 0.84±0.01 | 0.84±0.01 | 0.85±0.01 | 0.84±0.01 |
|  | ECE | 0.83±0.01 | 0.33±0.04 | 0.81±0.02 | 0.83±0.01 | 0.81±0.02 | 0.83±0.01 | 0.83±0.01 | 0.82±0.01 |
|  | F-ECE | 0.86±0.01 | 0.53±0.07 | 0.84±0.01 | 0.85±0.01 | 0.84±0.01 | 0.85±0.01 | 0.85±0.01 | 0.84±0.01 |
|  | Focal | 0.84±0.02 | 0.40±0.04 | 0.83±0.00 | 0.84±0.01 | 0.83±0.00 | 0.84±0.01 | 0.84±0.01 | 0.84±0.01 |
| \multirow{5}{*}{3 (3:200)} |  |  |  |  |  |  |  |  |  |
|  | ASL | 0.82±0.02 | 0.52±0.02 | 0.82±0.02 | 0.83±0.01 | 0.82±0.02 | 0.83±0.01 | 0.83±0.01 | 0.82±0.02 |
|  | BCE | 0.82±0.01 | 0.20±0.04 | 0.81±0.02 | 0.83±0.00 | 0.81±0.02 | 0.82±0.01 | 0.83±0.00 | 0.82±0.01 |
|  | ECE | 0.79±0.06 | 0.27±0.03 | 0.78±0.05 | 0.81±0.03 | 0.78±0.05 | 0.81±0.04 | 0.81±0.03 | 0.79±0.04 |
|  | F-ECE | 0.82±0.04 | 0.52±0.03 | 0.82±0.03 | 0.82±0.03 | 0.82±0.03 | 0.82±0.03 | 0.82±0.03 | 0.82±0.03 |
|  | Focal | 0.82±0.03 | 0.37±0.05 | 0.80±0.03 | 0.82±0.02 | 0.80±0.03 | 0.81±0.02 | 0.82±0.02 | 0.80±0.02 |
| \multirow{5}{*}{1 (1:200)} |  |  |  |  |  |  |  |  |  |
|  | ASL | 0.72±0.13 | 0.50±0.07 | 0.66±0.23 | 0.65±0.31 | 0.66±0.23 | 0.65±0.30 | 0.65±0.31 | 0.65±0.29 |
|  | BCE | 0.77±0.02 | 0.18±0.06 | 0.79±0.03 | 0.81±0.01 | 0.79±0.03 | 0.80±0.02 | 0.81±0.01 | 0.79±0.03 |
|  | ECE | 0.62±0.20 | 0.31±0.08 | 0.57±0.27 | 0.79±0.03 | 0.57±0.27 | 0.57±0.31 | 0.79±0.03 | 0.54±0.32 |
|  | F-ECE | 0.79±0.08 | 0.47±0.09 | 0.79±0.06 | 0.81±0.04 | 0.79±0.06 | 0.80±0.04 | 0.81±0.04 | 0.80±0.06 |
|  | Focal | 0.78±0.03 | 0.37±0.05 | 0.78±0.03 | 0.81±0.02 | 0.78±0.03 | 0.80±0.02 | 0.81±0.02 | 0.79±0.03 |
"""  # noqa: E501

# Verbatim copy of the CIFAR-10 results table (ResNet-50, 5 folds; two extra losses in the last two rows).
CIFAR10_TABLE = r"""
| loss | AUC | threshold | acc | Precision | Recall | F0.5 | F0 | F1 |
|---|---|---|---|---|---|---|---|---|
| ASL | 0.828±0.045 | 0.507±0.045 | 0.863±0.051 | 0.894±0.037 | 0.863±0.051 | 0.886±0.040 | 0.894±0.037 | 0.875±0.045 |
| BCE | 0.859±0.039 | 0.224±0.076 | 0.884±0.042 | 0.902±0.034 | 0.884±0.042 | 0.897±0.036 | 0.902±0.034 | 0.891±0.038 |
| ECE | 0.820±0.041 | 0.328±0.054 | 0.852±0.058 | 0.890±0.039 | 0.852±0.058 | 0.880±0.044 | 0.890±0.039 | 0.867±0.050 |
| F-ECE | 0.862±0.041 | 0.510±0.051 | 0.888±0.040 | 0.903±0.034 | 0.888±0.040 | 0.899±0.035 | 0.903±0.034 | 0.894±0.037 |
| focal | 0.835±0.039 | 0.374±0.041 | 0.868±0.048 | 0.895±0.037 | 0.868±0.048 | 0.888±0.040 | 0.895±0.037 | 0.879±0.043 |
| Recall | 0.849±0.039 | 0.254±0.063 | 0.880±0.045 | 0.899±0.035 | 0.880±0.045 | 0.894±0.037 | 0.899±0.035 | 0.887±0.041 |
| RangeLoss | 0.506±0.020 | 0.540±0.498 | 0.276±0.238 | 0.815±0.114 | 0.276±0.238 | 0.345±0.296 | 0.815±0.114 | 0.262±0.279 |
"""  # noqa: E501

LOSS_KEYS = {"ASL": "asl", "BCE": "bce", "ECE": "ece", "F-ECE": "fece", "focal": "focal", "Focal": "focal"}
CELL_RE = re.compile(r"^\{?\d+\.\{?\d+±\d+\.\d+\}?$")


# ---------------------------------------------------------------------------------------------- helpers
def _fixture_text(table: str) -> str:
    """The source text of one table (caption and rows)."""
    if table == "cifar10":
        return CIFAR10_TABLE
    number = table.removeprefix("table")
    start = PAPER_README_TABLES.index(f"### Table {number}")
    nxt = PAPER_README_TABLES.find("### Table ", start + 1)
    return PAPER_README_TABLES[start:] if nxt < 0 else PAPER_README_TABLES[start:nxt]


def _is_block_header(cells: list[str]) -> bool:
    return cells[0].startswith("\\multicolumn") or cells[0].startswith("\\multirow")


def _fixture_blocks(table: str, text: str | None = None) -> list[tuple[str | None, list[str]]]:
    """Split a table's source (or ``text``) into blocks: (block header line or None, data row lines)."""
    blocks: list[tuple[str | None, list[str]]] = []
    for line in (_fixture_text(table) if text is None else text).splitlines():
        if not line.startswith("|") or line.startswith("| ---") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].lower() in ("loss", "ratio"):
            continue
        if _is_block_header(cells):
            blocks.append((line, []))
            continue
        if not blocks:
            blocks.append((None, []))
        blocks[-1][1].append(line)
    return blocks


def _strip_braces(s: str) -> str:
    return s.replace("{", "").replace("}", "")


def _regenerate_rows(df: pd.DataFrame, table: str, bold: bool = False) -> list[tuple[str, list[str]]]:
    """Format the CSV cells of one table back into markdown rows, block by block, in printed order.

    Cells are rebuilt from ``mean``, ``std`` and ``decimals`` (not from ``text``); with ``bold`` the cells
    marked ``bold_in_paper`` are wrapped in braces as the source writes them.
    """
    lead = "|  | " if table == "table5" else "| "
    out: list[tuple[str, list[str]]] = []
    for block in paper.TABLES[table]["blocks"]:
        sub = df[df["block"] == block]
        labels = sub["block_label"].unique().tolist()
        assert len(labels) == 1, (table, block, labels)
        lines = []
        for _, row in sub.groupby("row_order", sort=True):
            row = row.set_index("metric").loc[paper.METRICS]
            loss_labels = row["loss_label"].unique().tolist()
            assert len(loss_labels) == 1
            cells = []
            for _, c in row.iterrows():
                text = paper.format_cell(c["mean"], c["std"], int(c["decimals"]))
                cells.append("{" + text + "}" if bold and c["bold_in_paper"] else text)
            lines.append(lead + " | ".join([loss_labels[0], *cells]) + " |")
        out.append((labels[0], lines))
    return out


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return paper.load_paper_tables()


# ------------------------------------------------------------------------------------------- structure
def test_columns_and_dtypes(df):
    assert list(df.columns) == paper.COLUMNS
    assert df["row_order"].dtype.kind == "i"
    assert df["decimals"].dtype.kind == "i"
    assert df["mean"].dtype.kind == "f" and df["std"].dtype.kind == "f"
    assert df["bold_in_paper"].dtype == bool
    assert df["block"].map(type).eq(str).all()
    assert not df.isna().any().any()
    assert set(df["table"]) == set(paper.TABLES)
    assert set(df["metric"]) == set(paper.METRICS)
    assert set(df["loss"]) == set(paper.LOSSES)
    assert (df["std"] >= 0).all() and df["mean"].between(0, 1).all()


@pytest.mark.parametrize(
    ("table", "n_blocks", "n_cells"),
    [("table2", 1, 40), ("table3", 3, 120), ("table4", 3, 120), ("table5", 6, 240), ("cifar10", 1, 40)],
)
def test_counts(df, table, n_blocks, n_cells):
    sub = paper.paper_table(table)
    assert len(sub) == n_cells
    assert sub["block"].nunique() == n_blocks
    assert list(sub["block"].unique()) == paper.TABLES[table]["blocks"]
    per_block = sub.groupby("block").agg(rows=("row_order", "nunique"), losses=("loss", "nunique"))
    assert (per_block["rows"] == 5).all() and (per_block["losses"] == 5).all()
    assert not sub.duplicated(["block", "loss", "metric"]).any()
    assert not sub.duplicated(["block", "row_order", "metric"]).any()
    assert len(df) == 560


def test_blocks_and_labels(df):
    got = {
        t: list(dict.fromkeys(zip(g["block"], g["block_label"], strict=True)))
        for t, g in df.groupby("table", sort=False)
    }
    assert got == {
        "table2": [("resnet50", "ResNet-50")],
        "table3": [("densenet121", "DenseNet"), ("resnet50", "ResNet"), ("pgcon", "PGCon")],
        "table4": [("alexnet", "AlexNet"), ("botnet", "BotNet"), ("resnet50", "ResNet")],
        "table5": [
            ("50", "50 (1:4)"),
            ("25", "25 (1:8)"),
            ("12", "12 (3:50)"),
            ("6", "6 (3:100)"),
            ("3", "3 (3:200)"),
            ("1", "1 (1:200)"),
        ],
        "cifar10": [("resnet50", "ResNet-50")],
    }


def test_loss_order_and_labels(df):
    for (table, _block), g in df.groupby(["table", "block"], sort=False):
        order = g.drop_duplicates("row_order").sort_values("row_order")
        assert order["row_order"].tolist() == [1, 2, 3, 4, 5]
        assert order["loss"].tolist() == ["asl", "bce", "ece", "fece", "focal"]
        focal = "Focal" if table in ("table4", "table5") else "focal"
        assert order["loss_label"].tolist() == ["ASL", "BCE", "ECE", "F-ECE", focal]
        for label, key in zip(g["loss_label"], g["loss"], strict=True):
            assert LOSS_KEYS[label] == key


def test_tables_metadata(df):
    assert list(paper.TABLES) == ["table2", "table3", "table4", "table5", "cifar10"]
    expected = {
        "table2": ("ImageNet_LT", 3, None),
        "table3": ("CAD-CAP", 2, "backbone"),
        "table4": ("Breast Histopathology", 2, "backbone"),
        "table5": ("Breast Histopathology (imbalance ratios)", 2, "ratio"),
        "cifar10": ("CIFAR-10", 3, None),
    }
    for name, (dataset, decimals, kind) in expected.items():
        meta = paper.TABLES[name]
        assert (meta["dataset"], meta["decimals"], meta["block_kind"]) == (dataset, decimals, kind)
        assert "\\cite" not in meta["title"] and "~" not in meta["title"]
        dec = df.loc[df["table"] == name, "decimals"]
        assert dec.mode().tolist() == [decimals]
    for name in ("table2", "table3", "table4", "table5"):
        assert paper.TABLES[name]["title"] in _fixture_text(name)
    # the one cell printed with a different precision
    odd = df[df["decimals"] != df["table"].map(lambda t: paper.TABLES[t]["decimals"])]
    assert odd[["table", "block", "loss", "metric", "text", "decimals"]].values.tolist() == [
        ["table3", "densenet121", "ece", "threshold", "0.5±0.1", 1]
    ]


def test_source_named():
    assert "README" in paper.SOURCE and "Tables 2–5" in paper.SOURCE
    assert "results/stats_resnet50_<loss>.json" in paper.SOURCE
    assert paper.__doc__


def test_metric_labels():
    assert paper.METRICS == ["auc", "threshold", "accuracy", "precision", "recall", "f0_5", "f0", "f1"]
    assert paper.METRIC_LABELS == {
        "auc": "AUC",
        "threshold": "threshold",
        "accuracy": "acc",
        "precision": "Precision",
        "recall": "Recall",
        "f0_5": "F0.5",
        "f0": "F0",
        "f1": "F1",
    }
    header = CIFAR10_TABLE.strip().splitlines()[0]
    assert header == "| loss | " + " | ".join(paper.METRIC_LABELS[m] for m in paper.METRICS) + " |"


# ------------------------------------------------------------------------------------------ spot checks
SPOT = [
    # table, block, loss, metric, mean, std, decimals, bold
    ("table2", "resnet50", "fece", "auc", 0.943, 0.039, 3, False),
    ("table2", "resnet50", "ece", "auc", 0.943, 0.038, 3, False),
    ("table2", "resnet50", "asl", "auc", 0.856, 0.080, 3, False),
    ("table2", "resnet50", "focal", "f1", 0.989, 0.024, 3, False),
    ("table2", "resnet50", "bce", "threshold", 0.008, 0.026, 3, False),
    ("table3", "pgcon", "fece", "recall", 0.88, 0.02, 2, True),
    ("table3", "pgcon", "fece", "f0_5", 0.88, 0.02, 2, False),
    ("table3", "pgcon", "fece", "threshold", 0.60, 0.11, 2, False),
    ("table3", "densenet121", "asl", "precision", 0.70, 0.02, 2, True),
    ("table3", "densenet121", "bce", "f1", 0.61, 0.04, 2, True),
    ("table3", "densenet121", "ece", "threshold", 0.5, 0.1, 1, False),
    ("table3", "resnet50", "ece", "precision", 0.75, 0.03, 2, True),
    ("table3", "resnet50", "ece", "f0", 0.75, 0.03, 2, False),
    ("table3", "resnet50", "bce", "threshold", 0.26, 0.04, 2, False),
    ("table4", "botnet", "ece", "accuracy", 0.88, 0.01, 2, False),
    ("table4", "alexnet", "focal", "auc", 0.94, 0.03, 2, False),
    ("table4", "alexnet", "asl", "auc", 0.94, 0.00, 2, False),
    ("table4", "resnet50", "ece", "auc", 0.92, 0.01, 2, False),
    ("table4", "resnet50", "bce", "threshold", 0.39, 0.11, 2, False),
    ("table5", "1", "ece", "f1", 0.54, 0.32, 2, False),
    ("table5", "1", "asl", "precision", 0.65, 0.31, 2, False),
    ("table5", "50", "ece", "threshold", 0.50, 0.10, 2, False),
    ("table5", "25", "bce", "threshold", 0.19, 0.02, 2, False),
    ("table5", "6", "focal", "accuracy", 0.83, 0.00, 2, False),
    ("table5", "3", "ece", "auc", 0.79, 0.06, 2, False),
    ("cifar10", "resnet50", "asl", "auc", 0.828, 0.045, 3, False),
    ("cifar10", "resnet50", "fece", "auc", 0.862, 0.041, 3, False),
    ("cifar10", "resnet50", "bce", "threshold", 0.224, 0.076, 3, False),
    ("cifar10", "resnet50", "focal", "f1", 0.879, 0.043, 3, False),
]


@pytest.mark.parametrize(("table", "block", "loss", "metric", "mean", "std", "decimals", "bold"), SPOT)
def test_spot_cells(df, table, block, loss, metric, mean, std, decimals, bold):
    sel = df[
        (df["table"] == table) & (df["block"] == block) & (df["loss"] == loss) & (df["metric"] == metric)
    ]
    assert len(sel) == 1
    cell = sel.iloc[0]
    assert cell["mean"] == pytest.approx(mean, abs=1e-12)
    assert cell["std"] == pytest.approx(std, abs=1e-12)
    assert cell["decimals"] == decimals
    assert bool(cell["bold_in_paper"]) is bold
    assert cell["text"] == f"{mean:.{decimals}f}±{std:.{decimals}f}"


def test_text_matches_numbers(df):
    for row in df.itertuples():
        assert row.text == paper.format_cell(row.mean, row.std, row.decimals)
        mean_txt, std_txt = row.text.split("±")
        assert len(mean_txt.split(".")[1]) == row.decimals
        assert float(mean_txt) == row.mean and float(std_txt) == row.std


def test_bold_count(df):
    assert int(df["bold_in_paper"].sum()) == 17
    assert not df.loc[df["table"] != "table3", "bold_in_paper"].any()
    per_block = df[df["bold_in_paper"]].groupby("block").size().to_dict()
    assert per_block == {"densenet121": 6, "resnet50": 6, "pgcon": 5}


def test_extra_cifar10_losses_not_included(df):
    labels = set(df.loc[df["table"] == "cifar10", "loss_label"])
    assert labels == {"ASL", "BCE", "ECE", "F-ECE", "focal"}
    assert "| Recall |" in CIFAR10_TABLE and "| RangeLoss |" in CIFAR10_TABLE


# --------------------------------------------------------------------------------- re-parse vs source
@pytest.mark.parametrize("table", list(paper.TABLES))
def test_regenerated_rows_appear_in_source(df, table):
    source = _strip_braces(_fixture_text(table))
    for _label, lines in _regenerate_rows(paper.paper_table(table), table):
        for line in lines:
            assert line in source, line


@pytest.mark.parametrize("table", list(paper.TABLES))
def test_regenerated_table_equals_source(df, table):
    """Block by block and row by row, the regenerated table is the source table (braces ignored)."""
    extra = {"cifar10": {"Recall", "RangeLoss"}}.get(table, set())
    src_blocks = _fixture_blocks(table)
    regen = _regenerate_rows(paper.paper_table(table), table)
    assert len(src_blocks) == len(regen)
    for (header, src_lines), (label, lines) in zip(src_blocks, regen, strict=True):
        if header is None:  # single-block tables: ResNet-50 (named in Table 2's caption)
            assert label == "ResNet-50"
            assert table == "cifar10" or "ResNet-50" in _fixture_text(table)
        else:
            assert label in header, (label, header)
        src_lines = [ln for ln in src_lines if ln.strip("| ").split(" | ")[0] not in extra]
        assert [_strip_braces(ln) for ln in src_lines] == lines


@pytest.mark.parametrize("table", list(paper.TABLES))
def test_bold_marks_match_source(table):
    """Cells marked bold are exactly those the source wraps in braces (``0.{88±0.02}`` read as bold)."""
    text = _fixture_text(table)
    assert text.count("0.{88±0.02}") == (1 if table == "table3" else 0)
    text = text.replace("0.{88±0.02}", "{0.88±0.02}")
    src = [ln for _h, lines in _fixture_blocks(table, text) for ln in lines]
    regen = [ln for _l, lines in _regenerate_rows(paper.paper_table(table), table, bold=True) for ln in lines]
    if table == "cifar10":
        src = src[:5]
    assert src == regen


def test_every_source_cell_is_well_formed():
    for table in paper.TABLES:
        for _h, lines in _fixture_blocks(table):
            for line in lines:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                values = cells[2:] if table == "table5" else cells[1:]
                assert len(values) == 8, line
                assert all(CELL_RE.match(v) for v in values), line


# ------------------------------------------------------------------------------------------ paper_table
def test_paper_table_order_and_unknown():
    t5 = paper.paper_table("table5")
    assert t5["block"].tolist()[::40] == ["50", "25", "12", "6", "3", "1"]
    assert t5["metric"].tolist()[:8] == paper.METRICS
    assert t5.index.tolist() == list(range(240))
    with pytest.raises(KeyError, match="table9"):
        paper.paper_table("table9")


def test_load_returns_copy():
    a = paper.load_paper_tables()
    a.loc[:, "mean"] = -1.0
    b = paper.load_paper_tables()
    assert (b["mean"] >= 0).all()


# ------------------------------------------------------------------------------------------ format_cell
def test_format_cell():
    assert paper.format_cell(0.8616, 0.0409, 3) == "0.862±0.041"
    assert paper.format_cell(0.5, 0.1, 1) == "0.5±0.1"
    assert paper.format_cell(0.94, 0.0, 2) == "0.94±0.00"
    assert paper.format_cell(float("nan"), 0.1, 2) == "not run"
    assert paper.format_cell(None, None, 2) == "not run"
    assert paper.format_cell(pd.NA, 0.1, 2) == "not run"
    assert paper.format_cell(0.7, float("nan"), 2) == "0.70"


# ------------------------------------------------------------------------------------ compare_with_paper
def _ours_from_paper(table: str) -> pd.DataFrame:
    return paper.paper_table(table)[["block", "loss", "metric", "mean", "std"]].copy()


def test_compare_exact_values_all_within():
    ours = _ours_from_paper("table3")
    res = paper.compare_with_paper(ours, "table3")
    assert list(res.columns) == [
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
    assert len(res) == 120
    assert (res["delta"].abs() < 1e-12).all()
    assert res["within_std"].dtype == "boolean"
    assert res["within_std"].all()
    assert set(res["verdict"]) == {"within ± std"}


def test_compare_not_run_and_extra_rows_ignored():
    ours = pd.DataFrame(
        {
            "block": ["resnet50", "resnet50", "resnet50", "resnet50"],
            "loss": ["fece", "asl", "recall", "fece"],
            "metric": ["auc", "auc", "auc", "miss"],
            "mean": [0.862, float("nan"), 0.9, 0.1],
            "std": [0.041, float("nan"), 0.01, 0.0],
        }
    )
    res = paper.compare_with_paper(ours, "cifar10")
    assert len(res) == 40
    row = res[(res["loss"] == "fece") & (res["metric"] == "auc")].iloc[0]
    assert row["verdict"] == "within ± std" and bool(row["within_std"]) is True
    assert row["delta"] == pytest.approx(0.0, abs=1e-12)
    nr = res[res["verdict"] == "not run"]
    assert len(nr) == 39
    assert nr["within_std"].isna().all() and nr["delta"].isna().all() and nr["ours_mean"].isna().all()
    asl = res[(res["loss"] == "asl") & (res["metric"] == "auc")].iloc[0]
    assert asl["verdict"] == "not run" and math.isnan(asl["ours_mean"])
    assert asl["paper_mean"] == pytest.approx(0.828)


@pytest.mark.parametrize(
    ("ours_mean", "verdict"),
    [
        (0.943 + 0.039, "within ± std"),  # exactly one std above
        (0.943 - 0.039, "within ± std"),  # exactly one std below
        (0.943 + 0.040, "outside ± std"),
        (0.943 - 0.06, "outside ± std"),
        (0.95, "within ± std"),
    ],
)
def test_compare_std_boundary(ours_mean, verdict):
    ours = pd.DataFrame(
        {"block": ["resnet50"], "loss": ["fece"], "metric": ["auc"], "mean": [ours_mean], "std": [0.03]}
    )
    res = paper.compare_with_paper(ours, "table2")
    row = res[(res["loss"] == "fece") & (res["metric"] == "auc")].iloc[0]
    assert row["verdict"] == verdict
    assert bool(row["within_std"]) is (verdict == "within ± std")
    assert row["delta"] == pytest.approx(ours_mean - 0.943)
    assert row["ours_std"] == pytest.approx(0.03)
    assert row["paper_std"] == pytest.approx(0.039)


@pytest.mark.parametrize(
    ("ours_mean", "within"),
    [(0.94, True), (0.944, True), (0.936, True), (0.945, True), (0.946, False), (0.93, False)],
)
def test_compare_zero_std_uses_half_printed_unit(ours_mean, within):
    # Table 4, AlexNet, ASL, AUC is printed 0.94±0.00: tolerance is half of 0.01.
    ours = pd.DataFrame(
        {"block": ["alexnet"], "loss": ["asl"], "metric": ["auc"], "mean": [ours_mean], "std": [0.001]}
    )
    res = paper.compare_with_paper(ours, "table4")
    row = res[(res["block"] == "alexnet") & (res["loss"] == "asl") & (res["metric"] == "auc")].iloc[0]
    assert row["paper_std"] == 0.0
    assert bool(row["within_std"]) is within
    assert row["verdict"] == ("within ± std" if within else "outside ± std")


def test_compare_zero_std_three_decimals():
    # no zero std is printed with three decimals; the rule still scales with the printed precision
    assert paper._tolerance(0.0, 3) == pytest.approx(0.0005)
    assert paper._tolerance(0.0, 1) == pytest.approx(0.05)
    assert paper._tolerance(0.02, 2) == 0.02


def test_compare_ratio_blocks_numeric_and_order():
    ours = pd.DataFrame(
        {
            "block": [50, 1.0, "3"],
            "loss": ["ece", "ece", "fece"],
            "metric": ["threshold", "f1", "auc"],
            "mean": [0.50, 0.90, 0.82],
            "std": [0.1, 0.02, 0.04],
        }
    )
    res = paper.compare_with_paper(ours, "table5")
    assert len(res) == 240
    assert res["block"].tolist()[::40] == ["50", "25", "12", "6", "3", "1"]
    got = res[res["verdict"] != "not run"].set_index(["block", "loss", "metric"])["verdict"].to_dict()
    assert got == {
        ("50", "ece", "threshold"): "within ± std",  # 0.50±0.10, ours 0.50
        ("3", "fece", "auc"): "within ± std",  # 0.82±0.04, ours 0.82
        ("1", "ece", "f1"): "outside ± std",  # 0.54±0.32, ours 0.90 is 0.36 away
    }


def test_compare_errors():
    ours = _ours_from_paper("table2")
    with pytest.raises(KeyError):
        paper.compare_with_paper(ours, "table7")
    with pytest.raises(ValueError, match="missing column"):
        paper.compare_with_paper(ours.drop(columns="std"), "table2")
    with pytest.raises(ValueError, match="duplicate"):
        paper.compare_with_paper(pd.concat([ours, ours.iloc[:1]]), "table2")
