"""Checkpoint loading: always ``torch.load(weights_only=True)``, always checked against the run it is for."""

from __future__ import annotations

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


def load_init(model: torch.nn.Module, source: str | Path) -> None:
    """Initialise ``model`` from a checkpoint (e.g. self-supervised pre-training weights).

    Keys are mapped onto the model's (common prefixes such as ``module.``, ``backbone.``, ``encoder.`` are
    stripped; the classification head is left at its initialisation). Every other tensor must match in name
    and shape, else the load is refused with the names that differ.
    """
    ckpt = _load(source)
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        ckpt = ckpt["model"]
    target = model.state_dict()
    body_keys = {k.removeprefix("body."): k for k in target}
    mapped: dict[str, torch.Tensor] = {}
    for key, value in ckpt.items():
        name = key
        for prefix in ("module.", "backbone.", "encoder.", "model."):
            name = name.removeprefix(prefix)
        if name in body_keys:
            mapped[body_keys[name]] = value
    linears = [name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]
    head = {f"{linears[-1]}.{p}" for p in ("weight", "bias")} if linears else set()
    missing = sorted(set(target) - set(mapped) - head)
    wrong = sorted(k for k, v in mapped.items() if v.shape != target[k].shape and k not in head)
    if missing or wrong:
        raise CheckpointMismatch(
            f"{source}: does not fit this backbone: {len(missing)} tensors missing (e.g. {missing[:3]}), "
            f"{len(wrong)} with other shapes (e.g. {wrong[:3]})"
        )
    for k in head:
        mapped.pop(k, None)
    model.load_state_dict(mapped, strict=False)
