"""Figure 2 (LFA curves) from the curve tables of :func:`lfa.assessment.curves.compute_curves`, and the loss colours.

This module reads DataFrames only and never imports torch, so the report can use it without the training
stack. It draws on a :class:`matplotlib.figure.Figure` rendered by the Agg canvas and leaves pyplot's global
state alone.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from lfa.assessment.conventions import CONVENTION_TITLES, CONVENTIONS

__all__ = ["loss_palette", "plot_figure2"]

# Paper-like colours of the paper's losses; any other loss gets one of _EXTRA_COLOURS.
_FIXED_COLOURS = {
    "asl": "#3a6fd8",
    "bce": "#f2b01e",
    "ece": "#2e8b2e",
    "fece": "#e8384f",
    "focal": "#9b1de6",
}
_EXTRA_COLOURS = [to_hex(c) for c in sns.color_palette("colorblind")[5:] + sns.color_palette("dark")[5:]]

_POSITIVE_COLOUR = "#e8384f"
_NEGATIVE_COLOUR = "#2f55d4"
_Y_HAT = 0.42  # where panel (a) illustrates the shaded area S
_GRADIENT_YMAX = 10.5


def loss_palette(names: Iterable[str]) -> dict[str, str]:
    """One fixed colour (hex) per loss name, the same in every figure.

    The paper's losses have paper-like colours (ASL blue, BCE yellow-orange, ECE green, F-ECE red, Focal
    purple). Any other name gets a seaborn colour chosen from a hash of the name (distinct within one call
    as long as colours remain), so its colour does not depend on which other losses are drawn.
    """
    palette: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(set(names)):
        if name in _FIXED_COLOURS:
            palette[name] = _FIXED_COLOURS[name]
            continue
        index = zlib.crc32(name.encode("utf-8")) % len(_EXTRA_COLOURS)
        for step in range(len(_EXTRA_COLOURS)):
            candidate = _EXTRA_COLOURS[(index + step) % len(_EXTRA_COLOURS)]
            if candidate not in taken:
                index = (index + step) % len(_EXTRA_COLOURS)
                break
        palette[name] = _EXTRA_COLOURS[index]
        taken.add(palette[name])
    return palette


def _display_names(df: pd.DataFrame) -> dict[str, str]:
    """Loss key → display name, from the table's ``display`` column when present."""
    if "display" in df.columns:
        pairs = df[["loss", "display"]].drop_duplicates()
        return dict(zip(pairs["loss"], pairs["display"], strict=True))
    return {name: name for name in df["loss"].unique()}


def _gradient_panel(ax: Axes, grad_df: pd.DataFrame, gradient_loss: str) -> None:
    """Panel (a): positive- and negative-label gradients of one loss and the shaded area S at ŷ."""
    available = sorted(grad_df["loss"].unique())
    if not available:
        raise ValueError("the gradient table is empty")
    loss = gradient_loss if gradient_loss in available else available[0]
    sub = grad_df[grad_df["loss"] == loss]
    pos = sub[sub["label"] == "positive"].sort_values("p")
    neg = sub[sub["label"] == "negative"].sort_values("p")
    x, g_pos, g_neg = pos["p"].to_numpy(), pos["gradient"].to_numpy(), neg["gradient"].to_numpy()
    if not np.array_equal(x, neg["p"].to_numpy()):
        raise ValueError(f"gradient table: the positive and negative curves of {loss!r} use different grids")

    ax.plot(x, g_pos, color=_POSITIVE_COLOUR, lw=1.6, label="Positive label")
    ax.plot(x, g_neg, color=_NEGATIVE_COLOUR, lw=1.6, label="Negative label")

    i = int(np.argmin(np.abs(x - _Y_HAT)))
    y_hat, top, bottom = x[i], g_pos[i], g_neg[i]
    right = x >= y_hat
    ax.fill_between(x[right], g_neg[right], top, where=g_neg[right] <= top, color=_POSITIVE_COLOUR,
                    alpha=0.22, lw=0)
    ax.axvline(y_hat, color=_POSITIVE_COLOUR, ls=":", lw=1)
    ax.plot([x[0], y_hat], [top, top], color=_POSITIVE_COLOUR, ls=":", lw=1)
    ax.text(y_hat + 0.01, _GRADIENT_YMAX * 0.98, r"$\hat{y}$", ha="left", va="top")
    ax.annotate("", xy=(y_hat - 0.012, min(top, _GRADIENT_YMAX)), xytext=(y_hat - 0.012, bottom),
                arrowprops={"arrowstyle": "<->", "color": "black", "lw": 1})
    ax.text(y_hat - 0.025, (min(top, _GRADIENT_YMAX) + bottom) / 2, "gradient\ndifference", ha="right",
            va="center", fontsize=9)
    label_x, label_y = (y_hat + 1.2) / 2, min(top, _GRADIENT_YMAX) * 0.72
    ax.text(label_x, label_y, r"$S$", ha="center", va="bottom", fontsize=11)
    ax.text(label_x, label_y, r"$LFA_{+/-}=\sigma\left(\frac{S}{1-\hat{y}}-1\right)$",
            ha="center", va="top", fontsize=10)

    ax.set_xlim(0.1, 1.0)
    ax.set_ylim(0.0, _GRADIENT_YMAX)
    ax.set_xlabel("Predicted probability")
    ax.set_ylabel("Gradient")
    ax.legend(loc="upper right", frameon=True)
    ax.set_title(f"(a) LFA illustration with {_display_names(sub).get(loss, loss)}")


def _lfa_panel(ax: Axes, lfa_df: pd.DataFrame, direction: str, palette: dict[str, str], title: str) -> None:
    """Panels (b) and (c): one LFA curve per loss in one direction."""
    sub = lfa_df[lfa_df["direction"] == direction]
    names = _display_names(lfa_df)
    for loss in sorted(sub["loss"].unique(), key=lambda key: names.get(key, key)):
        curve = sub[sub["loss"] == loss].sort_values("p")
        ax.plot(curve["p"], curve["lfa"], color=palette.get(loss), lw=1.6, label=names.get(loss, loss),
                clip_on=False)
    ax.set_xlim(0.1, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("Predicted probability")
    ax.set_ylabel(f"$LFA_{{{direction}}}$")
    ax.legend(loc="lower left" if direction == "+/-" else "upper right", frameon=True)
    ax.set_title(title)


def plot_figure2(lfa_df: pd.DataFrame, grad_df: pd.DataFrame, convention: str,
                 palette: dict[str, str] | None = None, gradient_loss: str = "fece") -> Figure:
    """Figure 2: (a) gradients of ``gradient_loss`` with the area S, (b) LFA+/-, (c) LFA-/+.

    Args:
        lfa_df: LFA table (columns ``loss, direction, p, lfa``; optional ``display``).
        grad_df: gradient table (columns ``loss, label, p, gradient``; optional ``display``).
        convention: the convention the tables were computed in (``"trained"`` or ``"figure2"``), for the
            title.
        palette: loss → colour; :func:`loss_palette` of the table's losses when ``None``.
        gradient_loss: the loss of panel (a) (F-ECE as in the paper; the first loss of the table if absent).

    Returns:
        A figure with three axes (Agg canvas).
    """
    if convention not in CONVENTION_TITLES:
        known = ", ".join(CONVENTIONS)
        raise ValueError(f"unknown LFA convention {convention!r}; known conventions: {known}")
    palette = {**loss_palette(lfa_df["loss"].unique()), **(palette or {})}
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(16, 4.6), layout="constrained")
        FigureCanvasAgg(fig)
        ax_a, ax_b, ax_c = fig.subplots(1, 3)
    _gradient_panel(ax_a, grad_df, gradient_loss)
    _lfa_panel(ax_b, lfa_df, "+/-", palette, "(b) $LFA_{+/-}$")
    _lfa_panel(ax_c, lfa_df, "-/+", palette, "(c) $LFA_{-/+}$")
    fig.suptitle(f"Loss Function Assessment — {CONVENTION_TITLES[convention]}")
    return fig
