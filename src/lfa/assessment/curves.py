"""Loss Function Assessment (LFA): the curves of Figure 2, computed from the registered loss objects.

For a loss with positive-label term ``L+`` and negative-label term ``L-``, both written as functions of the
probability ``q`` that the model gives to the sample's own label (``q = p`` for a positive sample,
``q = 1 - p`` for a negative one), the gradients are ``g+(q) = |dL+/dq|`` and ``g-(q) = |dL-/dq|``. For a
positive sample predicted at ``ŷ``::

    S = ∫_ŷ^1 (g+(ŷ) - g-(t)) dt,     LFA+/-(ŷ) = sigmoid(S / (1 - ŷ) - 1)

and, since ``∫_ŷ^1 g-(t) dt = L-(ŷ) - L-(1)``, exactly ``S / (1 - ŷ) = g+(ŷ) - (L-(ŷ) - L-(1)) / (1 - ŷ)``
(no quadrature). ``LFA-/+`` swaps the roles of the two labels. The gradients are taken by autograd
(float64) through :meth:`lfa.losses.Loss.terms`, i.e. from the very objects that train the models.

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
    "lfa_curve",
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
    form, shift = _convention_form(loss, convention)
    own, other = LABELS if direction == "+/-" else LABELS[::-1]
    y_hat = _probabilities(p, shift)
    excess = (_branch_gradient(form, own, y_hat, shift if own == "negative" else 0.0)
              - _branch_drop(form, other, y_hat, shift if other == "negative" else 0.0))
    return torch.sigmoid(torch.from_numpy(excess - 1.0)).numpy()


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
        ``(lfa_df, grad_df)``: ``lfa_df`` has columns ``loss, display, direction, p, lfa`` (directions
        ``"+/-"`` and ``"-/+"``), ``grad_df`` has ``loss, display, label, p, gradient`` (labels
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
            lfa_parts.append(pd.DataFrame({"loss": name, "display": display, "direction": direction, "p": p,
                                           "lfa": lfa_curve(loss, p, direction, convention)}))
        for label in LABELS:
            grad_parts.append(pd.DataFrame({"loss": name, "display": display, "label": label, "p": p,
                                            "gradient": gradient_curve(loss, p, label, convention)}))
    lfa_columns = ["loss", "display", "direction", "p", "lfa"]
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
    lfa_df, grad_df = compute_curves(convention, losses, params, grid)
    for frame, path in ((lfa_df, out), (grad_df, grad_path)):
        if suffix == ".csv":
            with atomic_path(path) as tmp:
                frame.to_csv(tmp, index=False)
        else:
            write_parquet(frame, path, {"lfa.convention": convention})
    return out, grad_path


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
