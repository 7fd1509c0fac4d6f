"""Position embeddings added to token embeddings (the ``Tokenizer.pos`` module).

Kinds, picked by ``Tokenizer.pos_kind`` (:data:`POS_KINDS`):

* ``"sincos"`` — fixed sine-cosine embedding of grid coordinates (:func:`sincos_nd`), the N-D
  generalisation of MAE's 2-D table (He et al. 2022, "Masked Autoencoders Are Scalable Vision
  Learners"). It is computed on the fly from ``coords``, so any grid size or shape works at any
  time with no table to interpolate.
* ``"mlp"`` — a learned MLP on continuous coordinates, as Point-MAE embeds group centres
  (Pang et al. 2022, "Masked Autoencoders for Point Cloud Self-supervised Learning").
* ``"learned"`` — a learned table with one vector per cell of a fixed grid, indexed by integer
  coordinates (ViT's learned embedding; PatchTST's ``learn_pe`` over patch indices, Nie et al.
  2023, "A Time Series is Worth 64 Words"). Coordinates outside the grid are an error; a table
  is carried to another grid size with :func:`resample_pos_table` (what
  :func:`mpt.load_encoder` does when a tokenizer override changes the grid).
* ``"identity"`` — a learned vector per discrete id (:class:`IdentityEmbed`: a column, band,
  channel or modality id). Ids are names, not positions: the table is never interpolated.
* ``"none"`` — no position at all (:class:`NoPosEmbed`, a zero embedding).

SatMAE's split (Cong et al. NeurIPS 2022, "SatMAE: Pre-training Transformers for Temporal and
Multi-Spectral Satellite Imagery") — a spatial sin-cos on ``D − g`` channels ‖ a group encoding on
``g`` — is :class:`SplitPosEmbed`, which a tokenizer returns from its ``make_pos``.

Axis convention of the N-D sin-cos (one rule for every modality)
----------------------------------------------------------------
Tokenizers give ``coords`` in the order of their row-major grid axes, the order of
``TokenSet.grid`` and of learned tables: ``(row, col)`` for images, ``(t, row, col)`` for video
tubelets ``T'×H'×W'``, ``(time, mel)`` for spectrograms, ``(depth, row, col)`` for volumes.
:func:`sincos_nd` lays the axes out along the width in REVERSED order: the last axis (the column,
x) fills the first block, then y, then t/depth. In 2-D this is exactly MAE's
``get_2d_sincos_pos_embed`` (``util/pos_embed.py``: ``np.meshgrid(grid_w, grid_h)`` puts the
column index in ``grid[0]``, which fills the first half of the width), which I-JEPA (Assran et al.
2023), AudioMAE's non-square ``get_2d_sincos_pos_embed_flexible`` (Huang et al. 2022) and SatMAE's
spatial part copy; so encoders trained with those tables see the same positions here. Keeping the
coordinates in grid order (rather than having every tokenizer emit ``(col, row)``) keeps them
consistent with ``grid``, maskers and learned tables; only the sin-cos layout is MAE's.

V-JEPA (Bardes et al. 2024, ``src/models/utils/pos_embs.py``) differs: its
``get_3d_sincos_pos_embed`` lays out ``[depth, h, w]`` (grid order, not reversed) with ``d/2``
channels for depth and ``d/4`` each for h and w, or ``2·ceil(d/6)`` each with ``uniform_power``
(the concatenation cut to ``d`` channels); its 2-D table is ``[h, w]``. mpt's default 3-D table
keeps even shares ``2·(d // 6)`` in the order ``[x, y, t]``. A V-JEPA loader asks for V-JEPA's
table explicitly: ``sincos_nd(coords, d, widths=(d // 2, d // 4, d // 4), order=(0, 1, 2))``, and
for ``uniform_power`` ``sincos_nd(coords, 3 * w, widths=(w, w, w), order=(0, 1, 2))[..., :d]`` with
``w = 2 * ceil(d / 6)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpt.errors import ConfigError

POS_KINDS = ("sincos", "mlp", "learned", "identity", "none")


def sincos_widths(n_axes: int, dim: int, widths: Sequence[int] | None = None) -> tuple[int, ...]:
    """The channels :func:`sincos_nd` gives each of ``n_axes`` coordinate axes, validated.

    ``widths=None`` is an even share ``2 * (dim // (2 * n_axes))`` per axis; given widths must be
    one per axis, each even and >= 2, summing to at most ``dim``. ValueError otherwise.
    """
    if n_axes < 1:
        raise ValueError("sincos_nd: coords need at least one coordinate axis")
    if widths is None:
        share = 2 * (dim // (2 * n_axes))
        if share < 2:
            raise ValueError(f"sincos_nd: dim={dim} is too small for {n_axes} coordinate axes "
                             f"(need >= {2 * n_axes})")
        return (share,) * n_axes
    out = tuple(int(w) for w in widths)
    if len(out) != n_axes:
        raise ValueError(f"sincos_nd: widths {list(out)} give {len(out)} axes, coords have {n_axes}")
    if any(w < 2 or w % 2 for w in out):
        raise ValueError(f"sincos_nd: every width must be even and >= 2 (a sine and a cosine per "
                         f"frequency), got {list(out)}")
    if sum(out) > dim:
        raise ValueError(f"sincos_nd: widths {list(out)} sum to {sum(out)} > dim={dim}")
    return out


def sincos_order(n_axes: int, order: Sequence[int] | None = None) -> tuple[int, ...]:
    """The coordinate axes in the order their blocks fill the width: ``order`` validated as a
    permutation of ``range(n_axes)``, or by default reversed (last axis first, MAE's 2-D layout)."""
    if order is None:
        return tuple(reversed(range(n_axes)))
    out = tuple(int(a) for a in order)
    if sorted(out) != list(range(n_axes)):
        raise ValueError(f"sincos_nd: order {list(out)} is not a permutation of the {n_axes} coordinate axes")
    return out


def sincos_nd(coords: Tensor, dim: int, widths: Sequence[int] | None = None, temperature: float = 10000.0,
              order: Sequence[int] | None = None) -> Tensor:
    """Fixed sine-cosine embedding of ``coords`` ``[..., C]`` → ``[..., dim]``.

    Axis ``i`` gets ``widths[i]`` channels (default: an even share, see :func:`sincos_widths`) and
    MAE's 1-D formula at that width ``d``: ``omega_k = 1 / temperature ** (k / (d/2))`` for
    ``k < d/2`` and ``concat(sin(pos * omega), cos(pos * omega))``. The axis blocks fill the width
    in ``order`` — by default reversed, last axis first (the module's axis convention: MAE's 2-D
    table for ``(row, col)`` coords) — and the remaining channels are zero. Coordinates may be any
    real values (non-square and non-integer grids alike); nothing is tabulated, so no interpolation
    is ever needed. Computed in float32; the result has the dtype of ``coords`` when it is floating.
    """
    n_axes = coords.shape[-1]
    sizes = sincos_widths(n_axes, dim, widths)
    pos = coords.to(torch.float32)
    blocks = []
    for axis in sincos_order(n_axes, order):
        half = sizes[axis] // 2
        omega = 1.0 / temperature ** (torch.arange(half, dtype=torch.float32, device=coords.device) / half)
        angle = pos[..., axis, None] * omega  # [..., half]
        blocks += [angle.sin(), angle.cos()]
    emb = F.pad(torch.cat(blocks, dim=-1), (0, dim - sum(sizes)))
    return emb.to(coords.dtype) if coords.is_floating_point() else emb


class SinCosPosEmbed(nn.Module):
    """Parameter-free N-D sine-cosine embedding (:func:`sincos_nd`): ``[B, n, coord_dim]`` →
    ``[B, n, dim]``, with optional per-axis ``widths`` and block ``order``."""

    def __init__(self, coord_dim: int, dim: int, widths: Sequence[int] | None = None,
                 order: Sequence[int] | None = None) -> None:
        super().__init__()
        self.coord_dim = coord_dim
        self.dim = dim
        self.widths = sincos_widths(coord_dim, dim, widths)
        self.order = sincos_order(coord_dim, order)

    def forward(self, coords: Tensor) -> Tensor:
        if coords.shape[-1] != self.coord_dim:
            raise ValueError(f"SinCosPosEmbed: expected {self.coord_dim} coordinates, got {coords.shape[-1]}")
        return sincos_nd(coords, self.dim, self.widths, order=self.order)


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


class IdentityEmbed(nn.Module):
    """A learned vector per discrete id (a column, band, channel or modality id): ids ``[B, n]``
    (or ``[B, n, 1]``, the coordinate column ``Tokenizer.pos`` receives), long or integer-valued
    float, → ``[B, n, dim]``. Initialised as timm's ViT tables (std 0.02).

    Ids are names, not positions on a grid, so the table (``table`` ``[num_ids, dim]``) is never
    interpolated: :func:`mpt.load_encoder` does not resample it (it is no :class:`LearnedPosEmbed`),
    and a change of ``num_ids`` on load is a :class:`~mpt.errors.CheckpointError` unless the
    tokenizer's ``adapt_weight`` maps the ids explicitly (:func:`remap_ids`). An id outside
    ``0 .. num_ids - 1`` or a non-integer one is a ValueError naming the table size.
    """

    def __init__(self, num_ids: int, dim: int) -> None:
        super().__init__()
        if num_ids < 1:
            raise ValueError(f"IdentityEmbed: num_ids must be >= 1, got {num_ids}")
        self.num_ids = num_ids
        self.dim = dim
        self.table = nn.Parameter(torch.zeros(num_ids, dim))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.ndim == 3 and ids.shape[-1] == 1:
            ids = ids[..., 0]
        if ids.ndim != 2:
            raise ValueError(f"IdentityEmbed: ids are [B, n] or [B, n, 1], got shape {tuple(ids.shape)}")
        ids = ids.detach()
        if ids.is_floating_point() and bool((ids != ids.round()).any()):
            raise ValueError("IdentityEmbed: ids must be integers (a discrete id per token), got fractional values")
        idx = ids.long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_ids):
            raise ValueError(f"ids {int(idx.min())}..{int(idx.max())} are outside the identity table of "
                             f"{self.num_ids} ids (0..{self.num_ids - 1}); an identity embedding is never "
                             "interpolated: build the tokenizer with enough ids")
        return self.table[idx]


def remap_ids(table: Tensor, mapping: Sequence[int]) -> Tensor:
    """An identity table ``[num_old, D]`` carried to new ids by an explicit ``mapping``: new id ``j``
    takes old row ``mapping[j]`` → ``[len(mapping), D]`` (for a tokenizer's ``adapt_weight``, e.g.
    the bands a new sensor shares with the pretrained one). An old id out of range is a ValueError."""
    index = [int(i) for i in mapping]
    bad = [i for i in index if not 0 <= i < table.shape[0]]
    if bad or not index:
        raise ValueError(f"remap_ids: mapping {index} must name old ids in 0..{table.shape[0] - 1} "
                         f"(the saved table has {table.shape[0]} ids)")
    return table[index].clone()


class NoPosEmbed(nn.Module):
    """No position: ``[B, n, C]`` coords → zeros ``[B, n, dim]`` (in the coords' dtype when floating)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, coords: Tensor) -> Tensor:
        dtype = coords.dtype if coords.is_floating_point() else torch.float32
        return torch.zeros(*coords.shape[:-1], self.dim, dtype=dtype, device=coords.device)


class SplitPosEmbed(nn.Module):
    """SatMAE's spatial ‖ group position embedding (Cong et al. 2022, ``models_mae_group_channels.py``:
    a 2-D sin-cos on ``D − 256`` channels ‖ a 1-D sin-cos of the band-group index on 256; the
    512-wide decoder uses 384 ‖ 128).

    ``[B, n, coord_dim]`` coords — the grid axes in grid order, then the group id in the last
    column — → ``[B, n, dim]`` = ``sincos_nd(grid axes, dim − group_dim)`` ‖ the group part of
    ``group_dim`` channels: the 1-D sin-cos of the id (SatMAE) when ``num_groups`` is None, else a
    learned :class:`IdentityEmbed` of ``num_groups`` ids (its table is ``group.table``).
    """

    def __init__(self, coord_dim: int, dim: int, group_dim: int, num_groups: int | None = None) -> None:
        super().__init__()
        if coord_dim < 2:
            raise ValueError(f"SplitPosEmbed: coords are grid axes then a group id (coord_dim >= 2), got {coord_dim}")
        if group_dim < 2 or group_dim % 2 or group_dim >= dim:
            raise ValueError(f"SplitPosEmbed: group_dim must be even, >= 2 and < dim={dim}, got {group_dim}")
        sincos_widths(coord_dim - 1, dim - group_dim)  # the spatial part must fit its width
        self.coord_dim = coord_dim
        self.dim = dim
        self.group_dim = group_dim
        self.group = None if num_groups is None else IdentityEmbed(num_groups, group_dim)

    def forward(self, coords: Tensor) -> Tensor:
        if coords.shape[-1] != self.coord_dim:
            raise ValueError(f"SplitPosEmbed: expected {self.coord_dim} coordinates, got {coords.shape[-1]}")
        spatial = sincos_nd(coords[..., :-1], self.dim - self.group_dim)
        ids = coords[..., -1:]
        group = sincos_nd(ids, self.group_dim) if self.group is None else self.group(ids)
        return torch.cat([spatial, group.to(spatial.dtype)], dim=-1)


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
    With ``new == old`` the result equals ``table`` exactly (a copy). Only for grid tables
    (:class:`LearnedPosEmbed`); identity tables (:class:`IdentityEmbed`) are never resampled.
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
    """The position embedding ``kind`` for ``coord_dim`` coordinates at width ``dim``: "sincos",
    "mlp", "learned" over the grid ``size``, "identity" over ``size = (num_ids,)`` (one id column,
    ``coord_dim == 1``) or "none". A ConfigError on ``tokenizer.pos_kind`` otherwise."""
    if kind == "sincos":
        return SinCosPosEmbed(coord_dim, dim)
    if kind == "mlp":
        return MLPPosEmbed(coord_dim, dim)
    if kind == "learned":
        if size is None or len(size) != coord_dim or min(size) < 1:
            raise ConfigError("tokenizer.pos_kind", f"a learned position table needs a grid size with "
                                                    f"{coord_dim} positive axes, got {size}")
        return LearnedPosEmbed(tuple(size), dim)
    if kind == "identity":
        if coord_dim != 1 or size is None or len(size) != 1 or size[0] < 1:
            raise ConfigError("tokenizer.pos_kind", f"an identity embedding embeds one integer id per token: "
                                                    f"coord_dim 1 and size (num_ids,), got coord_dim {coord_dim} "
                                                    f"and size {size}")
        return IdentityEmbed(int(size[0]), dim)
    if kind == "none":
        return NoPosEmbed(dim)
    allowed = ", ".join(POS_KINDS)
    raise ConfigError("tokenizer.pos_kind", f"unknown position embedding {kind!r}; allowed: {allowed}")
