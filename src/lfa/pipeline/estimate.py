"""Planning the training jobs: which run (identical jobs once), and the GPU-hours they need.

Shared jobs
    Two experiments that run the same job (:class:`lfa.pipeline.plan.Job`: same prepared dataset, backbone, loss,
    seed, fold, settings and loss hyper-parameters; e.g. Table 5's 1:4 ratio, ``idc_k50`` with ResNet-50, is
    Table 4's ResNet-50 block) use one run folder; its GPU-hours are counted for the first experiment (in the
    config's order) that runs it, and the later ones list it as *shared*.

GPU-hours
    ``lfa estimate`` multiplies the images each job processes (training epochs, a validation pass per epoch,
    and the final validation and test predictions) by the throughput measured on a GPU
    (:data:`THROUGHPUT`, from ``benchmarks/gpu_check.sh``; ``benchmarks/RESULTS.md``). Dataset sizes come
    from the prepared ``meta.json`` where it exists, else from the published counts (:func:`dataset_size`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lfa.io import read_json
from lfa.pipeline.plan import Job, Layout, experiment_datasets, plan, split_prepared_name

#: Where the throughput was measured (benchmarks/RESULTS.md, benchmarks/gpu_check.sh).
CARD = "NVIDIA H100 80GB HBM3 (torch 2.11, bf16 autocast, channels_last, batch 100)"

#: backbone: (input side measured, training images/s, inference images/s) of a bare step on data already on
#: the GPU (the upper bound), measured by ``benchmarks/bench_train.py gpu`` on :data:`CARD`.
THROUGHPUT: dict[str, tuple[int, float, float]] = {
    "resnet50": (256, 2793, 9107),
    "densenet121": (256, 1710, 5737),
    "alexnet": (256, 16688, 55603),
    "botnet": (256, 3135, 9791),
    "cifar_resnet": (32, 12969, 51346),
    "cifar_resnet20": (32, 10796, 30267),
    "small_cnn": (8, 28918, 134146),
}
#: Measured ratio of the real training path (lfa.training.train.train: loader, augmentation, resizing) to the upper
#: bound: ResNet-50 at 224, 0.93 device-resident and 0.97 streamed; the CIFAR ResNet at 32, 7468 images/s,
#: 0.78 of the bare step measured beside it (9617) and 0.58 of the one in this table (12969): the lower is used.
PATH_EFFICIENCY = {"large": 0.93, "small": 0.58}
SMALL_BACKBONES = {"cifar_resnet", "cifar_resnet20", "small_cnn"}
#: Per job: start-up (imports, CUDA, loading the packed data) plus the two checkpoints written every epoch.
JOB_START_S = 30.0
CHECKPOINT_S_PER_EPOCH = 1.0

#: Published sizes (images) of the raw datasets by source and official partition.
SOURCE_SIZES: dict[str, dict[str, int]] = {
    "digits": {"all": 1797},
    "cifar10": {"train": 50000, "test": 10000},
    "imagenet": {"train": 1281167, "val": 50000},
    "idc": {"all": 277524},
    "cadcap": {"all": 1812},
    "celeba": {"train": 162770, "valid": 19867, "test": 19962},
    "ham10000": {"all": 10015},
    "isic2019": {"all": 25331},
    "chexpert": {"all": 223414},  # train.csv (valid.csv's 234 are the official test split)
    "chestxray14": {"all": 112120},
}
#: ImageNet-LT's standard split lists (Liu et al., 2019), for ``split_lists`` configs without the files.
IMAGENET_LT_LISTS = {"train": 115846, "val": 20000, "test": 50000}


# -------------------------------------------------------------------------------------------- sizes
def prepared_meta(config: dict[str, Any], prepared: str) -> dict[str, Any] | None:
    """A prepared dataset's meta.json, or None before it is prepared (sizes then come from published counts)."""
    path = Layout.from_config(config).prepared_file(prepared, "meta.json")
    if path.is_file():
        return read_json(path, f"delete {path.parent} and rerun, to prepare it again")
    return None


def dataset_size(config: dict[str, Any], prepared: str) -> tuple[int, int, str]:
    """(images, packed side, where the number comes from) of a prepared dataset, with or without its data."""
    from lfa.data.reference import COUNT_TABLES
    from lfa.sources import get_source

    meta = prepared_meta(config, prepared)
    base, k = split_prepared_name(prepared)
    spec = config["datasets"].get(base) or config["datasets"][prepared]
    source = spec["source"]
    src = get_source(source)
    side = int(spec.get("image_size", src.default_image_size) or 0)
    if meta is not None:
        shape = meta.get("image_shape") or [side]
        return int(meta["n_samples"]), int(shape[0]), "meta.json"
    if not side:
        side = {"digits": 8, "cifar10": 32}.get(source, 0)
    sizes = SOURCE_SIZES.get(source, {})
    parts = spec.get("partitions") or (list(src.default_partitions) if src.default_partitions else None)
    if spec.get("split_lists"):
        total = sum(IMAGENET_LT_LISTS.get(p, 0) for p in (parts or spec["split_lists"]))
    else:
        total = sum(sizes.values()) if not parts else sum(sizes.get(p, 0) for p in parts)
    subset = spec["subset"]
    kind = subset["kind"]
    if kind == "counts" and subset.get("reference") in COUNT_TABLES:
        return sum(COUNT_TABLES[subset["reference"]].values()), side, f"reference {subset['reference']}"
    if kind == "long_tail" and subset.get("reference") in COUNT_TABLES:
        ref = list(COUNT_TABLES[subset["reference"]].values())
        return int(total * sum(ref) / (max(ref) * len(ref))), side, f"long tail of {subset['reference']}"
    if kind == "binary_ratio" and k is not None:
        unit = subset.get("unit")
        if not unit:
            if source == "idc":
                neg, pos = COUNT_TABLES["idc_full"].values()
            else:
                neg, pos = total * 0.9, total * 0.1
            unit = int(min(neg // 200, pos // max(subset["ratios"])))
        return int(200 * unit + k * unit), side, "ratio subset"
    return int(total), side, "published counts"


# -------------------------------------------------------------------------------------------- hours
@dataclass
class JobCost:
    experiment: str
    job: Job
    images: int
    side: int
    input_side: int
    gpu_seconds: float  # 0 for a job an earlier experiment trains (shared)
    trained_by: str  # the experiment that trains it (this one, unless shared)

    @property
    def shared(self) -> bool:
        return self.trained_by != self.experiment


def _rate(backbone: str, side: int) -> tuple[float, float] | None:
    if backbone not in THROUGHPUT:
        return None
    ref_side, train_ips, eval_ips = THROUGHPUT[backbone]
    scale = (ref_side / side) ** 2 if side else 1.0  # convolution cost grows with the pixels
    eff = PATH_EFFICIENCY["small" if backbone in SMALL_BACKBONES else "large"]
    return train_ips * scale * eff, eval_ips * scale * eff


def _job_seconds(config: dict[str, Any], job: Job, n: int, side: int) -> tuple[int, float]:
    """(input side, estimated GPU seconds) of one job on ``n`` images of side ``side``."""
    from lfa.models import input_size

    try:
        in_side = input_size(job.backbone, int(job.settings["image_size"]), side or 1)
    except ValueError:
        in_side = int(job.settings["image_size"]) or side
    rate = _rate(job.backbone, in_side)
    if rate is None:
        return in_side, float("nan")
    epochs, n_splits = int(job.settings["epochs"]), int(config["n_splits"])
    train_n, val_n = n * (n_splits - 2) / n_splits, n / n_splits
    return in_side, (epochs * (train_n / rate[0] + val_n / rate[1]) + 2 * val_n / rate[1]
                     + JOB_START_S + CHECKPOINT_S_PER_EPOCH * epochs)


def job_costs(config: dict[str, Any]) -> list[JobCost]:
    """One row per (experiment, job); a job shared with an earlier experiment costs nothing there."""
    the_plan = plan(config)
    first = the_plan.trained_by()
    sizes: dict[str, tuple[int, int, str]] = {}
    out = []
    for experiment, jobs in the_plan.experiments.items():
        for job in jobs:
            if job.dataset not in sizes:
                sizes[job.dataset] = dataset_size(config, job.dataset)
            n, side, _ = sizes[job.dataset]
            in_side, seconds = _job_seconds(config, job, n, side)
            shared = first[job.key] != experiment
            out.append(JobCost(experiment, job, n, side, in_side, 0.0 if shared else seconds, first[job.key]))
    return out


def job_seconds(config: dict[str, Any]) -> dict[str, float]:
    """``{job.path: estimated GPU seconds}`` of every job of the config (NaN: no measured throughput)."""
    return {c.job.path: c.gpu_seconds for c in job_costs(config) if not c.shared}


def table_of(config: dict[str, Any], experiment: str) -> str:
    exp = config["experiments"][experiment]
    return exp.get("paper_table") or f"({experiment})"


def estimate(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per experiment: its table, jobs, shared jobs, images per job, input side and GPU-hours."""
    rows: dict[str, dict[str, Any]] = {}
    for cost in job_costs(config):
        exp = cost.experiment
        row = rows.setdefault(exp, {"table": table_of(config, exp), "experiment": exp, "jobs": 0, "shared": 0,
                                    "shares_with": {}, "datasets": [], "backbones": [], "gpu_hours": 0.0,
                                    "unmeasured": []})
        row["jobs"] += 1
        row["shared"] += int(cost.shared)
        if cost.shared:
            row["shares_with"][cost.trained_by] = row["shares_with"].get(cost.trained_by, 0) + 1
        if cost.job.dataset not in row["datasets"]:
            row["datasets"].append(cost.job.dataset)
        label = f"{cost.job.backbone}@{cost.input_side}"
        if label not in row["backbones"]:
            row["backbones"].append(label)
        if math.isfinite(cost.gpu_seconds):
            row["gpu_hours"] += cost.gpu_seconds / 3600
        elif cost.job.backbone not in row["unmeasured"]:  # no measured throughput: left out of the hours
            row["unmeasured"].append(cost.job.backbone)
    for exp, row in rows.items():
        row["datasets"] = ", ".join(row["datasets"]) if len(row["datasets"]) < 3 else (
            f"{row['datasets'][0]} … ({len(row['datasets'])} ratios)")
        row["backbones"] = ", ".join(row["backbones"])
        row["images_per_job"] = ", ".join(sorted({f"{dataset_size(config, d)[0]:,}"
                                                  for d in experiment_datasets(config, exp)}))
    return list(rows.values())


def format_estimate(config: dict[str, Any], gpus: int = 1) -> str:
    rows = estimate(config)
    lines = [f"GPU-hours from throughput measured on {CARD};",
             "each job: its epochs over the training split, a validation pass per epoch, final val+test predictions.",
             "",
             f"{'table':16s} {'experiment':24s} {'jobs':>5s} {'trained':>8s} {'GPU-h':>8s}  "
             "backbones / dataset (images)"]
    by_table: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_table.setdefault(row["table"], []).append(row)
    total_jobs = total_trained = 0
    total_hours = 0.0
    unmeasured = sorted({b for r in rows for b in r["unmeasured"]})
    plus = "+?" if unmeasured else ""
    for table, trs in by_table.items():
        for r in trs:
            trained = r["jobs"] - r["shared"]
            hours = f"{r['gpu_hours']:.1f}{'+?' if r['unmeasured'] else ''}"
            lines.append(f"{table:16s} {r['experiment']:24s} {r['jobs']:5d} {trained:8d} {hours:>8s}  "
                         f"{r['backbones']} / {r['datasets']} ({r['images_per_job']})")
        jobs_t = sum(r["jobs"] for r in trs)
        trained_t = sum(r["jobs"] - r["shared"] for r in trs)
        hours_t = sum(r["gpu_hours"] for r in trs)
        if len(trs) > 1:
            lines.append(f"{table:16s} {'= table total':24s} {jobs_t:5d} {trained_t:8d} {hours_t:8.1f}")
        total_jobs += jobs_t
        total_trained += trained_t
        total_hours += hours_t
    lines += ["", f"{'total':16s} {'':24s} {total_jobs:5d} {total_trained:8d} {f'{total_hours:.1f}{plus}':>8s}",
              f"wall-clock on {gpus} GPU(s) of that kind, one job per GPU: "
              f"about {total_hours / max(gpus, 1):.1f} h{plus}"]
    if unmeasured:
        lines.append(f"+?: no throughput measured for {', '.join(unmeasured)}; their jobs are left out of the hours "
                     "(and get a 24 h time limit under SLURM); benchmarks/gpu_check.sh measures one")
    shared = total_jobs - total_trained
    if shared:
        lines.append(f"{shared} jobs are identical to another experiment's and are trained once (shared):")
        for r in rows:
            for other, n in r["shares_with"].items():
                lines.append(f"  {r['experiment']} ({r['table']}) uses {n} runs of {other} ({table_of(config, other)})")
    return "\n".join(lines)
