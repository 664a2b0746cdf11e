"""Checkpoint loading: always ``torch.load(weights_only=True)``, always checked against the run it is for."""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import torch


class CheckpointMismatch(RuntimeError):
    """A checkpoint that belongs to another configuration (classes, backbone, job)."""


def _load(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def load_state(path: str | Path, fingerprint: str, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """A training state written for the run ``fingerprint``; ``None`` if it was written for another run."""
    state = _load(path, device)
    if state.get("fingerprint") != fingerprint:
        return None
    return state


def load_model_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model saved by training (``model.pt``) and load its weights."""
    import json

    from lfa.models import build_model

    ckpt = _load(path, device)
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
    """Where the checkpoint at ``url`` is cached: ``$LFA_CACHE_DIR`` (default ``~/.cache/lfa``)/init/."""
    root = Path(os.environ.get("LFA_CACHE_DIR") or Path.home() / ".cache" / "lfa")
    base = urllib.parse.urlsplit(url)
    name = Path(base.path).name or "checkpoint.pt"
    digest = hashlib.sha256(url.split("#")[0].encode()).hexdigest()[:12]
    return root / "init" / f"{digest}-{name}"


def fetch_init(source: str | Path) -> Path:
    """A local path for ``train.init``: the path itself, or an HTTPS URL downloaded once into the cache.

    A URL may end in ``#sha256=<hex>``; the download is then checked against it (and deleted if it differs).
    Only HTTPS is accepted: weights are code-adjacent data and must not travel in clear text.
    """
    text = str(source)
    if "://" not in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"train.init: no checkpoint at {path} (see docs/training.md, 'Initial weights')")
        return path
    parts = urllib.parse.urlsplit(text)
    if parts.scheme != "https":
        raise ValueError(f"train.init: only https:// URLs are downloaded, not {parts.scheme}:// ({text})")
    expected = None
    if parts.fragment.startswith("sha256="):
        expected = parts.fragment.removeprefix("sha256=").lower()
    target = init_cache_path(text)
    if target.is_file():
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
    ckpt = _load(path)
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
    return {"source": str(source), "path": str(path), "loaded": len(mapped), "skipped": len(skipped),
            "head_initialised": sorted(head)}
