"""Planning the training jobs: which run (identical jobs once), and the GPU-hours they need.

Identical jobs
    Two jobs of different experiments are identical when they train the same backbone with the same loss,
    seed, fold, settings and loss hyper-parameters on the same prepared dataset: e.g. Table 5's 1:4 ratio
    (``idc_k50``, ResNet-50) is Table 4's ResNet-50 block. Only the first (in the config's order) trains;
    the others are *shared*: the rule ``train_shared`` links its outputs into their folders
    (:func:`share_outputs`), so every experiment still has its own ``results/runs/<experiment>/...``.

GPU-hours
    ``lfa estimate`` multiplies the images each job processes (training epochs, a validation pass per epoch,
    and the final validation and test predictions) by the throughput measured on a GPU
    (:data:`THROUGHPUT`, from ``benchmarks/gpu_check.sh``; ``benchmarks/RESULTS.md``). Dataset sizes come
    from the prepared ``meta.json`` where it exists, else from the published counts (:func:`dataset_size`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfa.config import Job, experiment_datasets, jobs, loss_params, split_prepared_name, train_settings

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
#: Measured ratio of the real training path (lfa.train.train: loader, augmentation, resizing) to the upper
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
}
#: ImageNet-LT's standard split lists (Liu et al., 2019), for ``split_lists`` configs without the files.
IMAGENET_LT_LISTS = {"train": 115846, "val": 20000, "test": 50000}


#: Train settings that change how fast a job runs, never what it computes: they are not part of a job's
#: identity (its resume fingerprint, the rule's params), so changing them neither retrains nor discards state.
RUNTIME_KEYS = ("threads", "loader_threads", "device_cache_gb", "augment_chunk_mb")


def result_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without :data:`RUNTIME_KEYS`, in key order (Snakemake compares params as text, so the order
    of the keys in a config file must not make a job look changed)."""
    return {k: settings[k] for k in sorted(settings) if k not in RUNTIME_KEYS}


# -------------------------------------------------------------------------------------------- shared jobs
def job_key(config: dict[str, Any], job: Job) -> str:
    """What makes two jobs identical: everything that shapes the result, except the experiment's name."""
    return json.dumps({"dataset": job.dataset, "backbone": job.backbone, "loss": job.loss, "seed": job.seed,
                       "fold": job.fold, "settings": result_settings(train_settings(config, job.experiment)),
                       "loss_params": loss_params(config, job.loss)}, sort_keys=True, default=str)


def shared_jobs(config: dict[str, Any]) -> dict[str, str]:
    """``{job path: path of the identical job that trains}`` for every job that does not train itself."""
    first: dict[str, str] = {}
    shared: dict[str, str] = {}
    for job in jobs(config):
        key = job_key(config, job)
        if key in first:
            shared[job.path] = first[key]
        else:
            first[key] = job.path
    return shared


def training_jobs(config: dict[str, Any]) -> list[Job]:
    """The jobs that train (each identical group once)."""
    shared = shared_jobs(config)
    return [job for job in jobs(config) if job.path not in shared]


OUTPUTS = ("model.pt", "train_log.csv", "train_info.json", "predictions.parquet")


def share_outputs(src_dir: str | Path, dst_dir: str | Path, log: str | Path | None = None) -> None:
    """Give a shared job the outputs of the identical job that trained (hard links, else copies).

    ``train_info.json`` records ``shared_from`` and counts no training time (``wall_seconds`` 0; the
    original's is kept as ``original_wall_seconds``), so compute totals count each training once.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "train_log.csv", "predictions.parquet"):
        target = dst_dir / name
        target.unlink(missing_ok=True)
        try:
            os.link(src_dir / name, target)
        except OSError:
            shutil.copy2(src_dir / name, target)
    info = json.loads((src_dir / "train_info.json").read_text())
    info["shared_from"] = str(src_dir)
    info["original_wall_seconds"] = info.get("wall_seconds", 0.0)
    info["wall_seconds"] = 0.0
    tmp = dst_dir / ".train_info.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, dst_dir / "train_info.json")
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh:
            print(f"shared: the outputs of {src_dir} (an identical job, trained once)", file=fh)


# -------------------------------------------------------------------------------------------- sizes
def _prepared_meta(config: dict[str, Any], prepared: str) -> dict[str, Any] | None:
    path = Path(config.get("data_dir", "data")) / "prepared" / prepared / "meta.json"
    if path.is_file():
        return json.loads(path.read_text())
    return None


def dataset_size(config: dict[str, Any], prepared: str) -> tuple[int, int, str]:
    """(images, packed side, where the number comes from) of a prepared dataset, with or without its data."""
    from lfa.reference import COUNT_TABLES
    from lfa.sources import REGISTRY

    meta = _prepared_meta(config, prepared)
    base, k = split_prepared_name(prepared)
    spec = config["datasets"].get(base) or config["datasets"][prepared]
    source = spec["source"]
    src = REGISTRY.get(source)
    side = int(spec.get("image_size", src.default_image_size if src else 0) or 0)
    if meta is not None:
        shape = meta.get("image_shape") or [side]
        return int(meta["n_samples"]), int(shape[0]), "meta.json"
    if not side:
        side = {"digits": 8, "cifar10": 32}.get(source, 0)
    sizes = SOURCE_SIZES.get(source, {})
    parts = spec.get("partitions") or (list(src.default_partitions) if src and src.default_partitions else None)
    if spec.get("split_lists"):
        total = sum(IMAGENET_LT_LISTS.get(p, 0) for p in (parts or spec["split_lists"]))
    else:
        total = sum(sizes.values()) if not parts else sum(sizes.get(p, 0) for p in parts)
    subset = spec.get("subset", {})
    kind = subset.get("kind", "all")
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
    job: Job
    images: int
    side: int
    input_side: int
    gpu_seconds: float
    shared: bool


def _rate(backbone: str, side: int) -> tuple[float, float] | None:
    if backbone not in THROUGHPUT:
        return None
    ref_side, train_ips, eval_ips = THROUGHPUT[backbone]
    scale = (ref_side / side) ** 2 if side else 1.0  # convolution cost grows with the pixels
    eff = PATH_EFFICIENCY["small" if backbone in SMALL_BACKBONES else "large"]
    return train_ips * scale * eff, eval_ips * scale * eff


def job_costs(config: dict[str, Any]) -> list[JobCost]:
    from lfa.models import input_size

    shared = shared_jobs(config)
    sizes: dict[str, tuple[int, int, str]] = {}
    out = []
    for job in jobs(config):
        if job.dataset not in sizes:
            sizes[job.dataset] = dataset_size(config, job.dataset)
        n, side, _ = sizes[job.dataset]
        s = train_settings(config, job.experiment)
        n_splits = int(config.get("n_splits", 5))
        try:
            in_side = input_size(job.backbone, int(s.get("image_size", 0)), side or 1)
        except ValueError:
            in_side = int(s.get("image_size", 0)) or side
        rate = _rate(job.backbone, in_side)
        epochs = int(s.get("epochs", 20))
        if rate is None or job.path in shared:
            seconds = 0.0 if job.path in shared else float("nan")
        else:
            train_n, val_n = n * (n_splits - 2) / n_splits, n / n_splits
            seconds = (epochs * (train_n / rate[0] + val_n / rate[1]) + 2 * val_n / rate[1]
                       + JOB_START_S + CHECKPOINT_S_PER_EPOCH * epochs)
        out.append(JobCost(job, n, side, in_side, seconds, job.path in shared))
    return out


def table_of(config: dict[str, Any], experiment: str) -> str:
    exp = config["experiments"][experiment]
    return exp.get("paper_table") or f"({experiment})"


def estimate(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per experiment: its table, jobs, shared jobs, images per job, input side and GPU-hours."""
    rows: dict[str, dict[str, Any]] = {}
    for cost in job_costs(config):
        exp = cost.job.experiment
        row = rows.setdefault(exp, {"table": table_of(config, exp), "experiment": exp, "jobs": 0, "shared": 0,
                                    "datasets": [], "backbones": [], "gpu_hours": 0.0})
        row["jobs"] += 1
        row["shared"] += int(cost.shared)
        if cost.job.dataset not in row["datasets"]:
            row["datasets"].append(cost.job.dataset)
        label = f"{cost.job.backbone}@{cost.input_side}"
        if label not in row["backbones"]:
            row["backbones"].append(label)
        row["gpu_hours"] += cost.gpu_seconds / 3600
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
    for table, trs in by_table.items():
        for r in trs:
            trained = r["jobs"] - r["shared"]
            lines.append(f"{table:16s} {r['experiment']:24s} {r['jobs']:5d} {trained:8d} {r['gpu_hours']:8.1f}  "
                         f"{r['backbones']} / {r['datasets']} ({r['images_per_job']})")
        jobs_t = sum(r["jobs"] for r in trs)
        trained_t = sum(r["jobs"] - r["shared"] for r in trs)
        hours_t = sum(r["gpu_hours"] for r in trs)
        if len(trs) > 1:
            lines.append(f"{table:16s} {'= table total':24s} {jobs_t:5d} {trained_t:8d} {hours_t:8.1f}")
        total_jobs += jobs_t
        total_trained += trained_t
        total_hours += hours_t
    lines += ["", f"{'total':16s} {'':24s} {total_jobs:5d} {total_trained:8d} {total_hours:8.1f}",
              f"wall-clock on {gpus} GPU(s) of that kind, one job per GPU: about {total_hours / max(gpus, 1):.1f} h"]
    shared = total_jobs - total_trained
    if shared:
        lines.append(f"{shared} jobs are identical to another experiment's and are trained once (shared).")
    return "\n".join(lines)
