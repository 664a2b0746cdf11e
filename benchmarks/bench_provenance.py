"""Benchmark: what checking a prepared dataset on use costs (lfa.data.datasets.verify_prepared).

Run from the repository root (writes a packed file of ``--gb`` GB under ``--dir``, removed at the end)::

    python benchmarks/bench_provenance.py --gb 20 --dir /tmp      # about 3-6 min, mostly writing the file
    python benchmarks/bench_provenance.py --gb 0.2 --dir /tmp     # seconds

Three checks of the same prepared folder, each against a baseline run in this process:

- stamps unchanged (every training job, evaluation and report): two ``stat`` calls and reading meta.json,
  against one ``stat`` call;
- stamp changed, content unchanged (a ``touch``, a copy without times): the content hashed again, against
  reading the same bytes once without hashing (the disk's own speed, page cache as it is);
- an edit in place: the same re-hash, and the change named.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
try:
    from lfa.data.datasets import content_hash, file_stamps, verify_prepared
except ImportError:  # a checkout without the package installed
    sys.path.insert(0, str(REPO / "src"))
    from lfa.data.datasets import content_hash, file_stamps, verify_prepared

SIDE, CHANNELS = 256, 3  # ImageNet-sized rows (the paper's Table 2 packs 128 px; a 256 px set is 4x larger)


def make_prepared(folder: Path, gigabytes: float) -> None:
    """A prepared folder whose images.npy holds ``gigabytes`` of random rows, with its index and meta.json."""
    folder.mkdir(parents=True)
    row = SIDE * SIDE * CHANNELS
    n = max(1, int(gigabytes * 1e9 // row))
    images = np.lib.format.open_memmap(folder / "images.npy", "w+", np.uint8, (n, SIDE, SIDE, CHANNELS))
    rng = np.random.default_rng(0)
    for start in range(0, n, 2048):
        stop = min(n, start + 2048)
        images[start:stop] = rng.integers(0, 256, (stop - start, SIDE, SIDE, CHANNELS), dtype=np.uint8)
    images.flush()
    del images
    index = pd.DataFrame({"id": [str(i) for i in range(n)], "row": np.arange(n), "fold": np.arange(n) % 5,
                          "label_0": (np.arange(n) % 2).astype(np.int8)})
    index.to_parquet(folder / "index.parquet", index=False)
    meta = {"name": "bench", "class_names": ["a"], "data_hash": content_hash(folder / "images.npy", index, ["a"]),
            "stamps": file_stamps(folder)}
    (folder / "meta.json").write_text(json.dumps(meta))


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def plain_read(path: Path, chunk: int = 1 << 24) -> None:
    with open(path, "rb") as fh:
        while fh.read(chunk):
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=20.0, help="size of images.npy in GB (default %(default)s)")
    parser.add_argument("--dir", default="/tmp", help="where to write it (default %(default)s)")
    args = parser.parse_args()
    folder = Path(args.dir) / f"lfa-bench-provenance-{os.getpid()}"
    try:
        t0 = time.perf_counter()
        make_prepared(folder, args.gb)
        size = os.path.getsize(folder / "images.npy")
        print(f"images.npy: {size / 1e9:.1f} GB, written and hashed in {time.perf_counter() - t0:.0f} s")
        stat_once = timed(lambda: os.stat(folder / "images.npy"), repeat=200)
        unchanged = timed(lambda: verify_prepared(folder), repeat=200)
        print(f"stamps unchanged: {unchanged * 1e6:.0f} us per check; {unchanged / stat_once:.1f}x one stat call")
        os.utime(folder / "images.npy")  # touched: same bytes, new stamp
        read = timed(lambda: plain_read(folder / "images.npy"))
        rehash = timed(lambda: verify_prepared(folder))
        print(f"stamp changed, same content: {rehash:.1f} s ({size / rehash / 1e9:.2f} GB/s); "
              f"{rehash / read:.2f}x reading the file once ({read:.1f} s)")
        images = np.load(folder / "images.npy", mmap_mode="r+")
        images[0, 0, 0, 0] ^= 1  # one value edited in place
        images.flush()
        del images
        edited = {}
        seconds = timed(lambda: edited.setdefault("check", verify_prepared(folder)))
        print(f"edited in place: {seconds:.1f} s, found: {edited['check'].changed}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
