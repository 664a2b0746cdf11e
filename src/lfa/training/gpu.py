"""GPU slots on a workstation: which GPU a training job uses, chosen by the job itself.

Snakemake counts GPUs (``--resources gpu=4`` caps how many jobs that declare ``gpu=1`` run at once) but does
not say *which* GPU a job should use. Each training job therefore takes a free *slot* itself:

- there are ``devices × jobs_per_device`` slots (config ``gpu.devices``, 0 = detect with ``nvidia-smi``;
  ``gpu.jobs_per_device`` > 1 shares a GPU between several small jobs, e.g. CIFAR-sized ones);
- slot ``s`` is device ``s mod devices``, so the first jobs spread over the GPUs before any GPU gets two;
- a slot is held by a non-blocking ``fcntl.flock`` on ``<results>/.gpu_slots/slot<s>.lock``. The kernel
  drops the lock when the process ends in any way (exit, exception, SIGKILL), so a slot can never leak;
- ``CUDA_VISIBLE_DEVICES`` is set to the slot's device *before* CUDA is initialised in the process, so the
  job sees one GPU, ``cuda:0``.

Where a scheduler already chose the GPUs (SLURM sets ``SLURM_JOB_ID`` and ``CUDA_VISIBLE_DEVICES``; any
other launcher that sets ``CUDA_VISIBLE_DEVICES``), nothing is locked and the given devices are used.

Every acquire and release is logged with a timestamp (``gpu slot 1 acquired device=1 t=...``); the
workflow test reads these lines back to check that no slot was ever held by two jobs at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: Environment override of the detected device count (tests, or a machine where detection fails).
DEVICES_ENV = "LFA_GPU_DEVICES"


@dataclass
class Slot:
    """The GPU a job got: ``index`` is None where a scheduler chose (or no GPU exists)."""

    index: int | None
    device: str | None  # the CUDA_VISIBLE_DEVICES value this job runs with (None: unchanged / no GPU)
    reason: str


def detect_devices() -> int:
    """Number of GPUs on this machine, without initialising CUDA in this process.

    ``$LFA_GPU_DEVICES`` if set; else the lines of ``nvidia-smi -L``; else torch's count in a child process
    (CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when it initialises: asking here would fix it too early).
    """
    if os.environ.get(DEVICES_ENV, "").strip():
        return int(os.environ[DEVICES_ENV])
    smi = shutil.which("nvidia-smi")
    if smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                             capture_output=True, text=True, timeout=120)
        return int(out.stdout.strip().splitlines()[-1])
    return 0


def scheduler_assigned(env: dict[str, str] | None = None) -> str | None:
    """Why the GPUs are already chosen for this process (SLURM, a preset CUDA_VISIBLE_DEVICES), or None."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        return f"SLURM job {env['SLURM_JOB_ID']} (CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', 'unset')})"
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        return f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} set by the launcher"
    return None


def _log_default(msg: str) -> None:
    print(f"[lfa gpu] {msg}", file=sys.stderr, flush=True)


def _stamp() -> str:
    return f"t={time.time():.6f}"


@contextlib.contextmanager
def gpu_slot(slots_dir: str | Path, devices: int = 0, jobs_per_device: int = 1, job: str = "",
             log: Callable[[str], None] = _log_default, poll_seconds: float = 0.5,
             env: dict[str, str] | None = None) -> Iterator[Slot]:
    """Hold a free GPU slot for the duration of the block, with ``CUDA_VISIBLE_DEVICES`` set to its device.

    ``devices`` 0 detects the count (:func:`detect_devices`). If all slots are taken (``--resources gpu=N``
    larger than the slots), waits until one frees. ``env`` is the environment to read and set (default:
    ``os.environ``).
    """
    env = os.environ if env is None else env
    preset = scheduler_assigned(env)
    if preset:
        log(f"gpu: using the devices given by {preset}")
        yield Slot(None, env.get("CUDA_VISIBLE_DEVICES"), preset)
        return
    n_devices = devices or detect_devices()
    if n_devices <= 0:
        log("gpu: no GPU found; running without a slot")
        yield Slot(None, None, "no GPU")
        return
    n_slots = n_devices * max(1, jobs_per_device)
    slots_dir = Path(slots_dir)
    slots_dir.mkdir(parents=True, exist_ok=True)
    handle: IO[Any] | None = None
    index = -1
    waited = False
    while handle is None:
        for s in range(n_slots):
            fh = open(slots_dir / f"slot{s}.lock", "a+")  # noqa: SIM115 - held open while the slot is held
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            handle, index = fh, s
            break
        if handle is None:
            if not waited:
                log(f"gpu: all {n_slots} slots busy; waiting for one ({_stamp()})")
                waited = True
            time.sleep(poll_seconds)
    device = str(index % n_devices)
    old = env.get("CUDA_VISIBLE_DEVICES")
    env["CUDA_VISIBLE_DEVICES"] = device
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid={os.getpid()} job={job} device={device} since={time.time():.3f}\n")
    handle.flush()
    log(f"gpu slot {index} acquired device={device} pid={os.getpid()} {_stamp()} job={job}")
    try:
        yield Slot(index, device, f"slot {index} of {n_slots}")
    finally:
        log(f"gpu slot {index} released device={device} pid={os.getpid()} {_stamp()} job={job}")
        if old is None:
            env.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            env["CUDA_VISIBLE_DEVICES"] = old
        handle.close()  # closing the file drops the lock


def parse_slot_log(text: str) -> list[dict[str, Any]]:
    """The acquire/release events of :func:`gpu_slot` in a log: slot, event, device, pid, time, job."""
    events = []
    for line in text.splitlines():
        marker = line.find("gpu slot ")
        if marker < 0:
            continue
        words = line[marker:].split()
        if len(words) < 4 or words[3] not in ("acquired", "released"):
            continue
        fields = dict(w.split("=", 1) for w in words[4:] if "=" in w)
        events.append({"slot": int(words[2]), "event": words[3], "device": fields.get("device"),
                       "pid": int(fields.get("pid", -1)), "time": float(fields["t"]), "job": fields.get("job", "")})
    return events


def overlapping_holds(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of holds of the same slot whose time intervals intersect (empty: every slot held once at a time)."""
    holds: dict[tuple[int, int, str], dict[str, Any]] = {}
    intervals: list[dict[str, Any]] = []
    for ev in sorted(events, key=lambda e: e["time"]):
        key = (ev["slot"], ev["pid"], ev["job"])
        if ev["event"] == "acquired":
            holds[key] = {"slot": ev["slot"], "job": ev["job"], "pid": ev["pid"], "start": ev["time"], "end": None}
        elif key in holds:
            hold = holds.pop(key)
            hold["end"] = ev["time"]
            intervals.append(hold)
    intervals += [{**h, "end": float("inf")} for h in holds.values()]  # never released: held to the end
    clashes = []
    by_slot: dict[int, list[dict[str, Any]]] = {}
    for hold in intervals:
        by_slot.setdefault(hold["slot"], []).append(hold)
    for holds_of_slot in by_slot.values():
        holds_of_slot.sort(key=lambda h: h["start"])
        for a, b in zip(holds_of_slot, holds_of_slot[1:], strict=False):
            if b["start"] < a["end"]:
                clashes.append((a, b))
    return clashes
