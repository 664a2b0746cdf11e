"""Training one job (experiment × dataset × backbone × loss × seed × fold), resumable and deterministic.

Design:

- A prepared dataset up to ``train.device_cache_gb`` lives on the device as uint8 for the whole job
  (:class:`DeviceData`); a larger one streams from its memory-mapped ``images.npy`` (:class:`StreamingData`:
  background threads gather each batch into pinned host buffers, copied to the device without blocking).
  Either way shuffling, augmentation and resizing run batched on the device: no DataLoader, no per-image
  Python work. Device-resident batches are prepared several steps at a time (:func:`chunk_steps`), so a
  small model's step is not slowed by the launches of the augmentation kernels.
- Every random draw of an epoch is fixed at its start from (seed, fold, epoch): the permutation, the
  augmentation parameters of every image (:func:`draw_augment`) and the seed of the generators the model
  draws from; a mid-epoch checkpoint also keeps those generators' states. A run resumed from any
  checkpoint continues exactly as an uninterrupted one would, whatever the chunking or data path.
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


def _rotation_span(op: str) -> float:
    return math.pi if op == "rotate180" else math.radians(15)


def draw_augment(ops: list[str], n: int, side: int, gen: torch.Generator) -> list[torch.Tensor]:
    """The random parameters of ``ops`` for ``n`` images of side ``side``: one draw per image and op.

    Drawn on the CPU from ``gen`` (a few numbers per image, for a whole epoch at once) and applied on the
    device by :func:`apply_augment`, so the augmentation of an image depends on (generator, position in
    the epoch) only: not on how the epoch is cut into batches or chunks, nor on the device.
    """
    params = []
    for op in ops:
        if op in ("hflip", "vflip"):
            params.append(torch.rand(n, generator=gen) < 0.5)
        elif op in ("rotate180", "rotate15"):
            # torchvision's RandomRotation(180) / (15): an angle uniform in [-span, span], zeros outside
            params.append((torch.rand(n, generator=gen) * 2 - 1) * _rotation_span(op))
        elif op == "crop":
            pad = max(1, side // 8)
            params.append(torch.randint(0, 2 * pad + 1, (n, 2), generator=gen))
        else:
            raise ValueError(f"unknown augmentation {op!r}")
    return params


def _rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its angle about the centre (bilinear, zeros outside): torchvision's rotation.

    The sampling grid is built elementwise (what ``affine_grid`` computes with a batched matrix product), so
    an image's result does not depend on the other images in its batch.
    """
    b, _, h, w = x.shape
    cos, sin = angle.cos().view(b, 1, 1), angle.sin().view(b, 1, 1)
    xs = ((torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1).view(1, 1, w)
    ys = ((torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1).view(1, h, 1)
    grid = torch.stack([cos * xs - sin * ys, sin * xs + cos * ys], dim=-1)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _crop(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Per-image crop of the image reflect-padded by 1/8 of its side, at the drawn (row, column) offsets."""
    b, c, h, w = x.shape
    pad = max(1, w // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = (torch.arange(h, device=x.device).view(1, h) + offsets[:, 0].view(b, 1)).view(b, 1, h, 1)
    cols = (torch.arange(w, device=x.device).view(1, w) + offsets[:, 1].view(b, 1)).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[bi, ci, rows, cols]


def apply_augment(x: torch.Tensor, ops: list[str], params: list[torch.Tensor]) -> torch.Tensor:
    """Apply ``ops`` to float images ``x`` (B, C, H, W) with their drawn parameters (each of first dim B)."""
    for op, p in zip(ops, params, strict=True):
        p = p.to(x.device, non_blocking=True)
        if op in ("hflip", "vflip"):
            x = torch.where(p.view(-1, 1, 1, 1), x.flip(3 if op == "hflip" else 2), x)
        elif op in ("rotate180", "rotate15"):
            x = _rotate(x, p.to(x.dtype))
        elif op == "crop":
            x = _crop(x, p)
    return x


def augment(x: torch.Tensor, ops: list[str], gen: torch.Generator) -> torch.Tensor:
    """Batched augmentation of float images ``x`` (B, C, H, W), one random draw per image (a CPU ``gen``)."""
    return apply_augment(x, ops, draw_augment(ops, x.shape[0], x.shape[-1], gen))


def slice_augment(params: list[torch.Tensor] | None, start: int, stop: int) -> list[torch.Tensor] | None:
    return None if params is None else [p[start:stop] for p in params]


class Batcher:
    """Turns uint8 (B, H, W, C) images on the device into a model-ready float (B, C, H, W) batch.

    Augmentation runs at the smaller of the packed and the model's resolution (it commutes with resizing
    up to interpolation, and costs less there): before an upsampling, after a downsampling.
    """

    def __init__(self, size: int, ops: list[str], channels_last: bool) -> None:
        self.size = size
        self.ops = list(ops)
        self.channels_last = channels_last

    def augment_side(self, native: int) -> int:
        """The side length the augmentation runs at, for packed images of side ``native``."""
        return min(self.size, native) if self.size else native

    def draw(self, n: int, native: int, gen: torch.Generator,
             device: torch.device | None = None) -> list[torch.Tensor] | None:
        """Random parameters for ``n`` images, moved to ``device`` once (``None`` without augmentation)."""
        if not self.ops:
            return None
        return [p.to(device) if device is not None else p
                for p in draw_augment(self.ops, n, self.augment_side(native), gen)]

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.size and (x.shape[-2], x.shape[-1]) != (self.size, self.size):
            down = self.size < x.shape[-1]
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=down)
        return x

    def __call__(self, images: torch.Tensor, params: list[torch.Tensor] | None) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        upsample = bool(self.size) and self.size > x.shape[-1]
        if not upsample:
            x = self._resize(x)
        if params is not None and self.ops:
            x = apply_augment(x, self.ops, params)
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
        self.native = int(images.shape[2])  # packed side length
        n = len(images)
        if device.type == "cpu":
            self.images = torch.from_numpy(np.array(images))  # read into memory (the source may be a memory map)
        else:
            self.images = torch.empty(images.shape, dtype=torch.uint8, device=device)
            for start in range(0, n, chunk):  # chunked from the memory map: no second full copy in host memory
                part = torch.from_numpy(np.array(images[start:start + chunk]))  # a writable copy of the chunk
                self.images[start:start + chunk].copy_(part)
        self.labels = torch.from_numpy(np.asarray(labels)).float().to(device)

    def batches(self, order: np.ndarray, bs: int, start: int, n_steps: int,
                chunk_steps: int = 1) -> Iterator[tuple[torch.Tensor, ...]]:
        """Images and labels of steps ``start``.. ``n_steps - 1``, ``chunk_steps`` consecutive steps at a time.

        A chunk is gathered (and then augmented) as one batch: one set of kernels for many steps, which is
        what keeps a small model's job from being bound by kernel launches.
        """
        order_t = torch.as_tensor(order[:n_steps * bs]).to(self.device)  # one copy per epoch, sliced there
        for step in range(start, n_steps, max(1, chunk_steps)):
            idx = order_t[step * bs:(step + max(1, chunk_steps)) * bs]
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
        self.native = int(images.shape[2])
        self.threads = max(1, threads)
        self.pinned = device.type == "cuda"

    def batches(self, order: np.ndarray, bs: int, start: int, n_steps: int,
                chunk_steps: int = 1) -> Iterator[tuple[torch.Tensor, ...]]:
        """One step's batch at a time (``chunk_steps`` is ignored: large images gain nothing from chunks)."""
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


def make_optimizer(model: torch.nn.Module, s: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam (the seed's) or SGD with momentum, fused: one kernel updates all parameters (on a CPU the
    default per-tensor loop is 14 times slower for a small CNN; on a GPU it is several launches per tensor)."""
    if s.get("optimizer", "adam") == "sgd":
        return torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=s.get("momentum", 0.9),
                               weight_decay=s.get("weight_decay", 0.0), fused=True)
    return torch.optim.Adam(model.parameters(), lr=s["lr"], betas=tuple(s.get("betas", (0.9, 0.999))),
                            weight_decay=s.get("weight_decay", 0.0), fused=True)


def compiled(model: torch.nn.Module, mode: bool | str) -> torch.nn.Module:
    """The model as the training step calls it: eager (``false``), or ``torch.compile``d (``true`` or a mode).

    ``reduce-overhead`` records the step's kernels as CUDA graphs, for small models whose step is bound by
    kernel launches (on a CPU it compiles without graphs). Compilation happens in the first epoch, which
    the job's steady throughput leaves out; evaluation uses the eager model (the same weights).
    """
    if mode is False or mode is None:
        return model
    return torch.compile(model, mode=None if mode is True else str(mode))


def chunk_steps(settings: dict[str, Any], batch_size: int, channels: int, side: int) -> int:
    """Training steps whose batches are gathered, augmented and resized at once (device-resident data).

    As many as fit ``train.augment_chunk_mb`` of model input (float32), at most 64: a CIFAR batch
    (100×3×32×32) is 1.2 MB, so 54 steps share one set of augmentation kernels; a 256×256 batch (79 MB)
    is prepared alone. The results do not depend on it (the random draws are per image, per epoch).
    """
    budget = float(settings.get("augment_chunk_mb", 64)) * 2**20
    per_step = batch_size * channels * side * side * 4
    return int(max(1, min(64, budget // per_step)))


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


def model_batches(data: DeviceData | StreamingData, batcher: Batcher, order: np.ndarray, bs: int, start: int,
                  n_steps: int, chunk: int, params: list[torch.Tensor] | None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Model-ready ``(x, y)`` of steps ``start``.. ``n_steps - 1`` of ``order``, prepared ``chunk`` steps at a time.

    ``params`` are the augmentation draws for the positions of ``order`` (``None``: no augmentation).
    """
    pos = start * bs
    source = data.batches(order, bs, start, n_steps, chunk)
    try:
        for images, y in source:
            x = batcher(images, slice_augment(params, pos, pos + len(y)))
            pos += len(y)
            for offset in range(0, len(y), bs):
                yield x[offset:offset + bs], y[offset:offset + bs]
    finally:
        source.close()  # stops a streaming source's threads when the caller stops early


@torch.no_grad()
def _predict(model, data: DeviceData | StreamingData, batcher: Batcher, idx: np.ndarray, amp: bool, bs: int,
             gen: torch.Generator | None, chunk: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32) and labels of the samples ``idx``, in order (augmented only if ``gen`` is given)."""
    model.eval()
    logits, labels = [], []
    params = batcher.draw(len(idx), data.native, gen, data.device) if gen is not None else None
    for x, y in model_batches(data, batcher, idx, bs, 0, _n_batches(len(idx), bs, drop_single=False), chunk, params):
        with _autocast(data.device, amp):
            logits.append(model(x).float())
        labels.append(y)
    if not logits:
        n_classes = data.labels.shape[1]
        empty = torch.empty(0, n_classes, device=data.device)
        return empty, empty
    return torch.cat(logits), torch.cat(labels)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global random generators' states (what dropout draws from), for a mid-epoch checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


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
    channels_last = bool(s.get("channels_last", True))  # faster on a CPU too (small_cnn: 1.2-1.35x)

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
    opt = make_optimizer(model, s)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=s.get("lr_step_epochs", 5),
                                            gamma=s.get("lr_gamma", 0.87))
    step_fn = compiled(model, s.get("compile", False))

    epochs, bs = int(s["epochs"]), int(s["batch_size"])
    chunk = chunk_steps(s, bs, int(prepared.images.shape[-1]), size)
    history: list[dict[str, Any]] = []
    best_val, start_epoch, start_step, partial = math.inf, 0, 0, 0.0
    resume_rng: dict[str, torch.Tensor] | None = None
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
            resume_rng = (state.get("rng") or None) if start_step else None
            _log(f"resuming from epoch {start_epoch}" + (f" step {start_step}" if start_step else ""))

    def save_state(epoch: int, step: int, partial_loss: float, rng: dict[str, torch.Tensor] | None = None) -> None:
        atomic_torch_save({
            "fingerprint": fp, "epoch": epoch, "step": step, "partial_loss": partial_loss,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "history": json.dumps(history), "best_val": best_val, "rng": rng or {},
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
                # every random draw of the epoch is fixed here, from (seed, fold, epoch) alone
                aug_gen = torch.Generator().manual_seed(_mix(job.seed, job.fold, epoch, 1))
                params = batcher.draw(len(order), native, aug_gen, device)
                torch.manual_seed(_mix(job.seed, job.fold, epoch, 2))  # randomness inside the model (dropout)
                if resume_rng is not None:  # stopped mid-epoch: continue the model's random stream exactly
                    _set_rng_state(resume_rng, device)
                    resume_rng = None
                step_losses: list[torch.Tensor] = []  # one 0-d tensor per step: no per-step kernel or sync
                checked = 0
                images_done = 0
                batches = model_batches(data, batcher, order, bs, start_step, n_steps, chunk, params)
                try:
                    for step, (x, y) in enumerate(batches, start_step):
                        if fault is not None and fault[:2] == (epoch + 1, step):
                            os.kill(os.getpid(), fault[2])
                        with _autocast(device, amp):
                            logits = step_fn(x)
                        loss = loss_fn(logits.float(), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        step_losses.append(loss.detach())
                        images_done += len(y)
                        bar.update(1)
                        if (step + 1) % CHECK_EVERY == 0 or step + 1 == n_steps:
                            recent = torch.stack(step_losses[checked:])
                            bad = ~torch.isfinite(recent)
                            if bool(bad.any()):
                                i = int(bad.nonzero()[0, 0])
                                raise DivergenceError(
                                    f"loss became {float(recent[i])} at epoch {epoch + 1} step "
                                    f"{start_step + checked + i + 1} ({job.label}); the last good checkpoint "
                                    f"is kept at {last_path}"
                                )
                            checked = len(step_losses)
                        if stop.signum is not None:
                            save_state(epoch, step + 1, partial + float(torch.stack(step_losses).sum()),
                                       _rng_state(device))
                            raise Interrupted(f"signal {stop.signum}: state saved at epoch {epoch + 1} step {step + 1}")
                finally:
                    batches.close()
                epoch_sum = float(torch.stack(step_losses).sum()) if step_losses else 0.0  # syncs the device
                train_loss = (partial + epoch_sum) / max(n_steps, 1)
                train_seconds = time.time() - t0
                seen += images_done
                start_step, partial = 0, 0.0
                sched.step()
                logits, labels = _predict(model, data, batcher, split["val"], amp, bs, None, chunk)
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
    if diverged is None:
        scores = {}
        for k, name in enumerate(("val", "test")):
            # the seed's random rotation of evaluation images, if asked for (train.augment_eval), seeded too
            gen = torch.Generator().manual_seed(_mix(job.seed, job.fold, -2, k)) if s.get("augment_eval") else None
            scores[name] = torch.sigmoid(_predict(model, data, batcher, split[name], amp, bs, gen, chunk)[0])
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
