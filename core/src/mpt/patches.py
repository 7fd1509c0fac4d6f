"""Cutting grid-shaped inputs into non-overlapping blocks and putting them back, for any number of
grid axes: image patches (MAE's ``patchify``), video tubelets (VideoMAE), spectrogram and raster
patches share this one reshape. Tokens come out row-major over the block grid (the last axis
fastest), the order of ``TokenSet.grid``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor


def patchify(x: Tensor, block: Sequence[int]) -> Tensor:
    """``[B, *lead, *dims]`` → ``[B, N, *lead, *block]``: the last ``len(block)`` axes cut into blocks
    (each dim a multiple of its block size), ``N = prod(dims / block)``; the ``lead`` axes (channels)
    stay inside every block, e.g. ``[B, C, T, H, W]`` with ``(t, p, p)`` → ``[B, N, C, t, p, p]``."""
    k = len(block)
    b, lead, dims = x.shape[0], tuple(x.shape[1 : x.ndim - k]), tuple(x.shape[x.ndim - k :])
    grid = [d // s for d, s in zip(dims, block, strict=True)]
    x = x.reshape(b, *lead, *[v for g, s in zip(grid, block, strict=True) for v in (g, s)])
    nl = len(lead)
    x = x.permute(0, *[1 + nl + 2 * i for i in range(k)], *range(1, 1 + nl), *[2 + nl + 2 * i for i in range(k)])
    return x.reshape(b, math.prod(grid), *lead, *block)


def unpatchify(patches: Tensor, grid: Sequence[int]) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, N, *lead, *block]`` on ``grid`` (blocks per axis, ``prod(grid)
    == N``) → ``[B, *lead, *(grid · block)]``."""
    k = len(grid)
    b, n = patches.shape[:2]
    if math.prod(grid) != n:
        raise ValueError(f"unpatchify: grid {tuple(grid)} does not hold {n} patches")
    lead, block = tuple(patches.shape[2 : patches.ndim - k]), tuple(patches.shape[patches.ndim - k :])
    nl = len(lead)
    x = patches.reshape(b, *grid, *lead, *block)
    x = x.permute(0, *range(1 + k, 1 + k + nl), *[a for i in range(k) for a in (1 + i, 1 + k + nl + i)])
    return x.reshape(b, *lead, *[g * s for g, s in zip(grid, block, strict=True)])
