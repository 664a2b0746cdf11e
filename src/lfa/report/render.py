"""Rendering: the self-contained ``report.html`` (figures embedded as data URIs), each experiment's table as
CSV and TeX, and each figure as a PNG file for Snakemake's own report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from lfa.io import atomic_path
from lfa.report.figures import data_uri
from lfa.report.inputs import ReportInputs
from lfa.report.sections import build_context
from lfa.report.tables import write_table


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")[:80]


def export_figures(ctx: dict[str, Any], figures_dir: str | Path) -> list[Path]:
    """Write every figure of the report context as a PNG file (for Snakemake's own report)."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    named = [(f"dataset_{d['name']}", d["figure"]) for d in ctx["datasets"]]
    named += [(f"figure2_{f['convention']}", f["figure"]) for f in ctx["lfa_figures"]]
    named += [(f"{e['name']}_{i:02d}_{_slug(f['title'])}", f["src"])
              for e in ctx["experiments"] for i, f in enumerate(e["figures"], start=1) if f["src"]]
    paths = []
    for name, image in named:
        path = figures_dir / f"{_slug(name)}.png"
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(image)
        paths.append(path)
    return paths


def write_per_class(tables: list[dict[str, Any]], path: str | Path) -> Path:
    """An experiment's per-class tables (every dataset and backbone, every class) as one CSV beside the report."""
    import pandas as pd

    frames = [t["frame"] for t in tables]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["class", "class_name"])
    front = ["dataset", "backbone", "class", "class_name"]
    frame = frame[[c for c in front if c in frame.columns] + [c for c in frame.columns if c not in front]]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def render_report(inputs: ReportInputs, out_html: str | Path, figures_dir: str | Path | None = None) -> Path:
    """Render ``report.html`` (self-contained) and each experiment's two tables as CSV and TeX (``tables_dir`` of
    the inputs, default the layout's; the imbalance table in its ``imbalance/`` folder); optionally also write each
    figure as a PNG file."""
    env = Environment(loader=PackageLoader("lfa", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["data_uri"] = data_uri
    ctx = build_context(inputs)
    html = env.get_template("report.html.j2").render(**ctx)
    for experiment in ctx["experiments"]:
        tables_dir = Path(experiment["exported"]["csv"]).parent
        write_table(experiment["table"], tables_dir)
        write_table(experiment["imbalance"]["table"], tables_dir)
        write_per_class(experiment["per_class_tables"], experiment["per_class_csv"])
    out_html = Path(out_html)
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    if figures_dir is not None:
        export_figures(ctx, figures_dir)
    return out_html
