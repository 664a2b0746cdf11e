"""Checkpoints: a job's training state (:class:`TrainingState`), its final model, and initial weights.

Every read is ``torch.load(weights_only=True)`` and checked against the run it is for.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lfa.errors import CheckpointMismatch, MissingFile, UnreadableCheckpoint
from lfa.io import atomic_torch_save


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)``; a file torch cannot read raises :class:`UnreadableCheckpoint` naming it
    (refusing code inside a checkpoint, a ``pickle.UnpicklingError``, is not turned into that)."""
    import pickle
    import zipfile

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnreadableCheckpoint(f"{path}: unreadable ({detail})") from err


def fingerprint(job: Any, meta: dict[str, Any], code: dict[str, str] | None = None) -> str:
    """Identifies the run a checkpoint belongs to: the job's key (:class:`lfa.pipeline.plan.Job`), the prepared data it
    trains on (its content hash: pixels, ids, labels and folds; classes and size for data prepared before
    content hashes) and, for a loss or backbone of a plugin, the plugin file's SHA-256 (``code``)."""
    data = meta.get("data_hash") or {"classes": meta["class_names"], "n_samples": meta["n_samples"]}
    # the plugins' code by content only: how a config spells their paths does not matter
    blob = json.dumps({"key": job.key, "data": data, **({"code": sorted(code.values())} if code else {})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Progress:
    """Where a job's training stands: the epochs done, the step within the next one, what was learnt so far."""

    epoch: int = 0
    step: int = 0  # steps of epoch ``epoch`` already done (a mid-epoch stop)
    partial_loss: float = 0.0  # sum of those steps' losses
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = math.inf
    rng: dict[str, torch.Tensor] | None = None  # the global generators' states at a mid-epoch stop


class TrainingState:
    """The resume state of one job, in its state folder: ``last.pt`` and ``best.pt``.

    ``last.pt`` holds the model, optimizer and scheduler with the :class:`Progress`, written atomically after
    every epoch and on a stop signal; ``best.pt`` the weights of the best validation loss so far. Both carry
    the run's fingerprint, and a state written for another run is never loaded.
    """

    def __init__(self, state_dir: str | Path, fingerprint: str, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: Any, provenance: dict[str, str] | None = None) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.last, self.best = self.dir / "last.pt", self.dir / "best.pt"
        self.fingerprint = fingerprint
        self.provenance = dict(provenance or {})  # job_key, data_hash: what a mismatch is explained by
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler

    def save(self, p: Progress) -> None:
        atomic_torch_save({
            "fingerprint": self.fingerprint, "epoch": p.epoch, "step": p.step, "partial_loss": p.partial_loss,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "history": json.dumps(p.history), "best_val": p.best_val,
            "rng": p.rng or {}, **self.provenance,
        }, self.last)

    def save_best(self) -> None:
        atomic_torch_save({"fingerprint": self.fingerprint, "model": self.model.state_dict(), **self.provenance},
                          self.best)

    def resume(self, device: torch.device | str) -> tuple[Progress, str]:
        """Load ``last.pt`` into the model, optimizer and scheduler if it belongs to this run.

        Returns the progress to continue from and a line for the log (empty: nothing to resume).
        """
        if not self.last.exists():
            return Progress(), ""
        try:
            state = read_checkpoint(self.last, device)
            if self.best.exists():
                read_checkpoint(self.best, "cpu")
        except UnreadableCheckpoint as err:
            return Progress(), self.set_aside(str(err))
        if state.get("fingerprint") != self.fingerprint:
            why = self._mismatch(state)
            self.last.unlink()
            self.best.unlink(missing_ok=True)
            return Progress(), f"ignoring {self.last}: {why}; starting afresh"
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        p = Progress(int(state["epoch"]), step, float(state["partial_loss"]), json.loads(state["history"]),
                     float(state["best_val"]), (state.get("rng") or None) if step else None)
        return p, f"resuming from epoch {p.epoch}" + (f" step {p.step}" if p.step else "")

    def _mismatch(self, state: dict[str, Any]) -> str:
        old = {k: state.get(k) for k in self.provenance}
        if old.get("data_hash") and old["data_hash"] != self.provenance.get("data_hash"):
            return (f"it was trained on other data (the prepared dataset changed: content hash {old['data_hash']}, "
                    f"now {self.provenance['data_hash']})")
        if old.get("job_key") and old["job_key"] != self.provenance.get("job_key"):
            return f"it belongs to another job (job key {old['job_key']}, now {self.provenance['job_key']})"
        return "it belongs to another configuration or other data"

    def set_aside(self, reason: str) -> str:
        """Rename an unreadable state out of the way (``last.pt.unreadable-<time>``); returns the log line."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = []
        for path in (self.last, self.best):
            if path.exists():
                target = path.with_name(f"{path.name}.unreadable-{stamp}")
                os.replace(path, target)
                moved.append(target.name)
        return f"set aside an unreadable resume state ({reason}) as {', '.join(moved)}; starting afresh"

    def load_best(self, device: torch.device | str) -> bool:
        """Load the best weights into the model (if this run wrote any); returns whether it did."""
        best = load_state(self.best, self.fingerprint, device) if self.best.exists() else None
        if best is not None:
            self.model.load_state_dict(best["model"])
        return best is not None


def load_state(path: str | Path, fingerprint: str, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """A training state written for the run ``fingerprint``; ``None`` if it was written for another run."""
    state = read_checkpoint(path, device)
    if state.get("fingerprint") != fingerprint:
        return None
    return state


def load_model_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model saved by training (``model.pt``) and load its weights."""
    import json

    from lfa.models import build_model

    ckpt = read_checkpoint(path, device)
    for key in ("model", "backbone", "num_classes", "in_channels"):
        if key not in ckpt:
            raise CheckpointMismatch(f"{path}: not a model checkpoint written by lfa train (no {key!r})")
    model = build_model(ckpt["backbone"], int(ckpt["num_classes"]), int(ckpt["in_channels"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device), json.loads(ckpt.get("info", "{}"))


#: Prefixes that wrappers and self-supervised frameworks put before a backbone's own tensor names
#: (DataParallel, MoCo's query encoder, SimCLR/BYOL-style "backbone"/"encoder", this package's ``body``).
INIT_PREFIXES = ("module.", "encoder_q.", "encoder.", "backbone.", "model.", "net.", "body.")


def init_cache_path(url: str) -> Path:
    """Where the checkpoint at ``url`` is cached: ``$LFA_CACHE_DIR`` (default ``~/.cache/lfa``)/init/, keyed by
    the whole URL, its ``#sha256=`` pin included (a new pin is a new cache entry)."""
    root = Path(os.environ.get("LFA_CACHE_DIR") or Path.home() / ".cache" / "lfa")
    base = urllib.parse.urlsplit(url)
    name = Path(base.path).name or "checkpoint.pt"
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return root / "init" / f"{digest}-{name}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_init(source: str | Path) -> Path:
    """A local path for ``train.init``: the path itself, or an HTTPS URL downloaded once into the cache.

    A URL may end in ``#sha256=<hex>``; the download is then checked against it (and deleted if it differs),
    and so is the cached file on every later use. Only HTTPS is accepted: weights are code-adjacent data and
    must not travel in clear text.
    """
    text = str(source)
    if "://" not in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise MissingFile(f"train.init: no checkpoint at {path} (see docs/training.md, 'Initial weights')")
        return path
    parts = urllib.parse.urlsplit(text)
    if parts.scheme != "https":
        raise ValueError(f"train.init: only https:// URLs are downloaded, not {parts.scheme}:// ({text})")
    expected = None
    if parts.fragment.startswith("sha256="):
        expected = parts.fragment.removeprefix("sha256=").lower()
    target = init_cache_path(text)
    if target.is_file():
        if expected and _sha256(target) != expected:
            raise CheckpointMismatch(f"train.init: the cached {target} has sha256 {_sha256(target)}, not the "
                                     f"{expected} of {text}: delete it, and the next run downloads it again")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    with urllib.request.urlopen(urllib.parse.urlunsplit(parts._replace(fragment="")), timeout=60) as response:
        with open(part, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    if expected and digest.hexdigest() != expected:
        part.unlink()
        raise CheckpointMismatch(f"train.init: {text}: sha256 {digest.hexdigest()} differs from the one in the URL")
    os.replace(part, target)
    return target


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in INIT_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name


def load_init(model: torch.nn.Module, source: str | Path) -> dict[str, Any]:
    """Initialise ``model`` from a checkpoint (e.g. self-supervised pre-training weights); returns a summary.

    ``source`` is a file or an HTTPS URL (:func:`fetch_init`), read with ``torch.load(weights_only=True)``:
    a bare state dict, or one under ``state_dict`` / ``model``. Keys are mapped onto the model's by
    stripping :data:`INIT_PREFIXES`; tensors the model has no place for (projection heads, a momentum
    encoder) are skipped and counted. The classification head stays at its initialisation (its size is the
    number of classes). Every other tensor of the model must be found with its shape (BatchNorm's
    ``num_batches_tracked`` counters excepted), else the load is refused naming what differs.
    """
    path = fetch_init(source)
    try:
        ckpt = read_checkpoint(path)
    except UnreadableCheckpoint as err:
        again = (f"delete {path}, and the next run downloads it again" if path != Path(str(source)).expanduser()
                 else f"fetch {source} again")
        raise UnreadableCheckpoint(f"train.init: {err}: {again}") from err
    for key in ("state_dict", "model"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointMismatch(f"train.init: {source}: not a state dict of tensors")
    target = model.state_dict()
    linears = [name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]
    head = {f"{linears[-1]}.{p}" for p in ("weight", "bias")} if linears else set()
    by_name = {_strip(k): k for k in target}
    mapped: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in ckpt.items():
        name = by_name.get(_strip(key))
        if name is None or name in head:
            skipped.append(key)
        elif name not in mapped:
            mapped[name] = value
    optional = {k for k in target if k.endswith("num_batches_tracked")} | head
    missing = sorted(set(target) - set(mapped) - optional)
    wrong = sorted(f"{k} {tuple(v.shape)} != {tuple(target[k].shape)}" for k, v in mapped.items()
                   if v.shape != target[k].shape)
    if missing or wrong:
        hint = f"; its first tensors: {list(ckpt)[:3]}" if not mapped else ""
        raise CheckpointMismatch(
            f"train.init: {source}: does not fit this backbone: {len(missing)} of {len(target)} tensors missing "
            f"(e.g. {missing[:3]}), {len(wrong)} with other shapes (e.g. {wrong[:3]}){hint}"
        )
    model.load_state_dict(mapped, strict=False)
    return {"source": str(source), "path": str(path), "sha256": _sha256(path), "loaded": len(mapped),
            "skipped": len(skipped), "head_initialised": sorted(head)}
