"""Loss registry and the five losses: values and gradients against float64 closed forms, numerics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

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
    assert loss_defaults("asl") == {"gamma_pos": 1.0, "gamma_neg": 4.0, "margin": 0.05}
    assert loss_defaults("focal") == {"gamma": 2.0}
    assert loss_defaults("fece") == {"gamma": 2.0}
    assert loss_defaults("bce") == {}
    defaults = loss_defaults("focal")
    defaults["gamma"] = 5.0
    assert loss_defaults("focal") == {"gamma": 2.0}  # a copy


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
    assert focal.hparams == {"gamma": 0.0}
    # F-ECE with gamma 0 has the BCE negative term
    torch.testing.assert_close(build_loss("fece", gamma=0.0).terms(z)[1], bce.terms(z)[1])


def test_hyper_parameter_override_changes_values() -> None:
    z = _logits()
    default, override = build_loss("asl"), build_loss("asl", gamma_neg=2.0, margin=0.1)
    assert override.hparams == {"gamma_pos": 1.0, "gamma_neg": 2.0, "margin": 0.1}
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
    with pytest.raises(TypeError, match="gama.*accepted: gamma"):
        build_loss("focal", gama=1.0)
    with pytest.raises(TypeError, match="no hyper-parameters"):
        build_loss("bce", gamma=1.0)
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

    with pytest.raises(ValueError, match=r"loss 'bce' is registered twice: in .*src/lfa/losses\.py and in "
                                         r".*tests/test_losses\.py"):
        register_loss(Duplicate)

    class Nameless(Loss):
        display = "x"

    with pytest.raises(ValueError, match="name"):
        register_loss(Nameless)
    with pytest.raises(TypeError):
        register_loss(int)  # type: ignore[arg-type]
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

    from lfa.curves import compute_curves, lfa_curve
    from lfa.figures_lfa import loss_palette

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
