"""Loss registry: BCE, Focal, ASL, ECE, F-ECE (and the original ASL) for sigmoid (one-vs-rest) outputs.

Every loss is a positive-label term ``L+`` and a negative-label term ``L-`` applied elementwise to the
predicted probability ``p = sigmoid(z)`` of each class (``z``: the logit) and averaged over all elements::

    loss = mean(y * L+(p) + (1 - y) * L-(p))

The terms are computed from the logits with log-sigmoid identities (``ln p = logsigmoid(z)``,
``ln(1 - p) = logsigmoid(-z)``, ``1/p - 1 = exp(-z)``, ``p**g = exp(g * logsigmoid(z))``), always in at
least float32 (autocast is switched off inside the loss), so values and gradients stay finite for logits in
[-30, 30] in float32 and under bfloat16 autocast.

A loss is one class with the :func:`register_loss` decorator; the registry is what training, the
configuration check and the LFA curves (:mod:`lfa.curves`) read, so a new class needs nothing else.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
from torch import Tensor

from lfa.registry import Registry, UnknownNameError, origin_of

__all__ = [
    "PAPER_LOSSES",
    "AsymmetricLoss",
    "AsymmetricLossOriginal",
    "BinaryCrossEntropy",
    "ExponentialCrossEntropy",
    "FocalECE",
    "FocalLoss",
    "Loss",
    "UnknownLossError",
    "build_loss",
    "display_name",
    "get_loss",
    "loss_defaults",
    "loss_names",
    "register_loss",
    "unregister_loss",
]

#: The five losses compared in the paper's tables (registry keys).
PAPER_LOSSES = ["asl", "bce", "ece", "fece", "focal"]

_LOSSES: Registry[type[Loss]] = Registry("loss", "losses")

#: A loss name that is not in the registry (both a ``KeyError`` and a ``ValueError``).
UnknownLossError = UnknownNameError


class Loss(torch.nn.Module):
    """Base class of the registered losses.

    Subclasses set the class attributes ``name`` (registry key), ``display`` (name in tables and figures)
    and ``defaults`` (hyper-parameters with the paper's values) and implement :meth:`compute_terms`.

    Attributes:
        hparams: the hyper-parameters of this instance (defaults updated by the constructor's arguments).
        log_scale: factor applied to the value of every logarithm in the loss, keeping the logarithm's
            natural derivative (``d ln q / dq = 1/q``). ``1.0`` (natural logarithm) for training; the LFA
            ``figure2`` convention sets ``1/ln 10`` (see :mod:`lfa.curves`).
    """

    name: ClassVar[str] = ""
    display: ClassVar[str] = ""
    defaults: ClassVar[dict[str, float]] = {}
    log_scale: float = 1.0

    def __init__(self, **params: float) -> None:
        super().__init__()
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "no hyper-parameters"
            raise TypeError(f"loss {self.name!r}: unknown hyper-parameter(s) {unknown}; accepted: {accepted}")
        merged = {**self.defaults, **params}
        self.hparams: dict[str, float] = {key: float(value) for key, value in merged.items()}
        for key, value in self.hparams.items():
            if not math.isfinite(value):
                raise ValueError(f"loss {self.name!r}: hyper-parameter {key} must be finite, got {value}")
        self.check_hparams()

    def check_hparams(self) -> None:
        """Validate ``self.hparams`` (raise ``ValueError``); the base class accepts any finite values."""

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value:g}" for key, value in self.hparams.items())

    def scaled_log(self, log_value: Tensor) -> Tensor:
        """``log_scale * log_value`` in value, with the derivative of ``log_value`` itself.

        ``log_value`` is a natural logarithm (e.g. ``logsigmoid(z)``). With ``log_scale = 1`` it is returned
        unchanged. Otherwise the scaled logarithm has the value ``log_scale * ln x`` but the derivative
        ``d ln x``, i.e. the logarithm's own derivative stays ``1/x`` while its value (also where it is a
        factor of a product) is rescaled.
        """
        if self.log_scale == 1.0:
            return log_value
        return log_value + (self.log_scale - 1.0) * log_value.detach()

    def compute_terms(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Elementwise ``(L+, L-)`` of the logits ``z`` (float32 or float64, autocast disabled)."""
        raise NotImplementedError

    def terms(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Positive-label and negative-label terms ``(L+, L-)``, elementwise, same shape as ``logits``.

        Computed in float32 (float64 inputs stay float64) with autocast disabled.
        """
        dtype = torch.promote_types(logits.dtype, torch.float32)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute_terms(logits.to(dtype))

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean over all elements of ``y * L+ + (1 - y) * L-`` (a scalar)."""
        if logits.shape != targets.shape:
            raise ValueError(f"loss {self.name!r}: logits {tuple(logits.shape)} and targets "
                             f"{tuple(targets.shape)} differ in shape")
        pos, neg = self.terms(logits)
        y = targets.to(pos.dtype)
        return (y * pos + (1.0 - y) * neg).mean()

    def figure2_form(self) -> tuple[Loss, float]:
        """The form in which the published Figure 2 draws this loss: ``(loss, shift)``.

        The figure evaluates the negative-label term at own-label probability ``q - shift`` (``q = 1 - p``).
        The default is a copy of this loss and no shift; only ASL differs (see :class:`AsymmetricLoss`).
        """
        return copy.deepcopy(self), 0.0


def _check_gammas(loss: Loss, *keys: str) -> None:
    for key in keys:
        if loss.hparams[key] < 0:
            raise ValueError(f"loss {loss.name!r}: {key} must be >= 0, got {loss.hparams[key]}")


def _focal_term(loss: Loss, gamma: float, log_focus: Tensor, log_own: Tensor) -> Tensor:
    """``-exp(gamma * log_focus) * ln(own)``: a focal-weighted log term from log-probabilities."""
    return -torch.exp(gamma * log_focus) * loss.scaled_log(log_own)


def register_loss(cls: type[Loss]) -> type[Loss]:
    """Class decorator adding a :class:`Loss` subclass to the registry under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Loss)):
        raise TypeError(f"register_loss expects a subclass of lfa.losses.Loss, got {cls!r}")
    if not isinstance(cls.name, str) or not cls.name:
        raise ValueError(f"{cls.__name__}: a registered loss needs a non-empty class attribute 'name'")
    if not cls.display:
        raise ValueError(f"{cls.__name__}: a registered loss needs a non-empty class attribute 'display'")
    return _LOSSES.register(cls.name, cls, cls.display, origin_of(cls))


def unregister_loss(name: str) -> None:
    """Remove a loss from the registry (e.g. one defined by a test)."""
    _LOSSES.entry(name)
    _LOSSES.unregister(name)


def loss_names() -> list[str]:
    """Registry keys of all registered losses, sorted."""
    return _LOSSES.names()


def get_loss(name: str) -> type[Loss]:
    """The registered :class:`Loss` subclass ``name``."""
    return _LOSSES.get(name)


def build_loss(name: str, **params: float) -> Loss:
    """A new instance of the loss ``name`` with hyper-parameter overrides ``params``."""
    return get_loss(name)(**params)


def loss_defaults(name: str) -> dict[str, float]:
    """The default hyper-parameters of the loss ``name`` (a copy)."""
    return dict(get_loss(name).defaults)


def display_name(name: str) -> str:
    """The name of the loss ``name`` as shown in tables and figures (e.g. ``"F-ECE"``)."""
    return _LOSSES.display(name)


@register_loss
class BinaryCrossEntropy(Loss):
    """BCE: ``L+ = -ln p``, ``L- = -ln(1 - p)``."""

    name = "bce"
    display = "BCE"
    defaults: ClassVar[dict[str, float]] = {}

    def compute_terms(self, z: Tensor) -> tuple[Tensor, Tensor]:
        pos = -self.scaled_log(torch.nn.functional.logsigmoid(z))
        neg = -self.scaled_log(torch.nn.functional.logsigmoid(-z))
        return pos, neg


@register_loss
class FocalLoss(Loss):
    """Focal loss: ``L+ = -(1 - p)**gamma ln p``, ``L- = -p**gamma ln(1 - p)``."""

    name = "focal"
    display = "Focal"
    defaults: ClassVar[dict[str, float]] = {"gamma": 2.0}

    def check_hparams(self) -> None:
        _check_gammas(self, "gamma")

    def compute_terms(self, z: Tensor) -> tuple[Tensor, Tensor]:
        gamma = self.hparams["gamma"]
        log_p = torch.nn.functional.logsigmoid(z)
        log_1mp = torch.nn.functional.logsigmoid(-z)
        return _focal_term(self, gamma, log_1mp, log_p), _focal_term(self, gamma, log_p, log_1mp)


@register_loss
class AsymmetricLoss(Loss):
    """ASL as used for the paper's tables, with the shifted value ``s = min(1 - p + margin, 1)``:

    ``L+ = -s**gamma_pos ln p`` and ``L- = -p**gamma_neg ln s``.

    ``s`` is both the positive term's focusing factor and the argument of the negative term's logarithm,
    while the negative term's focusing factor stays ``p``. ``ln s`` is computed as
    ``min(logaddexp(logsigmoid(-z), ln margin), 0)`` (``1 - p = sigmoid(-z)``), which is exact near
    ``p = 1`` and has a plain kink at ``p = margin``.
    """

    name = "asl"
    display = "ASL"
    defaults: ClassVar[dict[str, float]] = {"gamma_pos": 1.0, "gamma_neg": 4.0, "margin": 0.05}

    def check_hparams(self) -> None:
        _check_gammas(self, "gamma_pos", "gamma_neg")
        if not 0.0 <= self.hparams["margin"] < 1.0:
            raise ValueError(f"loss {self.name!r}: margin must be in [0, 1), got {self.hparams['margin']}")

    def compute_terms(self, z: Tensor) -> tuple[Tensor, Tensor]:
        margin = self.hparams["margin"]
        log_p = torch.nn.functional.logsigmoid(z)
        log_1mp = torch.nn.functional.logsigmoid(-z)
        if margin == 0.0:
            log_s = log_1mp
        else:
            log_s = torch.logaddexp(log_1mp, torch.full_like(log_1mp, math.log(margin))).clamp(max=0.0)
        pos = _focal_term(self, self.hparams["gamma_pos"], log_s, log_p)
        neg = _focal_term(self, self.hparams["gamma_neg"], log_p, log_s)
        return pos, neg

    def figure2_form(self) -> tuple[Loss, float]:
        """The published Figure 2 draws ASL without the margin inside the terms, i.e.
        ``L+ = -(1 - q)**gamma_pos ln q`` and ``L-(q) = -(1 - q)**gamma_neg ln q`` (``q``: own-label
        probability), with the negative term evaluated at ``q - margin``."""
        plain = type(self)(**{**self.hparams, "margin": 0.0})
        return plain, self.hparams["margin"]


@register_loss
class AsymmetricLossOriginal(Loss):
    """ASL of Ridnik et al. (2021), with the shifted probability ``p_m = max(p - margin, 0)``:

    ``L+ = -(1 - p)**gamma_pos ln p`` and ``L- = -p_m**gamma_neg ln(1 - p_m)``.

    Registered for comparison; the paper's tables used :class:`AsymmetricLoss` (``asl``).
    """

    name = "asl_original"
    display = "ASL (original)"
    defaults: ClassVar[dict[str, float]] = {"gamma_pos": 1.0, "gamma_neg": 4.0, "margin": 0.05}

    def check_hparams(self) -> None:
        _check_gammas(self, "gamma_pos", "gamma_neg")
        if not 0.0 <= self.hparams["margin"] < 1.0:
            raise ValueError(f"loss {self.name!r}: margin must be in [0, 1), got {self.hparams['margin']}")

    def compute_terms(self, z: Tensor) -> tuple[Tensor, Tensor]:
        margin = self.hparams["margin"]
        gamma_neg = self.hparams["gamma_neg"]
        log_p = torch.nn.functional.logsigmoid(z)
        log_1mp = torch.nn.functional.logsigmoid(-z)
        pos = _focal_term(self, self.hparams["gamma_pos"], log_1mp, log_p)
        if margin == 0.0:
            return pos, _focal_term(self, gamma_neg, log_p, log_1mp)
        # 1 - p_m = min(1 - p + margin, 1); p_m**gamma_neg is 0 where p <= margin (safe-log double where).
        log_1mpm = torch.logaddexp(log_1mp, torch.full_like(log_1mp, math.log(margin))).clamp(max=0.0)
        p_shift = torch.sigmoid(z) - margin
        shifted = p_shift > 0
        log_pm = torch.log(torch.where(shifted, p_shift, torch.ones_like(p_shift)))
        focus = torch.where(shifted, torch.exp(gamma_neg * log_pm), torch.zeros_like(p_shift))
        return pos, -focus * self.scaled_log(log_1mpm)


@register_loss
class ExponentialCrossEntropy(Loss):
    """ECE (exponential cross-entropy): ``L+ = 1/p - 1 = exp(-z)``, ``L- = 1/(1 - p) - 1 = exp(z)``."""

    name = "ece"
    display = "ECE"
    defaults: ClassVar[dict[str, float]] = {}

    def compute_terms(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return torch.exp(-z), torch.exp(z)


@register_loss
class FocalECE(Loss):
    """F-ECE (focal-balanced exponential cross-entropy): ``L+ = 1/p - 1``, ``L- = -p**gamma ln(1 - p)``."""

    name = "fece"
    display = "F-ECE"
    defaults: ClassVar[dict[str, float]] = {"gamma": 2.0}

    def check_hparams(self) -> None:
        _check_gammas(self, "gamma")

    def compute_terms(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_p = torch.nn.functional.logsigmoid(z)
        log_1mp = torch.nn.functional.logsigmoid(-z)
        return torch.exp(-z), _focal_term(self, self.hparams["gamma"], log_p, log_1mp)
