"""What each rule needs, from the sizes of its data: memory (``mem_mb``) and disk (``disk_mb``) for the scheduler.

Snakemake passes these to SLURM (``--mem``, ``--tmp``) and checks them against ``--resources mem_mb=…`` on a
workstation, so Table 2's evaluate jobs (1,000 classes × 158,500 test images) ask for the memory they take and
a small table's jobs do not block the machine. Sizes come from the prepared ``meta.json`` where it exists, else
from the published counts (:func:`lfa.pipeline.estimate.dataset_size`), so a dry run sees them too.

The numbers are measured bounds (``benchmarks/bench_scale.py``, ``benchmarks/RESULTS.md``): evaluation holds the
scores and labels as arrays (5 bytes per cell) plus a bounded working set, at most :data:`EVALUATE_FACTOR` × the
float32 score matrix; the aggregate and the report hold every run's per-class rows, a few hundred bytes each.
"""

from __future__ import annotations

import math
from typing import Any

from lfa.pipeline.estimate import dataset_size, prepared_meta
from lfa.pipeline.plan import Plan, plan, split_prepared_name

MB = 2**20
#: Memory of a Python process with numpy, pandas and pyarrow loaded (MB), the floor of every rule.
PROCESS_MB = 600
#: Evaluation's peak over the float32 score matrix of a run's val and test rows (measured: bench_scale.py).
EVALUATE_FACTOR = 2.5
#: Bytes per cell of predictions.parquet on disk (float32 score + int8 label; random scores barely compress).
PREDICTION_CELL_BYTES = 5
#: Bytes per per-class row of results/metrics.parquet while the aggregate and the report work on it.
ROW_BYTES = 4000
#: Classes of the paper's sources, for sizes before the data is prepared.
SOURCE_CLASSES = {"digits": 10, "cifar10": 10, "imagenet": 1000, "idc": 2, "cadcap": 3, "celeba": 40, "ham10000": 7,
                  "isic2019": 8, "chexpert": 14, "chestxray14": 14}


def n_classes(config: dict[str, Any], prepared: str) -> int:
    """Classes of a prepared dataset: its meta.json, else what its subset or source says (0: not known yet)."""
    from lfa.data.reference import COUNT_TABLES

    meta = prepared_meta(config, prepared)
    if meta is not None:
        return len(meta["class_names"])
    base, _ = split_prepared_name(prepared)
    spec = config["datasets"].get(base) or config["datasets"][prepared]
    subset = spec["subset"]
    if subset["kind"] == "binary_ratio":
        return 2
    if subset.get("reference") in COUNT_TABLES:
        return len(COUNT_TABLES[subset["reference"]])
    return SOURCE_CLASSES.get(spec["source"], 0)


def evaluated_rows(config: dict[str, Any], prepared: str) -> int:
    """Validation and test rows of one run: two folds of the rotation, or, with a fixed test split (its size from
    meta.json), one fold of the rest and the test split."""
    images, _, _ = dataset_size(config, prepared)
    meta = prepared_meta(config, prepared) or {}
    test = int((meta.get("test_split") or {}).get("images", 0))
    if test:
        return math.ceil((images - test) / int(config["n_splits"])) + test
    return math.ceil(2 * images / int(config["n_splits"]))


def score_matrix_mb(config: dict[str, Any], prepared: str) -> float:
    """The float32 scores of a run's validation and test rows, in MB."""
    return evaluated_rows(config, prepared) * max(n_classes(config, prepared), 1) * 4 / MB


def predictions_mb(config: dict[str, Any], prepared: str) -> float:
    """One run's predictions.parquet on disk (MB): scores, labels and ids."""
    rows = evaluated_rows(config, prepared)
    return rows * (max(n_classes(config, prepared), 1) * PREDICTION_CELL_BYTES + 40) / MB


def packed_mb(config: dict[str, Any], prepared: str) -> float:
    """A prepared dataset's images.npy (MB): images × side² × 3 channels (the user's grayscale sets pack 1)."""
    images, side, _ = dataset_size(config, prepared)
    return images * max(side, 1) ** 2 * 3 / MB


def evaluate_mem_mb(config: dict[str, Any], prepared: str) -> int:
    return int(PROCESS_MB + EVALUATE_FACTOR * score_matrix_mb(config, prepared))


def train_disk_mb(config: dict[str, Any], prepared: str) -> int:
    """A run folder: predictions, the model and two resume states of it (a ResNet-50: about 100 MB each)."""
    return int(predictions_mb(config, prepared) + 400)


def prepare_mem_mb(config: dict[str, Any], prepared: str) -> int:
    """Decoding threads and the packer's memory map stay small; a source decoded in memory first (digits,
    CIFAR-10: :attr:`lfa.sources.Source.loads_in_memory`) holds its images twice."""
    from lfa.sources import get_source

    base, _ = split_prepared_name(prepared)
    spec = config["datasets"].get(base) or config["datasets"][prepared]
    in_memory = get_source(spec["source"]).loads_in_memory
    return int(2000 + (2 * packed_mb(config, prepared) if in_memory else 0))


def prepare_disk_mb(config: dict[str, Any], prepared: str) -> int:
    """The packed images, twice while corrupt files are compacted away."""
    return int(2 * packed_mb(config, prepared) + 10)


def results_rows(config: dict[str, Any], the_plan: Plan | None = None) -> int:
    """Per-class rows the aggregate and the report hold: every experiment's runs × their classes."""
    the_plan = the_plan or plan(config)
    classes = {name: max(n_classes(config, name), 1) for name in {j.dataset for j in the_plan.jobs}}
    return sum(classes[job.dataset] for jobs in the_plan.experiments.values() for job in jobs)


def aggregate_mem_mb(config: dict[str, Any], the_plan: Plan | None = None) -> int:
    return int(PROCESS_MB + 200 + results_rows(config, the_plan) * ROW_BYTES / MB)


def report_mem_mb(config: dict[str, Any], the_plan: Plan | None = None) -> int:
    return int(PROCESS_MB + 700 + 2 * results_rows(config, the_plan) * ROW_BYTES / MB)


def disk_by_table(config: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per table (``lfa estimate``'s grouping): the GB of predictions its trained jobs write and of the packed
    datasets it reads (a dataset two tables share counts for the first)."""
    from lfa.pipeline.estimate import job_costs, table_of

    out: dict[str, dict[str, float]] = {}
    packed_seen: set[str] = set()
    for cost in job_costs(config):
        row = out.setdefault(table_of(config, cost.experiment), {"predictions_gb": 0.0, "packed_gb": 0.0})
        if not cost.shared:
            row["predictions_gb"] += predictions_mb(config, cost.job.dataset) / 1024
        if cost.job.dataset not in packed_seen:
            packed_seen.add(cost.job.dataset)
            row["packed_gb"] += packed_mb(config, cost.job.dataset) / 1024
    return out


def format_disk(config: dict[str, Any]) -> str:
    """``lfa estimate``'s disk lines: per table, the predictions its jobs write and the packed data it reads."""
    rows = disk_by_table(config)
    lines = ["", "Disk (GB): predictions.parquet of the jobs trained, packed images.npy of the datasets read",
             f"{'table':16s} {'predictions':>12s} {'packed data':>12s}"]
    for table, row in rows.items():
        lines.append(f"{table:16s} {row['predictions_gb']:12.1f} {row['packed_gb']:12.1f}")
    total_p, total_d = (sum(r[k] for r in rows.values()) for k in ("predictions_gb", "packed_gb"))
    lines.append(f"{'total':16s} {total_p:12.1f} {total_d:12.1f}   ({total_p + total_d:.1f} GB, before models and "
                 "resume states: about 0.3 GB per ResNet-50 run)")
    return "\n".join(lines)
