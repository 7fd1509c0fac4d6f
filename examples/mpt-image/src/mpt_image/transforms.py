"""Crops: torchvision's RandomResizedCrop (MAE's augmentation) and the evaluation centre crop,
both as a box of the stored image resized to ``size`` × ``size``, drawn from a torch Generator."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Box = tuple[int, int, int, int]  # top, left, height, width


def random_resized_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                       generator: torch.Generator) -> Box:
    """torchvision ``RandomResizedCrop.get_params``: a box of ``scale`` × the image area and aspect
    (width / height) log-uniform in ``ratio``, at a uniform position; after 10 misses, the centre
    crop with the aspect clamped to ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def uniform(lo: float, hi: float) -> float:
        return lo + float(torch.rand(1, generator=generator)) * (hi - lo)

    for _ in range(10):
        target = area * uniform(*scale)
        aspect = math.exp(uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(height - h + 1, (1,), generator=generator))
            left = int(torch.randint(width - w + 1, (1,), generator=generator))
            return top, left, h, w
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, round(width / min(ratio))
    elif aspect > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_box(height: int, width: int, crop_pct: float) -> Box:
    """The central square of side ``crop_pct`` × the shorter side (Resize(size / crop_pct) +
    CenterCrop(size) in the stored image's pixels)."""
    side = max(1, round(min(height, width) * crop_pct))
    return (height - side) // 2, (width - side) // 2, side, side


def crop_resize(pixels: np.ndarray, box: Box, size: int) -> Tensor:
    """``pixels[:, box]`` (uint8 or float ``[C, H, W]``) → float32 ``[C, size, size]`` in [0, 1]
    (bicubic with antialiasing, as torchvision's tensor path with ``antialias=True``)."""
    top, left, h, w = box
    crop = torch.from_numpy(np.array(pixels[:, top : top + h, left : left + w]))  # a writable copy
    x = crop.float() / 255.0 if crop.dtype == torch.uint8 else crop.float()
    if (h, w) != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0]
    return x.clamp_(0.0, 1.0)
