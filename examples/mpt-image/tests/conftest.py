"""Fixtures of the mpt-image tests: small image files written with Pillow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _save(path: Path, pixels: np.ndarray | Image.Image, **kwargs: object) -> Path:
    """Write ``pixels`` (an ``[H, W]`` / ``[H, W, C]`` array or a PIL image) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    im.save(path, **kwargs)
    return path


@pytest.fixture
def save() -> Callable[..., Path]:
    return _save


@pytest.fixture
def rgb() -> Callable[[int, int, int], np.ndarray]:
    """``rgb(h, w, seed)``: a smooth random uint8 ``[h, w, 3]`` picture (compresses well, not flat)."""

    def make(h: int, w: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        planes = [np.sin(6 * x * rng.uniform(0.5, 2) + 4 * y * rng.uniform(0.5, 2) + k) for k in range(3)]
        return np.round((np.stack(planes, -1) + 1) * 127.5).astype(np.uint8)

    return make
