"""Loss registry and the five losses: values and gradients against float64 closed forms, numerics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from lfa.losses import (
    PAPER_LOSSES,
    Loss,
    UnknownLossError,
    build_loss,
    display_name,
    loss_defaults,
    loss_names,
    register_loss,
    unregister_loss,
)

Reference = Callable[[torch.Tensor, dict[str, float]], tuple[torch.Tensor, torch.Tensor]]


def _probs(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p and 1 - p in float64 (1 - p as sigmoid(-z), so it stays exact near p = 1)."""
    return torch.sigmoid(z), torch.sigmoid(-z)


def ref_bce(z: torch.Tensor, hp: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    p, pbar = _probs(z)
    return -torch.log(p), -torch.log(pbar)


def ref_focal(z: torch.Tensor, hp: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    p, pbar = _probs(z)
    g = hp["gamma"]
    return -pbar**g * torch.log(p), -p**g * torch.log(pbar)


def ref_asl(z: torch.Tensor, hp: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    p, pbar = _probs(z)
    s = torch.clamp(pbar + hp["margin"], max=1.0)
    return -s ** hp["gamma_pos"] * torch.log(p), -p ** hp["gamma_neg"] * torch.log(s)


def ref_asl_original(z: torch.Tensor, hp: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    p, pbar = _probs(z)
    p_m = torch.clamp(p - hp["margin"], min=0.0)
    one_minus_pm = torch.clamp(pbar + hp["margin"], max=1.0)
    return -pbar ** hp["gamma_pos"] * torch.log(p), -p_m ** hp["gamma_neg"] * torch.log(one_minus_pm)


def ref_ece(z: torch.Tensor, hp: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    p, pbar = _probs(z)
    return 1.0 / p - 1.0, 1.0 / pbar - 1.0


def ref_fece(z: torch.Tensor, hp: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    p, pbar = _probs(z)
    return 1.0 / p - 1.0, -p ** hp["gamma"] * torch.log(pbar)


REFERENCES: dict[str, Reference] = {
    "bce": ref_bce,
    "focal": ref_focal,
    "asl": ref_asl,
    "asl_original": ref_asl_original,
    "ece": ref_ece,
    "fece": ref_fece,
}
EXTREMES = [-30.0, -15.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 15.0, 30.0]


def _logits() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    random = torch.randn(200, generator=gen, dtype=torch.float64) * 4.0
    return torch.cat([random, torch.tensor(EXTREMES, dtype=torch.float64)])


def _value_and_grads(fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                     z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    leaf = z.detach().clone().requires_grad_(True)
    pos, neg = fn(leaf)
    (g_pos,) = torch.autograd.grad(pos.sum(), leaf, retain_graph=True)
    (g_neg,) = torch.autograd.grad(neg.sum(), leaf)
    return pos.detach(), neg.detach(), g_pos, g_neg


def test_registry_contents() -> None:
    assert set(REFERENCES) == set(loss_names())
    assert loss_names() == sorted(loss_names())
    assert PAPER_LOSSES == ["asl", "bce", "ece", "fece", "focal"]
    assert set(PAPER_LOSSES) < set(loss_names())
    assert "asl_original" not in PAPER_LOSSES
    assert [display_name(n) for n in PAPER_LOSSES] == ["ASL", "BCE", "ECE", "F-ECE", "Focal"]
    assert display_name("asl_original") == "ASL (original)"
    assert loss_defaults("asl") == {"gamma_pos": 1.0, "gamma_neg": 4.0, "margin": 0.05, "eps": 0.0}
    assert loss_defaults("focal") == {"gamma": 2.0, "eps": 0.0}
    assert loss_defaults("fece") == {"gamma": 2.0, "eps": 0.0}
    assert loss_defaults("bce") == {"eps": 0.0}  # every loss takes eps (0: exact)
    defaults = loss_defaults("focal")
    defaults["gamma"] = 5.0
    assert loss_defaults("focal") == {"gamma": 2.0, "eps": 0.0}  # a copy


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_values_and_gradients_float32(name: str) -> None:
    """float32 terms and autograd gradients match the float64 closed forms (random and extreme logits)."""
    loss = build_loss(name)
    z = _logits()
    ref = _value_and_grads(lambda t: REFERENCES[name](t, loss.hparams), z)
    got = _value_and_grads(loss.terms, z.float())
    for actual, expected in zip(got, ref, strict=True):
        assert actual.dtype == torch.float32
        assert torch.isfinite(actual).all()
        torch.testing.assert_close(actual.double(), expected, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_values_and_gradients_float64(name: str) -> None:
    loss = build_loss(name)
    z = _logits()
    ref = _value_and_grads(lambda t: REFERENCES[name](t, loss.hparams), z)
    got = _value_and_grads(loss.terms, z)
    for actual, expected in zip(got, ref, strict=True):
        assert actual.dtype == torch.float64
        torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_forward_is_mean_of_label_terms(name: str) -> None:
    loss = build_loss(name)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(8, 5, generator=gen, dtype=torch.float64) * 3
    y = (torch.rand(8, 5, generator=gen) < 0.3).double()
    pos, neg = REFERENCES[name](z, loss.hparams)
    torch.testing.assert_close(loss(z, y), (y * pos + (1 - y) * neg).mean())
    assert loss(z, y).shape == ()
    with pytest.raises(ValueError, match="shape"):
        loss(z, y[:, :2])


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_gradcheck_float64(name: str) -> None:
    loss = build_loss(name)
    gen = torch.Generator().manual_seed(2)
    z = (torch.randn(6, 4, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    y = (torch.rand(6, 4, generator=gen) < 0.5).double()
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (z,))
    assert torch.autograd.gradcheck(lambda t: loss.terms(t)[0].sum() + 0.5 * loss.terms(t)[1].sum(), (z,))


def _full_range_batch(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.linspace(-30.0, 30.0, 241, device=device)
    z = torch.cat([z, torch.tensor(EXTREMES, device=device)])
    x = z.repeat(2).unsqueeze(1)
    y = torch.cat([torch.ones_like(z), torch.zeros_like(z)]).unsqueeze(1)
    return x, y


def _check_autocast(name: str, device: str) -> None:
    loss = build_loss(name)
    x, y = _full_range_batch(device)
    layer = torch.nn.Linear(1, 1).to(device)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    with torch.autocast(device, dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        pos, neg = loss.terms(logits)
        value = loss(logits, y)
    assert pos.dtype == neg.dtype == value.dtype == torch.float32
    assert torch.isfinite(pos).all() and torch.isfinite(neg).all() and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(layer.weight.grad).all() and torch.isfinite(layer.bias.grad).all()
    # The loss itself is evaluated in float32: it matches the reference at the bf16-rounded logits.
    expected = REFERENCES[name](logits.detach().double().cpu(), loss.hparams)
    torch.testing.assert_close(pos.detach().double().cpu(), expected[0], rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(neg.detach().double().cpu(), expected[1], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_bf16_autocast_cpu_finite(name: str) -> None:
    _check_autocast(name, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_bf16_autocast_cuda_finite(name: str) -> None:
    _check_autocast(name, "cuda")


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_float32_full_range_finite(name: str) -> None:
    loss = build_loss(name)
    x, y = _full_range_batch("cpu")
    x.requires_grad_(True)
    value = loss(x, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_focal_gamma_zero_equals_bce() -> None:
    z = _logits()
    y = (torch.arange(z.numel()) % 2).double()
    focal, bce = build_loss("focal", gamma=0.0), build_loss("bce")
    for a, b in zip(focal.terms(z), bce.terms(z), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(focal(z, y), bce(z, y))
    assert focal.hparams == {"gamma": 0.0, "eps": 0.0}
    # F-ECE with gamma 0 has the BCE negative term
    torch.testing.assert_close(build_loss("fece", gamma=0.0).terms(z)[1], bce.terms(z)[1])


def test_hyper_parameter_override_changes_values() -> None:
    z = _logits()
    default, override = build_loss("asl"), build_loss("asl", gamma_neg=2.0, margin=0.1)
    assert override.hparams == {"gamma_pos": 1.0, "gamma_neg": 2.0, "margin": 0.1, "eps": 0.0}
    torch.testing.assert_close(override.terms(z)[1], ref_asl(z, override.hparams)[1], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(default.terms(z)[1], override.terms(z)[1])
    # ASL without margin and with gamma_pos = gamma_neg = gamma is the focal loss
    plain = build_loss("asl", gamma_pos=2.0, gamma_neg=2.0, margin=0.0)
    for a, b in zip(plain.terms(z), build_loss("focal").terms(z), strict=True):
        torch.testing.assert_close(a, b)


def test_asl_seed_variant_details() -> None:
    """The seed's ASL: s = min(1 - p + m, 1) is both the positive focus and the negative log argument."""
    m = 0.05
    loss = build_loss("asl")
    p = torch.tensor([0.01, 0.04, 0.3, 0.9], dtype=torch.float64)
    pos, neg = loss.terms(torch.logit(p))
    s = torch.clamp(1 - p + m, max=1.0)
    torch.testing.assert_close(pos, -s * torch.log(p))
    torch.testing.assert_close(neg, -p**4 * torch.log(s))
    assert neg[0] == 0 and neg[1] == 0  # p <= m: s = 1
    original = build_loss("asl_original")
    pos_o, neg_o = original.terms(torch.logit(p))
    torch.testing.assert_close(pos_o, -(1 - p) * torch.log(p))
    p_m = torch.clamp(p - m, min=0.0)
    torch.testing.assert_close(neg_o, -p_m**4 * torch.log(1 - p_m))


def test_unknown_hyper_parameter_and_bad_values() -> None:
    from lfa.errors import ConfigError

    with pytest.raises(ConfigError, match="gama.*accepted: eps, gamma"):
        build_loss("focal", gama=1.0)
    with pytest.raises(ConfigError, match=r"\['gamma'\]; accepted: eps$"):
        build_loss("bce", gamma=1.0)
    with pytest.raises(ValueError, match=r"eps must be in \[0, 0.5\)"):
        build_loss("ece", eps=0.5)
    with pytest.raises(ValueError, match=r"eps must be in \[0, 0.5\)"):
        build_loss("bce", eps=-1e-8)
    with pytest.raises(ValueError, match="margin"):
        build_loss("asl", margin=-0.1)
    with pytest.raises(ValueError, match="gamma"):
        build_loss("focal", gamma=-1.0)
    with pytest.raises(ValueError, match="finite"):
        build_loss("focal", gamma=float("nan"))


def test_unknown_loss_lists_known_names() -> None:
    with pytest.raises(KeyError) as info:
        build_loss("nope")
    message = str(info.value)
    assert "nope" in message
    for name in loss_names():
        assert name in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, UnknownLossError)
    with pytest.raises(ValueError, match="known losses: asl, asl_original, bce"):
        loss_defaults("nope")
    with pytest.raises(KeyError):
        display_name("nope")


def test_duplicate_and_invalid_registration() -> None:
    class Duplicate(Loss):
        name = "bce"
        display = "BCE again"

        def compute_terms(self, z):
            return z, z

    with pytest.raises(ValueError, match=r"loss 'bce' is registered twice: in .*src/lfa/losses\.py and in "
                                         r".*tests/test_losses\.py"):
        register_loss(Duplicate)

    class Nameless(Loss):
        display = "x"

    with pytest.raises(ValueError, match="name"):
        register_loss(Nameless)
    with pytest.raises(TypeError):
        register_loss(int)  # type: ignore[arg-type]

    class Termless(Loss):
        name = "termless_test"
        display = "Termless"

    with pytest.raises(ValueError, match="Termless: a registered loss implements compute_terms"):
        register_loss(Termless)
    assert "termless_test" not in loss_names()
    assert "bce" in loss_names() and display_name("bce") == "BCE"


def test_log_scale_scales_values_keeps_log_derivative() -> None:
    """log_scale multiplies the logarithms' values; the derivative of a logarithm stays natural."""
    z = torch.tensor([-3.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    bce = build_loss("bce")
    bce.log_scale = 1 / math.log(10)
    pos, _ = bce.terms(z)
    torch.testing.assert_close(pos, -torch.log10(torch.sigmoid(z)))
    (grad,) = torch.autograd.grad(pos.sum(), z)
    torch.testing.assert_close(grad, -torch.sigmoid(-z).detach())  # d(-ln p)/dz
    # in a product, the factor's derivative meets the scaled logarithm's value
    focal = build_loss("focal")
    focal.log_scale = 1 / math.log(10)
    p = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    pos, _ = focal.terms(torch.logit(p))
    (g,) = torch.autograd.grad(pos.sum(), p)
    q = 0.3
    torch.testing.assert_close(g, torch.tensor([2 * (1 - q) * math.log10(q) - (1 - q) ** 2 / q],
                                               dtype=torch.float64))


class _Square(Loss):
    """Brier-type loss used to check that a new class plugs in everywhere: (1 - p)^2 and p^2."""

    name = "test_square"
    display = "Square (test)"
    defaults = {"weight": 1.0}

    def compute_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.hparams["weight"]
        return w * torch.sigmoid(-z) ** 2, w * torch.sigmoid(z) ** 2


@pytest.fixture
def square_loss() -> Iterator[type[Loss]]:
    """Registers the test loss for one test and removes it afterwards."""
    cls = register_loss(_Square)
    try:
        yield cls
    finally:
        unregister_loss(cls.name)


def test_new_loss_plugs_in(square_loss: type[Loss]) -> None:
    import numpy as np

    from lfa.assessment.curves import compute_curves, lfa_curve
    from lfa.assessment.figures import loss_palette

    assert "test_square" in loss_names()
    assert display_name("test_square") == "Square (test)"
    loss = build_loss("test_square", weight=2.0)
    z = torch.linspace(-30, 30, 61, requires_grad=True)
    y = (torch.arange(61) % 2).float()
    value = loss(z, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    # LFA of the square loss: g+ = 2(1 - q), (L-(q) - L-(1)) / (1 - q) = 1 - q, so LFA = sigmoid(-q)
    q = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(lfa_curve(build_loss("test_square"), q), 1 / (1 + np.exp(q)), rtol=1e-10)
    lfa_df, grad_df = compute_curves("trained", grid=q)
    assert "test_square" in set(lfa_df["loss"]) and "test_square" in set(grad_df["loss"])
    assert set(lfa_df.loc[lfa_df["loss"] == "test_square", "display"]) == {"Square (test)"}
    assert loss_palette(["test_square"])["test_square"].startswith("#")


def test_new_loss_was_removed() -> None:
    assert "test_square" not in loss_names()
    with pytest.raises(ValueError):
        unregister_loss("test_square")


# ------------------------------------------------------------------------------- extreme logits and eps
F = torch.nn.functional


def _stable_reference(name: str, z: torch.Tensor, hp: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact terms in float64 at any logit (from log-sigmoids, so |z| = 1000 is no problem)."""
    lp, lq = F.logsigmoid(z), F.logsigmoid(-z)  # ln p, ln(1 - p)
    p, q = torch.exp(lp), torch.exp(lq)
    if name == "bce":
        return -lp, -lq
    if name == "focal":
        return -q ** hp["gamma"] * lp, -p ** hp["gamma"] * lq
    if name == "asl":
        s = torch.clamp(q + hp["margin"], max=1.0)
        return -s ** hp["gamma_pos"] * lp, -p ** hp["gamma_neg"] * torch.log(s)
    if name == "asl_original":
        p_m = torch.clamp(p - hp["margin"], min=0.0)
        return -q ** hp["gamma_pos"] * lp, -p_m ** hp["gamma_neg"] * torch.log(torch.clamp(q + hp["margin"], max=1.0))
    if name == "ece":
        return torch.exp(-z), torch.exp(z)
    assert name == "fece"
    return torch.exp(-z), -p ** hp["gamma"] * lq


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_extreme_logits_give_the_exact_value_and_gradient_never_nan(name: str, autocast: bool, device: str) -> None:
    """At z = ±100, ±1000 and y = 0, 1: the used term's value and gradient (inf where the exact value
    overflows float32, e.g. ECE's exp(100) for a positive label), and never NaN from the unused term."""
    loss = build_loss(name)
    for z0 in (-1000.0, -100.0, 100.0, 1000.0):
        for y0 in (0.0, 1.0):
            z = torch.tensor([z0], requires_grad=True, device=device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                value = loss(z.to(torch.bfloat16) if autocast else z, torch.tensor([y0], device=device))
            value.backward()
            ref_z = torch.tensor([z0], dtype=torch.float64, requires_grad=True)
            ref = _stable_reference(name, ref_z, loss.hparams)[0 if y0 == 1 else 1]
            (ref_grad,) = torch.autograd.grad(ref.sum(), ref_z)
            where = f"{name} z={z0:g} y={y0:g}"
            assert value.dtype == torch.float32, where
            assert not torch.isnan(value) and not torch.isnan(z.grad).any(), where
            torch.testing.assert_close(value.double().cpu(), ref.detach().float().double().squeeze(), rtol=1e-5,
                                       atol=1e-30, msg=where)
            torch.testing.assert_close(z.grad.double().cpu(), ref_grad.float().double(),
                                       rtol=1e-2 if autocast else 1e-5, atol=1e-30, msg=where)


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_forward_is_the_plain_formula_bit_for_bit_below_89(name: str, autocast: bool) -> None:
    """With eps = 0 the loss and its gradient are y·L+ + (1 − y)·L− of the terms exactly (the forward before the
    NaN fix), for logits up to |z| < 89 (where every term is finite in float32)."""
    loss = build_loss(name)
    gen = torch.Generator().manual_seed(3)
    base = torch.cat([torch.rand(300, generator=gen) * 176 - 88, torch.randn(300, generator=gen) * 4]).view(60, 10)
    y = (torch.rand(60, 10, generator=gen) < 0.3).float()
    results = []
    for plain in (False, True):
        z = base.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = z.to(torch.bfloat16) if autocast else z * 1.0
            if plain:
                pos, neg = loss.terms(logits)
                value = (y * pos + (1.0 - y) * neg).mean()
            else:
                value = loss(logits, y)
        value.backward()
        results.append((value.detach(), z.grad))
    assert torch.isfinite(results[0][0]) and torch.isfinite(results[0][1]).all()
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def _seed_loss(name: str, z: torch.Tensor, label: torch.Tensor, eps: float, hp: dict[str, float]) -> torch.Tensor:
    """The seed's ``Evaluation_Matix.py`` (LFA-demo, Cifar10/), written out: p clamped to [eps, 1 - eps]."""
    pred = torch.clamp(torch.sigmoid(z), min=eps, max=1 - eps)
    if name == "ece":  # ECE_loss
        loss = label * (1.0 / (pred + eps) - 1) + (1 - label) * (1.0 / (1 - pred + eps) - 1)
    elif name == "focal":  # Focal_loss (gamma[0] for both terms; 2 and 2 here)
        g = hp["gamma"]
        loss = label * -(1 - pred) ** g * torch.log(pred) + (1 - label) * -(pred**g) * torch.log(1 - pred)
    elif name == "fece":  # F_ECE_loss
        loss = label * (1.0 / (pred + eps) - 1) + (1 - label) * -(pred ** hp["gamma"]) * torch.log(1 - pred)
    elif name == "asl":  # ASL
        p_pos = pred.clamp(min=eps)
        p_neg = (1.0 - pred + hp["margin"]).clamp(max=1, min=eps)
        loss = (-label * torch.log(p_pos) * p_neg ** hp["gamma_pos"]
                - (1 - label) * torch.log(p_neg) * p_pos ** hp["gamma_neg"])
    else:  # the seed's BCE is torch.nn.BCELoss (no clamp of p); this is its clamp applied to BCE
        assert name == "bce"
        loss = -(label * torch.log(pred) + (1 - label) * torch.log(1 - pred))
    return loss.mean()


@pytest.mark.parametrize("eps", [1e-8, 1e-4, 0.05])
@pytest.mark.parametrize("name", ["asl", "bce", "ece", "fece", "focal"])
def test_eps_is_the_seeds_numerics(name: str, eps: float) -> None:
    """``eps`` reproduces the seed's formulas (float64) in value and gradient, also beyond the clamp."""
    gen = torch.Generator().manual_seed(4)
    bound = math.log((1 - eps) / eps)
    z0 = torch.cat([torch.linspace(-40.0, 40.0, 81, dtype=torch.float64),
                    torch.randn(79, generator=gen, dtype=torch.float64) * 10, torch.tensor([-1000.0, 1000.0])])
    z0 = z0[(z0.abs() - bound).abs() > 1e-3]  # not at the kink itself
    y = (torch.rand(len(z0), generator=gen) < 0.5).double()
    loss = build_loss(name, eps=eps)
    got_z, ref_z = z0.clone().requires_grad_(True), z0.clone().requires_grad_(True)
    got, ref = loss(got_z, y), _seed_loss(name, ref_z, y, eps, loss.hparams)
    got.backward()
    ref.backward()
    torch.testing.assert_close(got, ref, rtol=1e-7, atol=0)
    torch.testing.assert_close(got_z.grad, ref_z.grad, rtol=1e-6, atol=1e-300)
    beyond = z0.abs() > bound
    assert beyond.any() and (got_z.grad[beyond] == 0).all()  # zero gradient beyond the clamp


def test_eps_bounds_ece_and_changes_nothing_inside_the_clamp_for_the_log_losses() -> None:
    z = torch.tensor([-1000.0, -100.0, -30.0, -18.5, 0.0, 18.5, 30.0, 100.0, 1000.0], requires_grad=True)
    ece = build_loss("ece", eps=1e-8)
    pos, neg = ece.terms(z)
    assert float(pos.detach().max()) == pytest.approx(1 / 2e-8 - 1, rel=1e-6)  # 5·10⁷, not exp(1000) = inf
    assert float(neg.detach().max()) == pytest.approx(5e7, rel=1e-6)
    assert build_loss("ece", eps=1e-8).logit_bound == pytest.approx(18.420680734, rel=1e-9)
    (g,) = torch.autograd.grad(pos.sum(), z)
    assert (g[z.abs() > 18.43] == 0).all() and (g[z.abs() < 18.4] != 0).all()
    inside = torch.linspace(-18.0, 18.0, 37, dtype=torch.float64)
    for name in ("bce", "focal", "asl", "fece", "asl_original"):  # inside the clamp only 1/(p + eps) differs
        clamped, exact = build_loss(name, eps=1e-8).terms(inside), build_loss(name).terms(inside)
        for which in ((1,) if name == "fece" else (0, 1)):
            torch.testing.assert_close(clamped[which], exact[which], rtol=1e-7, atol=1e-12)
    near = torch.tensor([-5.0, 0.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(build_loss("ece", eps=1e-8).terms(near)[0], torch.exp(-near), rtol=1e-5, atol=0)


def test_eps_reaches_every_loss_the_config_and_the_curves(square_loss: type[Loss]) -> None:
    from lfa.assessment.curves import compute_curves
    from lfa.errors import ConfigError
    from lfa.pipeline.config import validate_config

    square = build_loss("test_square", eps=0.01)  # a user's loss: the base class clamps its logits
    assert square.hparams == {"weight": 1.0, "eps": 0.01}
    z = torch.tensor([-10.0, 0.3, 10.0], dtype=torch.float64, requires_grad=True)
    pos, neg = square.terms(z)
    expected = _Square().terms(z.detach().clamp(-math.log(99), math.log(99)))
    torch.testing.assert_close(pos, expected[0])
    torch.testing.assert_close(neg, expected[1])
    (g,) = torch.autograd.grad(pos.sum() + neg.sum(), z)
    assert g[0] == 0 and g[2] == 0 and g[1] != 0
    config = {"datasets": {"d": {"source": "digits", "subset": {"kind": "all"}}},
              "experiments": {"e": {"dataset": "d", "backbones": ["small_cnn"], "losses": ["ece", "test_square"]}},
              "loss_params": {"ece": {"eps": 1.0e-8}, "fece": {"gamma": 2.0, "eps": 1.0e-8},
                              "test_square": {"eps": 1.0e-8}}}
    validate_config(config)
    config["loss_params"] = {"ece": {"epsilon": 1.0e-8}}
    with pytest.raises(ConfigError, match=r"loss_params.ece: unknown hyper-parameter\(s\) \['epsilon'\]; ece takes "
                                          r"\['eps'\]"):
        validate_config(config)
    grid = np.linspace(0.1, 0.999, 19)
    exact, _ = compute_curves("trained", ["ece", "fece"], grid=grid)
    seed, _ = compute_curves("trained", ["ece", "fece"], params={"ece": {"eps": 1e-8}, "fece": {"eps": 1e-8}},
                             grid=grid)
    np.testing.assert_allclose(seed["lfa"], exact["lfa"], rtol=1e-5)  # the grid lies inside the clamp
