"""Loss Function Assessment (LFA): the curves of Figure 2, computed from the registered loss objects.

For a loss with positive-label term ``L+`` and negative-label term ``L-``, both written as functions of the
probability ``q`` that the model gives to the sample's own label (``q = p`` for a positive sample,
``q = 1 - p`` for a negative one), the gradients are ``g+(q) = |dL+/dq|`` and ``g-(q) = |dL-/dq|``. For a
positive sample predicted at ``ŷ``::

    S = ∫_ŷ^1 (g+(ŷ) - g-(t)) dt,     LFA+/-(ŷ) = sigmoid(S / (1 - ŷ) - 1)

and, where the other label's term falls monotonically to a finite value at q = 1 (every loss of the paper),
``∫_ŷ^1 g-(t) dt = L-(ŷ) - L-(1)`` gives exactly ``S / (1 - ŷ) = g+(ŷ) - (L-(ŷ) - L-(1)) / (1 - ŷ)`` (no
quadrature). Where it does not (a term whose gradient changes sign, e.g. a label-smoothed BCE, or one that
grows without bound as q → 1), the integral of |g| is computed by quadrature (:func:`integral_of_gradient`), and
where it diverges the LFA is its limit 0 and the curve table marks it ``unbounded`` (never a value set by the
logit clip). :func:`term_shape` decides which. ``LFA-/+`` swaps the roles of the two labels. The gradients are
taken by autograd (float64) through :meth:`lfa.losses.Loss.terms`, i.e. from the very objects that train the
models.

Two conventions (:data:`CONVENTIONS`, explained in :data:`CONVENTION_NOTE`): ``trained`` and ``figure2``.
Both constants live in the torch-free :mod:`lfa.assessment.figures` (import them from there where torch must not
be loaded) and are re-exported here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lfa.assessment.conventions import CONVENTIONS
from lfa.errors import ConfigError
from lfa.losses import Loss, build_loss, display_name, lfa_grid, loss_names

__all__ = [
    "DEFAULT_GRID",
    "DIRECTIONS",
    "FIGURE2_LOG_SCALE",
    "LABELS",
    "compute_curves",
    "gradient_curve",
    "integral_of_gradient",
    "lfa_curve",
    "lfa_values",
    "shape_warnings",
    "term_shape",
    "write_curves",
    "write_lfa_folder",
]

DIRECTIONS = ("+/-", "-/+")
LABELS = ("positive", "negative")

#: Factor on the logarithms' values in the ``figure2`` convention (base-10 logarithms).
FIGURE2_LOG_SCALE = 1.0 / math.log(10.0)

#: Default grid of predicted probabilities (x-axis of Figure 2).
DEFAULT_GRID = lfa_grid()

# Logits are clipped to +-_Z_END when a branch is evaluated at own-label probability 1 (q = 1 in float64).
_Z_END = 40.0


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        known = ", ".join(CONVENTIONS)
        raise ConfigError(f"unknown LFA convention {convention!r}; known conventions: {known}")


def _convention_form(loss: Loss, convention: str) -> tuple[Loss, float]:
    """The loss object to evaluate in ``convention`` and the own-label shift of its negative term."""
    _check_convention(convention)
    if convention == "trained":
        form, shift = copy.deepcopy(loss), 0.0
        form.log_scale = 1.0
    else:
        form, shift = loss.figure2_form()
        form.log_scale = FIGURE2_LOG_SCALE
    return form, shift


def _probabilities(p: np.ndarray | Sequence[float], shift: float = 0.0) -> np.ndarray:
    q = np.asarray(p, dtype=np.float64)
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"probabilities must be a non-empty 1-d array, got shape {q.shape}")
    lower = max(shift, 0.0)
    if not np.all((q > lower) & (q < 1.0)):
        raise ValueError(f"probabilities must lie in ({lower:g}, 1); got values in "
                         f"[{q.min():g}, {q.max():g}]")
    return q


def _branch(loss: Loss, label: str, q: torch.Tensor, shift: float) -> torch.Tensor:
    """The value of one label's term at own-label probability ``q`` (negative term at ``q - shift``)."""
    p = q if label == "positive" else 1.0 - (q - shift)
    pos, neg = loss.terms(torch.logit(p).clamp(-_Z_END, _Z_END))
    return pos if label == "positive" else neg


def _branch_gradient(loss: Loss, label: str, q: np.ndarray, shift: float) -> np.ndarray:
    """``|dL/dq|`` of one label's term at own-label probabilities ``q``, by autograd in float64."""
    with torch.enable_grad():
        leaf = torch.tensor(q, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(_branch(loss, label, leaf, shift).sum(), leaf)
    return grad.abs().numpy()


def _branch_drop(loss: Loss, label: str, q: np.ndarray, shift: float) -> np.ndarray:
    """``(L(q) - L(1)) / (1 - q)`` of one label's term: the mean of its gradient over [q, 1]."""
    with torch.no_grad():
        values = _branch(loss, label, torch.tensor(q, dtype=torch.float64), shift)
        end = _branch(loss, label, torch.ones(1, dtype=torch.float64), shift)
    return ((values - end) / (1.0 - torch.tensor(q, dtype=torch.float64))).numpy()


#: Own-label probabilities 1 - ε: the quadrature ends at the last; the integrals between them tell a bounded
#: integrand from a divergent one (:func:`_diverges`).
_EPS_HEAD, _EPS_END, _EPS_TAIL = 1e-4, 1e-8, 1e-12
#: Gauss-Legendre nodes per unit of u = -log(1 - t) in the quadrature.
_NODES_PER_UNIT = 48
#: The ratio of the last to the previous stretch of the integral above which it is taken as divergent.
_DIVERGENT_RATIO = 0.1


def _dense_grid(shift: float) -> np.ndarray:
    """Own-label probabilities, logit-spaced from about 2e-9 to 1 - 1e-12 (above ``shift``)."""
    q = 1.0 / (1.0 + np.exp(-np.linspace(-20.0, -math.log(_EPS_TAIL), 4001)))
    return q[q > max(shift, 0.0) + 1e-9]


def _signed_gradient(loss: Loss, label: str, q: np.ndarray, shift: float) -> np.ndarray:
    with torch.enable_grad():
        leaf = torch.tensor(q, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(_branch(loss, label, leaf, shift).sum(), leaf)
    return grad.numpy()


def sign_changes(loss: Loss, label: str, shift: float = 0.0) -> np.ndarray:
    """Where the gradient of the ``label`` term changes sign (own-label probabilities, by bisection to 1e-13)."""
    q = _dense_grid(shift)
    sign = np.sign(_signed_gradient(loss, label, q, shift))
    nonzero = np.flatnonzero(sign)
    flips = nonzero[1:][sign[nonzero[1:]] != sign[nonzero[:-1]]]
    lo, hi = q[nonzero[np.searchsorted(nonzero, flips) - 1]], q[flips]
    start = np.sign(_signed_gradient(loss, label, lo, shift)) if len(lo) else lo
    for _ in range(60):
        if not len(lo) or (hi - lo).max() < 1e-13:
            break
        mid = (lo + hi) / 2
        same = np.sign(_signed_gradient(loss, label, mid, shift)) == start
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    return (lo + hi) / 2


def term_shape(loss: Loss, label: str, shift: float = 0.0) -> str:
    """``"monotone"`` (the gradient of the ``label`` term keeps one sign on (0, 1) and the integral of |g| up to
    q = 1 is finite: the closed form holds), ``"sign_change"`` or ``"unbounded"`` (its integral of |g| diverges
    as q → 1). Read on a dense logit-spaced grid of own-label probabilities."""
    if _diverges(loss, label, shift):
        return "unbounded"
    return "sign_change" if len(sign_changes(loss, label, shift)) else "monotone"


def _abs_gradient_integral(loss: Loss, label: str, lower: np.ndarray, upper: np.ndarray | float,
                           shift: float) -> np.ndarray:
    """∫ |g(t)| dt from each of ``lower`` to ``upper`` (own-label probabilities, where g keeps its sign), by
    Gauss-Legendre in u = -log(1 - t), where dt = (1 - t) du spreads the nodes towards q = 1."""
    u0 = -np.log1p(-np.asarray(lower, dtype=np.float64))
    u1 = -np.log1p(-np.broadcast_to(np.asarray(upper, dtype=np.float64), u0.shape))
    n_nodes = max(16, int(math.ceil(float((u1 - u0).max(initial=0.0)) * _NODES_PER_UNIT)))
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    half = ((u1 - u0) / 2.0)[:, None]
    u = ((u0 + u1) / 2.0)[:, None] + half * x[None, :]
    t = -np.expm1(-u)
    g = _branch_gradient(loss, label, t.ravel(), shift).reshape(t.shape)
    return (half * w[None, :] * g * np.exp(-u)).sum(axis=1)


def _diverges(loss: Loss, label: str, shift: float) -> bool:
    """Whether ∫|g| up to q = 1 diverges, whatever the loss's scale: the integral over [1 - 1e-8, 1 - 1e-12]
    against the one over [1 - 1e-4, 1 - 1e-8]. A bounded integrand gives a ratio of about 1e-4 (an integrable
    (1 - q)^-1/2 about 1e-2); a logarithmic divergence about 1 (equal steps in log(1 - q))."""
    head, tail = _abs_gradient_integral(loss, label, np.array([1.0 - _EPS_HEAD, 1.0 - _EPS_END]),
                                        np.array([1.0 - _EPS_END, 1.0 - _EPS_TAIL]), shift)
    return bool(tail > _DIVERGENT_RATIO * head and tail > 1e-12)


def shape_warnings(loss: Loss) -> list[str]:
    """One line per term of ``loss`` (as trained) whose LFA is not the closed form: what its shape means for the
    LFA (docs/losses.md)."""
    meaning = {"sign_change": "its gradient changes sign, so L(ŷ) − L(1) is not the integral of |g|; LFA takes "
                              "that integral by quadrature",
               "unbounded": "it grows without bound as the own-label probability → 1, so the integral of |g| "
                            "diverges; LFA is 0 there (its limit) and the curve table says 'unbounded'"}
    lines = []
    for label in LABELS:
        shape = term_shape(loss, label)
        if shape != "monotone":
            lines.append(f"WARNING: loss {loss.name!r}: its {label}-label term is not monotone ({shape}): "
                         f"{meaning[shape]} (docs/losses.md)")
    return lines


def integral_of_gradient(loss: Loss, label: str, y_hat: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """∫_ŷ^1 |g(t)| dt of the ``label`` term for each ŷ: the definition's integral, for any term whose integral
    is finite (:func:`term_shape`). Gauss-Legendre between the points where g changes sign (so |g| is smooth on
    each piece), up to 1 - 1e-12. g is the derivative as trained (natural logarithms) in both conventions."""
    y_hat = np.asarray(y_hat, dtype=np.float64)
    breaks = np.sort(sign_changes(loss, label, shift))
    ends = np.concatenate([breaks, [1.0 - _EPS_TAIL]])
    pieces = _abs_gradient_integral(loss, label, ends[:-1], ends[1:], shift) if len(breaks) else np.zeros(0)
    from_end = np.concatenate([np.cumsum(pieces[::-1])[::-1], [0.0]])  # ∫ from each end to 1 - 1e-12
    first = np.searchsorted(ends, y_hat, side="right")  # the first end above each ŷ
    return _abs_gradient_integral(loss, label, y_hat, ends[first], shift) + from_end[first]


def _check_label(label: str) -> None:
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")


def lfa_curve(loss: Loss, p: np.ndarray | Sequence[float], direction: str = "+/-",
              convention: str = "trained") -> np.ndarray:
    """LFA of ``loss`` at predicted probabilities ``p`` of the sample's own label.

    Args:
        loss: a loss object (e.g. from :func:`lfa.losses.build_loss`); it is not modified.
        p: predicted probabilities ŷ in (0, 1).
        direction: ``"+/-"`` (positive sample against the negative-label gradients, LFA+/-) or ``"-/+"``.
        convention: ``"trained"`` or ``"figure2"`` (see :data:`CONVENTION_NOTE`).

    Returns:
        ``sigmoid(g_own(ŷ) - (L_other(ŷ) - L_other(1)) / (1 - ŷ) - 1)`` as a float64 array.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown LFA direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    values, _ = lfa_values(loss, p, direction, convention)
    return values


def lfa_values(loss: Loss, p: np.ndarray | Sequence[float], direction: str = "+/-",
               convention: str = "trained") -> tuple[np.ndarray, str]:
    """:func:`lfa_curve` and how the other label's integral was taken: ``"closed_form"``, ``"quadrature"`` (its
    gradient changes sign) or ``"unbounded"`` (it diverges: the LFA is its limit, 0)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown LFA direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    form, shift = _convention_form(loss, convention)
    own, other = LABELS if direction == "+/-" else LABELS[::-1]
    y_hat = _probabilities(p, shift)
    other_shift = shift if other == "negative" else 0.0
    shape = term_shape(form, other, other_shift)
    own_gradient = _branch_gradient(form, own, y_hat, shift if own == "negative" else 0.0)
    if shape == "unbounded":
        return np.zeros_like(y_hat), "unbounded"
    if shape == "monotone":
        drop, method = _branch_drop(form, other, y_hat, other_shift), "closed_form"
    else:
        drop, method = integral_of_gradient(form, other, y_hat, other_shift) / (1.0 - y_hat), "quadrature"
    return torch.sigmoid(torch.from_numpy(own_gradient - drop - 1.0)).numpy(), method


def gradient_curve(loss: Loss, p: np.ndarray | Sequence[float], label: str,
                   convention: str = "trained") -> np.ndarray:
    """Gradient magnitude ``g(q) = |dL/dq|`` of the ``label`` term, as in panel (a) of Figure 2.

    The x-axis ``p`` is the probability predicted for the sample's own label (the axis on which the LFA
    integral ``∫_ŷ^1 g-(t) dt`` is taken): for ``label="positive"`` it is the predicted probability of the
    class, for ``label="negative"`` the probability of the negative label (one minus it).
    """
    _check_label(label)
    form, shift = _convention_form(loss, convention)
    shift = shift if label == "negative" else 0.0
    return _branch_gradient(form, label, _probabilities(p, shift), shift)


def compute_curves(convention: str = "trained", losses: list[str] | None = None,
                   params: dict[str, dict[str, float]] | None = None,
                   grid: np.ndarray | Sequence[float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """LFA and gradient curves of registered losses in one convention.

    Args:
        convention: ``"trained"`` or ``"figure2"``.
        losses: registry keys; all registered losses (:func:`lfa.losses.loss_names`) when ``None``.
        params: hyper-parameter overrides per loss name (names must be registered; entries for losses not
            in ``losses`` are ignored).
        grid: predicted probabilities; :data:`DEFAULT_GRID` (181 points from 0.1 to 0.999) when ``None``.

    Returns:
        ``(lfa_df, grad_df)``: ``lfa_df`` has columns ``loss, display, direction, p, lfa, method`` (directions
        ``"+/-"`` and ``"-/+"``; ``method``: how the other label's integral was taken, :func:`lfa_values`),
        ``grad_df`` has ``loss, display, label, p, gradient`` (labels
        ``"positive"`` and ``"negative"``, see :func:`gradient_curve`). ``display`` is the loss's display
        name, so that figures and reports need not import the registry.
    """
    _check_convention(convention)
    names = loss_names() if losses is None else list(losses)
    params = dict(params or {})
    known = set(loss_names())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"params given for unknown loss(es) {unknown}; "
                          f"known losses: {', '.join(sorted(known))}")
    p = np.asarray(DEFAULT_GRID if grid is None else grid, dtype=np.float64)
    lfa_parts: list[pd.DataFrame] = []
    grad_parts: list[pd.DataFrame] = []
    for name in names:
        loss = build_loss(name, **params.get(name, {}))
        display = display_name(name)
        for direction in DIRECTIONS:
            values, method = lfa_values(loss, p, direction, convention)
            lfa_parts.append(pd.DataFrame({"loss": name, "display": display, "direction": direction, "p": p,
                                           "lfa": values, "method": method}))
        for label in LABELS:
            grad_parts.append(pd.DataFrame({"loss": name, "display": display, "label": label, "p": p,
                                            "gradient": gradient_curve(loss, p, label, convention)}))
    lfa_columns = ["loss", "display", "direction", "p", "lfa", "method"]
    grad_columns = ["loss", "display", "label", "p", "gradient"]
    lfa_df = pd.concat(lfa_parts, ignore_index=True) if lfa_parts else pd.DataFrame(columns=lfa_columns)
    grad_df = pd.concat(grad_parts, ignore_index=True) if grad_parts else pd.DataFrame(columns=grad_columns)
    return lfa_df, grad_df


def write_curves(convention: str, out_path: str | Path, losses: list[str] | None = None,
                 params: dict[str, dict[str, float]] | None = None, grid: np.ndarray | None = None,
                 gradients_path: str | Path | None = None) -> tuple[Path, Path]:
    """The LFA stage: compute the curves (:func:`compute_curves`) and write them as CSV or Parquet (by suffix).

    The LFA table goes to ``out_path``, the gradient table to ``gradients_path`` (default: beside it with
    ``_gradients`` before the suffix, ``curves.csv`` → ``curves_gradients.csv``); Parquet files record the
    convention (``lfa.convention``). The ``lfa_curves`` rule and ``lfa curves --out x.parquet`` both call this.
    Returns ``(lfa_path, gradient_path)``.
    """
    from lfa.io import atomic_path, write_parquet

    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"{out}: unsupported suffix {out.suffix!r}; use .csv or .parquet")
    grad_path = Path(gradients_path) if gradients_path else out.with_name(f"{out.stem}_gradients{out.suffix}")
    _warn_shapes(losses, params)
    lfa_df, grad_df = compute_curves(convention, losses, params, grid)
    for frame, path in ((lfa_df, out), (grad_df, grad_path)):
        if suffix == ".csv":
            with atomic_path(path) as tmp:
                frame.to_csv(tmp, index=False)
        else:
            write_parquet(frame, path, {"lfa.convention": convention})
    return out, grad_path


def _warn_shapes(losses: list[str] | None, params: dict[str, dict[str, float]] | None) -> None:
    import sys

    for name in loss_names() if losses is None else losses:
        for line in shape_warnings(build_loss(name, **(params or {}).get(name, {}))):
            print(line, file=sys.stderr, flush=True)


def write_lfa_folder(out_dir: str | Path, losses: list[str], params: dict[str, dict[str, float]] | None = None,
                     conventions: Sequence[str] = CONVENTIONS, grid: np.ndarray | None = None,
                     gradient_loss: str | None = None) -> list[Path]:
    """LFA of any registered losses, without training: per convention, the curve and gradient tables as CSV
    and Parquet and a Figure-2-style PNG (panel (a): the gradients of ``gradient_loss``, default the first
    loss). Each loss is checked first (:func:`lfa.losses.check_terms`). Returns the files written."""
    from lfa.assessment.figures import plot_figure2
    from lfa.losses import check_terms

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = DEFAULT_GRID if grid is None else grid
    for name in losses:
        check_terms(build_loss(name, **(params or {}).get(name, {})), grid)
    written: list[Path] = []
    _warn_shapes(losses, params)
    for convention in conventions:
        lfa_df, grad_df = compute_curves(convention, losses, params, grid)
        for stem, frame in ((f"lfa_{convention}", lfa_df), (f"gradients_{convention}", grad_df)):
            frame.to_csv(out / f"{stem}.csv", index=False)
            frame.to_parquet(out / f"{stem}.parquet", index=False)
            written += [out / f"{stem}.csv", out / f"{stem}.parquet"]
        fig = plot_figure2(lfa_df, grad_df, convention, gradient_loss=gradient_loss or losses[0])
        fig.savefig(out / f"figure2_{convention}.png", dpi=150)
        written.append(out / f"figure2_{convention}.png")
    return written
