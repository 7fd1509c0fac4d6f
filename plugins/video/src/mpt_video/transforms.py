"""Spatial clip augmentation: one crop box for every frame of a clip, resized to the recipe size.

``multiscale_box`` is VideoMAE's ``GroupMultiScaleCrop`` (Wang et al., TSN, ECCV 2016; VideoMAE
``transforms.py``): crop height and width each ``s × shorter side`` for ``s`` in ``scales``, at most
one scale step apart (``max_distort=1``), at a uniform position (VideoMAE draws among 13 fixed
positions). ``resized_box`` is torchvision's ``RandomResizedCrop`` box (Szegedy et al., 2015), which
V-JEPA's video transform uses. Boxes are ``(top, left, height, width)`` in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Box = tuple[int, int, int, int]


def center_box(height: int, width: int, size: int) -> Box:
    """The centred ``size × size`` box (the whole frame where it is smaller)."""
    h, w = min(size, height), min(size, width)
    return (height - h) // 2, (width - w) // 2, h, w


def multiscale_box(height: int, width: int, scales: Sequence[float], rng: np.random.Generator,
                   max_distort: int = 1) -> Box:
    """A ``GroupMultiScaleCrop`` box: sides from ``scales × min(height, width)``, their scale indices
    at most ``max_distort`` apart, at a uniform position."""
    base = min(height, width)
    sides = [max(1, int(base * s)) for s in scales]
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    h, w = pairs[rng.integers(len(pairs))]
    return int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w


def resized_box(height: int, width: int, area: tuple[float, float], ratio: tuple[float, float],
                rng: np.random.Generator, tries: int = 10) -> Box:
    """A ``RandomResizedCrop`` box: area a uniform fraction in ``area`` of the frame's, aspect
    (width / height) log-uniform in ``ratio``; after ``tries`` misses the centred box of the
    frame clamped to ``ratio``."""
    total = height * width
    for _ in range(tries):
        target = total * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def crop_resize(frames: np.ndarray, box: Box, size: int, flip: bool = False) -> Tensor:
    """uint8 ``[T, H, W, C]`` frames → float32 ``[C, T, size, size]`` in [0, 1]: the ``box`` of every
    frame, bilinearly resized to ``size × size`` (antialiased when shrinking), flipped left-right
    if ``flip``."""
    top, left, h, w = box
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top:top + h, left:left + w]))
    x = x.permute(0, 3, 1, 2).float().div_(255)  # [T, C, h, w]
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=h > size or w > size).clamp_(0, 1)
    if flip:
        x = x.flip(-1)
    return x.permute(1, 0, 2, 3).contiguous()
