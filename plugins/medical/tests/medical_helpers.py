"""Volumes generated in the tests: smooth, non-constant, with a background of zeros."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpt_medical.io import write_nifti

ROOT = Path(__file__).resolve().parents[3]


def shared_medical() -> Path:
    import os

    return Path(os.environ.get("MPT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "medical"


def nibabel_data() -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data"


def head(shape: tuple[int, ...] = (24, 28, 20), seed: int = 0) -> np.ndarray:
    """A smooth 'head': an ellipsoid of varying intensity (50-150) inside zeros."""
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape[:3]], indexing="ij")
    r = sum(a**2 for a in axes)
    inside = r < 0.8
    values = 100 + 30 * np.sin(3 * axes[0]) * np.cos(2 * axes[1]) + 20 * axes[2] + rng.normal(0, 2, shape[:3])
    vol = np.where(inside, values, 0.0).astype(np.float32)
    if len(shape) == 4:
        vol = np.stack([vol * (1 + 0.5 * c) for c in range(shape[3])], axis=-1)
    return vol


def write(path: Path, data: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
          affine: np.ndarray | None = None) -> Path:
    if affine is None:
        affine = np.diag([*spacing, 1.0])
    return write_nifti(path, data, affine)
