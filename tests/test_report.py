"""The report rendered from synthetic results of all five paper tables, some cells missing."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import dataset_spec

from lfa.assessment.curves import compute_curves
from lfa.data.datasets import prepare
from lfa.evaluation.aggregate import aggregate, runs_table
from lfa.evaluation.paper import paper_table
from lfa.io import write_parquet
from lfa.pipeline.config import train_defaults
from lfa.pipeline.plan import Layout, plan, split_prepared_name
from lfa.report import ReportInputs, dataset_sections, render_report

LOSSES = ["asl", "bce", "ece", "fece", "focal"]
RATIOS = [50, 25, 12, 6, 3, 1]
DIGITS_RATIO = {"source": "digits", "subset": {"kind": "binary_ratio", "positive_class": 8, "ratios": RATIOS}}
CONFIG = {  # as validated: every key the plan reads is there
    "data_dir": "DATA",
    "results_dir": "RESULTS",
    "reports_dir": "REPORTS",
    "logs_dir": "LOGS",
    "n_splits": 5,
    "folds": [0, 1, 2],
    "seeds": [0],
    "loss_params": {},
    "train": train_defaults(),
    "report": {"reference_loss": "fece", "shot_groups": {"many": 100, "few": 20}},
    "datasets": {
        "imagenet_lt": {"source": "imagenet", "subset": {"kind": "all"}},
        "cadcap": {"source": "cadcap", "subset": {"kind": "all"}},
        "idc": {"source": "idc", "subset": {"kind": "all"}},
        "idc_ratio": {"source": "idc", "subset": {"kind": "binary_ratio", "positive_class": 1,
                                                    "ratios": RATIOS}},
        "cifar10": {"source": "cifar10", "subset": {"kind": "all"}},
    },
    "experiments": {
        "table2": {"dataset": "imagenet_lt", "layout": "table2", "paper_table": "table2",
                   "backbones": ["resnet50"], "losses": LOSSES},
        "table3": {"dataset": "cadcap", "layout": "table3", "paper_table": "table3",
                   "backbones": ["densenet121", "resnet50", "pgcon"], "losses": LOSSES},
        "table4": {"dataset": "idc", "layout": "table4", "paper_table": "table4",
                   "backbones": ["alexnet", "botnet", "resnet50"], "losses": LOSSES},
        "table5": {"dataset": "idc_ratio", "layout": "table5", "paper_table": "table5",
                   "backbones": ["resnet50"], "losses": LOSSES},
        "cifar10": {"dataset": "cifar10", "layout": "cifar10", "paper_table": "cifar10",
                    "backbones": ["resnet50"], "losses": LOSSES},
    },
}
N_CLASSES = {"imagenet_lt": 6, "cadcap": 3, "idc": 2, "cifar10": 10}
MISSING = {("table3", "pgcon"), ("table4", "botnet", "focal")}  # not run
INCOMPLETE = ("cifar10", "resnet50", "ece", 2)  # one fold of this cell did not finish
METRICS = ["auc", "threshold", "accuracy", "precision", "recall", "f0_5", "f0", "f1"]


def _synthetic_metrics(config: dict) -> dict[str, list[Path]]:
    """Per-run metrics files whose per-class values scatter around the paper's published means."""
    rng = np.random.default_rng(0)
    layout, runs = Layout.from_config(config), {}
    for name, jobs in plan(config).experiments.items():
        for job in jobs:
            if (name, job.backbone) in MISSING or (name, job.backbone, job.loss) in MISSING:
                continue
            if (name, job.backbone, job.loss, job.fold) == INCOMPLETE:
                continue
            base, k = split_prepared_name(job.dataset)
            table = paper_table(name)
            block = str(k) if k is not None else job.backbone
            cells = table[(table.block == block) & (table.loss == job.loss)].set_index("metric")["mean"]
            n = N_CLASSES.get(base, 2)
            df = pd.DataFrame({"dataset": job.dataset, "backbone": job.backbone, "loss": job.loss, "seed": job.seed,
                               "fold": job.fold, "ratio_k": pd.array([k] * n, dtype="Int64"), "class": np.arange(n),
                               "class_name": [f"c{c}" for c in range(n)]})
            for metric in METRICS:
                df[metric] = np.clip(cells[metric] + rng.normal(0, 0.01, n), 0, 1)
            df["miss"], df["overflow"] = 1 - df["recall"], rng.uniform(0, 0.1, n)
            df["sensitivity"], df["specificity"] = 1 - df["miss"], 1 - df["overflow"]
            df["average_precision"] = np.clip(df["auc"] - 0.1, 0, 1)
            df["brier"], df["calibration_error"] = rng.uniform(0.05, 0.2, n), rng.uniform(0.01, 0.1, n)
            df["n_pos"], df["n_neg"] = 10, 90
            path = layout.run_file(job, "metrics.parquet")
            path.parent.mkdir(parents=True, exist_ok=True)
            df.to_parquet(path)
            runs.setdefault(name, []).append(path)
    return runs


class _Tables(HTMLParser):
    """Collects the cells of every <table class="results">: (text, bold) per cell, per row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, bool]]]] = []
        self.depth = 0
        self.bold = False
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "results") in attrs:
            self.tables.append([])
            self.depth = 1
        elif self.depth and tag == "tr":
            self.tables[-1].append([])
        elif self.depth and tag in ("td", "th"):
            self.cell, self.bold = [], False
        elif self.depth and tag == "strong":
            self.bold = True
        elif self.depth and tag == "span" and self.cell is not None:
            self.cell.append("|")  # separates our value from the paper's line

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth = 0
        elif self.depth and tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append((" ".join("".join(self.cell).split()), self.bold))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    results = tmp / "results"
    config = {**CONFIG, "data_dir": str(tmp / "data"), "results_dir": str(results)}
    paths = aggregate(_synthetic_metrics(config), results, {"lfa.config_hash": "synthetic"})
    write_parquet(runs_table(plan(config)), results / "runs.parquet", {})
    curves, grads = [], []
    for convention in ("trained", "figure2"):
        c, g = compute_curves(convention, LOSSES, grid=np.linspace(0.1, 0.99, 30))
        curves.append(results / f"curves_{convention}.parquet")
        grads.append(results / f"gradients_{convention}.parquet")
        c.to_parquet(curves[-1])
        g.to_parquet(grads[-1])
    for name, n in N_CLASSES.items():
        d = tmp / "data" / "prepared" / name
        d.mkdir(parents=True)
        counts = pd.DataFrame({"class": range(n), "name": [f"c{c}" for c in range(n)],
                               "count": [1000 // (c + 1) for c in range(n)]})
        counts.to_csv(d / "counts.csv", index=False)
        (d / "meta.json").write_text(json.dumps({"name": name, "source": name, "n_samples": int(counts["count"].sum()),
                                                 "image_shape": [8, 8, 3], "class_names": list(counts["name"]),
                                                 "n_splits": 5, "split_seed": 0, "ratio_k": None}))
    for k in RATIOS:  # table5's six ratio subsets, prepared for real (from the digits, which need no download)
        prepare(f"idc_ratio_k{k}", dataset_spec(DIGITS_RATIO, "idc_ratio", k), "", tmp / "data" / "prepared" /
                f"idc_ratio_k{k}", n_splits=5, split_seed=0, downloads=tmp)
    inputs = ReportInputs(metrics=paths["metrics"], summary=paths["summary"], per_class=paths["per_class"],
                          comparisons=paths["comparisons"], runs=results / "runs.parquet", curves=curves,
                          gradients=grads, config=config, config_hash="synthetic", config_files=["synthetic.yaml"])
    html_path = render_report(inputs, tmp / "report.html", figures_dir=tmp / "figures")
    return tmp, html_path.read_text()


def test_every_table_is_present_with_the_papers_columns_and_rows(rendered):
    _, html = rendered
    parser = _Tables()
    parser.feed(html)
    assert len(parser.tables) == 5
    expected_blocks = {0: 1, 1: 3, 2: 3, 3: 6, 4: 1}
    for i, table in enumerate(parser.tables):
        header = [text for text, _ in table[0]]
        assert header == ["loss", "AUC", "threshold", "acc", "Precision", "Recall", "F0.5", "F0", "F1"]
        blocks = [row for row in table[1:] if len(row) == 1]
        rows = [row for row in table[1:] if len(row) == 9]
        assert len(blocks) == expected_blocks[i]
        assert len(rows) == 5 * expected_blocks[i]
        assert [r[0][0] for r in rows[:5]] == ["ASL", "BCE", "ECE", "F-ECE", "Focal"]


def test_paper_values_deltas_and_not_run_cells(rendered):
    _, html = rendered
    parser = _Tables()
    parser.feed(html)
    table2 = parser.tables[0]
    fece = next(row for row in table2 if row[0][0] == "F-ECE")
    auc_cell = fece[1][0]
    assert "paper 0.943±0.039" in auc_cell and "Δ" in auc_cell
    table3 = parser.tables[1]
    pgcon_at = next(i for i, row in enumerate(table3) if row[0][0] == "pgcon")
    for row in table3[pgcon_at + 1:pgcon_at + 6]:
        assert all(cell[0].startswith("not run") for cell in row[1:])
    table4 = parser.tables[2]
    botnet_at = next(i for i, row in enumerate(table4) if row[0][0] == "botnet")
    focal = table4[botnet_at + 5]
    assert focal[0][0] == "Focal" and focal[1][0].startswith("not run")
    assert "Incomplete:" in html and "table3 · cadcap · pgcon" in html


def test_a_cell_with_fewer_runs_than_asked_for_is_marked_everywhere(rendered):
    tmp, html = rendered
    parser = _Tables()
    parser.feed(html)
    ece = next(row for row in parser.tables[4] if row[0][0] == "ECE")
    assert all("only 2 of 3 runs" in cell[0] for cell in ece[1:])
    fece = next(row for row in parser.tables[4] if row[0][0] == "F-ECE")
    assert not any("runs" in cell[0] for cell in fece[1:])
    assert "1 cell(s) rest on fewer runs than the config asks" in html
    assert "cifar10 · cifar10 · resnet50 · ece (2 of 3 runs)" in html
    csv = pd.read_csv(tmp / "results/tables/cifar10.csv").set_index("loss")
    assert csv.loc["ECE", "incomplete"] == "2 of 3 runs" and pd.isna(csv.loc["F-ECE", "incomplete"])
    assert "ECE (2 of 3 runs) &" in (tmp / "results/tables/cifar10.tex").read_text()


def test_results_of_another_config_are_refused(rendered):
    from lfa.errors import MixedResults

    tmp, _ = rendered
    results = tmp / "results"
    inputs = ReportInputs(metrics=results / "metrics.parquet", summary=results / "summary.parquet",
                          per_class=results / "per_class.parquet", comparisons=results / "comparisons.parquet",
                          runs=results / "runs.parquet", curves=[], gradients=[], config=CONFIG,
                          config_hash="0123456789abcdef", config_files=["mine.yaml"])
    with pytest.raises(MixedResults, match=r"metrics\.parquet was aggregated under config hash synthetic, and this "
                                           r"report is for config hash 0123456789abcdef \(mine\.yaml\): run snakemake"):
        render_report(inputs, tmp / "other.html")
    assert not (tmp / "other.html").exists()


def test_bold_marks_the_maximum_of_each_column_per_block(rendered):
    tmp, html = rendered
    parser = _Tables()
    parser.feed(html)
    summary = pd.read_parquet(tmp / "results" / "summary.parquet")
    table2 = parser.tables[0]
    rows = [row for row in table2[1:] if len(row) == 9]
    for col, metric in enumerate(METRICS, start=1):
        ours = summary[(summary.experiment == "table2") & (summary.metric == metric)]
        best = ours["mean"].round(3).max()
        bold = {row[0][0] for row in rows if row[col][1]}
        if metric == "threshold":
            assert not bold  # no "best" threshold
            continue
        winners = {{"asl": "ASL", "bce": "BCE", "ece": "ECE", "fece": "F-ECE", "focal": "Focal"}[loss]
                   for loss in ours[ours["mean"].round(3) == best]["loss"]}
        assert bold == winners, metric


def test_tables_are_exported_and_figures_written(rendered):
    tmp, html = rendered
    csv = pd.read_csv(tmp / "results" / "tables" / "table5.csv")
    assert len(csv) == 6 * 5 and csv["block"].iloc[0] == "50 (1:4)"
    tex = (tmp / "results" / "tables" / "table3.tex").read_text()
    assert "\\multicolumn{9}{c}{densenet121}" in tex and "$\\pm$" in tex
    pngs = sorted(p.name for p in (tmp / "figures").glob("*.png"))
    assert "figure2_trained.png" in pngs and "figure2_figure2.png" in pngs
    assert html.count("data:image/png;base64,") == len(pngs)
    assert "Loss Function Assessment" in html and "Two conventions" in html


def test_report_never_imports_torch(rendered, tmp_path):
    tmp, _ = rendered
    code = (
        "import sys, runpy\n"
        "import lfa.report\n"
        "assert 'torch' not in sys.modules, 'lfa.report imported torch'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


class _Subsets(HTMLParser):
    """The rows of every <table class="subsets"> (the Datasets section's ratio families), as cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.inside = False
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.inside = ("class", "subsets") in attrs
            if self.inside:
                self.tables.append([])
        elif self.inside and tag == "tr":
            self.tables[-1].append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def test_a_ratio_family_is_one_compact_figure_with_every_count(rendered):
    tmp, html = rendered
    assert html.count('alt="class counts of the ratio subsets of idc_ratio"') == 1
    assert 'alt="class distribution of idc_ratio_k' not in html  # not one chart per subset any more
    assert '<h3>idc_ratio <span class="muted">· 6 ratio subsets</span></h3>' in html
    parser = _Subsets()
    parser.feed(html)
    (table,) = parser.tables
    assert table[0][:6] == ["subset", "k", "samples", "not 8", "8", "expected"]
    rows = table[1:]
    assert [row[0] for row in rows] == [f"idc_ratio_k{k}" for k in RATIOS]
    for row, k in zip(rows, RATIOS, strict=True):
        counts = pd.read_csv(tmp / "data" / "prepared" / f"idc_ratio_k{k}" / "counts.csv")["count"].tolist()
        assert counts == [600, 3 * k]  # digits: unit 3
        assert row[1:6] == [f"{k} ({k // math.gcd(k, 200)}:{200 // math.gcd(k, 200)})", f"{sum(counts):,}",
                            f"{counts[0]:,}", f"{counts[1]:,}", f"{counts[0]} / {counts[1]}"]
    pngs = sorted(p.name for p in (tmp / "figures").glob("dataset_*.png"))
    assert "dataset_idc_ratio.png" in pngs and not [p for p in pngs if p.startswith("dataset_idc_ratio_k")]


def test_dataset_sections_group_ratio_subsets_and_keep_single_datasets(rendered):
    tmp, _ = rendered
    layout = Layout.from_config({**CONFIG, "data_dir": str(tmp / "data"), "results_dir": str(tmp / "results")})
    names = ["cifar10", *sorted(f"idc_ratio_k{k}" for k in RATIOS)]  # sorted as names: k1, k100-style order
    sections = dataset_sections(layout, names)
    assert [s["name"] for s in sections] == ["cifar10", "idc_ratio"]
    single, family = sections
    assert not single.get("family") and single["figure"].startswith(b"\x89PNG")
    assert [row["count"] for row in single["counts"]] == [1000 // (c + 1) for c in range(10)]
    assert family["family"] and family["figure"].startswith(b"\x89PNG") and "counts" not in family
    assert [r["k"] for r in family["subsets"]] == RATIOS  # largest k first, as in Table 5
    assert [r["counts"] for r in family["subsets"]] == [[600, 3 * k] for k in RATIOS]
    assert all(r["expected"] == r["counts"] and len(r["data_hash"]) == 8 for r in family["subsets"])
    assert family["unit"] == 3 and family["class_names"] == ["not 8", "8"]
    (lone,) = dataset_sections(layout, ["idc_ratio_k50"])  # one ratio subset alone keeps its own chart
    assert lone["name"] == "idc_ratio_k50" and lone["figure"].startswith(b"\x89PNG")


def test_the_context_is_built_without_writing_and_one_table_model_gives_page_csv_and_tex(rendered, tmp_path):
    """Building the context reads only; the page, the CSV and the TeX all come from the same table model."""
    from lfa.report import build_context
    from lfa.report.tables import html_rows, table_frame, table_tex

    tmp, html = rendered
    config = {**CONFIG, "data_dir": str(tmp / "data"), "results_dir": str(tmp / "results")}
    results = tmp / "results"
    inputs = ReportInputs(metrics=results / "metrics.parquet", summary=results / "summary.parquet",
                          per_class=results / "per_class.parquet", comparisons=results / "comparisons.parquet",
                          runs=results / "runs.parquet", curves=sorted(results.glob("curves_*.parquet")),
                          gradients=sorted(results.glob("gradients_*.parquet")), config=config,
                          config_hash="synthetic", tables_dir=tmp_path / "tables")
    context = build_context(inputs)
    assert not (tmp_path / "tables").exists() and list(tmp_path.iterdir()) == []
    table3 = next(e for e in context["experiments"] if e["name"] == "table3")
    model = table3["table"]
    frame = table_frame(model)
    written = pd.read_csv(results / "tables" / "table3.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(frame, written, check_dtype=False)
    assert table_tex(model) == (results / "tables" / "table3.tex").read_text()
    page_cells = [cell["text"] for row in html_rows(model) if row["kind"] == "row" for cell in row["cells"]]
    assert page_cells == [text for text in frame.drop(columns=["block", "loss", "incomplete"]).to_numpy().ravel()]
    assert all(text in html for text in page_cells)


def test_each_paper_experiment_says_whether_its_rankings_reproduce(rendered):
    _, html = rendered
    compared = [n for n, e in CONFIG["experiments"].items() if e.get("paper_table")]
    assert html.count("Does it reproduce?") == len(compared) > 0
    verdicts = re.findall(r'<td class="(?:within|outside)">([^<]+)</td>', html)
    assert verdicts and all(v.startswith(("held", "differs")) for v in verdicts)
    assert "held: the same best loss" in verdicts  # the synthetic values scatter around the paper's
    assert "Published values: transcribed" in html
