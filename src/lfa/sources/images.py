"""Decode image files once, resize them to the training resolution, and pack them into one ``.npy``.

Large-image datasets (ImageNet, CAD-CAP, CelebA) do not fit in memory at full resolution, and many-file
datasets (Breast Histopathology) are slow to read file by file in every training job. The packer decodes
only the selected files, in a thread pool (Pillow releases the GIL while decoding and resizing, so the
threads run in parallel), and writes each image straight into its row of a ``uint8 (N, H, W, 3)`` array
opened with :func:`numpy.lib.format.open_memmap`: memory use stays at a few images per thread.

Resizing: the shorter side is scaled to ``size`` and the centre is cropped to ``size x size`` (JPEGs are
first reduced by the decoder itself, ``Image.draft``, which is much faster). ``size = 0`` keeps the native
size, which must then be the same for all files.

Channels: RGB (3) unless the caller asks for 1 (grayscale, ``L``); the user-data sources (``folder``, ``csv``)
pass ``datasets.<name>.channels`` or, without it, :func:`image_channels` of their files (3 if any file is in a
colour mode, read from the file headers only).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lfa.errors import RawDataInvalid

#: Exceptions Pillow raises for unreadable, truncated or corrupt files.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError)


def _decode_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (*_DECODE_ERRORS, Image.DecompressionBombError)


def decode(path: str | Path, size: int, channels: int = 3) -> np.ndarray:
    """One image as uint8 (H, W, channels): RGB (3) or grayscale (1), resized to ``size x size`` unless 0."""
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    with Image.open(path) as im:
        if size:
            im.draft(mode, (size, size))
        im = to_8bit(im).convert(mode)
        if size:
            im = fit_square(im, size)
        return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], channels)


def to_8bit(im):
    """A 16-bit or 32-bit grayscale image (medical PNGs and TIFFs) scaled to 8 bits; others as they are.

    Pillow's own conversion clips such values at 255 (a 16-bit X-ray turns white). 16-bit modes are scaled by
    1/257 (65535 → 255); 32-bit integer and float images by their range when it exceeds 0..255 (a float image
    within 0..1 by 255).
    """
    from PIL import Image

    if im.mode not in ("I", "F") and not im.mode.startswith("I;16"):
        return im
    a = np.asarray(im, dtype=np.float64)
    top = float(a.max()) if a.size else 0.0
    if im.mode.startswith("I;16") or 255 < top <= 65535:
        a = a / 257.0
    elif top > 65535:
        a = (a - a.min()) * (255.0 / max(top - a.min(), 1e-12))
    elif im.mode == "F" and top <= 1.0:
        a = a * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


#: Pillow modes without colour (bilevel, grayscale with or without alpha, 16/32-bit integer and float).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def _mode(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:  # reads the header only
            return im.mode
    except _decode_errors():
        return None  # unreadable: the packer reports it


def image_channels(root: str | Path, paths: list[str], workers: int | None = None) -> int:
    """3 if any of the files is in a colour mode (RGB, RGBA, palette, CMYK, ...), else 1 (all grayscale).

    Reads each file's header only (Pillow opens lazily), in a thread pool; unreadable files are left to the
    packer, which names them.
    """
    root = Path(root)
    if not paths:
        return 3
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        for mode in pool.map(lambda rel: _mode(root / rel), paths, chunksize=256):
            if mode is not None and mode not in GRAY_MODES:
                return 3
    return 1


def fit_square(im, size: int):
    """Scale the shorter side to ``size`` and crop the centre to ``size x size``."""
    from PIL import Image

    w, h = im.size
    if (w, h) == (size, size):
        return im
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


@dataclass
class PackResult:
    """What the packer wrote: the shape, and the files it could not decode (relative paths, reasons)."""

    shape: tuple[int, ...]
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (row, path, reason)


def default_workers() -> int:
    """Threads for decoding: the Snakemake job's threads when run as a job script, else the usable CPUs."""
    main = sys.modules.get("__main__")
    job = getattr(main, "snakemake", None)
    threads = getattr(job, "threads", None)
    if isinstance(threads, int) and threads > 0:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def pack_files(root: str | Path, paths: list[str], out: str | Path, size: int, workers: int | None = None,
               chunk: int = 64, desc: str = "decode", channels: int = 3) -> PackResult:
    """Decode ``root/paths[i]`` into row i of a new ``out`` (.npy, uint8 (N, size, size, channels)).

    Rows of files that fail to decode are left black and reported in ``PackResult.failed``; the caller
    decides whether that is an error or a skip (see :func:`compact_rows`).
    """
    from tqdm import tqdm

    root = Path(root)
    n = len(paths)
    errors = _decode_errors()
    workers = workers or default_workers()
    failed: list[tuple[int, str, str]] = []
    if size == 0:  # native size: the first readable file fixes the shape
        shape, start = None, n
        for i, rel in enumerate(paths):
            try:
                shape, start = decode(root / rel, 0, channels).shape, i
                break
            except errors as err:
                failed.append((i, rel, f"{type(err).__name__}: {err}"))
        if shape is None:
            shape = (1, 1, channels)
    else:
        shape, start = (size, size, channels), 0
    array = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(n, *shape))

    def work(lo: int, hi: int) -> list[tuple[int, str, str]]:
        bad = []
        for i in range(lo, hi):
            try:
                img = decode(root / paths[i], size, channels)
            except errors as err:
                bad.append((i, paths[i], f"{type(err).__name__}: {err}"))
                continue
            if img.shape != shape:
                raise RawDataInvalid(f"{root / paths[i]}: image size {img.shape[1]}x{img.shape[0]} differs from "
                                 f"{shape[1]}x{shape[0]} of the first image; set datasets.<name>.image_size "
                                 "to resize all images to one size")
            array[i] = img
        return bad

    bounds = [(lo, min(lo + chunk, n)) for lo in range(start, n, chunk)]
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=n, initial=start, desc=desc, unit=" img", file=sys.stderr, mininterval=2.0,
                 disable=None) as bar:
        futures = [pool.submit(work, lo, hi) for lo, hi in bounds]
        try:
            for (lo, hi), fut in zip(bounds, futures, strict=True):
                failed.extend(fut.result())
                bar.update(hi - lo)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    array.flush()
    return PackResult(shape=(n, *shape), failed=sorted(failed))


def compact_rows(src: str | Path, dst: str | Path, keep: np.ndarray, chunk: int = 4096) -> tuple[int, ...]:
    """Copy rows ``keep`` (sorted) of the .npy ``src`` into a new .npy ``dst``, chunk by chunk."""
    source = np.load(src, mmap_mode="r")
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=source.dtype, shape=(len(keep), *source.shape[1:]))
    for lo in range(0, len(keep), chunk):
        out[lo:lo + chunk] = source[keep[lo:lo + chunk]]
    out.flush()
    shape = out.shape
    del out, source
    return shape


def save_rows(images: np.ndarray, rows: np.ndarray, out: str | Path, size: int = 0,
              chunk: int = 8192) -> tuple[int, ...]:
    """Write ``images[rows]`` to a .npy file chunk by chunk (no second full copy in memory).

    ``size`` other than 0 and the native size: each image is resized like a decoded file (:func:`fit_square`).
    """
    n, h, w, c = len(rows), *images.shape[1:]
    resize = bool(size) and (h, w) != (size, size)
    shape = (n, size, size, c) if resize else (n, h, w, c)
    dst = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=shape)
    for lo in range(0, n, chunk):
        block = images[rows[lo:lo + chunk]]
        if resize:
            from PIL import Image

            block = np.stack([np.asarray(fit_square(Image.fromarray(im.squeeze(-1) if c == 1 else im), size))
                              .reshape(size, size, c) for im in block])
        dst[lo:lo + chunk] = block
    dst.flush()
    del dst
    return shape
