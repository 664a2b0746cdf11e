"""Benchmark and equivalence check: vectorized ``per_class_metrics`` vs a per-class scikit-learn loop.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_metrics.py            # C=1000, N=50,000 (about 2-4 min)
    PYTHONPATH=src python benchmarks/bench_metrics.py --quick    # C=100, N=5,000 (seconds)

Two cases are run: long-tailed single-label (one-hot, ImageNet-LT-like) targets with float32 sigmoid scores,
and the same scores rounded to 1e-3 (many ties).  For each case the script prints the time of the
scikit-learn loop and of the vectorized function, their ratio, and the peak memory (tracemalloc) of the
vectorized call; it exits with status 1 if the results differ (thresholds must be bit-identical, every
other metric within 1e-9 absolute, NaN in the same places) or, without ``--quick``, if the speed-up is
below ``--min-speedup`` (default 50).

:func:`sklearn_reference_metrics` (the reference implementation) and the data live in
``tests/metrics_reference.py``, which the tests check against too.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
try:
    from lfa.evaluation.metrics import per_class_metrics
except ImportError:  # running from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(REPO / "src"))
    from lfa.evaluation.metrics import per_class_metrics
from metrics_reference import ATOL, compare_frames, make_data, sklearn_reference_metrics  # noqa: E402


def run_case(name: str, n: int, n_classes: int, ties: bool, seed: int) -> tuple[bool, float]:
    """Run one case; returns (results identical, speed-up)."""
    vs, vl, ts, tl = make_data(n, n_classes, seed=seed, ties=ties)
    pos = vl.sum(axis=0)
    print(f"\n== {name}: C={n_classes}, N={n:,} per split, scores {vs.dtype}, "
          f"positives per class (val) {int(pos.min())}..{int(pos.max())}, "
          f"distinct test scores {np.unique(ts).size:,}")
    t0 = time.perf_counter()
    ref = sklearn_reference_metrics(vs, vl, ts, tl)
    t_ref = time.perf_counter() - t0
    per_class_metrics(vs[:, :2], vl[:, :2], ts[:, :2], tl[:, :2])  # warm-up (imports, first-call costs)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fast = per_class_metrics(vs, vl, ts, tl)
        times.append(time.perf_counter() - t0)
    t_fast = min(times)
    tracemalloc.start()
    per_class_metrics(vs, vl, ts, tl)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    vs_c, ts_c = np.ascontiguousarray(vs), np.ascontiguousarray(ts)
    t0 = time.perf_counter()
    fast_c = per_class_metrics(vs_c, vl, ts_c, tl)
    t_c = time.perf_counter() - t0
    problems = compare_frames(fast, ref) + [f"C-ordered input: {p}" for p in compare_frames(fast_c, ref)]
    input_mib = (vs.nbytes + vl.nbytes + ts.nbytes + tl.nbytes) / 2**20
    print(f"sklearn loop      : {t_ref:9.3f} s")
    print(f"vectorized        : {t_fast:9.3f} s   (best of 3; column-major input)")
    print(f"speed-up          : {t_ref / t_fast:9.1f} x")
    print(f"vectorized, C-order input (transposed in blocks): {t_c:.3f} s ({t_ref / t_c:.1f} x)")
    print(f"peak memory (tracemalloc) of the vectorized call: {peak / 2**20:.1f} MiB "
          f"(inputs, not counted: {input_mib:.0f} MiB)")
    nan = {c: int(fast[c].isna().sum()) for c in ("auc", "threshold", "f1", "miss")}
    print(f"classes with NaN: {nan}")
    if problems:
        print("RESULTS DIFFER:")
        for p in problems:
            print("  -", p)
    else:
        print("results identical: thresholds bit-identical, other metrics within "
              f"{ATOL:g}, NaN in the same places")
    return not problems, t_ref / t_fast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="C=100, N=5,000 (CI-sized)")
    parser.add_argument("--classes", type=int, default=None, help="number of classes C")
    parser.add_argument("--samples", type=int, default=None, help="samples N per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-speedup", type=float, default=None,
                        help="fail below this speed-up (default 50, none with --quick)")
    args = parser.parse_args(argv)
    n_classes = args.classes or (100 if args.quick else 1000)
    n = args.samples or (5_000 if args.quick else 50_000)
    min_speedup = args.min_speedup if args.min_speedup is not None else (0.0 if args.quick else 50.0)
    ok = True
    for name, ties in (("long-tailed, float32 scores", False), ("long-tailed, scores rounded to 1e-3", True)):
        same, speedup = run_case(name, n, n_classes, ties, args.seed)
        if not same:
            ok = False
        if speedup < min_speedup:
            print(f"speed-up {speedup:.1f}x is below the required {min_speedup:g}x")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
