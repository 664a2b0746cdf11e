"""LFA curves (Figure 2): closed forms, end points, tables, files and the figure."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lfa.assessment.conventions import CONVENTION_NOTE, CONVENTIONS
from lfa.assessment.curves import (
    DEFAULT_GRID,
    compute_curves,
    gradient_curve,
    lfa_curve,
    write_curves,
)
from lfa.assessment.figures import loss_palette, plot_figure2
from lfa.losses import PAPER_LOSSES, build_loss, loss_names

GRID = np.linspace(0.1, 0.999, 91)
END = 1 - 1e-6
M = 0.05


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


# Closed forms as functions of the own-label probability q. ``lg`` is the logarithm whose *value* enters
# (ln when trained, log10 in the figure2 convention); the derivative of a logarithm is 1/q in both.
Fn = Callable[[np.ndarray], np.ndarray]


def focal_value(gamma: float, lg: Fn) -> Fn:
    return lambda q: -((1 - q) ** gamma) * lg(q)


def focal_grad(gamma: float, lg: Fn) -> Fn:
    return lambda q: gamma * (1 - q) ** (gamma - 1) * (-lg(q)) + (1 - q) ** gamma / q


def reference(name: str, convention: str) -> dict[str, Fn]:
    """Closed-form L+, g+, L-, g- (own-label probability) of a loss in a convention."""
    lg: Fn = np.log if convention == "trained" else np.log10
    ece_value: Fn = lambda q: 1 / q - 1  # noqa: E731
    ece_grad: Fn = lambda q: 1 / q**2  # noqa: E731
    if name == "bce":
        value, grad = (lambda q: -lg(q)), (lambda q: 1 / q)
        return {"L+": value, "g+": grad, "L-": value, "g-": grad}
    if name == "focal":
        return {"L+": focal_value(2, lg), "g+": focal_grad(2, lg), "L-": focal_value(2, lg),
                "g-": focal_grad(2, lg)}
    if name == "ece":
        return {"L+": ece_value, "g+": ece_grad, "L-": ece_value, "g-": ece_grad}
    if name == "fece":
        return {"L+": ece_value, "g+": ece_grad, "L-": focal_value(2, lg), "g-": focal_grad(2, lg)}
    if name == "asl" and convention == "trained":
        def s(q: np.ndarray) -> np.ndarray:
            return np.minimum(1 - q + M, 1)

        def t(q: np.ndarray) -> np.ndarray:
            return np.minimum(q + M, 1)

        return {
            "L+": lambda q: -s(q) * lg(q),
            "g+": lambda q: (q > M) * (-lg(q)) + s(q) / q,
            "L-": lambda q: -((1 - q) ** 4) * lg(t(q)),
            "g-": lambda q: 4 * (1 - q) ** 3 * (-lg(t(q))) + (q + M < 1) * (1 - q) ** 4 / (q + M),
        }
    if name == "asl":  # figure2: no margin in the terms, negative term evaluated at q - m
        return {"L+": focal_value(1, lg), "g+": focal_grad(1, lg),
                "L-": lambda q: focal_value(4, lg)(q - M), "g-": lambda q: focal_grad(4, lg)(q - M)}
    if name == "asl_original":
        def pm(q: np.ndarray) -> np.ndarray:
            return np.maximum(1 - q - M, 0)

        return {"L+": focal_value(1, lg), "g+": focal_grad(1, lg),
                "L-": lambda q: -pm(q) ** 4 * lg(np.minimum(q + M, 1)),
                "g-": lambda q: 4 * pm(q) ** 3 * (-lg(np.minimum(q + M, 1))) + pm(q) ** 4 / (q + M)}
    raise KeyError(name)


def reference_lfa(name: str, convention: str, direction: str, y: np.ndarray) -> np.ndarray:
    ref = reference(name, convention)
    own, other = ("+", "-") if direction == "+/-" else ("-", "+")
    drop = (ref[f"L{other}"](y) - ref[f"L{other}"](np.ones(1))) / (1 - y)
    return sigmoid(ref[f"g{own}"](y) - drop - 1)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("direction", ["+/-", "-/+"])
@pytest.mark.parametrize("name", ["asl", "asl_original", "bce", "ece", "fece", "focal"])
def test_lfa_matches_closed_form(name: str, direction: str, convention: str) -> None:
    y = np.concatenate([GRID, [0.9999, END]])
    got = lfa_curve(build_loss(name), y, direction, convention)
    np.testing.assert_allclose(got, reference_lfa(name, convention, direction, y), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_named_closed_forms(convention: str) -> None:
    y = np.concatenate([GRID, [END]])
    for direction in ("+/-", "-/+"):
        ece = lfa_curve(build_loss("ece"), y, direction, convention)
        np.testing.assert_allclose(ece, sigmoid(1 / y**2 - 1 / y - 1), rtol=1e-9)
        bce = lfa_curve(build_loss("bce"), y, direction, convention)
        lg = np.log if convention == "trained" else np.log10
        np.testing.assert_allclose(bce, sigmoid(1 / y + lg(y) / (1 - y) - 1), rtol=1e-8)


S1 = float(sigmoid(-1.0))
END_POINTS = {
    # convention: name: (LFA+/- at ŷ → 1, LFA-/+ at ŷ → 1)
    "trained": {
        "bce": (S1, S1),
        "focal": (S1, S1),
        "ece": (S1, S1),
        "fece": (0.5, float(sigmoid(-2.0))),
        "asl": (float(sigmoid(-1 + M)), float(sigmoid(-1 - M))),
        "asl_original": (S1, S1),
    },
    "figure2": {
        "bce": (float(sigmoid(-1 / math.log(10))),) * 2,
        "focal": (S1, S1),
        "ece": (S1, S1),
        "fece": (0.5, float(sigmoid(-2.0))),
        "asl": (S1, S1),
        "asl_original": (S1, S1),
    },
}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_end_points(convention: str) -> None:
    for name, (plus_minus, minus_plus) in END_POINTS[convention].items():
        loss = build_loss(name)
        got = (lfa_curve(loss, [END], "+/-", convention)[0], lfa_curve(loss, [END], "-/+", convention)[0])
        assert got == pytest.approx((plus_minus, minus_plus), abs=1e-4), (name, convention)
    assert END_POINTS["figure2"]["bce"][0] == pytest.approx(0.393, abs=1e-3)
    assert END_POINTS["figure2"]["fece"][1] == pytest.approx(0.119, abs=1e-3)


def test_figure2_shapes_match_published_figure() -> None:
    """The qualitative features of the published panels (b) and (c)."""
    lfa_df, grad_df = compute_curves("figure2", PAPER_LOSSES)

    def curve(name: str, direction: str) -> pd.Series:
        sub = lfa_df[(lfa_df["loss"] == name) & (lfa_df["direction"] == direction)]
        return pd.Series(sub["lfa"].to_numpy(), index=sub["p"].to_numpy())

    b = {name: curve(name, "+/-") for name in PAPER_LOSSES}
    c = {name: curve(name, "-/+") for name in PAPER_LOSSES}
    for name in PAPER_LOSSES:
        assert b[name].iloc[0] > 0.95, name
    others = np.vstack([b[n].to_numpy() for n in PAPER_LOSSES if n != "fece"])
    assert np.all(b["fece"].to_numpy() >= others.max(axis=0) - 1e-12)
    assert b["ece"][b["ece"].index <= 0.35].min() > 0.98
    assert b["ece"].loc[0.5:0.6].max() < 0.75  # falls steeply after ~0.35
    # panel (c): F-ECE low, ASL from ~1 down to ~0.25
    assert c["fece"].iloc[0] == pytest.approx(0.25, abs=0.01)
    assert c["fece"].min() == pytest.approx(0.1, abs=0.01)
    assert c["fece"].max() < 0.26
    assert c["asl"].iloc[0] > 0.99
    assert c["asl"].loc[0.59:0.61].mean() == pytest.approx(0.25, abs=0.015)
    # panel (a): F-ECE gradients
    fece = grad_df[grad_df["loss"] == "fece"]
    pos = fece[fece["label"] == "positive"]["gradient"].to_numpy()
    neg = fece[fece["label"] == "negative"]["gradient"].to_numpy()
    assert pos[0] == pytest.approx(100.0) and neg[0] == pytest.approx(9.9, abs=0.01)
    assert np.all(np.diff(neg) < 0) and neg[-1] < 1e-4


def test_gradient_curve() -> None:
    q = GRID
    fece = build_loss("fece")
    for convention in CONVENTIONS:
        np.testing.assert_allclose(gradient_curve(fece, q, "positive", convention), 1 / q**2, rtol=1e-9)
    np.testing.assert_allclose(gradient_curve(fece, q, "negative"),
                               -2 * (1 - q) * np.log(q) + (1 - q) ** 2 / q, rtol=1e-9)
    np.testing.assert_allclose(gradient_curve(fece, q, "negative", "figure2"),
                               -2 * (1 - q) * np.log10(q) + (1 - q) ** 2 / q, rtol=1e-9)
    np.testing.assert_allclose(gradient_curve(build_loss("bce"), q, "negative"), 1 / q, rtol=1e-9)
    with pytest.raises(ValueError, match="label"):
        gradient_curve(fece, q, "neutral")


def test_input_validation_and_no_mutation() -> None:
    loss = build_loss("bce")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        lfa_curve(loss, [0.5, 1.0])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        lfa_curve(loss, [0.0, 0.5])
    with pytest.raises(ValueError, match="direction"):
        lfa_curve(loss, [0.5], "+/+")
    with pytest.raises(ValueError, match="convention"):
        lfa_curve(loss, [0.5], convention="paper")
    with pytest.raises(ValueError, match=r"\(0.05, 1\)"):  # ASL's figure2 negative term needs q > m
        lfa_curve(build_loss("asl"), [0.04, 0.5], "-/+", "figure2")
    lfa_curve(loss, [0.5], convention="figure2")
    assert loss.log_scale == 1.0


def test_compute_curves_tables() -> None:
    lfa_df, grad_df = compute_curves()
    names = loss_names()
    assert list(lfa_df.columns) == ["loss", "display", "direction", "p", "lfa", "method"]
    assert set(lfa_df["method"]) == {"closed_form"}  # every registered loss: its terms are monotone and bounded
    assert list(grad_df.columns) == ["loss", "display", "label", "p", "gradient"]
    assert len(lfa_df) == len(grad_df) == len(names) * 2 * len(DEFAULT_GRID)
    assert len(DEFAULT_GRID) == 181 and DEFAULT_GRID[0] == 0.1 and DEFAULT_GRID[-1] == 0.999
    assert sorted(lfa_df["loss"].unique()) == names
    assert set(lfa_df["direction"]) == {"+/-", "-/+"} and set(grad_df["label"]) == {"positive", "negative"}
    assert lfa_df["lfa"].between(0, 1).all() and np.isfinite(grad_df["gradient"]).all()
    assert (grad_df["gradient"] >= 0).all()
    assert dict(zip(lfa_df["loss"], lfa_df["display"], strict=True))["fece"] == "F-ECE"


def test_compute_curves_params_and_selection() -> None:
    grid = np.array([0.2, 0.5, 0.8])
    lfa_df, _ = compute_curves("trained", ["focal", "bce"], {"focal": {"gamma": 0.0}, "asl": {}}, grid=grid)
    assert list(lfa_df["loss"].unique()) == ["focal", "bce"]
    focal = lfa_df[lfa_df["loss"] == "focal"]["lfa"].to_numpy()
    bce = lfa_df[lfa_df["loss"] == "bce"]["lfa"].to_numpy()
    np.testing.assert_allclose(focal, bce, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown loss"):
        compute_curves("trained", ["bce"], {"nope": {}}, grid=grid)
    with pytest.raises(KeyError, match="known losses"):
        compute_curves("trained", ["nope"], grid=grid)
    with pytest.raises(ValueError, match="convention"):
        compute_curves("paper", ["bce"], grid=grid)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_curves_round_trip(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / "lfa" / f"curves_figure2{suffix}"
    lfa_path, grad_path = write_curves("figure2", out, ["bce", "fece"])
    assert lfa_path == out and grad_path == tmp_path / "lfa" / f"curves_figure2_gradients{suffix}"
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    expected_lfa, expected_grad = compute_curves("figure2", ["bce", "fece"])
    pd.testing.assert_frame_equal(read(lfa_path), expected_lfa, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(read(grad_path), expected_grad, check_exact=False, rtol=1e-12)
    with pytest.raises(ValueError, match="suffix"):
        write_curves("trained", tmp_path / "curves.txt")


def test_convention_note() -> None:
    assert "trained" in CONVENTION_NOTE and "figure2" in CONVENTION_NOTE
    assert "base-10" in CONVENTION_NOTE and "q - m" in CONVENTION_NOTE


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_plot_figure2(convention: str) -> None:
    lfa_df, grad_df = compute_curves(convention, PAPER_LOSSES, grid=np.linspace(0.1, 0.999, 46))
    fig = plot_figure2(lfa_df, grad_df, convention)
    assert len(fig.axes) == 3
    ax_a, ax_b, ax_c = fig.axes
    assert ax_a.get_ylim() == (0.0, 10.5) and ax_a.get_xlim() == (0.1, 1.0)
    assert ax_b.get_ylim() == (0.0, 1.0) and ax_c.get_xlim() == (0.1, 1.0)
    assert [t.get_text() for t in ax_a.get_legend().get_texts()] == ["Positive label", "Negative label"]
    assert [t.get_text() for t in ax_b.get_legend().get_texts()] == ["ASL", "BCE", "ECE", "F-ECE", "Focal"]
    colours = {line.get_label(): line.get_color() for line in ax_c.get_lines()}
    assert colours["F-ECE"] == loss_palette(["fece"])["fece"]
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="convention"):
        plot_figure2(lfa_df, grad_df, "paper")


def test_plot_figure2_without_display_column_or_fece() -> None:
    lfa_df, grad_df = compute_curves("trained", ["bce", "ece"], grid=np.linspace(0.1, 0.9, 9))
    fig = plot_figure2(lfa_df.drop(columns="display"), grad_df.drop(columns="display"), "trained")
    assert len(fig.axes) == 3
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["bce", "ece"]


def test_loss_palette() -> None:
    palette = loss_palette(PAPER_LOSSES + ["zz_new", "another"])
    assert len(set(palette.values())) == len(palette)
    assert palette == loss_palette(["another", "zz_new"] + PAPER_LOSSES)
    assert loss_palette(["zz_new"])["zz_new"] == palette["zz_new"]
    assert loss_palette(["fece"])["fece"] == palette["fece"]


@pytest.mark.slow
def test_figures_module_does_not_import_torch() -> None:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    code = "import sys, lfa.assessment.figures; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------- LFA of losses whose terms are not monotone

class _SmoothedBCE(__import__("lfa.losses", fromlist=["Loss"]).Loss):
    """BCE against label-smoothed targets (smoothing 0.1): each term has a -0.05 log of the other label's
    probability, which grows without bound as the own-label probability goes to 1."""

    name, display = "smoothed_bce", "BCE (smoothed)"

    def compute_terms(self, z):
        import torch

        lp, lq = torch.nn.functional.logsigmoid(z), torch.nn.functional.logsigmoid(-z)
        return -(0.95 * lp + 0.05 * lq), -(0.95 * lq + 0.05 * lp)


class _Towards(__import__("lfa.losses", fromlist=["Loss"]).Loss):
    """Squared distance of the probability from 0.7 (either label): bounded, its gradient changes sign at 0.7."""

    name, display = "towards", "towards 0.7"

    def compute_terms(self, z):
        import torch

        p = torch.sigmoid(z)
        return (p - 0.7) ** 2, (1 - p - 0.7) ** 2


def test_term_shapes_of_the_papers_losses_and_of_non_monotone_ones():
    from lfa.assessment.curves import term_shape

    for name in PAPER_LOSSES:
        assert {term_shape(build_loss(name), label) for label in ("positive", "negative")} == {"monotone"}
    assert term_shape(_SmoothedBCE(), "negative") == "unbounded"
    assert term_shape(_Towards(), "negative") == "sign_change"


def test_lfa_by_quadrature_equals_the_analytic_integral_of_the_absolute_gradient():
    from scipy.integrate import quad

    from lfa.assessment.curves import integral_of_gradient, lfa_values

    y_hat = np.linspace(0.1, 0.99, 37)
    loss = _Towards()
    # the negative-label term as a function of its own-label probability t: (t - 0.7)^2, |g| = 2 |t - 0.7|
    exact = np.array([quad(lambda t: 2 * abs(t - 0.7), y, 1.0, points=[0.7] if y < 0.7 else None)[0]
                      for y in y_hat])
    assert np.allclose(integral_of_gradient(loss, "negative", y_hat), exact, rtol=0, atol=1e-7)
    closed = np.where(y_hat < 0.7, (0.7 - y_hat) ** 2 + 0.09, 0.09 - (y_hat - 0.7) ** 2)  # ∫ 2|t - 0.7| dt
    assert np.allclose(exact, closed, atol=1e-12)
    values, method = lfa_values(loss, y_hat, "+/-")
    own = 2 * np.abs(y_hat - 0.7)
    assert method == "quadrature"
    assert np.allclose(values, 1 / (1 + np.exp(-(own - closed / (1 - y_hat) - 1))), atol=1e-6)
    wrong = (0.09 - (y_hat - 0.7) ** 2) / (1 - y_hat)  # L(ŷ) - L(1) over 1 - ŷ, the closed form misapplied
    assert not np.allclose(closed / (1 - y_hat), wrong)


def test_an_unbounded_term_gives_lfa_zero_marked_unbounded_and_a_warning():
    from lfa.assessment.curves import lfa_values, shape_warnings

    values, method = lfa_values(_SmoothedBCE(), np.linspace(0.1, 0.99, 10), "+/-")
    assert method == "unbounded" and (values == 0).all()  # the limit, never a value set by the ±40 logit clip
    lines = shape_warnings(_SmoothedBCE())
    assert len(lines) == 2 and all("not monotone (unbounded)" in line for line in lines)
    assert shape_warnings(build_loss("fece")) == []


def test_the_quadrature_agrees_with_the_closed_form_where_both_hold():
    from lfa.assessment.curves import _branch_drop, integral_of_gradient

    y_hat = np.linspace(0.1, 0.999, 50)
    for name in ("bce", "focal", "ece", "fece"):
        loss = build_loss(name)
        by_quadrature = integral_of_gradient(loss, "negative", y_hat) / (1 - y_hat)
        assert np.allclose(by_quadrature, _branch_drop(loss, "negative", y_hat, 0.0), rtol=1e-6, atol=1e-6), name


def test_the_divergence_test_does_not_depend_on_the_losss_scale():
    from lfa.assessment.curves import lfa_values, term_shape
    from lfa.losses import Loss

    class Steep(Loss):  # bounded and monotone, with a large gradient: 200 (1 - p)
        name, display = "steep", "steep"

        def compute_terms(self, z):
            import torch

            p = torch.sigmoid(z)
            return self.hparams["w"] * (1 - p), self.hparams["w"] * p

        defaults = {"w": 200.0}

    for weight in (4.0, 200.0, 1e5):
        assert term_shape(Steep(w=weight), "negative") == "monotone"
        values, method = lfa_values(Steep(w=weight), np.array([0.3, 0.6, 0.9]), "+/-")
        assert method == "closed_form" and np.allclose(values, 1 / (1 + np.e))  # g - mean g - 1 = -1 at any scale
