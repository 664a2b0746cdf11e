"""Training one job (experiment × dataset × backbone × loss × seed × fold), resumable and deterministic.

Design:

- A prepared dataset up to ``train.device_cache_gb`` lives on the device as uint8 for the whole job
  (:class:`DeviceData`); a larger one streams from its memory-mapped ``images.npy`` (:class:`StreamingData`:
  background threads gather each batch into pinned host buffers, copied to the device without blocking).
  Either way shuffling, augmentation and resizing run batched on the device: no DataLoader, no per-image
  Python work.
- Every random draw is seeded from (seed, fold, epoch, step), so a run resumed from any checkpoint
  continues exactly as an uninterrupted one would.
- A resume checkpoint is written atomically after every epoch into a *state* folder that is not a
  declared output of the Snakemake rule (Snakemake deletes the outputs of a failed job, not the state).
  SIGTERM/SIGUSR1 (time limit, preemption) save a mid-epoch checkpoint and exit with code 75 so that a
  retry resumes.
- The model with the best validation loss is the one evaluated (the seed's protocol).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lfa.datasets import Prepared, load_prepared
from lfa.io import atomic_path, atomic_torch_save
from lfa.losses import build_loss
from lfa.models import build_model, input_size

#: Exit code of a job stopped by SIGTERM/SIGUSR1 after saving its state (EX_TEMPFAIL: try again).
EXIT_INTERRUPTED = 75
CHECK_EVERY = 25  # steps between divergence checks (one device sync each)


class DivergenceError(RuntimeError):
    """The training loss became NaN or inf."""


class Interrupted(Exception):
    """A stop signal arrived; the state was saved."""


@dataclass
class TrainJob:
    """What one training job needs besides the data."""

    experiment: str
    dataset: str
    backbone: str
    loss: str
    seed: int
    fold: int
    settings: dict[str, Any]
    loss_params: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return (f"dataset={self.dataset} backbone={self.backbone} loss={self.loss} "
                f"seed={self.seed} fold={self.fold}")

    def fingerprint(self, meta: dict[str, Any]) -> str:
        """Identifies the run a checkpoint belongs to; a checkpoint of any other run is refused.

        Settings that only change the speed (threads, the data path) are left out, so a job resumed with
        other ones continues its state.
        """
        from lfa.estimate import result_settings

        job = {**asdict(self), "settings": result_settings(self.settings)}
        blob = json.dumps({"job": job, "classes": meta["class_names"],
                           "n_samples": meta["n_samples"]}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and platforms)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA device is visible")
        return torch.device("cuda")
    return torch.device("cpu")


def _random_crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image random crop of the image reflect-padded by 1/8 of its side (no host sync)."""
    b, c, h, w = x.shape
    pad = max(1, w // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (2, b), device=x.device, generator=gen)
    rows = (torch.arange(h, device=x.device).view(1, h) + offsets[0].view(b, 1)).view(b, 1, h, 1)
    cols = (torch.arange(w, device=x.device).view(1, w) + offsets[1].view(b, 1)).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[bi, ci, rows, cols]


def augment(x: torch.Tensor, ops: list[str], gen: torch.Generator) -> torch.Tensor:
    """Batched augmentation on the device, one random draw per image; ``x`` float (B, C, H, W)."""
    b = x.shape[0]
    for op in ops:
        if op in ("hflip", "vflip"):
            flip = torch.rand(b, device=x.device, generator=gen) < 0.5
            dim = 3 if op == "hflip" else 2
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(dim), x)
        elif op in ("rotate180", "rotate15"):
            # torchvision's RandomRotation(180) / (15): an angle uniform in [-span, span], zeros outside
            span = math.pi if op == "rotate180" else math.radians(15)
            angle = (torch.rand(b, device=x.device, generator=gen) * 2 - 1) * span
            cos, sin = angle.cos(), angle.sin()
            zero = torch.zeros_like(cos)
            theta = torch.stack([cos, -sin, zero, sin, cos, zero], 1).view(b, 2, 3)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
        elif op == "crop":
            x = _random_crop(x, gen)
    return x


class Batcher:
    """Turns a uint8 (B, H, W, C) batch on the device into a model-ready float (B, C, H, W) batch.

    Augmentation runs at the smaller of the packed and the model's resolution (it commutes with resizing
    up to interpolation, and costs less there): before an upsampling, after a downsampling.
    """

    def __init__(self, size: int, ops: list[str], channels_last: bool) -> None:
        self.size = size
        self.ops = list(ops)
        self.channels_last = channels_last

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.size and (x.shape[-2], x.shape[-1]) != (self.size, self.size):
            down = self.size < x.shape[-1]
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=down)
        return x

    def __call__(self, images: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        upsample = bool(self.size) and self.size > x.shape[-1]
        if not upsample:
            x = self._resize(x)
        if gen is not None and self.ops:
            x = augment(x, self.ops, gen)
        if upsample:
            x = self._resize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _n_batches(n: int, bs: int, drop_single: bool) -> int:
    """Batches of ``bs`` over ``n`` samples; a last batch of one sample is dropped in training (it breaks BN)."""
    rest = n % bs
    return n // bs + (1 if rest > (1 if drop_single else 0) else 0)


class DeviceData:
    """The whole packed array on the device (uint8), with the labels; batches are gathered there."""

    mode = "device"

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device, chunk: int = 4096) -> None:
        self.device = device
        n = len(images)
        if device.type == "cpu":
            self.images = torch.from_numpy(np.array(images))  # read into memory (the source may be a memory map)
        else:
            self.images = torch.empty(images.shape, dtype=torch.uint8, device=device)
            for start in range(0, n, chunk):  # chunked from the memory map: no second full copy in host memory
                part = torch.from_numpy(np.array(images[start:start + chunk]))  # a writable copy of the chunk
                self.images[start:start + chunk].copy_(part)
        self.labels = torch.from_numpy(np.asarray(labels)).float().to(device)

    def batches(self, order: np.ndarray, bs: int, start: int, n_steps: int) -> Iterator[tuple[torch.Tensor, ...]]:
        order_t = torch.as_tensor(order).to(self.device)  # one copy per epoch, sliced on the device
        for step in range(start, n_steps):
            idx = order_t[step * bs:(step + 1) * bs]
            yield self.images[idx], self.labels[idx]


class StreamingData:
    """Batches gathered from the memory-mapped packed array by background threads.

    Each batch is gathered (``np.take``, which releases the GIL) into one of a ring of host buffers, pinned
    when the device is a GPU, and copied with ``non_blocking=True``; a buffer is refilled only after the
    copy out of it has finished (a CUDA event). ``threads`` batches are gathered at once, so reading from
    the page cache or the disk overlaps the GPU's work on earlier batches.
    """

    mode = "stream"

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device, threads: int = 4) -> None:
        self.images = images
        self.labels = np.ascontiguousarray(labels, dtype=np.float32)
        self.device = device
        self.threads = max(1, threads)
        self.pinned = device.type == "cuda"

    def batches(self, order: np.ndarray, bs: int, start: int, n_steps: int) -> Iterator[tuple[torch.Tensor, ...]]:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        if start >= n_steps:
            return
        n_buf = self.threads + 2
        shape = (bs, *self.images.shape[1:])
        bufs = [(torch.empty(shape, dtype=torch.uint8, pin_memory=self.pinned),
                 torch.empty((bs, self.labels.shape[1]), dtype=torch.float32, pin_memory=self.pinned))
                for _ in range(min(n_buf, n_steps - start))]
        events: list[Any] = [None] * len(bufs)

        def fill(step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
            b = step % len(bufs)
            if events[b] is not None:
                events[b].synchronize()  # the previous copy out of this buffer has finished
            idx = order[step * bs:(step + 1) * bs]
            img, lab = bufs[b][0][:len(idx)], bufs[b][1][:len(idx)]
            np.take(self.images, idx, axis=0, out=img.numpy())
            np.take(self.labels, idx, axis=0, out=lab.numpy())
            return img, lab, b

        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="lfa-stream")
        pending: deque = deque()
        try:
            nxt = start
            while nxt < n_steps and len(pending) < len(bufs) - 1:
                pending.append(pool.submit(fill, nxt))
                nxt += 1
            for _ in range(start, n_steps):
                if nxt < n_steps:  # refills the buffer used by the previous step, once its copy is done
                    pending.append(pool.submit(fill, nxt))
                    nxt += 1
                img, lab, b = pending.popleft().result()
                if self.device.type == "cuda":
                    x = img.to(self.device, non_blocking=True)
                    y = lab.to(self.device, non_blocking=True)
                    events[b] = torch.cuda.Event()
                    events[b].record()
                else:
                    x, y = img.clone(), lab.clone()
                yield x, y
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def choose_data(images: np.ndarray, labels: np.ndarray, device: torch.device,
                settings: dict[str, Any]) -> DeviceData | StreamingData:
    """:class:`DeviceData` if the packed images fit ``train.device_cache_gb``, else :class:`StreamingData`."""
    budget = float(settings.get("device_cache_gb", 16.0)) * 1e9
    if images.nbytes <= budget:
        return DeviceData(images, labels, device)
    return StreamingData(images, labels, device, int(settings.get("loader_threads", 4)))


@functools.cache
def _bf16_supported(index: int) -> bool:
    return torch.cuda.is_bf16_supported()


def _autocast(device: torch.device, enabled: bool):
    """bf16 autocast on a GPU that supports it; fp32 elsewhere (a CPU, or an older GPU)."""
    if enabled and device.type == "cuda" and _bf16_supported(device.index or 0):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _make_optimizer(model: torch.nn.Module, s: dict[str, Any]) -> torch.optim.Optimizer:
    if s.get("optimizer", "adam") == "sgd":
        return torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=s.get("momentum", 0.9),
                               weight_decay=s.get("weight_decay", 0.0))
    return torch.optim.Adam(model.parameters(), lr=s["lr"], betas=tuple(s.get("betas", (0.9, 0.999))),
                            weight_decay=s.get("weight_decay", 0.0))


class _StopFlag:
    """Records SIGTERM/SIGUSR1 so the loop can save its state at the next step boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            with contextlib.suppress(ValueError):  # not in the main thread
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _fault_point() -> tuple[int, int, int] | None:
    """``LFA_FAULT_AT=epoch:step:SIGNAL`` makes the job send itself SIGNAL before that step (1-based epoch).

    Used by the fault tests to deliver a real SIGKILL/SIGTERM at an exact point of the training loop.
    """
    spec = os.environ.get("LFA_FAULT_AT")
    if not spec:
        return None
    epoch, step, sig = spec.split(":")
    return int(epoch), int(step), int(getattr(signal, sig if sig.startswith("SIG") else f"SIG{sig}"))


def _log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"[lfa train] {msg}", file=sys.stderr)


@torch.no_grad()
def _predict(model, data: DeviceData | StreamingData, batcher: Batcher, idx: np.ndarray, amp: bool, bs: int,
             gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32) and labels of the samples ``idx``, in order."""
    model.eval()
    logits, labels = [], []
    for images, y in data.batches(idx, bs, 0, _n_batches(len(idx), bs, drop_single=False)):
        with _autocast(data.device, amp):
            logits.append(model(batcher(images, gen)).float())
        labels.append(y)
    if not logits:
        n_classes = data.labels.shape[1]
        empty = torch.empty(0, n_classes, device=data.device)
        return empty, empty
    return torch.cat(logits), torch.cat(labels)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(job: TrainJob, prepared_dir: str | Path, out_dir: str | Path, state_dir: str | Path,
          progress: bool = True, extra_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one job; writes ``model.pt``, ``train_log.csv``, ``predictions.parquet`` into ``out_dir``.

    ``extra_info`` (e.g. the GPU slot) is added to ``train_info.json``.
    """
    from tqdm import tqdm

    s = job.settings
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    if s.get("threads", 1):
        torch.set_num_threads(int(s["threads"]))
    device = pick_device(s.get("device", "auto"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    amp = bool(s.get("amp", True))
    channels_last = bool(s.get("channels_last", True)) and device.type == "cuda"

    prepared: Prepared = load_prepared(prepared_dir, mmap=True)
    fp = job.fingerprint(prepared.meta)
    split = prepared.split(job.fold)
    native = int(prepared.images.shape[1])
    size = input_size(job.backbone, int(s.get("image_size", 0)), native)
    data = choose_data(prepared.images, prepared.labels, device, s)
    batcher = Batcher(size if size != native else 0, list(s.get("augment", [])), channels_last)
    n_classes = prepared.labels.shape[1]
    _log(f"{job.label}: {len(prepared.images)} images {tuple(prepared.images.shape[1:])} "
         f"({prepared.images.nbytes / 1e9:.2f} GB) {'on the device' if data.mode == 'device' else 'streamed'}, "
         f"input {size}x{size}, device {device}")

    torch.manual_seed(_mix(job.seed, job.fold, -1))
    model = build_model(job.backbone, n_classes, prepared.images.shape[-1], s.get("pretrained", False)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    init_info = None
    if s.get("init"):
        from lfa.checkpoints import load_init

        init_info = load_init(model, s["init"])
        _log(f"initialised from {s['init']}: {init_info['loaded']} tensors loaded, {init_info['skipped']} "
             f"skipped, head {init_info['head_initialised']} left at its initialisation")
    loss_fn = build_loss(job.loss, **job.loss_params)
    opt = _make_optimizer(model, s)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=s.get("lr_step_epochs", 5),
                                            gamma=s.get("lr_gamma", 0.87))
    step_fn = torch.compile(model) if s.get("compile") else model

    epochs, bs = int(s["epochs"]), int(s["batch_size"])
    history: list[dict[str, Any]] = []
    best_val, start_epoch, start_step, partial = math.inf, 0, 0, 0.0
    last_path, best_path = state_dir / "last.pt", state_dir / "best.pt"
    if last_path.exists():
        from lfa.checkpoints import load_state

        state = load_state(last_path, fp, device)
        if state is None:
            _log(f"ignoring {last_path}: it belongs to another configuration; starting afresh")
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            history = json.loads(state["history"])
            best_val, start_epoch = float(state["best_val"]), int(state["epoch"])
            start_step, partial = int(state["step"]), float(state["partial_loss"])
            _log(f"resuming from epoch {start_epoch}" + (f" step {start_step}" if start_step else ""))

    def save_state(epoch: int, step: int, partial_loss: float) -> None:
        atomic_torch_save({
            "fingerprint": fp, "epoch": epoch, "step": step, "partial_loss": partial_loss,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "history": json.dumps(history), "best_val": best_val,
        }, last_path)

    train_idx = split["train"]
    n_steps = _n_batches(len(train_idx), bs, drop_single=True)
    t_start = time.time()
    seen = 0
    fault = _fault_point()
    bar = tqdm(total=epochs * n_steps, initial=start_epoch * n_steps + start_step, disable=not progress,
               file=sys.stderr, mininterval=2.0, unit="step", desc=job.loss)
    diverged: str | None = None
    try:
        with _StopFlag() as stop, bar:
            for epoch in range(start_epoch, epochs):
                model.train()
                _sync(device)
                t0 = time.time()
                perm_gen = torch.Generator().manual_seed(_mix(job.seed, job.fold, epoch))
                order = train_idx[torch.randperm(len(train_idx), generator=perm_gen).numpy()]
                losses = torch.zeros(n_steps, device=device)
                images_done = 0
                batches = data.batches(order, bs, start_step, n_steps)
                try:
                    for step in range(start_step, n_steps):
                        if fault is not None and fault[:2] == (epoch + 1, step):
                            os.kill(os.getpid(), fault[2])
                        images, y = next(batches)
                        gen_seed = _mix(job.seed, job.fold, epoch, step)
                        torch.manual_seed(gen_seed)
                        gen = torch.Generator(device=device).manual_seed(gen_seed)
                        x = batcher(images, gen)
                        with _autocast(device, amp):
                            logits = step_fn(x)
                        loss = loss_fn(logits.float(), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        losses[step] = loss.detach()
                        images_done += len(images)
                        bar.update(1)
                        if (step + 1) % CHECK_EVERY == 0 or step + 1 == n_steps:
                            bad = ~torch.isfinite(losses[start_step:step + 1])
                            if bool(bad.any()):
                                first = start_step + int(bad.nonzero()[0, 0])
                                raise DivergenceError(
                                    f"loss became {float(losses[first])} at epoch {epoch + 1} step {first + 1} "
                                    f"({job.label}); the last good checkpoint is kept at {last_path}"
                                )
                        if stop.signum is not None:
                            save_state(epoch, step + 1, partial + float(losses[start_step:step + 1].sum()))
                            raise Interrupted(f"signal {stop.signum}: state saved at epoch {epoch + 1} step {step + 1}")
                finally:
                    batches.close()
                train_loss = (partial + float(losses[start_step:].sum())) / max(n_steps, 1)  # syncs the device
                train_seconds = time.time() - t0
                seen += images_done
                start_step, partial = 0, 0.0
                sched.step()
                logits, labels = _predict(model, data, batcher, split["val"], amp, bs, None)
                val_loss = float(loss_fn(logits, labels))
                if not math.isfinite(val_loss):
                    raise DivergenceError(f"validation loss became {val_loss} at epoch {epoch + 1} ({job.label})")
                history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                                "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0,
                                "train_seconds": train_seconds, "train_images": images_done})
                if val_loss < best_val:
                    best_val = val_loss
                    atomic_torch_save({"fingerprint": fp, "model": model.state_dict()}, best_path)
                save_state(epoch + 1, 0, 0.0)
                bar.set_postfix(epoch=epoch + 1, val_loss=f"{val_loss:.4f}", refresh=False)
                _log(f"epoch {epoch + 1}/{epochs} train_loss={train_loss:.5f} val_loss={val_loss:.5f} "
                     f"({history[-1]['seconds']:.1f}s, {images_done / max(train_seconds, 1e-9):.0f} images/s)")
    except DivergenceError as err:
        if s.get("on_divergence", "stop") != "record":
            raise
        diverged = str(err)
        _log(f"diverged, recorded as such (train.on_divergence: record): {err}")

    wall = time.time() - t_start
    from lfa.checkpoints import load_state

    best = load_state(best_path, fp, device) if best_path.exists() else None
    if best is not None:
        model.load_state_dict(best["model"])
    eval_gen = None
    if s.get("augment_eval"):
        eval_gen = torch.Generator(device=device).manual_seed(_mix(job.seed, job.fold, -2))
    if diverged is None:
        scores = {name: torch.sigmoid(_predict(model, data, batcher, split[name], amp, bs, eval_gen)[0])
                  for name in ("val", "test")}
    else:  # a diverged run has no predictions: its scores are NaN and its metrics undefined
        scores = {name: torch.full((len(split[name]), n_classes), math.nan) for name in ("val", "test")}
    write_predictions(out_dir / "predictions.parquet", prepared, split, scores)
    log = pd.DataFrame(history)
    log["device"] = str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    with atomic_path(out_dir / "train_log.csv") as tmp:
        log.to_csv(tmp, index=False)
    info = {"job": asdict(job), "fingerprint": fp, "device": log["device"].iloc[0] if len(log) else str(device),
            "device_type": device.type, "wall_seconds": wall, "samples_seen": seen,
            "best_val_loss": best_val, "epochs": epochs, "class_names": prepared.class_names,
            "data_path": data.mode, "input_size": size, **throughput(history)}
    if device.type == "cuda":
        info["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    if init_info is not None:
        info["init"] = init_info
    if diverged is not None:
        info["diverged"] = diverged
    info.update(extra_info or {})
    atomic_torch_save({"fingerprint": fp, "model": model.state_dict(), "backbone": job.backbone,
                       "num_classes": n_classes, "in_channels": int(prepared.images.shape[-1]),
                       "info": json.dumps(info, default=str)}, out_dir / "model.pt")
    with atomic_path(out_dir / "train_info.json") as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2, default=str))
    return info


def throughput(history: list[dict[str, Any]]) -> dict[str, float]:
    """Training images per second, over all epochs and over the epochs after the first (warm-up excluded)."""
    rows = [h for h in history if h.get("train_seconds")]
    out: dict[str, float] = {}
    if rows:
        out["train_images_per_s"] = sum(h["train_images"] for h in rows) / sum(h["train_seconds"] for h in rows)
        steady = rows[1:] or rows
        out["steady_images_per_s"] = (sum(h["train_images"] for h in steady)
                                      / sum(h["train_seconds"] for h in steady))
    return out


def write_predictions(path: Path, data: Prepared, split: dict[str, np.ndarray],
                      scores: dict[str, torch.Tensor]) -> None:
    """Per sample: id, split, label_<c> (int8) and score_<c> (float32), for val and test."""
    frames = []
    for name in ("val", "test"):
        idx = split[name]
        df = pd.DataFrame({"id": data.ids[idx], "split": name})
        sc = scores[name].cpu().numpy().astype(np.float32)
        for c in range(data.labels.shape[1]):
            df[f"label_{c}"] = data.labels[idx, c]
            df[f"score_{c}"] = sc[:, c]
        frames.append(df)
    with atomic_path(path) as tmp:
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
