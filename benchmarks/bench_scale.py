"""Benchmark: the paper's largest table at its real size, through the package's own writer, evaluator, aggregator
and report (Table 2: ImageNet-LT, 1,000 classes, 158,500 validation and 158,500 test rows per run, 25 runs).

Run from the repository root (writes about 3 GB under ``--dir``, removed at the end)::

    python benchmarks/bench_scale.py --dir /tmp                  # Table 2's size: about 10 minutes on 2 cores
    python benchmarks/bench_scale.py --dir /tmp --scale 0.05     # a twentieth of the rows and classes: a minute

Each step runs in a fresh process that reports its wall time and peak resident memory (``ru_maxrss``); a
baseline process that imports the step's modules and does nothing is measured before it, so every line prints
the peak, the peak above that baseline, and both as a ratio to the run's float32 score matrix (val + test rows ×
classes × 4 bytes):

- ``write``: one run's predictions.parquet (lfa.training.predict.write_predictions), against writing the same
  bytes as one raw file (the disk's own speed);
- ``evaluate``: what the evaluate rule runs (lfa.evaluation.evaluate.evaluate_run);
- ``aggregate``: 25 runs (5 losses × 5 folds) into results/*.parquet (lfa.pipeline.stages.aggregate_stage);
- ``report``: the report of that experiment (lfa.pipeline.stages.report_stage), its size on disk and its
  largest figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if not (REPO / "src" / "lfa").is_dir():
    raise SystemExit("run from a checkout of lfa-repro")
sys.path.insert(0, str(REPO / "src"))

LOSSES = ["asl", "bce", "ece", "fece", "focal"]
FOLDS = [0, 1, 2, 3, 4]


def sizes(scale: float) -> tuple[int, int]:
    """(validation = test rows, classes) at ``scale`` of Table 2."""
    return max(200, int(158_500 * scale)), max(10, int(1000 * scale))


def config(work: Path, classes: int) -> dict:
    from lfa.pipeline.config import validate_config

    raw = {"data_dir": str(work / "data"), "results_dir": str(work / "results"), "reports_dir": str(work / "reports"),
           "logs_dir": str(work / "logs"), "folds": FOLDS,
           "datasets": {"imagenet_lt": {"source": "digits"}},
           "experiments": {"table2": {"dataset": "imagenet_lt", "backbones": ["small_cnn"], "losses": LOSSES}}}
    return validate_config(raw)


def make_prepared(work: Path, rows: int, classes: int) -> None:
    """A prepared dataset of 5 × ``rows`` images in ``classes`` long-tailed classes (no pixels: the steps
    measured never read them), with its index, counts and meta.json."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 5 * rows
    weights = 1.0 / np.arange(1, classes + 1) ** 0.8
    target = rng.choice(classes, size=n, p=weights / weights.sum())
    folder = work / "data" / "prepared" / "imagenet_lt"
    folder.mkdir(parents=True)
    index = pd.DataFrame({"id": [f"img{i}" for i in range(n)], "row": np.arange(n), "fold": np.arange(n) % 5})
    labels = np.zeros((n, classes), dtype=np.int8, order="F")
    labels[np.arange(n), target] = 1
    index = pd.concat([index, pd.DataFrame({f"label_{c}": labels[:, c] for c in range(classes)})], axis=1)
    index["partition"] = "train"
    index.to_parquet(folder / "index.parquet", index=False)
    names = [f"class_{c:04d}" for c in range(classes)]
    pd.DataFrame({"class": range(classes), "name": names, "count": labels.sum(0)}).to_csv(folder / "counts.csv",
                                                                                         index=False)
    meta = {"name": "imagenet_lt", "source": "digits", "task": "single_label", "class_names": names,
            "image_shape": [128, 128, 3], "n_samples": n, "n_splits": 5, "split_seed": 0, "ratio_k": None,
            "subset": {"kind": "all"}}
    (folder / "meta.json").write_text(json.dumps(meta))
    np.save(folder / "images.npy", np.zeros((1, 1, 1, 3), dtype=np.uint8))


def step_write(work: Path, rows: int, classes: int) -> dict:
    """One run's predictions through the package's writer, and the same bytes written raw."""
    import pandas as pd
    import torch

    from lfa.data.datasets import Prepared, split_rows
    from lfa.training.predict import write_predictions

    index = pd.read_parquet(work / "data" / "prepared" / "imagenet_lt" / "index.parquet")  # as training holds it
    labels = index[[f"label_{c}" for c in range(classes)]].to_numpy(np.int8)
    prepared = Prepared(np.zeros((0,)), labels, index["fold"].to_numpy(), index["id"].to_numpy(str), {})
    data = prepared
    del index
    split = split_rows(prepared.folds, 0, 5)
    rng = np.random.default_rng(1)
    scores = {name: torch.from_numpy(rng.random((len(split[name]), classes), dtype=np.float32))
              for name in ("val", "test")}
    t0 = time.perf_counter()
    raw = work / "raw.bin"
    with open(raw, "wb") as fh:
        for name in ("val", "test"):
            fh.write(scores[name].numpy().tobytes())
            fh.write(prepared.labels[split[name]].tobytes())
    raw_s = time.perf_counter() - t0
    out = work / "run" / "predictions.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    held = current_mb()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak: measure the writer beyond its inputs
    t0 = time.perf_counter()
    write_predictions(out, data, split, scores, {"lfa.job_key": "bench", "lfa.data_hash": ""})
    return {"seconds": time.perf_counter() - t0, "raw_seconds": raw_s, "mb": round(out.stat().st_size / 2**20),
            "inputs_held_mb": round(held), "writer_extra_mb": round(peak_mb() - held)}


def step_evaluate(work: Path, rows: int, classes: int) -> dict:
    from lfa.evaluation.evaluate import evaluate_run

    run = work / "run"
    keys = {"dataset": "imagenet_lt", "backbone": "small_cnn", "loss": "fece", "seed": 0, "fold": 0}
    t0 = time.perf_counter()
    evaluate_run(run / "predictions.parquet", run / "metrics.parquet", keys=keys)
    return {"seconds": time.perf_counter() - t0}


def step_aggregate(work: Path, rows: int, classes: int) -> dict:
    """25 runs: the evaluated run's files under every job of the config, then the aggregate stage."""
    import pandas as pd

    from lfa.pipeline.plan import Layout, plan
    from lfa.pipeline.stages import aggregate_stage

    cfg = config(work, classes)
    layout = Layout.from_config(cfg)
    metrics = pd.read_parquet(work / "run" / "metrics.parquet")
    overall = pd.read_parquet(work / "run" / "overall.parquet")
    rng = np.random.default_rng(2)
    files = {}
    for name, jobs in plan(cfg).experiments.items():
        for job in jobs:
            folder = layout.run(job)
            folder.mkdir(parents=True, exist_ok=True)
            keys = {"loss": job.loss, "fold": job.fold, "backbone": job.backbone}
            m = metrics.assign(**keys, auc=np.clip(metrics["auc"] + rng.normal(0, 0.01, len(metrics)), 0, 1))
            m.to_parquet(folder / "metrics.parquet")
            overall.assign(**keys).to_parquet(folder / "overall.parquet")
            (folder / "train_info.json").write_text(json.dumps({"device_type": "cpu", "device": "cpu",
                                                                 "wall_seconds": 1.0}))
            pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.9], "val_loss": [1.0, 0.95]}).to_csv(
                folder / "train_log.csv", index=False)
            files.setdefault(name, []).append(folder / "metrics.parquet")
    t0 = time.perf_counter()
    aggregate_stage(cfg, files, layout.results)
    return {"seconds": time.perf_counter() - t0}


def step_report(work: Path, rows: int, classes: int) -> dict:
    from PIL import Image

    from lfa.pipeline.stages import report_stage

    cfg = config(work, classes)
    html = work / "reports" / "report.html"
    t0 = time.perf_counter()
    report_stage(cfg, ["bench.yaml"], html, figures_dir=work / "reports" / "figures")
    seconds = time.perf_counter() - t0
    tallest = max((Image.open(p).size for p in (work / "reports" / "figures").glob("*.png")), key=lambda s: s[1])
    return {"seconds": seconds, "html_mb": round(html.stat().st_size / 2**20, 2), "tallest_figure_px": list(tallest)}


STEPS = {"write": step_write, "evaluate": step_evaluate, "aggregate": step_aggregate, "report": step_report}
#: What each step's process imports before it does anything: its baseline.
IMPORTS = {"write": ["torch", "pandas", "lfa.training.predict"], "evaluate": ["lfa.evaluation.evaluate"],
           "aggregate": ["lfa.pipeline.stages", "lfa.evaluation.aggregate", "lfa.losses"],  # the config check: torch
           "report": ["lfa.pipeline.stages", "lfa.report", "lfa.losses", "PIL.Image"]}


def current_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM: reset by exec, unlike ``ru_maxrss``, which keeps the forking
    parent's)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def child(step: str, work: Path, scale: float) -> None:
    import importlib

    rows, classes = sizes(scale)
    if step.startswith("baseline_"):
        for module in IMPORTS[step.removeprefix("baseline_")]:
            importlib.import_module(module)
        out = {"seconds": 0.0}
    else:
        out = STEPS[step](work, rows, classes)
    out["peak_mb"] = peak_mb()
    print(json.dumps(out))


def measure(step: str, work: Path, scale: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", step, "--dir", str(work), "--scale", str(scale)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{step} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--child", choices=[*STEPS, *(f"baseline_{step}" for step in STEPS)])
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.dir), args.scale)
        return
    rows, classes = sizes(args.scale)
    work = Path(args.dir) / f"lfa_bench_scale_{rows}x{classes}"
    shutil.rmtree(work, ignore_errors=True)
    matrix_mb = 2 * rows * classes * 4 / 2**20
    print(f"{rows:,} validation + {rows:,} test rows x {classes:,} classes: float32 score matrix {matrix_mb:,.0f} MB")
    try:
        make_prepared(work, rows, classes)
        for step in STEPS:
            base = measure(f"baseline_{step}", work, args.scale)["peak_mb"]  # its imports alone
            out = measure(step, work, args.scale)
            above = out["peak_mb"] - base
            extra = {k: v for k, v in out.items() if k not in ("seconds", "peak_mb")}
            ratio = out["peak_mb"] / matrix_mb
            print(f"{step:10s} {out['seconds']:7.1f} s  peak {out['peak_mb']:8,.0f} MB ({ratio:.2f}x the score matrix; "
                  f"{above:,.0f} MB above the baseline, {above / matrix_mb:.2f}x)  {extra}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
