"""Backbones: a registry of model builders. Every model ends in C logits (one sigmoid per class).

Adding a backbone is one builder function decorated with :func:`register_backbone`.
Models take float images in [0, 1], shape (B, C_in, H, W); normalisation happens inside the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    build: Callable[..., nn.Module]
    display: str
    min_size: int = 1  # smallest input side the architecture accepts
    default_size: int = 0  # side length it is usually trained at (0: native resolution)


_BACKBONES: dict[str, BackboneInfo] = {}


def register_backbone(name: str, display: str, min_size: int = 1, default_size: int = 0):
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        _BACKBONES[name] = BackboneInfo(name, fn, display, min_size, default_size)
        return fn

    return deco


def backbone_names() -> list[str]:
    return sorted(_BACKBONES)


def backbone_info(name: str) -> BackboneInfo:
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known backbones: {', '.join(backbone_names())}")
    return _BACKBONES[name]


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so checkpoints carry their own preprocessing."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        mean = [0.485, 0.456, 0.406] if in_channels == 3 else [0.5] * in_channels
        std = [0.229, 0.224, 0.225] if in_channels == 3 else [0.25] * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Wrapped(nn.Module):
    """Normalisation, an optional channel adapter (grey → RGB) and the backbone."""

    def __init__(self, body: nn.Module, in_channels: int, body_channels: int) -> None:
        super().__init__()
        self.normalize = Normalize(in_channels)
        self.repeat = body_channels // in_channels if in_channels != body_channels else 1
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.repeat > 1:
            x = x.repeat(1, self.repeat, 1, 1)
        return self.body(x)


@register_backbone("small_cnn", "Small CNN")
def small_cnn(num_classes: int, in_channels: int = 1, pretrained: bool = False) -> nn.Module:
    """Three conv layers and a linear head: trains on 8x8 digits to a high AUC in seconds on a CPU."""
    body = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )
    return Wrapped(body, in_channels, in_channels)


def _torchvision(fn_name: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    import torchvision

    weights = "DEFAULT" if pretrained else None
    body = getattr(torchvision.models, fn_name)(weights=weights)
    if fn_name.startswith("resnet"):
        body.fc = nn.Linear(body.fc.in_features, num_classes)
    elif fn_name.startswith("densenet"):
        body.classifier = nn.Linear(body.classifier.in_features, num_classes)
    elif fn_name == "alexnet":
        body.classifier[-1] = nn.Linear(body.classifier[-1].in_features, num_classes)
    return Wrapped(body, in_channels, 3)


@register_backbone("resnet50", "ResNet-50", min_size=32, default_size=256)
def resnet50(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    return _torchvision("resnet50", num_classes, in_channels, pretrained)


@register_backbone("densenet121", "DenseNet-121", min_size=32, default_size=256)
def densenet121(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    return _torchvision("densenet121", num_classes, in_channels, pretrained)


@register_backbone("alexnet", "AlexNet", min_size=63, default_size=256)
def alexnet(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    return _torchvision("alexnet", num_classes, in_channels, pretrained)


def build_model(name: str, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
    return backbone_info(name).build(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained)
