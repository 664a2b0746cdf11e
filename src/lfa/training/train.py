"""Training one job, resumable and deterministic: setup → epochs → finish.

- Data placement and batching: :mod:`lfa.data.batches`; augmentation: :mod:`lfa.data.augment`; predictions:
  :mod:`lfa.training.predict`; the resume state: :class:`lfa.training.checkpoints.TrainingState`; the device:
  :mod:`lfa.training.device`.
- Every random draw of an epoch is fixed at its start from (seed, fold, epoch): the permutation, the
  augmentation parameters of every image and the seed of the generators the model draws from
  (:meth:`Trainer.epoch_draws`); a mid-epoch checkpoint also keeps those generators' states. A run resumed from
  any checkpoint continues exactly as an uninterrupted one would, whatever the chunking or data path.
- A resume checkpoint is written atomically after every epoch into a *state* folder that is not a declared
  output of the Snakemake rule (Snakemake deletes the outputs of a failed job, not the state).
  SIGTERM/SIGUSR1 (time limit, preemption) save a mid-epoch checkpoint and exit with code 75 so that a
  retry resumes. Divergence checks, stop signals and fault injection sit behind one per-step hook
  (:class:`StepHook`), outside the step itself.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lfa.data.batches import Batcher, DeviceData, StreamingData, choose_data, chunk_steps, model_batches, n_batches
from lfa.data.datasets import Prepared, load_prepared, verify_prepared
from lfa.errors import DivergenceError
from lfa.io import atomic_path, atomic_torch_save
from lfa.losses import Loss, build_loss
from lfa.models import build_model, input_size
from lfa.pipeline.plan import Job, TrainSettings
from lfa.plugins import load_plugins, plugin_digests
from lfa.training.checkpoints import Progress, TrainingState, fingerprint
from lfa.training.device import autocast, configure, device_name, pick_device, rng_state, set_rng_state, sync
from lfa.training.predict import predict, write_predictions

#: Exit code of a job stopped by SIGTERM/SIGUSR1 after saving its state (EX_TEMPFAIL: try again).
EXIT_INTERRUPTED = 75
CHECK_EVERY = 25  # steps between divergence checks (one device sync each)


class Interrupted(Exception):
    """A stop signal arrived; the state was saved."""



def seed_from(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and platforms): every draw of a job is seeded from
    (seed, fold, epoch, …) alone."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class Trainer:
    """Everything a job trains with (data on the device, model, loss, optimizer, resume state), built once by
    :func:`setup`."""

    job: Job
    settings: TrainSettings  # every train setting, typed
    device: torch.device
    prepared: Prepared
    split: dict[str, np.ndarray]
    data: DeviceData | StreamingData
    batcher: Batcher
    size: int  # the model's input side
    model: torch.nn.Module
    step_fn: torch.nn.Module  # the model as the training step calls it (maybe compiled)
    loss_fn: Loss
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    state: TrainingState
    chunk: int
    init_info: dict[str, Any] | None
    seen: int = 0  # training images processed by this process
    board: Any = None  # a TensorBoard SummaryWriter (train.tensorboard), or None

    @property
    def n_steps(self) -> int:
        return n_batches(len(self.split["train"]), self.settings.batch_size, drop_single=True)

    def epoch_draws(self, epoch: int) -> tuple[np.ndarray, list[torch.Tensor] | None]:
        """The epoch's order and augmentation, and the model's random stream, from (seed, fold, epoch) alone."""
        seed, fold = self.job.seed, self.job.fold
        shuffle = torch.Generator().manual_seed(seed_from(seed, fold, epoch))
        perm = torch.randperm(len(self.split["train"]), generator=shuffle)
        order = self.split["train"][perm.numpy()]
        params = self.batcher.draw(len(order), self.data.native,
                                   torch.Generator().manual_seed(seed_from(seed, fold, epoch, 1)), self.device)
        torch.manual_seed(seed_from(seed, fold, epoch, 2))  # randomness inside the model (dropout)
        return order, params

    def predict(self, name: str, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return predict(self.model, self.data, self.batcher, self.split[name], self.settings.amp,
                       self.settings.batch_size, gen, self.chunk)


def train(job: Job, prepared_dir: str | Path, out_dir: str | Path, state_dir: str | Path,
          show_progress: bool = True, extra_info: dict[str, Any] | None = None,
          board_dir: str | Path | None = None) -> dict[str, Any]:
    """Train one job; writes ``model.pt``, ``train_log.csv``, ``train_info.json`` and ``predictions.parquet``
    into ``out_dir`` and its resume state into ``state_dir``. ``extra_info`` (e.g. the GPU slot) is added to
    ``train_info.json``, which is returned. With ``board_dir`` (``train.tensorboard``) each epoch's losses,
    learning rate and throughput also go to TensorBoard event files there."""
    trainer = setup(job, prepared_dir, state_dir)
    progress, note = trainer.state.resume(trainer.device)
    if note:
        _log(note)
    t_start, diverged = time.time(), None
    trainer.board = open_board(board_dir)
    try:
        train_epochs(trainer, progress, show_progress)
    except DivergenceError as err:
        if trainer.settings.on_divergence != "record":
            raise
        diverged = str(err)
        _log(f"diverged, recorded as such (train.on_divergence: record): {err}")
    finally:
        if trainer.board is not None:
            trainer.board.close()
    return finish(trainer, progress, Path(out_dir), time.time() - t_start, diverged, extra_info or {})


def open_board(board_dir: str | Path | None) -> Any:
    """A TensorBoard writer into ``board_dir`` (None: none); a resumed run appends to the same folder."""
    if board_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    Path(board_dir).mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(board_dir))


def _board_epoch(board: Any, row: dict[str, Any]) -> None:
    """One epoch's history row as TensorBoard scalars, at the epoch's number."""
    if board is None:
        return
    epoch = int(row["epoch"])
    board.add_scalar("loss/train", row["train_loss"], epoch)
    board.add_scalar("loss/validation", row["val_loss"], epoch)
    board.add_scalar("learning_rate", row["lr"], epoch)
    board.add_scalar("images_per_second", row["train_images"] / max(row["train_seconds"], 1e-9), epoch)
    board.flush()


def setup(job: Job, prepared_dir: str | Path, state_dir: str | Path) -> Trainer:
    """The device, the data on it, the model, the loss, the optimizer and the resume state of ``job``."""
    load_plugins(job.plugins)  # the user's loss or backbone, before the registries are read
    settings = job.train_settings()
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    device = pick_device(settings.device)
    configure(device)
    prepared = load_prepared(prepared_dir, mmap=True)
    checked = verify_prepared(prepared_dir, prepared.meta)  # the data as it is now, not as meta.json remembers it
    if checked.changed:
        _log(f"{checked.changed}: no resume state of the old data is trusted")
        prepared.meta["data_hash"] = checked.data_hash
    native, channels = int(prepared.images.shape[1]), int(prepared.images.shape[-1])
    size = input_size(job.backbone, int(settings.image_size), native)
    data = choose_data(prepared.images, prepared.labels, device, settings.device_cache_gb, settings.loader_threads)
    batcher = Batcher(size if size != native else 0, list(settings.augment), bool(settings.channels_last))
    _log(f"{job.label}: {len(prepared.images)} images {tuple(prepared.images.shape[1:])} "
         f"({prepared.images.nbytes / 1e9:.2f} GB) {'on the device' if data.mode == 'device' else 'streamed'}, "
         f"input {size}x{size}, device {device}")
    model, init_info = build(job, settings, prepared, device)
    opt = make_optimizer(model, settings)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=settings.lr_step_epochs, gamma=settings.lr_gamma)
    state = TrainingState(state_dir, fingerprint(job, prepared.meta, plugin_code(job)), model, opt, sched,
                          {"job_key": job.key, "data_hash": prepared.meta.get("data_hash", "")})
    return Trainer(job, settings, device, prepared, prepared.split(job.fold), data, batcher, size, model,
               compiled(model, settings.compile), build_loss(job.loss, **job.loss_params), opt, sched, state,
               chunk_steps(settings.augment_chunk_mb, settings.batch_size, channels, size), init_info)


def build(job: Job, settings: TrainSettings, prepared: Prepared,
          device: torch.device) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """The job's backbone, seeded from (seed, fold), on ``device``, initialised from ``train.init`` if given."""
    torch.manual_seed(seed_from(job.seed, job.fold, -1))
    model = build_model(job.backbone, prepared.labels.shape[1], prepared.images.shape[-1],
                        settings.pretrained).to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not settings.init:
        return model, None
    from lfa.training.checkpoints import load_init

    info = load_init(model, settings.init)
    _log(f"initialised from {settings.init}: {info['loaded']} tensors loaded, {info['skipped']} skipped, "
         f"head {info['head_initialised']} left at its initialisation")
    return model, info


def train_epochs(trainer: Trainer, progress: Progress, show_progress: bool) -> None:
    """The epochs from ``progress`` on: each trains, validates and saves the state (``progress`` is updated in
    place)."""
    from tqdm import tqdm

    epochs, n_steps = int(trainer.settings.epochs), trainer.n_steps
    bar = tqdm(total=epochs * n_steps, initial=progress.epoch * n_steps + progress.step, disable=not show_progress,
               file=sys.stderr, mininterval=2.0, unit="step", desc=trainer.job.loss)
    with StepHook(trainer, progress) as hook, bar:
        for epoch in range(progress.epoch, epochs):
            t0 = run_epoch(trainer, progress, epoch, hook, bar)
            end_epoch(trainer, progress, epoch, hook, t0)
            bar.set_postfix(epoch=epoch + 1, val_loss=f"{progress.history[-1]['val_loss']:.4f}", refresh=False)


def run_epoch(trainer: Trainer, progress: Progress, epoch: int, hook: StepHook, bar: Any) -> float:
    """The training steps of one epoch (from ``progress.step`` on); returns when it started."""
    trainer.model.train()
    sync(trainer.device)
    t0 = time.time()
    order, params = trainer.epoch_draws(epoch)
    if progress.rng is not None:  # stopped mid-epoch: continue the model's random stream exactly
        set_rng_state(progress.rng, trainer.device)
        progress.rng = None
    hook.start_epoch(epoch, progress.step)
    batches = model_batches(trainer.data, trainer.batcher, order, int(trainer.settings.batch_size), progress.step,
                            trainer.n_steps, trainer.chunk, params)
    try:
        for step, (x, y) in enumerate(batches, progress.step):
            hook.before_step(step)
            loss = train_step(trainer, x, y)
            hook.after_step(step, loss, len(y))
            bar.update(1)
    finally:
        batches.close()
    return t0


def train_step(trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimisation step; returns the loss as a 0-d tensor on the device (no sync)."""
    with autocast(trainer.device, trainer.settings.amp):
        logits = trainer.step_fn(x)
    loss = trainer.loss_fn(logits.float(), y)
    loss.backward()
    trainer.opt.step()
    trainer.opt.zero_grad(set_to_none=True)
    return loss.detach()


def end_epoch(trainer: Trainer, progress: Progress, epoch: int, hook: StepHook, t0: float) -> None:
    """Validation, the history row, the best weights and the resume state after epoch ``epoch``."""
    train_loss = (progress.partial_loss + hook.epoch_sum()) / max(trainer.n_steps, 1)  # the sum syncs the device
    train_seconds = time.time() - t0
    trainer.seen += hook.images
    progress.step, progress.partial_loss = 0, 0.0
    trainer.sched.step()
    logits, labels = trainer.predict("val")
    val_loss = float(trainer.loss_fn(logits, labels))
    if not math.isfinite(val_loss):
        raise DivergenceError(f"validation loss became {val_loss} at epoch {epoch + 1} ({trainer.job.label})")
    progress.history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                      "lr": trainer.opt.param_groups[0]["lr"], "seconds": time.time() - t0,
                      "train_seconds": train_seconds, "train_images": hook.images})
    _board_epoch(trainer.board, progress.history[-1])
    if val_loss < progress.best_val:
        progress.best_val = val_loss
        trainer.state.save_best()
    progress.epoch = epoch + 1
    trainer.state.save(progress)
    _log(f"epoch {epoch + 1}/{trainer.settings.epochs} train_loss={train_loss:.5f} val_loss={val_loss:.5f} "
         f"({progress.history[-1]['seconds']:.1f}s, {hook.images / max(train_seconds, 1e-9):.0f} images/s)")


class StepHook:
    """What happens around every training step besides learning, kept out of the step itself.

    Before a step: the fault injection of the fault tests (``LFA_FAULT_AT``). After it: the loss is kept
    (a 0-d tensor, no sync), every :data:`CHECK_EVERY` steps and at the epoch's end the losses are checked
    for NaN/inf (:class:`DivergenceError`), and a SIGTERM/SIGUSR1 received meanwhile saves a mid-epoch
    state and raises :class:`Interrupted`.
    """

    def __init__(self, trainer: Trainer, progress: Progress) -> None:
        self.trainer, self.progress = trainer, progress
        self.fault = _fault_point()
        self.stop = _StopFlag()

    def __enter__(self) -> StepHook:
        self.stop.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.__exit__(*exc)

    def start_epoch(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start
        self.losses: list[torch.Tensor] = []
        self.checked = self.images = 0

    def before_step(self, step: int) -> None:
        if self.fault is not None and self.fault[:2] == (self.epoch + 1, step):
            os.kill(os.getpid(), self.fault[2])

    def after_step(self, step: int, loss: torch.Tensor, images: int) -> None:
        self.losses.append(loss)
        self.images += images
        if (step + 1) % CHECK_EVERY == 0 or step + 1 == self.trainer.n_steps:
            self._check()
        if self.stop.signum is not None:
            done = self.progress
            self.trainer.state.save(Progress(self.epoch, step + 1, done.partial_loss + self.epoch_sum(), done.history,
                                         done.best_val, rng_state(self.trainer.device)))
            raise Interrupted(f"signal {self.stop.signum}: state saved at epoch {self.epoch + 1} step {step + 1}")

    def epoch_sum(self) -> float:
        return float(torch.stack(self.losses).sum()) if self.losses else 0.0

    def _check(self) -> None:
        recent = torch.stack(self.losses[self.checked:])
        bad = ~torch.isfinite(recent)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise DivergenceError(
                f"loss became {float(recent[i])} at epoch {self.epoch + 1} step {self.start + self.checked + i + 1} "
                f"({self.trainer.job.label}); the last good checkpoint is kept at {self.trainer.state.last}")
        self.checked = len(self.losses)


def finish(trainer: Trainer, progress: Progress, out_dir: Path, wall: float, diverged: str | None,
           extra_info: dict[str, Any]) -> dict[str, Any]:
    """The best model's predictions, the training log, ``train_info.json`` and ``model.pt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.state.load_best(trainer.device)
    made_from = {"lfa.job_key": trainer.job.key, "lfa.data_hash": trainer.prepared.meta.get("data_hash", ""),
                 "lfa.init_sha256": (trainer.init_info or {}).get("sha256", "")}
    write_predictions(out_dir / "predictions.parquet", trainer.prepared, trainer.split,
                      final_scores(trainer, diverged), made_from)
    log = pd.DataFrame(progress.history)
    log["device"] = device_name(trainer.device)
    with atomic_path(out_dir / "train_log.csv") as tmp:
        log.to_csv(tmp, index=False)
    info = train_info(trainer, progress, wall, diverged, extra_info)
    atomic_torch_save({"fingerprint": trainer.state.fingerprint, "model": trainer.model.state_dict(),
                       "backbone": trainer.job.backbone, "num_classes": trainer.prepared.labels.shape[1],
                       "in_channels": int(trainer.prepared.images.shape[-1]), "info": json.dumps(info, default=str)},
                      out_dir / "model.pt")
    with atomic_path(out_dir / "train_info.json") as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2, default=str))
    return info


def final_scores(trainer: Trainer, diverged: str | None) -> dict[str, torch.Tensor]:
    """Sigmoid scores of the validation and test splits (NaN for a diverged run, which has no predictions)."""
    if diverged is not None:
        n_classes = trainer.prepared.labels.shape[1]
        return {name: torch.full((len(trainer.split[name]), n_classes), math.nan) for name in ("val", "test")}
    scores = {}
    for k, name in enumerate(("val", "test")):
        # the seed's random rotation of evaluation images, if asked for (train.augment_eval), seeded too
        gen = (torch.Generator().manual_seed(seed_from(trainer.job.seed, trainer.job.fold, -2, k))
               if trainer.settings.augment_eval
               else None)
        scores[name] = torch.sigmoid(trainer.predict(name, gen)[0])
    return scores


def plugin_code(job: Job) -> dict[str, str]:
    """``{plugin: sha256}`` of the plugins that registered the job's loss or backbone (empty: none did)."""
    return plugin_digests(losses=[job.loss], backbones=[job.backbone])


def train_info(trainer: Trainer, progress: Progress, wall: float, diverged: str | None,
               extra_info: dict[str, Any]) -> dict[str, Any]:
    """What ``train_info.json`` records: the job, the hyper-parameters in effect, the device, the times."""
    group = trainer.opt.param_groups[0]
    info = {"job": trainer.job.to_dict(), "key": trainer.job.key, "fingerprint": trainer.state.fingerprint,
            "data_hash": trainer.prepared.meta.get("data_hash", ""),
            "device": device_name(trainer.device) if progress.history else str(trainer.device),
            "device_type": trainer.device.type,
            "wall_seconds": wall, "samples_seen": trainer.seen, "best_val_loss": progress.best_val,
            "epochs": trainer.settings.epochs,
            "class_names": trainer.prepared.class_names, "data_path": trainer.data.mode, "input_size": trainer.size,
            "optimizer": {"type": type(trainer.opt).__name__.lower(), "lr": group["initial_lr"],
                          "weight_decay": group["weight_decay"],
                          **({"betas": list(group["betas"])} if "betas" in group else {"momentum": group["momentum"]})},
            "scheduler": {"step_size": trainer.sched.step_size, "gamma": trainer.sched.gamma},
            "loss": {"name": trainer.job.loss, **trainer.loss_fn.hparams}, **throughput(progress.history)}
    if trainer.device.type == "cuda":
        info["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(trainer.device) / 1e9
    if trainer.init_info is not None:
        info["init"] = trainer.init_info
    code = plugin_code(trainer.job)  # reads the plugins' files: once
    if code:
        info["plugins"] = code
    if diverged is not None:
        info["diverged"] = diverged
    return {**info, **extra_info}


def make_optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam (the seed's) or SGD with momentum, fused: one kernel updates all parameters (on a CPU the
    default per-tensor loop is 14 times slower for a small CNN; on a GPU it is several launches per tensor)."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay, fused=True)
    return torch.optim.Adam(model.parameters(), lr=settings.lr, betas=tuple(settings.betas),
                            weight_decay=settings.weight_decay, fused=True)


def compiled(model: torch.nn.Module, mode: bool | str) -> torch.nn.Module:
    """The model as the training step calls it: eager (``false``), or ``torch.compile``d (``true`` or a mode).

    ``reduce-overhead`` records the step's kernels as CUDA graphs, for small models whose step is bound by
    kernel launches (on a CPU it compiles without graphs). Compilation happens in the first epoch, which
    the job's steady throughput leaves out; evaluation uses the eager model (the same weights).
    """
    if mode is False or mode is None:
        return model
    return torch.compile(model, mode=None if mode is True else str(mode))


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
