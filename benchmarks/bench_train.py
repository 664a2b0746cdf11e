"""Training throughput: this package's loop (``lfa.training.train.train``) against a loop written the seed's way.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_train.py cpu              # 2-core CPU, digits (about 2-3 min)
    PYTHONPATH=src python benchmarks/bench_train.py cpu --quick      # seconds (a smoke test)
    PYTHONPATH=src python benchmarks/bench_train.py overhead         # ours / bare step, small steps (about 1 min)
    PYTHONPATH=src python benchmarks/bench_train.py gpu --out DIR    # on a GPU machine (benchmarks/gpu_check.sh)

Both loops train the same model on the same images with the same loss, batch size and augmentation
(resize, then a random rotation in [-180, 180] degrees). They differ in how the seed's code does things:

- **seed-style**: a ``torch.utils.data.DataLoader`` over a Dataset that turns each image into a PIL image and
  applies ``Resize`` and ``RandomRotation(180)`` per image, then ``ToTensor``; outputs cast to float64 and the
  loss computed in float64; ``loss.item()`` and the sigmoid outputs copied to NumPy at every step; and
  ``gc.collect()`` after every step.
- **ours**: :func:`lfa.training.train.train` itself (the packed uint8 images on the device, batched resize and
  rotation there, bf16 autocast and channels_last on a GPU, no per-step host synchronisation), timed by the
  ``train_seconds`` it records per epoch (validation and checkpoints excluded, as for the seed-style loop).

``cpu`` prints images/s of each under several thread settings (on a 2-core machine torch's default of 2
threads can be slower than 1 for small convolutions, and DataLoader workers compete with them) and the ratio
ours / seed-style, where each side gets its *best* setting; it exits 1 if the ratio is below ``--min-ratio``
(default 3). ``gpu`` measures, per backbone at the paper's input sizes, a training step on synthetic data
already on the GPU (an upper bound), the real path through ``train`` (device-resident and streamed data), the
ratio real / upper bound, the seed-style loop, and peak GPU memory; it writes ``gpu_check.json`` and a
Markdown summary to ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lfa.data.batches import chunk_steps
from lfa.losses import build_loss
from lfa.models import build_model


# ------------------------------------------------------------------------------------------------ data
def write_prepared(out: Path, images: np.ndarray, labels: np.ndarray, n_splits: int = 5, seed: int = 0) -> Path:
    """A prepared-dataset folder (the layout ``lfa.data.datasets.load_prepared`` reads) from arrays."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", images)
    rng = np.random.default_rng(seed)
    n, c = labels.shape
    index = pd.DataFrame({"id": [f"img{i}" for i in range(n)], "row": np.arange(n),
                          "fold": rng.permutation(np.arange(n) % n_splits), "partition": "all"})
    for k in range(c):
        index[f"label_{k}"] = labels[:, k].astype(np.int8)
    index.to_parquet(out / "index.parquet", index=False)
    meta = {"name": out.name, "source": "synthetic", "task": "single_label", "class_names": [str(k) for k in range(c)],
            "image_shape": list(images.shape[1:]), "n_samples": n, "n_splits": n_splits}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def synthetic(n: int, side: int, channels: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images with one-hot labels (throughput does not depend on the pixel values)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, side, side, channels), dtype=np.uint8)
    labels = np.eye(n_classes, dtype=np.int8)[rng.integers(0, n_classes, size=n)]
    return images, labels


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (the offline demo's data) as uint8 (N, 8, 8, 1) and one-hot labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]
    return images, np.eye(10, dtype=np.int8)[d.target]


# ------------------------------------------------------------------------------------------------ loops
def run_ours(prepared: Path, backbone: str, settings: dict[str, Any], work: Path, loss: str = "bce") -> dict[str, Any]:
    """``lfa.training.train.train`` on ``prepared``; images/s over the training steps of the epochs after the first."""
    from lfa.pipeline.plan import Job
    from lfa.training.train import train

    job = Job.build(prepared.name, backbone, loss, 0, 0, protocol(**settings))
    tag = f"{backbone}_{time.time_ns()}"
    info = train(job, prepared, work / tag / "out", work / tag / "state", show_progress=False)
    return {"images_per_s": info["steady_images_per_s"], "data_path": info["data_path"],
            "peak_gpu_memory_gb": info.get("peak_gpu_memory_gb")}


class _PilDataset(torch.utils.data.Dataset):
    """The seed's way: one PIL image per item, torchvision transforms per image."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int) -> None:
        from torchvision import transforms

        self.images, self.labels = images, labels.astype(np.float32)
        self.transform = transforms.Compose([transforms.Resize((size, size)), transforms.RandomRotation(180),
                                             transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        img = self.images[i]
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.transform(pil), torch.from_numpy(self.labels[i])


def run_seed_style(images: np.ndarray, labels: np.ndarray, backbone: str, size: int, batch_size: int,
                   device: torch.device, workers: int, steps: int, warmup: int, loss: str = "bce") -> dict[str, Any]:
    """Images/s of the seed-style loop over ``steps`` steps after ``warmup`` (epochs repeat as needed)."""
    torch.manual_seed(0)
    model = build_model(backbone, labels.shape[1], images.shape[-1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.9, 0.999), weight_decay=1e-3)
    loss_fn = build_loss(loss)
    loader = torch.utils.data.DataLoader(_PilDataset(images, labels, size), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True)
    model.train()
    done, t0, seen = 0, None, 0
    outputs, running = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                t0, seen = time.perf_counter(), 0
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            out = model(x).double()
            loss_value = loss_fn(out, y.double())
            loss_value.backward()
            opt.step()
            running.append(loss_value.item())
            outputs.append(torch.sigmoid(out).detach().cpu().numpy())
            gc.collect()
            seen += len(x)
            done += 1
            if done >= warmup + steps:
                break
    elapsed = time.perf_counter() - t0
    res = {"images_per_s": seen / elapsed}
    if device.type == "cuda":
        res["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return res


def bare_step(backbone: str, size: int, batch_size: int, n_classes: int, channels: int,
              device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, Any]:
    """A model, one fixed random batch on ``device`` and a function doing one training step on it.

    The step is ours without the data path: bf16 autocast where supported, channels_last, BCE, the fused
    optimizer :func:`lfa.training.train.make_optimizer` builds.
    """
    from lfa.pipeline.plan import TrainSettings
    from lfa.training.train import make_optimizer

    torch.manual_seed(0)
    model = build_model(backbone, n_classes, channels).to(device).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, TrainSettings.from_mapping(protocol()))
    loss_fn = build_loss("bce")
    x = torch.rand(batch_size, channels, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch_size, n_classes, device=device) < 0.1).float()
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return model, x, step


def upper_bound(backbone: str, size: int, batch_size: int, n_classes: int, device: torch.device,
                steps: int, warmup: int, channels: int = 3, min_seconds: float = 0.0) -> dict[str, Any]:
    """A bare training step and a bare forward pass on random data already on the device, at full speed.

    Timed over ``steps`` steps, repeated until at least ``min_seconds`` have passed (a few hundred
    milliseconds of a small model's steps are too few for a stable number on a GPU). The backend flags are
    those :func:`lfa.training.train.train` sets (cudnn.benchmark, TF32), so both sides run under the same ones.
    """
    torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model, x, step = bare_step(backbone, size, batch_size, n_classes, channels, device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def timed(fn, n: int) -> float:
        for _ in range(warmup):
            fn()
        _sync(device)
        t0, done = time.perf_counter(), 0
        while done == 0 or time.perf_counter() - t0 < min_seconds:
            for _ in range(n):
                fn()
            done += n
            _sync(device)
        return batch_size * done / (time.perf_counter() - t0)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    train_ips = timed(step, steps)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    model.eval()

    @torch.no_grad()
    def forward() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    eval_ips = timed(forward, steps)
    return {"train_images_per_s": train_ips, "eval_images_per_s": eval_ips, "peak_gpu_memory_gb": peak}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def protocol(**overrides: Any) -> dict[str, Any]:
    """The paper config's training settings (configs/paper.yaml), with ``overrides``."""
    from lfa.pipeline.config import train_defaults

    return {**train_defaults(), "epochs": 3, "augment": ["rotate180"], **overrides}


# ------------------------------------------------------------------------------------------------ cpu
def cmd_cpu(args: argparse.Namespace) -> int:
    images, labels = digits()
    if args.quick:
        images, labels = images[:600], labels[:600]
    bs = args.batch_size
    epochs = 2 if args.quick else args.epochs
    steps = 3 if args.quick else args.seed_steps
    sizes = [int(v) for v in args.sizes.split(",")]
    rows = []
    print(f"backbone {args.backbone}, {len(images)} digits (8x8), batch {bs}, rotate180, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = write_prepared(work / "digits_bench", images, labels)
        for size in sizes:
            torch.set_num_threads(1)
            ub = upper_bound(args.backbone, size, bs, labels.shape[1], torch.device("cpu"), steps, 2, channels=1,
                             min_seconds=0 if args.quick else 2.0)
            rows.append({"size": size, "loop": "upper bound", "threads": 1, "workers": 0,
                         "images_per_s": ub["train_images_per_s"]})
            print(f"{size:3d}x{size:<3d} upper bound  threads=1            {ub['train_images_per_s']:8.0f} images/s",
                  flush=True)
            for threads in (1, 2):
                s = protocol(epochs=epochs, batch_size=bs, image_size=size if size != 8 else 0, device="cpu",
                             threads=threads)
                res = run_ours(prepared, args.backbone, s, work)
                rows.append({"size": size, "loop": "ours", "threads": threads, "workers": 0, **res})
                print(f"{size:3d}x{size:<3d} ours         threads={threads}            "
                      f"{res['images_per_s']:8.0f} images/s", flush=True)
            for threads in (1, 2):
                for workers in (0, 1):
                    torch.set_num_threads(threads)
                    res = run_seed_style(images, labels, args.backbone, size, bs, torch.device("cpu"), workers,
                                         steps, warmup=2)
                    rows.append({"size": size, "loop": "seed-style", "threads": threads, "workers": workers, **res})
                    print(f"{size:3d}x{size:<3d} seed-style   threads={threads} workers={workers}  "
                          f"{res['images_per_s']:8.0f} images/s", flush=True)
    df = pd.DataFrame(rows)
    ratios = {}
    print()
    for size in sizes:
        d = df[df["size"] == size]
        best_ours = d[d.loop == "ours"].images_per_s.max()
        best_seed = d[d.loop == "seed-style"].images_per_s.max()
        default_seed = d[(d.loop == "seed-style") & (d.threads == 2) & (d.workers == 0)].images_per_s.max()
        bound = d[d.loop == "upper bound"].images_per_s.max()
        ratios[size] = best_ours / best_seed
        print(f"{size}x{size}: ours {best_ours:.0f} images/s ({best_ours / bound:.2f} of the bare step's {bound:.0f}); "
              f"seed-style {best_seed:.0f} at its best setting (torch's default 2 threads, no workers: "
              f"{default_seed:.0f}); ratio ours / seed-style {ratios[size]:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=2))
    checked = sizes[0]
    if not args.quick and ratios[checked] < args.min_ratio:
        print(f"FAIL: ratio at {checked}x{checked} is {ratios[checked]:.2f} < {args.min_ratio}", file=sys.stderr)
        return 1
    print(f"ratio at {checked}x{checked} (the CPU demo's input; checked >= {args.min_ratio}): {ratios[checked]:.2f}x")
    return 0


# ------------------------------------------------------------------------------------------------ overhead
def ops_per_step(backbone: str, side: int, channels: int, batch_size: int, augment: list[str],
                 n_images: int = 2000) -> dict[str, float]:
    """Operations dispatched per training step (each one kernel launch, or more, on a GPU), counted on a CPU.

    ``model``: a bare step (forward, loss, backward, optimizer); ``data, one step at a time`` and ``data,
    chunked``: our data path (gather, uint8 to float, augmentation, layout) per step, as
    :func:`lfa.training.train.train` runs it. A job whose step is bound by launches slows down by about the ratio
    (model + data) / model.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    from lfa.data.augment import slice_augment
    from lfa.data.batches import Batcher, DeviceData

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    _, _, step = bare_step(backbone, side, batch_size, 10, channels, torch.device("cpu"))
    step()  # the optimizer's state exists from the second step on
    with Count() as count:
        step()
    out = {"model": float(count.n)}
    images, labels = synthetic(n_images, side, channels, 10)
    data = DeviceData(images, labels, torch.device("cpu"))
    batcher = Batcher(0, augment, channels_last=True)
    order = np.random.default_rng(0).permutation(n_images)
    n_steps = n_images // batch_size
    params = batcher.draw(n_images, side, torch.Generator().manual_seed(0))
    chunked = chunk_steps(protocol()["augment_chunk_mb"], batch_size, channels, side)
    for name, k in (("data, one step at a time", 1), ("data, chunked", chunked)):
        with Count() as count:
            done = 0
            for chunk, y_chunk in data.batches(order, batch_size, 0, n_steps, k):
                batcher(chunk, slice_augment(params, done, done + len(y_chunk)))
                done += len(y_chunk)
        out[name] = count.n / n_steps
    return out


def cmd_overhead(args: argparse.Namespace) -> int:
    """What the real path costs on top of the bare step, where a step is small (the launch-bound regime).

    On one thread, ``repeats`` times in turn: the bare step (a fixed batch already in memory, same model,
    loss and fused optimizer) and ``lfa.training.train.train`` with its batches prepared in chunks (the default) and
    one step at a time (``augment_chunk_mb: 0``). The medians' ratios to the bare step are printed; on a
    CPU a small model's step is bound by per-operation overhead as a small GPU job is by kernel launches.
    """
    ops = ops_per_step("cifar_resnet", 32, 3, 100, ["rotate180"])
    print("operations dispatched per training step, CIFAR ResNet-18 at 32x32, batch 100, rotate180: "
          + ", ".join(f"{k} {v:.1f}" for k, v in ops.items()), flush=True)
    images, labels = digits()
    torch.set_num_threads(1)
    size, bs = args.size, args.batch_size
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = write_prepared(work / "digits_bench", images, labels)
        s = protocol(epochs=args.epochs, batch_size=bs, image_size=size if size != 8 else 0, device="cpu",
                     augment=args.augment.split(",") if args.augment else [])
        for r in range(args.repeats):
            ub = upper_bound(args.backbone, size, bs, labels.shape[1], torch.device("cpu"), args.steps, 3, channels=1)
            rows.append({"repeat": r, "loop": "bare step", "images_per_s": ub["train_images_per_s"]})
            for loop, extra in (("ours, chunked", {}), ("ours, one step at a time", {"augment_chunk_mb": 0})):
                res = run_ours(prepared, args.backbone, {**s, **extra}, work)
                rows.append({"repeat": r, "loop": loop, "images_per_s": res["images_per_s"]})
            print("  ".join(f"{row['loop']}: {row['images_per_s']:.0f}" for row in rows[-3:]), flush=True)
    df = pd.DataFrame(rows)
    med = df.groupby("loop", sort=False)["images_per_s"].median()
    bound = med["bare step"]
    print(f"\n{args.backbone} at {size}x{size}, batch {bs}, augment {s['augment']}, 1 thread, median of "
          f"{args.repeats}, torch {torch.__version__}")
    for loop, ips in med.items():
        print(f"{loop:26s} {ips:8.0f} images/s  {ips / bound:5.2f} of the bare step")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "median": med.to_dict(), "ops": ops}, indent=2))
    return 0


# ------------------------------------------------------------------------------------------------ gpu
#: (backbone, model input side, packed side, images in the synthetic set): the paper config's sizes.
GPU_CASES = [
    ("cifar_resnet", 32, 32, 30000),  # first: the small, launch-bound case
    ("resnet50", 224, 128, 6000),
]
#: Upper bounds only, for the throughput table of ``lfa estimate``.
GPU_TABLE = [("resnet50", 256), ("densenet121", 256), ("alexnet", 256), ("botnet", 256), ("cifar_resnet", 32),
             ("cifar_resnet20", 32), ("small_cnn", 8)]


def cmd_gpu(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    results: dict[str, Any] = {"card": card, "torch": torch.__version__, "cases": [], "table": []}
    steps, warmup = (3, 1) if quick else (args.steps, 8)
    torch.set_num_threads(min(8, os.cpu_count() or 1))

    def save() -> None:
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2))

    print(f"card: {card}; torch {torch.__version__}", flush=True)
    t_begin = time.time()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        work = Path(tmp)
        for backbone, size, packed, n in GPU_CASES:
            if quick:
                backbone, size, packed, n = "cifar_resnet20", 16, 8, 400
            t = time.time()
            images, labels = synthetic(n, packed, 3, 10)
            prepared = write_prepared(work / f"{backbone}_{packed}", images, labels)
            case: dict[str, Any] = {"backbone": backbone, "size": size, "packed": packed, "images": n,
                                    "batch_size": 100}
            s = protocol(epochs=3, image_size=size if size != packed else 0, threads=min(8, os.cpu_count() or 1))
            bound = partial(upper_bound, backbone, size, 100, 10, device, steps, warmup,
                            min_seconds=0.0 if quick else 3.0)
            # the bound and our device path twice, interleaved: each side's best run is compared
            parts = [("upper_bound", bound), ("ours_device", partial(run_ours, prepared, backbone, s, work))]
            parts = parts * (1 if quick else 2)
            # a small model: what chunks and CUDA graphs gain
            if chunk_steps(protocol()["augment_chunk_mb"], 100, 3, size) > 1:
                parts.append(("ours_device_one_step",
                              partial(run_ours, prepared, backbone, {**s, "augment_chunk_mb": 0}, work)))
                parts.append(("ours_device_graphs",
                              partial(run_ours, prepared, backbone, {**s, "compile": "reduce-overhead"}, work)))
            parts += [
                ("ours_stream", partial(run_ours, prepared, backbone, {**s, "device_cache_gb": 0}, work)),
                ("seed_style", partial(run_seed_style, images, labels, backbone, size, 100, device, args.workers,
                                       steps if quick else max(steps, 20), warmup=3)),
            ]
            for key, fn in parts:
                try:
                    res = fn()
                except Exception as err:  # recorded; the other measurements still run
                    res = {"error": repr(err), "images_per_s": float("nan")}
                    print(f"case {backbone} {key}: FAILED {err!r}", flush=True)
                case.setdefault(f"{key}_runs", []).append(res)
            for key in [k.removesuffix("_runs") for k in list(case) if k.endswith("_runs")]:
                case[key] = _best(case[f"{key}_runs"], "train_images_per_s" if key == "upper_bound" else "images_per_s")
            ub = case["upper_bound"].get("train_images_per_s", float("nan"))
            for key in ("ours_device", "ours_device_one_step", "ours_device_graphs", "ours_stream", "seed_style"):
                if key in case:
                    case[key]["ratio_to_upper_bound"] = case[key]["images_per_s"] / ub
            results["cases"].append(case)
            save()
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            print(f"case {backbone} {size}x{size} (packed {packed}, {n} images): upper bound {ub:.0f} images/s; "
                  f"ours on device {case['ours_device']['images_per_s']:.0f} "
                  f"({case['ours_device']['ratio_to_upper_bound']:.2f}); ours streamed "
                  f"{case['ours_stream']['images_per_s']:.0f} ({case['ours_stream']['ratio_to_upper_bound']:.2f}); "
                  f"seed-style {case['seed_style']['images_per_s']:.0f} "
                  f"({case['seed_style']['ratio_to_upper_bound']:.2f}) ({time.time() - t:.0f}s)", flush=True)
            if quick:
                break
            if not quick and backbone == "cifar_resnet" and time.time() - t_begin < args.budget_s:
                results["concurrent"] = concurrent_jobs(prepared, backbone, s, work, (1, 2, 4))
                save()
    for backbone, size in GPU_TABLE:  # after the cases: the table is already in RESULTS.md and lfa.pipeline.estimate
        if quick and backbone not in ("small_cnn", "cifar_resnet20"):
            continue
        if not quick and time.time() - t_begin > args.budget_s:
            print(f"table {backbone}: skipped (over --budget-s)", flush=True)
            continue
        channels = 1 if backbone == "small_cnn" else 3
        t = time.time()
        try:
            res = upper_bound(backbone, size, 100, 10, device, steps, warmup, channels)
        except Exception as err:  # one failing backbone must not cost the rest of the run
            results["table"].append({"backbone": backbone, "size": size, "error": repr(err)})
            print(f"table {backbone} {size}: FAILED {err!r}", flush=True)
            save()
            continue
        results["table"].append({"backbone": backbone, "size": size, "batch_size": 100, **res})
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"table {backbone:14s} {size:4d}: train {res['train_images_per_s']:8.0f} images/s, "
              f"eval {res['eval_images_per_s']:8.0f} images/s, peak {res['peak_gpu_memory_gb'] or 0:.1f} GB "
              f"({time.time() - t:.0f}s)", flush=True)
        save()

    (out / "gpu_check.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def _best(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The run with the highest ``metric`` (failed runs, NaN, last)."""
    good = [r for r in runs if math.isfinite(r.get(metric, math.nan))]
    return max(good, key=lambda r: r[metric]) if good else runs[0]


def concurrent_jobs(prepared: Path, backbone: str, settings: dict[str, Any], work: Path,
                    counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """Aggregate images/s of N training processes sharing one GPU (what ``gpu.jobs_per_device`` N gives)."""
    import subprocess

    rows = []
    for n in counts:
        cmd = [sys.executable, __file__, "ours", "--prepared", str(prepared), "--backbone", backbone,
               "--settings", json.dumps({**settings, "threads": 2}), "--work", str(work)]
        t = time.time()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for _ in range(n)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        total = sum(o["images_per_s"] for o in outs)
        rows.append({"processes": n, "aggregate_images_per_s": total, "per_process": [o["images_per_s"] for o in outs],
                     "seconds": time.time() - t})
        print(f"concurrent {backbone} x{n}: {total:.0f} images/s in all ({time.time() - t:.0f}s)", flush=True)
    return rows


def cmd_ours(args: argparse.Namespace) -> int:
    res = run_ours(Path(args.prepared), args.backbone, json.loads(args.settings), Path(args.work))
    print(json.dumps(res))
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = [f"card: {results['card']}, torch {results['torch']}", "",
             "| backbone | input | train images/s (upper bound) | eval images/s | peak GPU GB |",
             "|---|---|---|---|---|"]
    for r in results["table"]:
        if "error" in r:
            lines.append(f"| {r['backbone']} | {r['size']} | failed: {r['error'][:80]} | | |")
            continue
        lines.append(f"| {r['backbone']} | {r['size']} | {r['train_images_per_s']:.0f} "
                     f"| {r['eval_images_per_s']:.0f} | {r['peak_gpu_memory_gb'] or 0:.1f} |")
    lines += ["", "| backbone | input (packed) | upper bound | ours, on device | ours, on device, one step at a "
              "time | ours, on device, compile: reduce-overhead | ours, streamed | seed-style | peak GPU GB "
              "(ours / seed-style) |", "|---|---|---|---|---|---|---|---|---|"]

    def cell(c: dict[str, Any], key: str) -> str:
        if key not in c:
            return "(not run)"
        return f"{c[key]['images_per_s']:.0f} ({c[key]['ratio_to_upper_bound']:.2f})"

    for c in results["cases"]:
        lines.append(f"| {c['backbone']} | {c['size']} ({c['packed']}) "
                     f"| {c['upper_bound'].get('train_images_per_s', float('nan')):.0f} "
                     f"| {cell(c, 'ours_device')} | {cell(c, 'ours_device_one_step')} "
                     f"| {cell(c, 'ours_device_graphs')} | {cell(c, 'ours_stream')} "
                     f"| {cell(c, 'seed_style')} | "
                     f"{c['ours_device'].get('peak_gpu_memory_gb') or 0:.1f} / "
                     f"{c['seed_style'].get('peak_gpu_memory_gb') or 0:.1f} |")
    if results.get("concurrent"):
        lines += ["", "| CIFAR-ResNet processes on one GPU | images/s in all |", "|---|---|"]
        lines += [f"| {r['processes']} | {r['aggregate_images_per_s']:.0f} |" for r in results["concurrent"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cpu", help="ours vs seed-style on this CPU")
    p.add_argument("--backbone", default="small_cnn")
    p.add_argument("--sizes", default="8,32",
                   help="model input sides, comma-separated (the digits are 8x8; the first is checked)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--epochs", type=int, default=4, help="epochs of ours (the first is not timed)")
    p.add_argument("--seed-steps", type=int, default=20, help="timed steps of the seed-style loop")
    p.add_argument("--min-ratio", type=float, default=3.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", help="write the measurements here")
    p.set_defaults(func=cmd_cpu)
    p = sub.add_parser("overhead", help="ours vs the bare step where a step is small (one thread)")
    p.add_argument("--backbone", default="small_cnn")
    p.add_argument("--size", type=int, default=8, help="model input side (the digits are 8x8)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--augment", default="rotate180", help="comma-separated augmentations (empty: none)")
    p.add_argument("--epochs", type=int, default=4, help="epochs of ours (the first is not timed)")
    p.add_argument("--steps", type=int, default=40, help="timed steps of the bare step")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="write the measurements here")
    p.set_defaults(func=cmd_overhead)
    p = sub.add_parser("gpu", help="upper bound vs our loader vs seed-style on a GPU")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the seed-style loop")
    p.add_argument("--tmp", default=None, help="where the synthetic prepared sets are written")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the script on a CPU")
    p.add_argument("--budget-s", type=float, default=300,
                   help="skip the concurrency runs and the per-backbone table after this many seconds")
    p.set_defaults(func=cmd_gpu)
    p = sub.add_parser("ours", help="one run of lfa.training.train.train, printed as JSON (used by 'gpu')")
    p.add_argument("--prepared", required=True)
    p.add_argument("--backbone", required=True)
    p.add_argument("--settings", required=True, help="train settings as JSON")
    p.add_argument("--work", required=True)
    p.set_defaults(func=cmd_ours)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
