"""The device a job runs on: choosing it, its numeric settings (bf16 autocast, TF32) and its random state."""

from __future__ import annotations

import contextlib
import functools

import torch

from lfa.errors import ConfigError


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device is 'cuda' but no CUDA device is visible")
        return torch.device("cuda")
    return torch.device("cpu")



def configure(device: torch.device) -> None:
    """cuDNN autotuning and TF32 matrix products on a GPU (and a fresh peak-memory count)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)


@functools.cache
def _bf16_supported(index: int) -> bool:
    return torch.cuda.is_bf16_supported()


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on a GPU that supports it; fp32 elsewhere (a CPU, or an older GPU)."""
    if enabled and device.type == "cuda" and _bf16_supported(device.index or 0):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global random generators' states (what dropout draws from), for a mid-epoch checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)



def device_name(device: torch.device) -> str:
    return str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
