"""Backbones: a registry of model builders. Every model ends in C logits (one sigmoid per class).

Adding a backbone is one builder function decorated with :func:`register_backbone`.
Models take float images in [0, 1], shape (B, C_in, H, W); normalisation happens inside the model.

| name | architecture | input side |
|---|---|---|
| ``small_cnn`` | three conv layers (the CPU demo on 8x8 digits) | any |
| ``cifar_resnet`` | ResNet-18 in its CIFAR form (3x3 stem, no max-pool), for 32x32 images | any, >= 8 |
| ``cifar_resnet20`` | ResNet-20 of He et al. (2016), 0.27 M parameters, for 32x32 images | any, >= 8 |
| ``resnet50``, ``densenet121``, ``alexnet`` | torchvision | >= 32 (AlexNet >= 63) |
| ``botnet`` | timm ``botnet26t_256`` (the paper's BoTNet-50 has no public weights) | exactly 256 |

PGCon is not an architecture: the paper's "PGCon" rows are a ResNet-50 initialised from PGCon's
self-supervised weights (``train.init``, :func:`lfa.checkpoints.load_init`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lfa.registry import Registry, origin_of


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    build: Callable[..., nn.Module]
    display: str
    min_size: int = 1  # smallest input side the architecture accepts
    default_size: int = 0  # side length it is usually trained at (0: native resolution)
    fixed_size: int = 0  # the only input side it accepts (0: any from min_size); images are resized to it


_BACKBONES: Registry[BackboneInfo] = Registry("backbone")


def register_backbone(name: str, display: str, min_size: int = 1, default_size: int = 0, fixed_size: int = 0):
    """Function decorator adding a model builder ``fn(num_classes, in_channels, pretrained)`` as ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BACKBONES.register(name, BackboneInfo(name, fn, display, min_size, default_size, fixed_size), display,
                            origin_of(fn))
        return fn

    return deco


def backbone_names() -> list[str]:
    return _BACKBONES.names()


def get_backbone(name: str) -> BackboneInfo:
    """The registered backbone ``name``: its builder, display name and input sizes."""
    return _BACKBONES.get(name)


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


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (a 1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """A ResNet for small images: a 3x3 stem without max-pool, stages of basic blocks, global pooling.

    ``widths=(64, 128, 256, 512), depths=(2, 2, 2, 2)`` is the usual "ResNet-18 for CIFAR";
    ``widths=(16, 32, 64), depths=(3, 3, 3)`` is He et al.'s ResNet-20.
    """

    def __init__(self, num_classes: int, in_channels: int, widths: tuple[int, ...], depths: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, c_in = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for j in range(depth):
                blocks.append(_BasicBlock(c_in, width, 2 if (i > 0 and j == 0) else 1))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


@register_backbone("cifar_resnet", "ResNet-18 (CIFAR)", min_size=8, default_size=32)
def cifar_resnet(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    _no_pretrained("cifar_resnet", pretrained)
    return Wrapped(CifarResNet(num_classes, in_channels, (64, 128, 256, 512), (2, 2, 2, 2)), in_channels,
                   in_channels)


@register_backbone("cifar_resnet20", "ResNet-20 (CIFAR)", min_size=8, default_size=32)
def cifar_resnet20(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    _no_pretrained("cifar_resnet20", pretrained)
    return Wrapped(CifarResNet(num_classes, in_channels, (16, 32, 64), (3, 3, 3)), in_channels, in_channels)


@register_backbone("botnet", "BoTNet-26T", min_size=256, default_size=256, fixed_size=256)
def botnet(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    """timm's ``botnet26t_256``: ResNet bottlenecks with multi-head self-attention in the last stages.

    The paper names BoTNet-50 (Srinivas et al., 2021), for which no weights were published; BoTNet-26T is
    the closest BoTNet with an open implementation. Its relative position embeddings are sized for a
    256x256 input, so images are resized to 256 on the device.
    """
    try:
        import timm
    except ImportError as err:
        raise ImportError("backbone 'botnet' needs the timm package: pip install -e '.[timm]'") from err
    body = timm.create_model("botnet26t_256", pretrained=pretrained, num_classes=num_classes)
    return Wrapped(body, in_channels, 3)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"backbone {name!r} has no pretrained weights; use train.init for a checkpoint")


def input_size(name: str, image_size: int, native: int) -> int:
    """Side length the backbone ``name`` is fed: ``train.image_size`` if set, else the native side.

    A backbone with a fixed input side (BoTNet: 256) gets that side unless ``image_size`` asks for another,
    which is refused; a side below the backbone's minimum is refused with the option that fixes it.
    """
    info = get_backbone(name)
    size = image_size or info.fixed_size or native
    if info.fixed_size and size != info.fixed_size:
        raise ValueError(f"backbone {name!r} takes {info.fixed_size}x{info.fixed_size} images only; "
                         f"train.image_size is {image_size} (use 0 or {info.fixed_size})")
    if size < info.min_size:
        raise ValueError(f"backbone {name!r} needs images of at least {info.min_size}x{info.min_size}; "
                         f"the data is {native}x{native}: set train.image_size (e.g. {info.default_size})")
    return size


def build_model(name: str, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
    return get_backbone(name).build(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained)
