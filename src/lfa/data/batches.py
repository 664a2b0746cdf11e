"""Where a job's images live and how its batches reach the model, in the order of an epoch.

A prepared dataset up to ``train.device_cache_gb`` lives on the device as uint8 for the whole job
(:class:`DeviceData`); a larger one streams from its memory-mapped ``images.npy`` (:class:`StreamingData`:
background threads gather each batch into pinned host buffers, copied to the device without blocking).
Device-resident batches are gathered and prepared several steps at a time (:func:`chunk_steps`), so a
small model's step is not slowed by the launches of the augmentation kernels (:func:`model_batches`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lfa.data.augment import apply_augment, draw_augment, slice_augment


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


def n_batches(n: int, bs: int, drop_single: bool) -> int:
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


def choose_data(images: np.ndarray, labels: np.ndarray, device: torch.device, cache_gb: float,
                loader_threads: int) -> DeviceData | StreamingData:
    """:class:`DeviceData` if the packed images fit ``cache_gb`` (``train.device_cache_gb``), else
    :class:`StreamingData` with ``loader_threads`` (``train.loader_threads``)."""
    if images.nbytes <= float(cache_gb) * 1e9:
        return DeviceData(images, labels, device)
    return StreamingData(images, labels, device, int(loader_threads))


def chunk_steps(budget_mb: float, batch_size: int, channels: int, side: int) -> int:
    """Training steps whose batches are gathered, augmented and resized at once (device-resident data).

    As many as fit ``budget_mb`` (``train.augment_chunk_mb``) of model input (float32), at most 64: a CIFAR batch
    (100×3×32×32) is 1.2 MB, so 54 steps share one set of augmentation kernels; a 256×256 batch (79 MB)
    is prepared alone. The results do not depend on it (the random draws are per image, per epoch).
    """
    budget = float(budget_mb) * 2**20
    per_step = batch_size * channels * side * side * 4
    return int(max(1, min(64, budget // per_step)))


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
