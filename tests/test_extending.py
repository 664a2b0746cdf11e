"""docs/extending.md as a new user would follow it: its code blocks, as written, through the real Snakemake.

The recipes' files are written as they are; their config blocks are combined into one ``my_config.yaml``
(``plugins`` lists joined, as the page says), to which the test adds only the run length (three folds, two
epochs on the CPU, batches of 32). The data are small files in the real formats (``tests/user_data.py``): a
PNG/JPEG class tree at ``skin_images/``, ChestX-ray14's ``Data_Entry_2017.csv`` with its PNGs and CheXpert's
``train.csv`` with its JPEGs. No line under ``src/`` is involved beyond what the package ships.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from helpers import REPO, run_snakemake
from user_data import chestxray_csv, chexpert_csv, image_tree

DOC = REPO / "docs" / "extending.md"
RECIPE = re.compile(r"<!-- recipe: (file (?P<file>\S+)|config|shell) -->\n```\w*\n(?P<body>.*?)```", re.S)


def recipes() -> list[tuple[str, str, str]]:
    """``(kind, file name or '', text)`` of every marked code block of the page, in order."""
    return [(m[1].split()[0], m["file"] or "", m["body"]) for m in RECIPE.finditer(DOC.read_text())]


def merge(into: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """Combine config blocks: mappings merge, ``plugins`` lists join; anything given twice must agree."""
    for key, value in block.items():
        if key == "plugins":
            into[key] = [*into.get(key, []), *value]
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            assert key not in into or into[key] == value, f"two recipes set {key} differently"
            into[key] = value
    return into


def test_the_page_has_a_recipe_for_a_loss_a_dataset_and_a_backbone():
    found = recipes()
    files = [name for kind, name, _ in found if kind == "file"]
    assert files == ["my_losses.py", "my_backbones.py"]
    config = {}
    for kind, _, text in found:
        if kind == "config":
            merge(config, yaml.safe_load(text))
    sources = {ds["source"] for ds in config["datasets"].values()}
    assert sources == {"folder", "csv"}
    backbones = {b for e in config["experiments"].values() for b in e["backbones"]}
    assert {"timm:resnet18", "tiny_mlp"} <= backbones and "squared" in config["loss_params"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A working directory with the recipes' files, the user's data and ``my_config.yaml``, run to the report."""
    work = tmp_path_factory.mktemp("extending")
    image_tree(work / "skin_images", {"benign": 30, "malignant": 15}, hidden=True)
    chestxray_csv(work / "chestxray", n_patients=30)
    chexpert_csv(work / "chexpert", n_patients=16)
    config: dict[str, Any] = {}
    for kind, name, text in recipes():
        if kind == "file":
            (work / name).write_text(text)
        elif kind == "config":
            merge(config, yaml.safe_load(text))
    config["folds"] = [0, 1, 2]
    config.setdefault("train", {}).update(device="cpu", epochs=2, batch_size=32)
    (work / "my_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_snakemake(work, configfile=work / "my_config.yaml", timeout=1500)
    return work


@pytest.mark.slow
def test_every_recipe_gives_a_report_with_every_table_and_figure(work):
    config = yaml.safe_load((work / "my_config.yaml").read_text())
    metrics = pd.read_parquet(work / "results/metrics.parquet")
    assert set(metrics["experiment"]) == set(config["experiments"])
    assert {"squared", "fece", "bce"} == set(metrics["loss"])
    assert {"small_cnn", "timm:resnet18", "tiny_mlp"} == set(metrics["backbone"])
    per_job = metrics.groupby(["experiment", "backbone", "loss"])[["seed", "fold"]].apply(len)
    assert (per_job > 0).all() and len(per_job) == sum(
        len(e["backbones"]) * len(e["losses"]) for e in config["experiments"].values())
    assert metrics.groupby("experiment")["auc"].apply(lambda a: a.notna().any()).all()
    run = next((work / "results/runs").glob("skin/small_cnn/squared/*/s0_f0"))
    info = yaml.safe_load((run / "train_info.json").read_text())
    assert info["loss"]["name"] == "squared" and info["loss"]["w"] == 2.0
    assert list(info["plugins"]) == ["my_losses.py"]  # small_cnn is not a plugin's
    comparisons = pd.read_parquet(work / "results/comparisons.parquet")
    assert {"squared", "bce"} == set(comparisons["loss"]) and set(comparisons["reference"]) == {"fece"}
    html = (work / "reports/report.html").read_text()
    from lfa.sources import get_source

    for name in (*config["experiments"], "Squared error", "timm:resnet18", "tiny_mlp", get_source("csv").title,
                 get_source("folder").title, "table <code>../Data_Entry_2017.csv</code>",
                 "grouped by <code>group_column &#39;Patient ID&#39;</code>, 30 groups; checked: no group spans two "
                 "folds", "grouped by <code>group_pattern &#39;(patient\\d+)&#39;</code>, 16 groups",
                 "without any positive label"):
        assert name in html, name
    for experiment in config["experiments"]:
        assert (work / f"results/tables/{experiment}.csv").exists()
        assert (work / f"results/tables/{experiment}.tex").exists()
    figures = {p.name for p in (work / "reports/figures").glob("*.png")}
    assert any("lfa" in f or "figure2" in f for f in figures) and len(figures) >= 2 * len(config["experiments"])
    for convention in ("trained", "figure2"):
        curves = pd.read_parquet(work / f"results/lfa/curves_{convention}.parquet")
        assert set(curves["loss"]) == {"squared", "fece", "bce"}


@pytest.mark.slow
def test_patients_never_span_folds(work):
    table = pd.read_csv(work / "chestxray/Data_Entry_2017.csv")
    patient = dict(zip(table["Image Index"], table["Patient ID"], strict=True))
    index = pd.read_parquet(work / "data/prepared/chestxray/index.parquet")
    folds = index.assign(patient=[patient[Path(i).name] for i in index["id"]]).groupby("patient")["fold"]
    assert folds.nunique().max() == 1 and index["fold"].nunique() == 5


@pytest.mark.slow
def test_the_lfa_curves_command_of_the_page_runs_as_written(work):
    (command,) = [text for kind, _, text in recipes() if kind == "shell"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = work / re.search(r"--out (\S+)", command)[1]
    curves = pd.read_parquet(out / "lfa_trained.parquet")
    assert set(curves["loss"]) == {"squared", "fece", "bce"}
    assert (out / "figure2_trained.png").stat().st_size > 10_000 and (out / "figure2_figure2.png").exists()


def planned(proc: subprocess.CompletedProcess) -> dict[str, int]:
    table = proc.stdout.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


@pytest.mark.slow
def test_editing_a_plugin_reruns_exactly_the_jobs_that_use_it(work, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(work, copy, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    assert "train" not in planned_or_empty(run_snakemake(copy, "-n", configfile=copy / "my_config.yaml"))
    (copy / "my_losses.py").write_text((copy / "my_losses.py").read_text() + "\n# tuned\n")
    counts = planned(run_snakemake(copy, "-n", configfile=copy / "my_config.yaml"))
    assert counts["train"] == 3 and counts["evaluate"] == 3  # the squared loss's three folds only
    assert counts["lfa_curves"] == 2 and not any(k.startswith(("prepare", "download")) for k in counts)
    (copy / "my_backbones.py").write_text((copy / "my_backbones.py").read_text() + "\n# tuned\n")
    counts = planned(run_snakemake(copy, "-n", configfile=copy / "my_config.yaml"))
    assert counts["train"] == 3 + 6  # and tiny_mlp's 2 losses x 3 folds
    assert counts["lfa_curves"] == 2


def planned_or_empty(proc: subprocess.CompletedProcess) -> dict[str, int]:
    return planned(proc) if "Job stats:" in proc.stdout else {}
