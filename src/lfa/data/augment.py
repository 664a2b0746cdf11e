"""Batched image augmentation on the device, with every random draw made up front on the CPU.

:func:`draw_augment` draws the parameters of each op for each image of an epoch from one CPU generator;
:func:`apply_augment` applies them to a batch on its device. An image's augmentation therefore depends on
(generator, its position in the epoch) only: not on how the epoch is cut into batches or chunks, nor on
the device. :class:`Batcher` turns packed uint8 images into model-ready float batches (resize + augment).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _rotation_span(op: str) -> float:
    return math.pi if op == "rotate180" else math.radians(15)


def draw_augment(ops: list[str], n: int, side: int, gen: torch.Generator) -> list[torch.Tensor]:
    """The random parameters of ``ops`` for ``n`` images of side ``side``: one draw per image and op.

    Drawn on the CPU from ``gen`` (a few numbers per image, for a whole epoch at once) and applied on the
    device by :func:`apply_augment`, so the augmentation of an image depends on (generator, position in
    the epoch) only: not on how the epoch is cut into batches or chunks, nor on the device.
    """
    params = []
    for op in ops:
        if op in ("hflip", "vflip"):
            params.append(torch.rand(n, generator=gen) < 0.5)
        elif op in ("rotate180", "rotate15"):
            # torchvision's RandomRotation(180) / (15): an angle uniform in [-span, span], zeros outside
            params.append((torch.rand(n, generator=gen) * 2 - 1) * _rotation_span(op))
        elif op == "crop":
            pad = max(1, side // 8)
            params.append(torch.randint(0, 2 * pad + 1, (n, 2), generator=gen))
        else:
            raise ValueError(f"unknown augmentation {op!r}")
    return params


def _rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its angle about the centre (bilinear, zeros outside): torchvision's rotation.

    The sampling grid is built elementwise (what ``affine_grid`` computes with a batched matrix product), so
    an image's result does not depend on the other images in its batch.
    """
    b, _, h, w = x.shape
    cos, sin = angle.cos().view(b, 1, 1), angle.sin().view(b, 1, 1)
    xs = ((torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1).view(1, 1, w)
    ys = ((torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1).view(1, h, 1)
    grid = torch.stack([cos * xs - sin * ys, sin * xs + cos * ys], dim=-1)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _crop(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Per-image crop of the image reflect-padded by 1/8 of its side, at the drawn (row, column) offsets."""
    b, c, h, w = x.shape
    pad = max(1, w // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = (torch.arange(h, device=x.device).view(1, h) + offsets[:, 0].view(b, 1)).view(b, 1, h, 1)
    cols = (torch.arange(w, device=x.device).view(1, w) + offsets[:, 1].view(b, 1)).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[bi, ci, rows, cols]


def apply_augment(x: torch.Tensor, ops: list[str], params: list[torch.Tensor]) -> torch.Tensor:
    """Apply ``ops`` to float images ``x`` (B, C, H, W) with their drawn parameters (each of first dim B)."""
    for op, p in zip(ops, params, strict=True):
        p = p.to(x.device, non_blocking=True)
        if op in ("hflip", "vflip"):
            x = torch.where(p.view(-1, 1, 1, 1), x.flip(3 if op == "hflip" else 2), x)
        elif op in ("rotate180", "rotate15"):
            x = _rotate(x, p.to(x.dtype))
        elif op == "crop":
            x = _crop(x, p)
    return x


def slice_augment(params: list[torch.Tensor] | None, start: int, stop: int) -> list[torch.Tensor] | None:
    return None if params is None else [p[start:stop] for p in params]
