"""Position embeddings added to token embeddings (the ``Tokenizer.pos`` module).

Two kinds, picked by ``Tokenizer.pos_kind``:

* ``"sincos"`` — fixed sine-cosine embedding of grid coordinates, the N-D generalisation of
  MAE's 2-D table (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners"): the
  width is shared out across the coordinate axes and each axis gets MAE's 1-D formula.
  It is computed on the fly from ``coords``, so any grid size or shape works at any time with
  no table to interpolate.
* ``"mlp"`` — a learned MLP on continuous coordinates, as Point-MAE embeds group centres
  (Pang et al. 2022, "Masked Autoencoders for Point Cloud Self-supervised Learning").
* ``"learned"`` — a learned table with one vector per cell of a fixed grid, indexed by integer
  coordinates (ViT's learned embedding; PatchTST's ``learn_pe`` over patch indices, Nie et al.
  2023, "A Time Series is Worth 64 Words"). Coordinates outside the grid are an error; a table
  is carried to another grid size with :func:`resample_pos_table` (what
  :func:`mpt.load_encoder` does when a tokenizer override changes the grid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpt.errors import ConfigError

POS_KINDS = ("sincos", "mlp", "learned")


def sincos_nd(coords: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed sine-cosine embedding of ``coords`` ``[..., C]`` → ``[..., dim]``.

    Each of the ``C`` axes gets an even share ``d = 2 * (dim // (2 * C))`` of the width and
    MAE's 1-D formula: ``omega_k = 1 / temperature ** (k / (d/2))`` for ``k < d/2`` and
    ``concat(sin(pos * omega), cos(pos * omega))``. Axes are concatenated in ``coords`` order
    and the remaining ``dim - C * d`` channels are zero. Coordinates may be any real values
    (non-square and non-integer grids alike); nothing is tabulated, so no interpolation is ever
    needed. Computed in float32; the result has the dtype of ``coords`` when it is floating.
    """
    n_axes = coords.shape[-1]
    if n_axes < 1 or dim < 2 * n_axes:
        raise ValueError(f"sincos_nd: dim={dim} is too small for {n_axes} coordinate axes "
                         f"(need >= {2 * n_axes})")
    half = dim // (2 * n_axes)
    pos = coords.to(torch.float32)
    omega = 1.0 / temperature ** (torch.arange(half, dtype=torch.float32, device=coords.device) / half)
    angle = pos.unsqueeze(-1) * omega  # [..., C, half]
    emb = torch.cat([angle.sin(), angle.cos()], dim=-1).flatten(-2)  # [..., C * 2 * half]
    emb = F.pad(emb, (0, dim - emb.shape[-1]))
    return emb.to(coords.dtype) if coords.is_floating_point() else emb


class SinCosPosEmbed(nn.Module):
    """Parameter-free N-D sine-cosine embedding: ``[B, n, coord_dim]`` → ``[B, n, dim]``."""

    def __init__(self, coord_dim: int, dim: int) -> None:
        super().__init__()
        self.coord_dim = coord_dim
        self.dim = dim

    def forward(self, coords: Tensor) -> Tensor:
        if coords.shape[-1] != self.coord_dim:
            raise ValueError(f"SinCosPosEmbed: expected {self.coord_dim} coordinates, got {coords.shape[-1]}")
        return sincos_nd(coords, self.dim)


class MLPPosEmbed(nn.Module):
    """Point-MAE's learned position MLP: ``Linear(C, 128) → GELU → Linear(128, dim)``.

    ``[B, n, coord_dim]`` → ``[B, n, dim]``.
    """

    def __init__(self, coord_dim: int, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.coord_dim = coord_dim
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(coord_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, coords: Tensor) -> Tensor:
        return self.net(coords)


class LearnedPosEmbed(nn.Module):
    """A learned vector per cell of the grid ``size``: ``[B, n, len(size)]`` integer-valued
    coordinates → ``[B, n, dim]`` (row-major lookup). Initialised as timm's ViT (std 0.02)."""

    def __init__(self, size: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.size = tuple(size)
        self.dim = dim
        self.table = nn.Parameter(torch.zeros(math.prod(self.size), dim))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, coords: Tensor) -> Tensor:
        if coords.shape[-1] != len(self.size):
            raise ValueError(f"LearnedPosEmbed: expected {len(self.size)} coordinates, got {coords.shape[-1]}")
        idx = coords.detach().round().long()
        limit = torch.tensor(self.size, device=idx.device)
        if ((idx < 0) | (idx >= limit)).any():
            worst = idx.amax(dim=tuple(range(idx.ndim - 1))).tolist()
            raise ValueError(f"positions up to {[w + 1 for w in worst]} tokens per axis exceed the learned "
                             f"position table of {list(self.size)} (the input this encoder was built for); "
                             "use a shorter/smaller input or a 'sincos' position embedding")
        strides = torch.tensor([math.prod(self.size[i + 1:]) for i in range(len(self.size))], device=idx.device)
        return self.table[(idx * strides).sum(-1)]


RESAMPLE_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def resample_pos_table(table: Tensor, old: Sequence[int], new: Sequence[int]) -> Tensor:
    """A learned position table over the grid ``old`` (``[prod(old), D]``, row-major) resampled to
    the grid ``new`` → ``[prod(new), D]``.

    Each of the ``D`` channels is treated as an image over the grid and interpolated with
    ``F.interpolate(..., align_corners=False)``: linear for 1 axis, bicubic for 2 (as MAE's
    ``interpolate_pos_embed`` and timm's ``resample_abs_pos_embed``, without anti-aliasing), trilinear
    for 3. Every axis grows or shrinks on its own (non-square grids alike); the table keeps covering
    the same extent: cell ``i`` of ``n`` sits at ``(i + 0.5) / n`` of each axis, and a new cell outside
    the old first/last cell centre reads the edge cells replicated (linear/trilinear: it takes the
    edge value itself). Computed in float32, returned in ``table``'s dtype.
    With ``new == old`` the result equals ``table`` exactly (a copy).
    """
    old_t, new_t = tuple(int(s) for s in old), tuple(int(s) for s in new)
    if len(old_t) != len(new_t) or not old_t or min(old_t + new_t) < 1:
        raise ValueError(f"resample_pos_table: grids {old_t} and {new_t} must have the same number of "
                         "positive axes")
    if table.ndim != 2 or table.shape[0] != math.prod(old_t):
        raise ValueError(f"resample_pos_table: a table over the grid {old_t} is [{math.prod(old_t)}, D], "
                         f"got {tuple(table.shape)}")
    if new_t == old_t:
        return table.clone()
    mode = RESAMPLE_MODES.get(len(old_t))
    if mode is None:
        raise ValueError(f"resample_pos_table: grids of 1-3 axes are supported, got {len(old_t)} axes")
    d = table.shape[1]
    grid = table.float().t().reshape(1, d, *old_t)
    out = F.interpolate(grid, size=new_t, mode=mode, align_corners=False)
    return out.reshape(d, -1).t().contiguous().to(table.dtype)


def create_pos_embed(kind: str, coord_dim: int, dim: int, size: tuple[int, ...] | None = None) -> nn.Module:
    """The position embedding ``kind`` ("sincos", "mlp", or "learned" over the grid ``size``)
    for ``coord_dim`` coordinates."""
    if kind == "sincos":
        return SinCosPosEmbed(coord_dim, dim)
    if kind == "mlp":
        return MLPPosEmbed(coord_dim, dim)
    if kind == "learned":
        if size is None or len(size) != coord_dim or min(size) < 1:
            raise ConfigError("tokenizer.pos_kind", f"a learned position table needs a grid size with "
                                                    f"{coord_dim} positive axes, got {size}")
        return LearnedPosEmbed(tuple(size), dim)
    allowed = ", ".join(POS_KINDS)
    raise ConfigError("tokenizer.pos_kind", f"unknown position embedding {kind!r}; allowed: {allowed}")
