"""Per-class one-vs-rest metrics of a multi-label (sigmoid) classifier, vectorized over classes.

For every class ``c`` the binary problem ``labels[:, c]`` vs ``scores[:, c]`` is evaluated exactly as the
seed implementation did with scikit-learn, one class at a time:

1. ``threshold``: on the validation split, ``precision_recall_curve(y, s)``; F1 = 2PR/(P+R) (0 where
   P+R = 0); the threshold is ``thresholds[argmax(f1[:-1])]`` (first maximum, i.e. the lowest threshold
   among tied maxima, since scikit-learn returns thresholds in increasing order).
2. ``auc``: ROC AUC on the test split (``roc_curve`` + ``auc``; ties count one half).
3. On the test split the prediction is ``score > threshold`` (strictly greater); ``accuracy`` and the
   support-weighted (``average="weighted"``, ``zero_division=0``) ``precision``, ``recall``, ``f0_5``,
   ``f0`` and ``f1`` over the two labels {0, 1}.  Weighted recall equals accuracy and F0 equals weighted
   precision; both are kept because the paper reports them.
4. ``miss`` = FN/(TP+FN) and ``overflow`` = FP/(FP+TN) of the positive label at that threshold, and the
   test supports ``n_pos`` / ``n_neg``.

Undefined values are NaN (see ``docs/schema.md``): ``threshold`` when the validation split has no
positive, then every threshold-dependent metric; ``auc`` when the test split lacks positives or
negatives; ``miss`` without test positives; ``overflow`` without test negatives.

How it is computed
------------------
No per-class sort is needed.  Every quantity above is a function of, for a handful of *query* values per
class (the distinct scores of the positives, plus the threshold on the test split), the number of the
class's scores that are strictly below / equal to the query.  Those counts are obtained for a chunk of
classes at once from a histogram of order-preserving integer keys of the float scores (the IEEE-754 bit
pattern, made monotone), using per-class cells that adapt to the class's score range; the few scores that
share a cell with a query are then compared exactly.  The threshold is chosen among the distinct positive
scores: a threshold at a score without positives always has a strictly smaller F1 than the next larger
distinct score (same recall, strictly higher precision), so the first maximum of scikit-learn's curve is
always at a positive's score.  Precision, recall and F1 at those points are computed with the same
floating-point operations as scikit-learn (integer counts converted to float64, one division each), so the
selected threshold is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS",
    "METRIC_COLUMNS",
    "METRIC_DISPLAY",
    "METRIC_NAMES",
    "PAPER_METRICS",
    "per_class_metrics",
]

#: Metric columns of :func:`per_class_metrics`, in order (all float64).
METRIC_COLUMNS: list[str] = [
    "auc",
    "threshold",
    "accuracy",
    "precision",
    "recall",
    "f0_5",
    "f0",
    "f1",
    "miss",
    "overflow",
    "sensitivity",
    "specificity",
    "average_precision",
    "brier",
    "calibration_error",
]

#: Bins of :func:`calibration_bins` (equal width over [0, 1], torchmetrics' BinaryCalibrationError default).
CALIBRATION_BINS = 15

#: The metrics reported in the paper's tables, in the paper's order.
PAPER_METRICS: list[str] = ["auc", "threshold", "accuracy", "precision", "recall", "f0_5", "f0", "f1"]

#: Display names of the paper metrics.
METRIC_DISPLAY: dict[str, str] = {
    "auc": "AUC",
    "threshold": "threshold",
    "accuracy": "acc",
    "precision": "Precision",
    "recall": "Recall",
    "f0_5": "F0.5",
    "f0": "F0",
    "f1": "F1",
}

#: Display names of every metric column (the paper's as the paper prints them). "ECE" names a loss in this
#: project, so the calibration error is never abbreviated to it.
METRIC_NAMES: dict[str, str] = {**METRIC_DISPLAY, "miss": "Miss rate", "overflow": "Overflow rate",
                                "sensitivity": "Sensitivity", "specificity": "Specificity",
                                "average_precision": "Average precision",
                                "calibration_error": "Calibration error (15 bins)", "brier": "Brier score"}

#: All columns of :func:`per_class_metrics`, in order.
COLUMNS: list[str] = ["class", *METRIC_COLUMNS, "n_pos", "n_neg"]

# Target number of score elements per class chunk (bounds every temporary to a few MiB).
_CHUNK_ELEMENTS = 1 << 20
# Rows per block when a C-ordered (N, C) array is transposed chunk by chunk.
_TRANSPOSE_ROWS = 512


@dataclass(frozen=True)
class _KeySpace:
    """Order-preserving unsigned integer keys for one floating dtype."""

    float_dtype: np.dtype
    uint_dtype: np.dtype
    sign: int  # the sign bit
    inf_bits: int  # bit pattern of +inf (non-negative finite floats have smaller patterns)

    def keys(self, values: np.ndarray) -> np.ndarray:
        """Monotone keys of finite ``values``: ``a < b`` iff ``key(a) < key(b)``, ``-0.0`` == ``+0.0``."""
        v = np.asarray(values, dtype=self.float_dtype) + self.float_dtype.type(0.0)  # -0.0 -> +0.0
        bits = v.view(self.uint_dtype)
        sign = self.uint_dtype.type(self.sign)
        neg = (bits & sign) != 0
        return np.where(neg, ~bits, bits | sign).astype(self.uint_dtype, copy=False)


_KEYS_32 = _KeySpace(np.dtype(np.float32), np.dtype(np.uint32), 1 << 31, 0x7F800000)
_KEYS_64 = _KeySpace(np.dtype(np.float64), np.dtype(np.uint64), 1 << 63, 0x7FF0000000000000)


def _key_space(*arrays: np.ndarray) -> _KeySpace:
    """float32 keys when every score array is float32, float64 keys otherwise (exact conversion)."""
    if all(a.dtype == np.float32 for a in arrays):
        return _KEYS_32
    for a in arrays:
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"scores must be a real numeric array, got dtype {a.dtype}")
    return _KEYS_64


def _check_labels(labels: np.ndarray, name: str) -> None:
    if labels.dtype == np.bool_ or labels.size == 0:
        return
    if np.issubdtype(labels.dtype, np.integer):
        if labels.min() < 0 or labels.max() > 1:
            raise ValueError(f"{name} must contain only 0 and 1")
        return
    if np.issubdtype(labels.dtype, np.floating):
        if not bool(np.all((labels == 0) | (labels == 1))):
            raise ValueError(f"{name} must contain only 0 and 1")
        return
    raise TypeError(f"{name} must be a boolean or 0/1 numeric array, got dtype {labels.dtype}")


def _flat_nonzero(flat: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a contiguous 1-D array, scanning 8 bytes at a time for sparse data."""
    per = 8 // flat.itemsize if flat.itemsize < 8 else 1
    if per == 1 or flat.size < 64:
        return np.flatnonzero(flat)
    whole = (flat.size // per) * per
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    cand = (words[:, None] * per + np.arange(per)).ravel()
    hits = cand[flat[cand] != 0]
    tail = whole + np.flatnonzero(flat[whole:])
    return np.concatenate([hits, tail]) if tail.size else hits


def _positives(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive entries of an (N, C) 0/1 matrix as ``(cls, idx, class_starts)``.

    ``cls``/``idx`` are sorted by class, then sample; ``class_starts[c]:class_starts[c + 1]`` slices the
    positives of class ``c``.
    """
    n, n_classes = labels.shape
    if labels.flags.f_contiguous and not labels.flags.c_contiguous:
        flat = _flat_nonzero(labels.T.reshape(-1))  # (C, N) memory order: already class-major
        cls, idx = np.divmod(flat, n) if n else (flat, flat)
    else:
        flat = _flat_nonzero(np.ascontiguousarray(labels).reshape(-1))
        idx, cls = np.divmod(flat, n_classes) if n_classes else (flat, flat)
        order = np.argsort(cls, kind="stable")
        cls, idx = cls[order], idx[order]
    starts = np.searchsorted(cls, np.arange(n_classes + 1))
    return cls.astype(np.int64, copy=False), idx.astype(np.int64, copy=False), starts


class _RowReader:
    """Reads class chunks of an (N, C) array as C-contiguous (k, N) rows of the working dtype."""

    def __init__(self, array: np.ndarray, dtype: np.dtype, max_rows: int) -> None:
        self.array = array
        self.dtype = dtype
        self.columns_contiguous = array.flags.f_contiguous
        self.buffer = None if self.columns_contiguous else np.empty((max_rows, array.shape[0]), dtype=dtype)

    def rows(self, c0: int, c1: int) -> np.ndarray:
        sub = self.array[:, c0:c1]
        if self.columns_contiguous:
            return np.ascontiguousarray(sub.T, dtype=self.dtype)
        assert self.buffer is not None
        out = self.buffer[: c1 - c0]
        n = sub.shape[0]
        for r0 in range(0, n, _TRANSPOSE_ROWS):
            out[:, r0 : r0 + _TRANSPOSE_ROWS] = sub[r0 : r0 + _TRANSPOSE_ROWS].T
        return out


def _chunk_keys(x: np.ndarray, ks: _KeySpace) -> tuple[np.ndarray, int]:
    """Integer view of a (k, N) score block and the offset that makes it the monotone key.

    Returns ``(b, flip)`` with ``key = b + flip`` elementwise.  When every score is a non-negative float
    (no ``-0.0``), ``b`` is the bit pattern itself and no copy is made; otherwise ``b`` is the key.
    Raises ``ValueError`` on non-finite scores.
    """
    b = x.view(ks.uint_dtype)
    if b.size == 0:
        return b, ks.sign
    bmax = int(b.max())
    if bmax < ks.sign:
        if bmax >= ks.inf_bits:
            raise ValueError("scores must be finite (found inf or NaN)")
        return b, ks.sign
    if not np.isfinite(x).all():
        raise ValueError("scores must be finite (found inf or NaN)")
    return ks.keys(x), 0


def _bit_length(values: np.ndarray) -> np.ndarray:
    """Bit length of non-negative integers (vectorized ``int.bit_length``)."""
    out = np.zeros(values.shape, dtype=np.int64)
    v = values.astype(np.uint64)
    while np.any(v):
        nz = v != 0
        out += nz
        v >>= np.uint64(1)
    return out


class _Workspace:
    """Scratch buffers reused by every class chunk (fresh large allocations are comparatively slow).

    The per-cell tables are kept in their neutral state (``first == -1``, ``is_query == False``) between
    calls; each call resets only the entries it set.
    """

    def __init__(self, n_elements: int, n_table: int) -> None:
        self.cell = np.empty(n_elements, dtype=np.int64)
        self.hit = np.empty(n_elements, dtype=np.bool_)
        self.cum = np.empty(n_table, dtype=np.int64)
        self.first = np.full(n_table, -1, dtype=np.int64)
        self.end = np.zeros(n_table, dtype=np.int64)
        self.is_query = np.zeros(n_table, dtype=np.bool_)


def _rank_counts(
    b: np.ndarray, flip: int, q_row: np.ndarray, q_key: np.ndarray, cell_bits: int, ws: _Workspace
) -> tuple[np.ndarray, np.ndarray]:
    """For each query ``(row, key)``, count the elements of ``b[row]`` whose key is below / equal to it.

    ``b`` is a (k, N) unsigned array with element keys ``b + flip`` (see :func:`_chunk_keys`); queries
    are sorted by ``(row, key)`` without duplicates.  Returns ``(less, equal)`` as int64 arrays.

    Each row is cut into ``2**cell_bits`` cells of equal key width over its own key range; a histogram of
    the cells gives the number of elements in cells below a query's cell, and the elements that share a
    cell with a query (found through a lookup table) are compared with the query exactly.
    """
    k, n = b.shape
    n_q = q_key.size
    less = np.zeros(n_q, dtype=np.int64)
    equal = np.zeros(n_q, dtype=np.int64)
    if n_q == 0 or n == 0:
        return less, equal
    bmin = b.min(axis=1)
    bmax = b.max(axis=1)
    kmin = bmin.astype(np.uint64) + np.uint64(flip)
    kmax = bmax.astype(np.uint64) + np.uint64(flip)
    n_cells = 1 << cell_bits
    shift = np.maximum(_bit_length(kmax - kmin) - cell_bits, 0)

    qk = q_key.astype(np.uint64)
    below = qk < kmin[q_row]
    above = qk > kmax[q_row]
    less[above] = n
    inside = ~(below | above)
    qi = np.flatnonzero(inside)
    if qi.size == 0:
        return less, equal
    qr = q_row[qi]
    q_cell = ((qk[qi] - kmin[qr]) >> shift[qr].astype(np.uint64)).astype(np.int64) + qr * n_cells

    flat_cell, hist, cum = _cell_histogram(b, bmin, shift, n_cells, ws)
    less[qi] = cum[q_cell] - hist[q_cell]
    more_less, more_equal = _count_within_cells(b, flip, flat_cell, q_cell, qk[qi], ws)
    less[qi] += more_less
    equal[qi] += more_equal
    return less, equal


def _cell_histogram(b: np.ndarray, bmin: np.ndarray, shift: np.ndarray, n_cells: int,
                    ws: _Workspace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cell of every element (offset by row, so that one bincount histograms the whole chunk), the
    histogram of the cells and its cumulative sum per row. The cells are computed straight into an int64
    buffer: bincount and take then use it without conversion."""
    k, n = b.shape
    flat_cell = ws.cell[: k * n]
    cell = flat_cell.reshape(k, n)
    if b.dtype == np.uint64:  # differences may exceed 2**63: shift them as unsigned
        ucell = cell.view(np.uint64)
        np.subtract(b, bmin[:, None], out=ucell)
        np.right_shift(ucell, shift.astype(np.uint64)[:, None], out=ucell)
    else:
        np.subtract(b, bmin[:, None], out=cell, casting="unsafe")
        np.right_shift(cell, shift[:, None], out=cell)
    np.add(cell, (np.arange(k, dtype=np.int64) * n_cells)[:, None], out=cell)
    hist = np.bincount(flat_cell, minlength=k * n_cells)
    cum = ws.cum[: k * n_cells]
    np.cumsum(hist.reshape(k, n_cells), axis=1, out=cum.reshape(k, n_cells))
    return flat_cell, hist, cum


def _count_within_cells(b: np.ndarray, flip: int, flat_cell: np.ndarray, q_cell: np.ndarray,
                        q_inside: np.ndarray, ws: _Workspace) -> tuple[np.ndarray, np.ndarray]:
    """For the queries inside their rows' ranges: the elements sharing a query's cell that are below / equal
    to it, compared exactly (the histogram counted only the cells below)."""
    n_q = q_cell.size
    zero = np.zeros(n_q, dtype=np.int64)
    # Queries sharing a cell occupy a contiguous run of the (sorted) query list.
    run_start = np.ones(n_q, dtype=bool)
    run_start[1:] = q_cell[1:] != q_cell[:-1]
    starts = np.flatnonzero(run_start)
    cells = q_cell[starts]
    ws.first[cells] = starts
    ws.end[cells] = np.append(starts[1:], n_q)
    ws.is_query[cells] = True
    try:
        hit = np.take(ws.is_query, flat_cell, out=ws.hit[: flat_cell.size], mode="clip")
        pos = _flat_nonzero(hit.view(np.uint8))
        e_cell = flat_cell[pos]
        lo = ws.first[e_cell]
        end = ws.end[e_cell]
    finally:
        ws.first[cells] = -1
        ws.is_query[cells] = False
    if pos.size == 0:
        return zero, zero
    e_key = b.reshape(-1)[pos].astype(np.uint64) + np.uint64(flip)
    hi = end.copy()
    # Binary search of each element among its cell's queries: lo = number of queries with key < element.
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        go_right = active & (q_inside[np.minimum(mid, n_q - 1)] < e_key)
        stay = active & ~go_right
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(stay, mid, hi)
    is_eq = lo < end
    is_eq[is_eq] = q_inside[lo[is_eq]] == e_key[is_eq]
    # The element is below every query of its cell from index lo + is_eq on.
    first_greater = lo + is_eq
    diff = np.bincount(first_greater, minlength=n_q + 1) - np.bincount(end, minlength=n_q + 1)
    return np.cumsum(diff[:-1]), np.bincount(lo[is_eq], minlength=n_q)


def _unique_row_keys(rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ``(row, key)`` pairs sorted by row then key, and the inverse index of every input pair."""
    order = np.lexsort((keys, rows))
    r, kk = rows[order], keys[order]
    new = np.ones(r.size, dtype=bool)
    new[1:] = (r[1:] != r[:-1]) | (kk[1:] != kk[:-1])
    group = np.cumsum(new) - 1
    inverse = np.empty(r.size, dtype=np.int64)
    inverse[order] = group
    return r[new], kk[new], inverse


def _div(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """``num / den`` in float64 with ``fill`` where ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _thresholds(
    x: np.ndarray, ks: _KeySpace, pos_row: np.ndarray, pos_val: np.ndarray, cell_bits: int, ws: _Workspace
) -> np.ndarray:
    """Validation thresholds (float64, NaN without positives) of the k classes in the (k, N) block ``x``."""
    k, n = x.shape
    thr = np.full(k, np.nan)
    b, flip = _chunk_keys(x, ks)
    if pos_row.size == 0:
        return thr
    pos_key = ks.keys(pos_val)
    u_row, u_key, inverse = _unique_row_keys(pos_row, pos_key)
    n_pos = np.bincount(pos_row, minlength=k)
    mult = np.bincount(inverse, minlength=u_key.size)
    # Positives with a smaller key in the same row: exclusive cumulative count within the row.
    row_first = np.searchsorted(u_row, u_row)
    cum = np.cumsum(mult)
    pos_below = cum - mult - (cum[row_first] - mult[row_first])
    tps = (n_pos[u_row] - pos_below).astype(np.float64)
    less, _ = _rank_counts(b, flip, u_row, u_key, cell_bits, ws)
    count = (n - less).astype(np.float64)  # scores >= the query: scikit-learn's tps + fps
    precision = tps / count
    recall = tps / n_pos[u_row].astype(np.float64)
    denom = precision + recall
    f1 = np.zeros_like(denom)
    np.divide(2 * precision * recall, denom, out=f1, where=denom != 0)
    # First maximum per row in increasing key order (= scikit-learn's first argmax).
    best = np.full(k, -np.inf)
    np.maximum.at(best, u_row, f1)
    is_best = f1 == best[u_row]
    cand = np.flatnonzero(is_best)
    rows_c = u_row[cand]
    keep = np.ones(cand.size, dtype=bool)
    keep[1:] = rows_c[1:] != rows_c[:-1]
    chosen = cand[keep]
    # Float value of the chosen key: that of any positive with the key...
    rep = np.empty(u_key.size, dtype=np.int64)
    rep[inverse] = np.arange(inverse.size)
    rows = u_row[chosen]
    thr[rows] = pos_val[rep[chosen]].astype(np.float64)
    # ...except for zero, the one value with two bit patterns: scikit-learn returns the score of the last
    # sample (in input order) among those tied at the threshold, which may be -0.0 or +0.0.
    for r in rows[thr[rows] == 0]:
        thr[r] = float(x[r, np.flatnonzero(x[r] == 0)[-1]])
    return thr


def _test_metrics(
    x: np.ndarray,
    ks: _KeySpace,
    pos_row: np.ndarray,
    pos_val: np.ndarray,
    thr: np.ndarray,
    cell_bits: int,
    ws: _Workspace,
) -> dict[str, np.ndarray]:
    """AUC and the metrics at ``thr`` of the k classes in the (k, N) test block ``x``."""
    k, n = x.shape
    b, flip = _chunk_keys(x, ks)
    n_pos = np.bincount(pos_row, minlength=k).astype(np.int64)
    n_neg = n - n_pos
    pos_key = ks.keys(pos_val)
    has_thr = ~np.isnan(thr)
    thr_rows = np.flatnonzero(has_thr)
    thr_key = np.zeros(k, dtype=ks.uint_dtype)
    thr_key[thr_rows] = ks.keys(thr[thr_rows].astype(ks.float_dtype))

    rows_all = np.concatenate([pos_row, thr_rows])
    keys_all = np.concatenate([pos_key, thr_key[thr_rows]])
    q_row, q_key, inverse = _unique_row_keys(rows_all, keys_all)
    less, equal = _rank_counts(b, flip, q_row, q_key, cell_bits, ws)

    # AUC (Mann-Whitney with ties counted one half == trapezoidal ROC AUC), exact in integers.
    pos_q = inverse[: pos_row.size]
    mult = np.bincount(pos_q, minlength=q_key.size)
    row_first = np.searchsorted(q_row, q_row)
    cum = np.cumsum(mult)
    pos_below = cum - mult - (cum[row_first] - mult[row_first])
    neg_less = less - pos_below
    neg_equal = equal - mult
    contrib = mult * (2 * neg_less + neg_equal)
    twice_u = np.bincount(q_row, weights=contrib.astype(np.float64), minlength=k)
    auc = _div(twice_u, 2.0 * n_pos * n_neg, np.nan)

    # Confusion counts at the threshold (prediction: score > threshold).
    t_q = inverse[pos_row.size :]
    pred_pos = np.zeros(k, dtype=np.int64)
    pred_pos[thr_rows] = n - less[t_q] - equal[t_q]
    above = pos_key > thr_key[pos_row]
    above &= has_thr[pos_row]
    tp = np.bincount(pos_row[above], minlength=k).astype(np.int64)
    fp = pred_pos - tp
    fn = n_pos - tp
    tn = n_neg - fp

    out = _scores_from_counts(tp, fp, fn, tn)
    for name in out:
        out[name][~has_thr] = np.nan
    out["auc"] = auc
    out["n_pos"] = n_pos
    out["n_neg"] = n_neg
    return out


def _scores_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, weighted precision/recall/F-scores (zero_division=0), miss and overflow from counts."""
    n = tp + fp + fn + tn
    pos = tp + fn  # support of label 1
    neg = tn + fp  # support of label 0
    w_pos = pos.astype(np.float64)
    w_neg = neg.astype(np.float64)

    def weighted(m1: np.ndarray, m0: np.ndarray) -> np.ndarray:
        return _div(m0 * w_neg + m1 * w_pos, w_neg + w_pos, np.nan)

    def fbeta(t: np.ndarray, f_p: np.ndarray, f_n: np.ndarray, beta: float) -> np.ndarray:
        b2 = beta**2
        return _div((1 + b2) * t.astype(np.float64), b2 * (t + f_n).astype(np.float64) + (t + f_p), 0.0)

    prec1, prec0 = _div(tp, tp + fp, 0.0), _div(tn, tn + fn, 0.0)
    rec1, rec0 = _div(tp, pos, 0.0), _div(tn, neg, 0.0)
    precision = weighted(prec1, prec0)
    return {
        "accuracy": _div(tp + tn, n, np.nan),
        "precision": precision,
        "recall": weighted(rec1, rec0),
        "f0_5": weighted(fbeta(tp, fp, fn, 0.5), fbeta(tn, fn, fp, 0.5)),
        "f0": precision.copy(),
        "f1": weighted(fbeta(tp, fp, fn, 1.0), fbeta(tn, fn, fp, 1.0)),
        "miss": _div(fn, pos, np.nan),
        "overflow": _div(fp, neg, np.nan),
        "sensitivity": _div(tp, pos, np.nan),
        "specificity": _div(tn, neg, np.nan),
    }


def calibration_bins(scores: np.ndarray, labels: np.ndarray, n_bins: int = CALIBRATION_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of a (k, N) score block in [0, 1] and its 0/1 labels: the samples, score sums and positives in each
    of ``n_bins`` equal-width bins (bin i holds i/n <= score < (i+1)/n) and one more for scores of exactly 1, as
    torchmetrics bins them (``bucketize(scores, linspace(0, 1, n + 1), right=True) - 1``; a float32 sigmoid
    saturates at 1 above a logit of about 17); (k, n_bins + 1) arrays. The edges are compared in float64."""
    k, size = scores.shape[0], n_bins + 1
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, n_bins)
    flat = (bins + size * np.arange(k)[:, None]).ravel()
    count = np.bincount(flat, minlength=k * size).reshape(k, size).astype(np.float64)
    score_sum = np.bincount(flat, weights=scores.astype(np.float64).ravel(), minlength=k * size).reshape(k, size)
    label_sum = np.bincount(flat, weights=labels.astype(np.float64).ravel(), minlength=k * size).reshape(k, size)
    return count, score_sum, label_sum


def calibration_error(count: np.ndarray, score_sum: np.ndarray, label_sum: np.ndarray) -> np.ndarray:
    """Expected calibration error (L1) from bin sums (last axis: bins): sum over bins of |mean label - mean
    score| times the bin's share of samples."""
    total = count.sum(axis=-1)
    gap = np.abs(label_sum - score_sum)  # = count * |mean label - mean score|
    return _div(gap.sum(axis=-1), total, np.nan)


def _average_precision(scores: np.ndarray, labels: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """scikit-learn's average_precision_score of each row (sum over distinct score thresholds, highest first,
    of the recall gained times the precision there); NaN for a row without positives."""
    k, n = scores.shape
    if n == 0:
        return np.full(k, np.nan)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    hits = np.cumsum(np.take_along_axis(labels, order, axis=1), axis=1, dtype=np.int64)
    end = np.ones((k, n), dtype=bool)
    end[:, :-1] = ranked[:, :-1] != ranked[:, 1:]  # the last sample of each group of tied scores
    tp_end = np.where(end, hits, 0)
    before = np.zeros((k, n), dtype=np.int64)
    before[:, 1:] = np.maximum.accumulate(tp_end, axis=1)[:, :-1]
    gained = np.where(end, hits - before, 0).astype(np.float64)
    precision = hits / np.arange(1, n + 1, dtype=np.float64)
    return _div((gained * precision).sum(axis=1), n_pos.astype(np.float64), np.nan)


def _score_metrics(x: np.ndarray, pos_row: np.ndarray, pos_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Average precision, Brier score and calibration error of the k classes in the (k, N) test block ``x``
    whose positives are at (``pos_row``, ``pos_idx``); the last two NaN for a class with scores outside [0, 1]
    (not probabilities)."""
    k, n = x.shape
    labels = np.zeros((k, n), dtype=np.int8)
    labels[pos_row, pos_idx] = 1
    n_pos = labels.sum(axis=1, dtype=np.int64)
    scores = x.astype(np.float64)
    out = {"average_precision": _average_precision(scores, labels, n_pos)}
    probabilities = ((scores >= 0) & (scores <= 1)).all(axis=1)  # Brier and calibration need them
    inside = np.where(probabilities[:, None], scores, 0.0)
    brier = _div(((inside - labels) ** 2).sum(axis=1), np.full(k, float(n)), np.nan)
    calibration = calibration_error(*calibration_bins(inside, labels))
    out["brier"] = np.where(probabilities, brier, np.nan)
    out["calibration_error"] = np.where(probabilities, calibration, np.nan)
    return out


def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, C), got shape {a.shape}")
    return a


def _checked(val_scores: np.ndarray, val_labels: np.ndarray, test_scores: np.ndarray,
             test_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four inputs as 2-d arrays, with their shapes and labels checked (``ValueError`` naming which)."""
    val_scores = _as_2d(val_scores, "val_scores")
    val_labels = _as_2d(val_labels, "val_labels")
    test_scores = _as_2d(test_scores, "test_scores")
    test_labels = _as_2d(test_labels, "test_labels")
    if val_scores.shape != val_labels.shape:
        raise ValueError(f"val_scores {val_scores.shape} and val_labels {val_labels.shape} differ in shape")
    if test_scores.shape != test_labels.shape:
        raise ValueError(f"test_scores {test_scores.shape} and test_labels {test_labels.shape} differ in shape")
    if val_scores.shape[1] != test_scores.shape[1]:
        raise ValueError(f"validation has {val_scores.shape[1]} classes but test has {test_scores.shape[1]}")
    _check_labels(val_labels, "val_labels")
    _check_labels(test_labels, "test_labels")
    return val_scores, val_labels, test_scores, test_labels


def per_class_metrics(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
) -> pd.DataFrame:
    """Per-class threshold (tuned on validation), test AUC and test metrics at that threshold.

    Args:
        val_scores: (N_val, C) sigmoid outputs on the validation split, float32 or float64 (other real
            dtypes are converted to float64; mixed float32/float64 splits are compared in float64).
        val_labels: (N_val, C) 0/1 (or boolean) targets of the validation split.
        test_scores: (N_test, C) scores on the test split.
        test_labels: (N_test, C) 0/1 targets of the test split.

    Column-major (Fortran-ordered) arrays, as produced by ``DataFrame.to_numpy()``, are read without a
    transposing copy.

    Returns:
        One row per class with columns :data:`COLUMNS`: ``class`` (int64), the float64
        :data:`METRIC_COLUMNS` and ``n_pos`` / ``n_neg`` (int64, test supports).

    Raises:
        ValueError: on shape mismatches, non-finite scores or labels other than 0/1.
    """
    val_scores, val_labels, test_scores, test_labels = _checked(val_scores, val_labels, test_scores, test_labels)
    ks = _key_space(val_scores, test_scores)
    n_val, n_classes = val_scores.shape
    n_test = test_scores.shape[0]

    v_cls, v_idx, v_starts = _positives(val_labels)
    t_cls, t_idx, t_starts = _positives(test_labels)
    v_val = val_scores[v_idx, v_cls].astype(ks.float_dtype)
    t_val = test_scores[t_idx, t_cls].astype(ks.float_dtype)

    k = max(1, _CHUNK_ELEMENTS // max(n_val, n_test, 1))
    k = min(k, max(n_classes, 1))
    val_reader = _RowReader(val_scores, ks.float_dtype, k)
    test_reader = _RowReader(test_scores, ks.float_dtype, k)
    val_bits = _cell_bits(n_val)
    test_bits = _cell_bits(n_test)
    ws = _Workspace(k * max(n_val, n_test), k << max(val_bits, test_bits))

    columns: dict[str, list[np.ndarray]] = {name: [] for name in [*METRIC_COLUMNS, "n_pos", "n_neg"]}
    for c0 in range(0, n_classes, k):
        c1 = min(n_classes, c0 + k)
        vs, ve = v_starts[c0], v_starts[c1]
        thr = _thresholds(val_reader.rows(c0, c1), ks, v_cls[vs:ve] - c0, v_val[vs:ve], val_bits, ws)
        ts, te = t_starts[c0], t_starts[c1]
        block = test_reader.rows(c0, c1)
        scored = _score_metrics(block, t_cls[ts:te] - c0, t_idx[ts:te])
        res = _test_metrics(block, ks, t_cls[ts:te] - c0, t_val[ts:te], thr, test_bits, ws)
        res.update(scored)
        res["threshold"] = thr
        for name, values in res.items():
            columns[name].append(values)
    return _frame(columns, n_classes)


def _frame(columns: dict[str, list[np.ndarray]], n_classes: int) -> pd.DataFrame:
    """The per-class frame from the blocks of classes: float64 metrics, int64 class and supports."""
    data: dict[str, np.ndarray] = {"class": np.arange(n_classes, dtype=np.int64)}
    for name in METRIC_COLUMNS:
        data[name] = np.concatenate(columns[name]).astype(np.float64) if n_classes else np.empty(0)
    for name in ("n_pos", "n_neg"):
        data[name] = (
            np.concatenate(columns[name]).astype(np.int64) if n_classes else np.empty(0, dtype=np.int64)
        )
    return pd.DataFrame(data, columns=COLUMNS)


def _cell_bits(n: int) -> int:
    """Histogram resolution per class: about a quarter as many cells as samples, 2**8 to 2**16."""
    return int(min(16, max(8, int(n).bit_length() - 2)))
