"""Loss registry: BCE, Focal, ASL, ECE, F-ECE (and the original ASL) for sigmoid (one-vs-rest) outputs.

Every loss is a positive-label term ``L+`` and a negative-label term ``L-`` applied elementwise to the
predicted probability ``p = sigmoid(z)`` of each class (``z``: the logit) and averaged over all elements::

    loss = mean(y * L+(p) + (1 - y) * L-(p))

The terms are computed from the logits with log-sigmoid identities (``ln p = logsigmoid(z)``,
``ln(1 - p) = logsigmoid(-z)``, ``1/p - 1 = exp(-z)``, ``p**g = exp(g * logsigmoid(z))``), always in at
least float32 (autocast is switched off inside the loss), so values and gradients stay finite for logits in
[-30, 30] in float32 and under bfloat16 autocast; :meth:`Loss.forward` evaluates each term only where its
label uses it, so a label's loss never turns NaN through the other label's term (ECE's ``exp(z)`` overflows
beyond ``|z| = 88.7`` in float32).

Every loss also takes ``eps`` (default 0: exact): ``eps > 0`` is the seed's numerics, ``p`` clamped to
``[eps, 1 - eps]`` (the logit to ``±logit(1 - eps)``, :meth:`Loss.terms`) and ECE's ``1/p - 1`` computed
as ``1/(p + eps) - 1``; see ``docs/losses.md``.

A loss is one class with the :func:`register_loss` decorator; the registry is what training, the
configuration check and the LFA curves (:mod:`lfa.assessment.curves`) read, so a new class needs nothing else.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from lfa.errors import ConfigError, LossCheckError, UnknownNameError
from lfa.logs import error_line
from lfa.registry import Registry, origin_of

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
    "GRID_RANGE",
    "LossCheckError",
    "build_loss",
    "check_terms",
    "display_name",
    "get_loss",
    "lfa_grid",
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
    Every loss also takes the hyper-parameters of :attr:`common_defaults` (``eps``), handled here.

    Attributes:
        hparams: the hyper-parameters of this instance (defaults, ``eps`` included, updated by the
            constructor's arguments).
        log_scale: factor applied to the value of every logarithm in the loss, keeping the logarithm's
            natural derivative (``d ln q / dq = 1/q``). ``1.0`` (natural logarithm) for training; the LFA
            ``figure2`` convention sets ``1/ln 10`` (see :mod:`lfa.assessment.curves`).
    """

    name: ClassVar[str] = ""
    display: ClassVar[str] = ""
    defaults: ClassVar[dict[str, float]] = {}
    #: Hyper-parameters every loss takes besides its own ``defaults``: ``eps`` (0: exact numerics; > 0: the
    #: seed's, ``p`` clamped to ``[eps, 1 - eps]``, see :meth:`terms`).
    common_defaults: ClassVar[dict[str, float]] = {"eps": 0.0}
    log_scale: float = 1.0

    def __init__(self, **params: float) -> None:
        super().__init__()
        accepted = self.all_defaults()
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigError(f"loss {self.name!r}: unknown hyper-parameter(s) {unknown}; accepted: "
                            f"{', '.join(sorted(accepted))}")
        merged = {**accepted, **params}
        self.hparams: dict[str, float] = {key: float(value) for key, value in merged.items()}
        for key, value in self.hparams.items():
            if not math.isfinite(value):
                raise ConfigError(f"loss {self.name!r}: hyper-parameter {key} must be finite, got {value}")
        if not 0.0 <= self.hparams["eps"] < 0.5:
            raise ConfigError(f"loss {self.name!r}: eps must be in [0, 0.5), got {self.hparams['eps']}")
        self.check_hparams()

    @classmethod
    def all_defaults(cls) -> dict[str, float]:
        """``defaults`` followed by the :attr:`common_defaults` the class does not set itself (a copy)."""
        return {**cls.defaults, **{k: v for k, v in Loss.common_defaults.items() if k not in cls.defaults}}

    @property
    def eps(self) -> float:
        """The probability clamp (0: none, the exact loss)."""
        return self.hparams.get("eps", 0.0)

    @property
    def logit_bound(self) -> float:
        """``logit(1 - eps)``: where ``eps > 0`` clamps the logits (``inf`` for ``eps = 0``)."""
        eps = self.eps
        return math.log1p(-eps) - math.log(eps) if eps > 0 else math.inf

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

    def _logits(self, logits: Tensor) -> Tensor:
        """``logits`` in at least float32; with ``eps > 0`` clamped to ``±logit(1 - eps)``, which is clamping
        ``p`` to ``[eps, 1 - eps]`` (the terms are constant beyond, their gradient zero)."""
        z = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if self.eps > 0:
            z = z.clamp(-self.logit_bound, self.logit_bound)
        return z

    def terms(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Positive-label and negative-label terms ``(L+, L-)``, elementwise, same shape as ``logits``.

        Computed in float32 (float64 inputs stay float64) with autocast disabled; with ``eps > 0`` at logits
        clamped to ``±logit(1 - eps)``.
        """
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute_terms(self._logits(logits))

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean over all elements of ``y * L+ + (1 - y) * L-`` (a scalar).

        Each term is evaluated only where its label weight is non-zero (``L+`` where ``y != 0``, ``L-`` where
        ``y != 1``) and at ``z = 0`` elsewhere, so a term that overflows where it is not used (ECE's
        ``exp(z)`` for a positive label at ``z >= 89`` in float32) adds neither ``0 * inf = NaN`` to the value
        nor to the gradient. Where both terms are finite this is the plain formula, bit for bit.
        """
        if logits.shape != targets.shape:
            raise ValueError(f"loss {self.name!r}: logits {tuple(logits.shape)} and targets "
                             f"{tuple(targets.shape)} differ in shape")
        pos = self.terms(torch.where(targets != 0, logits, 0.0))[0]
        neg = self.terms(torch.where(targets != 1, logits, 0.0))[1]
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
            raise ConfigError(f"loss {loss.name!r}: {key} must be >= 0, got {loss.hparams[key]}")


def _focal_term(loss: Loss, gamma: float, log_focus: Tensor, log_own: Tensor) -> Tensor:
    """``-exp(gamma * log_focus) * ln(own)``: a focal-weighted log term from log-probabilities."""
    return -torch.exp(gamma * log_focus) * loss.scaled_log(log_own)


def _inverse_term(loss: Loss, z: Tensor) -> Tensor:
    """ECE's ``1/q - 1`` at own-label probability ``q = sigmoid(z)``: ``exp(-z)`` (exact), or with ``eps > 0``
    the seed's ``1/(q + eps) - 1`` (at most ``1/(2 eps) - 1`` on the clamped logits)."""
    if loss.eps > 0:
        return 1.0 / (torch.sigmoid(z) + loss.eps) - 1.0
    return torch.exp(-z)


#: First and last predicted probability of the LFA grid (the x-axis of Figure 2, :mod:`lfa.assessment.curves`).
GRID_RANGE = (0.1, 0.999)


def lfa_grid(points: int = 181) -> np.ndarray:
    """The LFA grid: ``points`` probabilities evenly spaced over :data:`GRID_RANGE` (the config's
    ``lfa_grid_points``), on which the curves are drawn and every configured loss is checked."""
    return np.linspace(*GRID_RANGE, points)


def _check_pair(loss: Loss, out: object, z: Tensor) -> tuple[Tensor, Tensor]:
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
        raise LossCheckError(f"loss {loss.name!r}: compute_terms must return a pair of tensors (L+, L-), "
                             f"got {type(out).__name__}")
    for which, term in zip(("L+", "L-"), out, strict=True):
        if term.shape != z.shape:
            raise LossCheckError(f"loss {loss.name!r}: {which} has shape {tuple(term.shape)}, the logits "
                                 f"{tuple(z.shape)}; compute_terms works elementwise")
    return out


def check_terms(loss: Loss, p: np.ndarray | Tensor) -> None:
    """Refuse a loss that could not train (:class:`LossCheckError`, naming the term and a probability).

    Each term is evaluated with its gradient (autograd) at the logits of the LFA grid's probabilities ``p``
    (the positive term at ``p``, the negative one at ``1 - p``), in float32 (as trained) and float64 (as the
    LFA curves are computed): it must be finite, and its gradient must be non-zero somewhere.
    """
    grid = torch.as_tensor(p, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        for index, which, at in ((0, "positive-label term L+", grid), (1, "negative-label term L-", 1.0 - grid)):
            z = torch.logit(at).to(dtype).requires_grad_(True)
            try:
                with torch.enable_grad():
                    term = _check_pair(loss, loss.terms(z), z)[index]
                    grad = torch.autograd.grad(term.sum(), z)[0] if term.requires_grad else torch.zeros_like(z)
            except LossCheckError:
                raise
            except Exception as err:  # a bug in the loss's code: its error and line
                raise LossCheckError(f"loss {loss.name!r}: its terms fail on the LFA grid ({dtype}): "
                                     f"{error_line(err)}") from None
            for what, values in (("value", term.detach()), ("gradient", grad)):
                bad = torch.nonzero(~torch.isfinite(values))
                if len(bad):
                    i = int(bad[0])
                    raise LossCheckError(f"loss {loss.name!r}: the {what} of its {which} is not finite at "
                                         f"p = {float(at[i]):.4g} ({dtype}): {float(values[i])}; compute it from "
                                         "the logits (e.g. logsigmoid(z), not log(sigmoid(z)))")
            if not bool((grad != 0).any()):
                raise LossCheckError(f"loss {loss.name!r}: the gradient of its {which} is zero at every point of "
                                     f"the LFA grid (p from {float(grid[0]):g} to {float(grid[-1]):g}): it "
                                     "would never learn from those labels")


def register_loss(cls: type[Loss]) -> type[Loss]:
    """Class decorator adding a :class:`Loss` subclass to the registry under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Loss)):
        raise TypeError(f"register_loss expects a subclass of lfa.losses.Loss, got {cls!r}")
    if not isinstance(cls.name, str) or not cls.name:
        raise ValueError(f"{cls.__name__}: a registered loss needs a non-empty class attribute 'name'")
    if not cls.display:
        raise ValueError(f"{cls.__name__}: a registered loss needs a non-empty class attribute 'display'")
    if cls.compute_terms is Loss.compute_terms:
        raise ValueError(f"{cls.__name__}: a registered loss implements compute_terms(self, z) -> (L+, L-)")
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
    """The default hyper-parameters of the loss ``name``, ``eps`` included (a copy)."""
    return get_loss(name).all_defaults()


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
            raise ConfigError(f"loss {self.name!r}: margin must be in [0, 1), got {self.hparams['margin']}")

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
            raise ConfigError(f"loss {self.name!r}: margin must be in [0, 1), got {self.hparams['margin']}")

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
        return _inverse_term(self, z), _inverse_term(self, -z)


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
        return _inverse_term(self, z), _focal_term(self, self.hparams["gamma"], log_p, log_1mp)
