"""Training one job (experiment × dataset × backbone × loss × seed × fold), resumable and deterministic.

Design:

- The whole prepared dataset lives on the device as uint8; shuffling, augmentation and resizing run
  batched on the device. No DataLoader, no per-image Python work.
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
import hashlib
import json
import math
import os
import signal
import sys
import time
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
from lfa.models import build_model

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
        """Identifies the run a checkpoint belongs to; a checkpoint of any other run is refused."""
        blob = json.dumps({"job": asdict(self), "classes": meta["class_names"],
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


def augment(x: torch.Tensor, ops: list[str], gen: torch.Generator) -> torch.Tensor:
    """Batched augmentation on the device; ``x`` float (B, C, H, W)."""
    b = x.shape[0]
    for op in ops:
        if op in ("hflip", "vflip"):
            flip = torch.rand(b, device=x.device, generator=gen) < 0.5
            dim = 3 if op == "hflip" else 2
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(dim), x)
        elif op in ("rotate180", "rotate15"):
            span = math.pi if op == "rotate180" else math.radians(15)
            angle = (torch.rand(b, device=x.device, generator=gen) * 2 - 1) * span
            cos, sin = angle.cos(), angle.sin()
            theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                                 torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
        elif op == "crop":
            pad = max(1, x.shape[-1] // 8)
            padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            dx, dy = torch.randint(0, 2 * pad + 1, (2,), device=x.device, generator=gen).tolist()
            x = padded[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]
    return x


class Batcher:
    """Turns uint8 images already on the device into model-ready float batches."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, settings: dict[str, Any],
                 channels_last: bool) -> None:
        self.images = images  # (N, H, W, C) uint8 on device
        self.labels = labels  # (N, C) float on device
        self.size = settings.get("image_size", 0)
        self.ops = list(settings.get("augment", []))
        self.channels_last = channels_last

    def __call__(self, idx: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx].permute(0, 3, 1, 2).float().div_(255.0)
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if gen is not None and self.ops:
            x = augment(x, self.ops, gen)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
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
def _predict(model, batcher: Batcher, idx: np.ndarray, device, amp: bool, bs: int,
             gen: torch.Generator | None) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(idx), bs):
        b = torch.as_tensor(idx[start:start + bs], device=device)
        x, _ = batcher(b, gen)
        with _autocast(device, amp):
            out.append(model(x).float())
    return torch.cat(out) if out else torch.empty(0, batcher.labels.shape[1], device=device)


def _val_loss(model, loss_fn, batcher: Batcher, idx: np.ndarray, device, amp: bool, bs: int) -> float:
    logits = _predict(model, batcher, idx, device, amp, bs, None)
    return float(loss_fn(logits, batcher.labels[torch.as_tensor(idx, device=device)]))


def train(job: TrainJob, prepared_dir: str | Path, out_dir: str | Path, state_dir: str | Path,
          progress: bool = True) -> dict[str, Any]:
    """Train one job; writes ``model.pt``, ``train_log.csv``, ``predictions.parquet`` into ``out_dir``."""
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
    amp = bool(s.get("amp", True))
    channels_last = bool(s.get("channels_last", True)) and device.type == "cuda"

    data: Prepared = load_prepared(prepared_dir)
    fp = job.fingerprint(data.meta)
    split = data.split(job.fold)
    images = torch.from_numpy(data.images).to(device)
    labels = torch.from_numpy(data.labels).float().to(device)
    batcher = Batcher(images, labels, s, channels_last)
    n_classes = labels.shape[1]

    torch.manual_seed(_mix(job.seed, job.fold, -1))
    model = build_model(job.backbone, n_classes, data.images.shape[-1], s.get("pretrained", False)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if s.get("init"):
        from lfa.checkpoints import load_init

        load_init(model, s["init"])
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
    n_steps = len(train_idx) // bs + (1 if len(train_idx) % bs > 1 else 0)  # a last batch of 1 breaks BN
    t_start = time.time()
    seen = 0
    fault = _fault_point()
    bar = tqdm(total=epochs * n_steps, initial=start_epoch * n_steps + start_step, disable=not progress,
               file=sys.stderr, mininterval=2.0, unit="step", desc=job.loss)
    with _StopFlag() as stop, bar:
        for epoch in range(start_epoch, epochs):
            model.train()
            t0 = time.time()
            perm_gen = torch.Generator().manual_seed(_mix(job.seed, job.fold, epoch))
            order = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=perm_gen)]
            order = order.to(device)
            losses = torch.zeros(n_steps, device=device)
            for step in range(start_step, n_steps):
                if fault is not None and fault[:2] == (epoch + 1, step):
                    os.kill(os.getpid(), fault[2])
                gen_seed = _mix(job.seed, job.fold, epoch, step)
                torch.manual_seed(gen_seed)
                gen = torch.Generator(device=device).manual_seed(gen_seed)
                x, y = batcher(order[step * bs:(step + 1) * bs], gen)
                with _autocast(device, amp):
                    logits = step_fn(x)
                loss = loss_fn(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses[step] = loss.detach()
                seen += len(x)
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
            train_loss = (partial + float(losses[start_step:].sum())) / max(n_steps, 1)
            start_step, partial = 0, 0.0
            sched.step()
            val_loss = _val_loss(model, loss_fn, batcher, split["val"], device, amp, bs)
            if not math.isfinite(val_loss):
                raise DivergenceError(f"validation loss became {val_loss} at epoch {epoch + 1} ({job.label})")
            history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                            "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0})
            if val_loss < best_val:
                best_val = val_loss
                atomic_torch_save({"fingerprint": fp, "model": model.state_dict()}, best_path)
            save_state(epoch + 1, 0, 0.0)
            bar.set_postfix(epoch=epoch + 1, val_loss=f"{val_loss:.4f}", refresh=False)
            _log(f"epoch {epoch + 1}/{epochs} train_loss={train_loss:.5f} val_loss={val_loss:.5f} "
                 f"({history[-1]['seconds']:.1f}s)")

    wall = time.time() - t_start
    from lfa.checkpoints import load_state

    best = load_state(best_path, fp, device) if best_path.exists() else None
    if best is not None:
        model.load_state_dict(best["model"])
    eval_gen = None
    if s.get("augment_eval"):
        eval_gen = torch.Generator(device=device).manual_seed(_mix(job.seed, job.fold, -2))
    scores = {name: torch.sigmoid(_predict(model, batcher, split[name], device, amp, bs, eval_gen))
              for name in ("val", "test")}
    write_predictions(out_dir / "predictions.parquet", data, split, scores)
    log = pd.DataFrame(history)
    log["device"] = str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    with atomic_path(out_dir / "train_log.csv") as tmp:
        log.to_csv(tmp, index=False)
    info = {"job": asdict(job), "fingerprint": fp, "device": log["device"].iloc[0] if len(log) else str(device),
            "device_type": device.type, "wall_seconds": wall, "samples_seen": seen,
            "best_val_loss": best_val, "epochs": epochs, "class_names": data.class_names}
    atomic_torch_save({"fingerprint": fp, "model": model.state_dict(), "backbone": job.backbone,
                       "num_classes": n_classes, "in_channels": int(data.images.shape[-1]),
                       "info": json.dumps(info, default=str)}, out_dir / "model.pt")
    with atomic_path(out_dir / "train_info.json") as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2, default=str))
    return info


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
