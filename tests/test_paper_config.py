"""configs/paper.yaml: valid, every protocol value explicit, the right jobs per table, listed without data."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, SNAKEMAKE

from lfa.evaluation.paper import TABLES
from lfa.pipeline.config import load_config, load_schema
from lfa.pipeline.estimate import estimate, format_estimate
from lfa.pipeline.plan import plan, train_settings

PAPER = REPO / "configs" / "paper.yaml"
LFA = str(Path(sys.executable).with_name("lfa"))
LOSSES = 5
FOLDS = 5


@pytest.fixture(scope="module")
def config():
    return load_config(PAPER)


def _per_table(config, experiment_jobs):
    counts = collections.Counter()
    for name, jobs in experiment_jobs.items():
        counts[config["experiments"][name].get("paper_table") or name] += len(jobs)
    return counts


def test_jobs_per_table(config):
    the_plan = plan(config)
    listed = _per_table(config, the_plan.experiments)
    assert listed["table2"] == 1 * LOSSES * FOLDS  # ResNet-50 on ImageNet_LT
    assert listed["table3"] == 3 * LOSSES * FOLDS  # DenseNet-121, ResNet-50, ResNet-50 from PGCon weights
    assert listed["table4"] == 3 * LOSSES * FOLDS  # AlexNet, BoTNet, ResNet-50 at 1:4
    assert listed["table5"] == 6 * LOSSES * FOLDS  # ResNet-50 at six ratios
    assert listed["cifar10"] == 1 * LOSSES * FOLDS  # the seed's ResNet-50
    assert listed["cifar10_32"] == listed["cifar10_lt"] == listed["cifar10_lt_32"] == listed["celeba"] == 25
    first = the_plan.trained_by()
    trained = _per_table(config, {name: [j for j in jobs if first[j.key] == name]
                                  for name, jobs in the_plan.experiments.items()})
    assert trained["table5"] == 5 * LOSSES * FOLDS  # its 1:4 block is Table 4's ResNet-50 block, trained once
    assert sum(trained.values()) == sum(listed.values()) - 25 == 425 == len(the_plan.jobs)


def test_table5_ratio_50_is_shared_with_table4(config):
    the_plan = plan(config)
    shared = [j for j in the_plan.experiments["table5"] if the_plan.trained_by()[j.key] != "table5"]
    assert len(shared) == LOSSES * FOLDS
    assert {j.dataset for j in shared} == {"idc_k50"} and {j.backbone for j in shared} == {"resnet50"}
    assert set(shared) <= set(the_plan.experiments["table4"])  # the very jobs, hence the very run folders
    assert {the_plan.trained_by()[j.key] for j in shared} == {"table4"}


def test_every_training_value_is_explicit(config):
    raw = yaml.safe_load(PAPER.read_text())
    train_keys = set(load_schema()["$defs"]["train"]["properties"])
    assert train_keys <= set(raw["train"]), sorted(train_keys - set(raw["train"]))
    s = train_settings(config, "table2")
    protocol = {"epochs": 20, "batch_size": 100, "optimizer": "adam", "lr": 1e-5, "betas": [0.9, 0.999],
                "weight_decay": 1e-3, "lr_step_epochs": 5, "lr_gamma": 0.87, "image_size": 256,
                "augment": ["rotate180"], "augment_eval": False, "pretrained": False}
    assert {k: s[k] for k in protocol} == protocol  # the seed's code
    text = PAPER.read_text()
    for key in protocol:
        line = next(li for li in text.splitlines() if li.strip().startswith(f"{key}:"))
        assert "#" in line and re.search(r"\[(seed|ours|readme|paper)\]", line), line  # each value says its source


def test_paper_blocks_are_all_covered(config):
    covered = collections.defaultdict(set)
    for exp in config["experiments"].values():
        table = exp.get("paper_table")
        if not table:
            continue
        labels = exp.get("block_labels", {})
        if TABLES[table]["block_kind"] == "ratio":
            ratios = exp.get("ratios", config["datasets"][exp["dataset"]]["subset"]["ratios"])
            covered[table] |= {str(k) for k in ratios}
        else:
            covered[table] |= {labels.get(b, b) for b in exp["backbones"]}
    for table in ("table2", "table3", "table4", "table5", "cifar10"):
        assert covered[table] == set(TABLES[table]["blocks"]), table


def test_pgcon_is_resnet50_with_initial_weights(config):
    exp = config["experiments"]["table3_pgcon"]
    assert exp["backbones"] == ["resnet50"] and exp["block_labels"] == {"resnet50": "pgcon"}
    assert train_settings(config, "table3_pgcon")["init"]
    assert train_settings(config, "table3")["init"] == ""


def test_estimate_counts_jobs_and_hours(config):
    rows = {r["experiment"]: r for r in estimate(config)}
    assert rows["table5"]["jobs"] == 150 and rows["table5"]["shared"] == 25
    assert all(r["gpu_hours"] > 0 for r in rows.values())
    assert rows["table2"]["gpu_hours"] > rows["table3"]["gpu_hours"]  # ImageNet_LT is the big one
    text = format_estimate(config, gpus=4)
    assert re.search(r"^total\s+450\s+425\s+\d+\.\d", text, re.M), text
    assert "wall-clock on 4 GPU(s)" in text
    assert "table5 (table5) uses 25 runs of table4 (table4)" in text


def test_backbones_without_measured_throughput_are_left_out_of_the_hours_and_said(config):
    """A timm model has no measured throughput: its jobs add no NaN to the hours, and the estimate says so."""
    import copy

    mixed = copy.deepcopy(config)
    mixed["experiments"]["table3"]["backbones"] = [*config["experiments"]["table3"]["backbones"], "timm:resnet18"]
    rows = {r["experiment"]: r for r in estimate(mixed)}
    before = {r["experiment"]: r for r in estimate(config)}
    assert rows["table3"]["gpu_hours"] == pytest.approx(before["table3"]["gpu_hours"])
    assert rows["table3"]["unmeasured"] == ["timm:resnet18"] and before["table3"]["unmeasured"] == []
    text = format_estimate(mixed)
    assert "nan" not in text and re.search(r"^total\s+\d+\s+\d+\s+\d+\.\d\+\?$", text, re.M), text
    assert "+?: no throughput measured for timm:resnet18" in text


@pytest.mark.slow
def test_lfa_estimate_command():
    out = subprocess.run([LFA, "estimate", "--configfile", str(PAPER)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for table in ("table2", "table3", "table4", "table5", "cifar10"):
        assert re.search(rf"^{table}\s", out.stdout, re.M)
    assert "NVIDIA H100" in out.stdout
    disk = re.search(r"^table2\s+([\d.]+)\s+([\d.]+)$", out.stdout.split("Disk (GB)")[1], re.M)
    assert disk and 30 < float(disk[1]) < 60  # about 43 GiB of Table 2 predictions, said before the run


@pytest.mark.slow
def test_dry_run_lists_every_job_without_data(tmp_path):
    t0 = time.time()
    proc = subprocess.run([SNAKEMAKE, "-n", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(PAPER), "--cores", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert counts["train"] == "425" and "train_shared" not in counts  # one rule trains, each job once
    assert counts["evaluate"] == "425"
    assert time.time() - t0 < 120
    # every job asks for the memory its data needs: Table 2's evaluate jobs 2.5x their score matrix and more
    from lfa.pipeline import resources
    from lfa.pipeline.config import load_config

    blocks = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\[|\Z)", proc.stdout, re.M | re.S)
    runs = [(rule, body) for rule, body in blocks if rule != "all"]  # rule all runs nothing
    assert runs and all("mem_mb=" in body for _, body in runs), [r for r, b in runs if "mem_mb=" not in b]
    config = load_config(PAPER)
    table2 = [int(re.search(r"mem_mb=(\d+)", body)[1]) for rule, body in blocks
              if rule == "evaluate" and "run=imagenet_lt/" in body]
    matrix = resources.score_matrix_mb(config, "imagenet_lt")
    assert matrix > 1000 and set(table2) == {resources.evaluate_mem_mb(config, "imagenet_lt")}
    assert table2[0] >= 2.5 * matrix
    assert all("disk_mb=" in body for rule, body in blocks if rule in ("train", "prepare_imagenet"))
