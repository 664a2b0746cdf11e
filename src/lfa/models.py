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
self-supervised weights (``train.init``, :func:`lfa.training.checkpoints.load_init`).

Besides the registered names, ``timm:<model>`` (any ``timm.list_models()`` name, optionally with a
pretrained tag, ``timm:vit_tiny_patch16_224.augreg_in21k``) and ``torchvision:<model>`` (any of
``torchvision.models.list_models(module=torchvision.models)``) are backbones: :func:`get_backbone` resolves
them through a resolver per prefix (:func:`register_backbone_resolver`) on first lookup and caches the
:class:`BackboneInfo`, so training, :func:`input_size`, the cost estimate and the report take them like any
other name. See ``docs/training.md`` ("Backbones by name").
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lfa.errors import ConfigError, UnknownNameError
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
    """The registered backbones (library models, ``timm:<model>`` and ``torchvision:<model>``, are not listed)."""
    return _BACKBONES.names()


#: ``prefix`` → a function turning a library's model name into its :class:`BackboneInfo` (``timm``, ``torchvision``).
_RESOLVERS: Registry[Callable[[str], BackboneInfo]] = Registry("backbone prefix", "backbone prefixes")


def register_backbone_resolver(prefix: str):
    """Function decorator: ``fn(model) -> BackboneInfo`` resolves the backbone names ``<prefix>:<model>``.

    ``fn`` raises :class:`lfa.errors.UnknownNameError` for a model the library does not have (naming the
    close ones) and ``ImportError`` (saying how to install it) when the library is missing.
    """

    def deco(fn: Callable[[str], BackboneInfo]) -> Callable[[str], BackboneInfo]:
        return _RESOLVERS.register(prefix, fn, prefix, origin_of(fn))

    return deco


def backbone_prefixes() -> list[str]:
    """The library prefixes of backbone names (``<prefix>:<model>``)."""
    return _RESOLVERS.names()


def get_backbone(name: str) -> BackboneInfo:
    """The backbone ``name``: its builder, display name and input sizes.

    A registered name, or ``<prefix>:<model>`` of a library (``timm:resnet18``, ``torchvision:resnet18``),
    built on first lookup and cached. An unknown name raises :class:`lfa.errors.UnknownNameError` with the
    close names; a library that is not installed, an ``ImportError`` saying how to install it.
    """
    prefix, sep, model = name.partition(":")
    if not sep:
        try:
            return _BACKBONES.get(name)
        except UnknownNameError as err:
            library = ", ".join(f"{p}:<model>" for p in backbone_prefixes())
            raise UnknownNameError(f"{err}; or a library's model: {library}{_library_hint(name)}") from None
    if prefix not in backbone_prefixes():
        close = difflib.get_close_matches(prefix, backbone_prefixes(), n=2)
        hint = f" (did you mean {', '.join(f'{c}:{model}' for c in close)}?)" if close else ""
        raise UnknownNameError(f"unknown backbone {name!r}: no library {prefix!r}{hint}; known prefixes: "
                               f"{', '.join(f'{p}:' for p in backbone_prefixes())}")
    return _resolved(prefix, model)


@functools.cache
def _resolved(prefix: str, model: str) -> BackboneInfo:
    return _RESOLVERS.get(prefix)(model)


def _library_hint(name: str) -> str:
    """`` (e.g. timm:resnet18, torchvision:resnet18)`` where a library has the unprefixed ``name``."""
    found = []
    for prefix in backbone_prefixes():
        try:
            _resolved(prefix, name)
        except (UnknownNameError, ImportError):
            continue
        found.append(f"{prefix}:{name}")
    return f" (here: {', '.join(found)})" if found else ""


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so checkpoints carry their own preprocessing."""

    def __init__(self, in_channels: int, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        if mean is None or std is None or len(mean) != in_channels or len(std) != in_channels:
            mean = [0.485, 0.456, 0.406] if in_channels == 3 else [0.5] * in_channels
            std = [0.229, 0.224, 0.225] if in_channels == 3 else [0.25] * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Wrapped(nn.Module):
    """Normalisation, an optional channel adapter (grey → RGB) and the backbone."""

    def __init__(self, body: nn.Module, in_channels: int, body_channels: int,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.normalize = Normalize(in_channels, mean, std)
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
    timm = _import_library("timm", "botnet")
    body = timm.create_model("botnet26t_256", pretrained=pretrained, num_classes=num_classes)
    return Wrapped(body, in_channels, 3)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ConfigError(f"backbone {name!r} has no pretrained weights; use train.init for a checkpoint")


# --------------------------------------------------------------------------------------- library backbones
#: Smallest input side assumed for a timm model whose pretrained config names none (its total stride).
TIMM_MIN_SIZE = 32


def _import_library(module: str, backbone: str):
    """``import module`` for the backbone ``backbone``, or an ImportError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"backbone {backbone!r} needs the {module} package, which is not installed: "
                          f"pip install {module} (it is a dependency of lfa-repro: pip install -e .)") from err


def _unknown_model(library: str, model: str, known: list[str], listing: str) -> UnknownNameError:
    close = difflib.get_close_matches(model, known, n=4, cutoff=0.5)
    hint = f" (did you mean {', '.join(f'{library}:{c}' for c in close)}?)" if close else ""
    return UnknownNameError(f"unknown backbone '{library}:{model}': {library} has no model {model!r}{hint}; "
                            f"{listing} lists its {len(known)} models")


@register_backbone_resolver("timm")
def _timm_backbone(model: str) -> BackboneInfo:
    """A timm model: ``timm.create_model(model, num_classes=C, in_chans=C_in, pretrained=...)``.

    Input sides come from its pretrained config: a model with ``fixed_input_size`` (ViTs, Swin) takes only
    that side (images are resized to it); the others take any side from ``min_input_size`` (else
    :data:`TIMM_MIN_SIZE`). A pretrained tag (``model.tag``) must be one of ``timm.list_pretrained()``.
    """
    name = f"timm:{model}"
    timm = _import_library("timm", name)
    arch, _, tag = model.partition(".")
    known = timm.list_models()
    if arch not in known:
        raise _unknown_model("timm", model, known, "timm.list_models()")
    if tag and model not in timm.list_pretrained(f"{arch}.*"):
        raise _unknown_model("timm", model, timm.list_pretrained(f"{arch}*"), f"timm.list_pretrained('{arch}*')")
    cfg = timm.models.get_pretrained_cfg(model)
    side = int(cfg.input_size[-1]) if cfg is not None else 224
    mean, std = (tuple(cfg.mean), tuple(cfg.std)) if cfg is not None else (None, None)
    if cfg is not None and cfg.fixed_input_size:
        min_size = default_size = fixed_size = side
    else:
        min_side = cfg.min_input_size if cfg is not None and cfg.min_input_size else None
        min_size, default_size, fixed_size = int(min_side[-1]) if min_side else TIMM_MIN_SIZE, side, 0

    def build(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
        body = timm.create_model(model, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
        return Wrapped(body, in_channels, in_channels, mean, std)

    return BackboneInfo(name, build, name, min_size, default_size, fixed_size)


#: torchvision builders whose models take only their weights' input side (the position embeddings or
#: attention partitions are sized for it): the keyword argument that sets that side without weights.
_TORCHVISION_FIXED: dict[str, Callable[[int], dict]] = {
    "torchvision.models.vision_transformer": lambda side: {"image_size": side},
    "torchvision.models.maxvit": lambda side: {"input_size": (side, side)},
}


@register_backbone_resolver("torchvision")
def _torchvision_backbone(model: str) -> BackboneInfo:
    """A torchvision classification model, built with ``num_classes=C`` (pretrained: the ImageNet head is
    replaced by a new one of C outputs) and its first convolution adapted to the images' channels.

    Input sides come from the default weights' meta: ``min_size``, and the crop size as the usual side;
    ViTs and MaxViT take only their weights' side (images are resized to it).
    """
    name = f"torchvision:{model}"
    tv = _import_library("torchvision", name)
    known = tv.models.list_models(module=tv.models)
    if model not in known:
        raise _unknown_model("torchvision", model, known, "torchvision.models.list_models(module=torchvision.models)")
    weights = tv.models.get_model_weights(model).DEFAULT
    side = int(weights.transforms.keywords.get("crop_size", 224))
    min_size = int(weights.meta.get("min_size", (1, 1))[-1])
    size_kwargs = _TORCHVISION_FIXED.get(tv.models.get_model_builder(model).__module__)
    fixed_size = min_size if size_kwargs else 0

    def build(num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
        kwargs: dict = {}
        if model in ("googlenet", "inception_v3"):
            kwargs["aux_logits"] = False  # one output, not the auxiliary heads' tuple in training mode
            if not pretrained:
                kwargs["init_weights"] = True
            if in_channels != 3:
                kwargs["transform_input"] = False  # it re-normalises three RGB channels
        if size_kwargs and not pretrained:
            kwargs |= size_kwargs(fixed_size)  # the weights' side: pretrained or not, the same input
        if pretrained:
            body = tv.models.get_model(model, weights=weights, **kwargs)
            _replace_head(body, len(weights.meta["categories"]), num_classes, name)
        else:
            body = tv.models.get_model(model, weights=None, num_classes=num_classes, **kwargs)
        if in_channels != 3:
            _adapt_first_conv(body, in_channels, name)
        return Wrapped(body, in_channels, in_channels)

    return BackboneInfo(name, build, name, min_size, side, fixed_size)


def _replace_head(body: nn.Module, n_out: int, num_classes: int, name: str) -> None:
    """Replace the last layer with ``n_out`` outputs (a Linear, or SqueezeNet's 1x1 Conv2d) by a new one."""
    heads = [(path, m) for path, m in body.named_modules()
             if (isinstance(m, nn.Linear) and m.out_features == n_out)
             or (isinstance(m, nn.Conv2d) and m.out_channels == n_out)]
    if not heads:
        raise ConfigError(f"backbone {name!r}: no classification layer with {n_out} outputs to replace")
    path, old = heads[-1]
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding,
                        bias=old.bias is not None)
    body.set_submodule(path, new)


def _adapt_first_conv(body: nn.Module, in_channels: int, name: str) -> None:
    """Give the first convolution ``in_channels`` inputs, its weights adapted as timm's ``adapt_input_conv``
    does (one channel: the sum over RGB; more: RGB repeated, scaled by 3 / in_channels)."""
    found = next(((p, m) for p, m in body.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None or found[1].in_channels != 3 or found[1].groups != 1:
        raise ConfigError(f"backbone {name!r}: its first layer is not a 3-channel convolution; "
                          f"it cannot take {in_channels}-channel images")
    path, old = found
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    bias=old.bias is not None, padding_mode=old.padding_mode)
    with torch.no_grad():
        w = old.weight
        if in_channels == 1:
            new.weight.copy_(w.sum(dim=1, keepdim=True))
        else:
            reps = -(-in_channels // 3)
            new.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_channels] * (3 / in_channels))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    body.set_submodule(path, new)


def input_size(name: str, image_size: int, native: int) -> int:
    """Side length the backbone ``name`` is fed: ``train.image_size`` if set, else the native side.

    A backbone with a fixed input side (BoTNet: 256) gets that side unless ``image_size`` asks for another,
    which is refused; a side below the backbone's minimum is refused with the option that fixes it.
    """
    info = get_backbone(name)
    size = image_size or info.fixed_size or native
    if info.fixed_size and size != info.fixed_size:
        raise ConfigError(f"backbone {name!r} takes {info.fixed_size}x{info.fixed_size} images only; "
                          f"train.image_size is {image_size} (use 0 or {info.fixed_size})")
    if size < info.min_size:
        given = (f"train.image_size is {image_size}: set it to at least {info.min_size}" if image_size else
                 f"the data is {native}x{native}: set train.image_size (e.g. {info.default_size})")
        raise ConfigError(f"backbone {name!r} needs images of at least {info.min_size}x{info.min_size}; {given}")
    return size


def build_model(name: str, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
    return get_backbone(name).build(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained)
