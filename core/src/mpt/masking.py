"""Maskers: split a :class:`~mpt.contract.TokenSet` into visible (``keep``) and predicted tokens.

* ``random`` — MAE (He et al. 2022): per-sample argsort of uniform noise.
* ``block`` — BEiT / SimMIM-style contiguous block on a token grid of any number of axes.
* ``tube`` — VideoMAE (Tong et al. 2022): one spatial random mask repeated at every time step.
* ``multiblock`` — I-JEPA (Assran et al. 2023): target rectangles + a context block without them;
  V-JEPA (Bardes et al. 2024) on grids with >= 3 axes: rectangles span every leading axis.
* ``point_block`` — Point-MAE (Pang et al. 2022) "block": the tokens nearest a random centre.

Every masker is a pure function of the token layout (``grid``, ``coords``, B, N) and a
``torch.Generator``; it never reads token contents. It returns ``Mask(keep [B, Nk], pred [B, Np])``:
long indices sorted ascending per row, disjoint, with the same counts for every sample, and at
least one visible and one predicted token. Random draws are made on the generator's device
(normally the CPU) and the result is moved to ``tokens.patches.device``. ``tokens.valid`` is
not consulted: padding tokens are masked like any other.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from mpt.config import MaskConfig
from mpt.contract import Mask, Masker, TokenSet
from mpt.errors import ConfigError

KEY = "mask.name"
MASKERS = ("random", "block", "tube", "multiblock", "point_block")


def random_mask(tokens: TokenSet, generator: torch.Generator, ratio: float) -> Mask:
    """MAE: keep ``int(N * (1 - ratio))`` tokens (clamped to [1, N-1]) chosen uniformly per sample."""
    b, n = _size(tokens, "random")
    n_keep = min(max(int(n * (1 - ratio)), 1), n - 1)
    order = torch.rand(b, n, generator=generator, device=generator.device).argsort(dim=1)
    keep, pred = _split(order, n_keep)
    return _out(keep, pred, tokens)


def block_mask(tokens: TokenSet, generator: torch.Generator, ratio: float) -> Mask:
    """One contiguous box of ``int(N * ratio)`` grid cells per sample (any number of grid axes).

    Cells are ranked by the Chebyshev distance from a random centre cell, each axis divided by a
    random log-uniform scale in (0.5, 2); ties go to the smaller scaled Euclidean distance, then to
    noise. Every chosen cell thus has a chosen face neighbour nearer the centre: one connected box,
    filled except for part of its outermost layer.
    """
    grid = _grid(tokens, "block")
    b, n = _size(tokens, "block")
    dev = generator.device
    pos = _positions(grid, dev)  # [N, D]
    centre = pos[torch.randint(n, (b,), generator=generator, device=dev)]  # [B, D]
    log_scale = (torch.rand(b, len(grid), generator=generator, device=dev) * 2 - 1) * math.log(2.0)
    rel = (pos - centre[:, None]).abs() / log_scale.exp()[:, None]  # [B, N, D], scale in (0.5, 2)
    noise = torch.rand(b, n, generator=generator, device=dev)
    order = _lexsort([rel.amax(-1), rel.square().sum(-1), noise])
    pred, keep = _split(order, _n_pred(n, ratio))
    return _out(keep, pred, tokens)


def tube_mask(tokens: TokenSet, generator: torch.Generator, ratio: float) -> Mask:
    """VideoMAE: grid ``(T, *spatial)``; ``int(S * ratio)`` spatial cells (S = prod(spatial))
    are predicted at every one of the T steps, so ``Np = T * int(S * ratio)``."""
    grid = _grid(tokens, "tube")
    b, _ = _size(tokens, "tube")
    s = math.prod(grid[1:])
    if len(grid) < 2 or s < 2:
        raise ConfigError(KEY, f"masker 'tube' needs a grid (time, *space) with at least 2 spatial cells, "
                               f"got grid {grid}; use 'random' or 'block'")
    dev = generator.device
    order = torch.rand(b, s, generator=generator, device=dev).argsort(dim=1)[:, : _n_pred(s, ratio)]
    spatial = torch.zeros(b, s, dtype=torch.bool, device=dev).scatter_(1, order, True)
    pred = spatial[:, None].expand(b, grid[0], s).reshape(b, -1)
    return _from_bool(~pred, pred, tokens)


def multiblock_mask(
    tokens: TokenSet,
    generator: torch.Generator,
    num_targets: int = 4,
    target_scale: tuple[float, float] = (0.15, 0.2),
    target_aspect: tuple[float, float] = (0.75, 1.5),
    context_scale: tuple[float, float] = (0.85, 1.0),
) -> Mask:
    """I-JEPA multi-block: ``pred`` = union of ``num_targets`` target blocks, ``keep`` = one context
    block minus the targets.

    Blocks are spans on a 1-axis grid, rectangles on a 2-axis grid, and rectangles on the last two
    axes spanning all leading axes otherwise (V-JEPA). Block sizes (area = scale x plane size,
    aspect = height / width) are drawn once per batch, positions per sample; the context block has
    aspect 1. Both sets are then cut to the smallest count in the batch by dropping random members.
    """
    grid = _grid(tokens, "multiblock")
    b, n = _size(tokens, "multiblock")
    dev = generator.device
    h_full, w_full = (1, grid[0]) if len(grid) == 1 else grid[-2:]
    depth = n // (h_full * w_full)  # cells of the leading axes, all covered by every block

    def uniform(lo_hi: tuple[float, float]) -> float:
        return lo_hi[0] + torch.rand(1, generator=generator, device=dev).item() * (lo_hi[1] - lo_hi[0])

    def blocks(k: int, scale: tuple[float, float], aspect: tuple[float, float]) -> Tensor:
        h, w = _block_shape(h_full, w_full, uniform(scale) * h_full * w_full, uniform(aspect))
        top = torch.randint(h_full - h + 1, (b, k, 1), generator=generator, device=dev)
        left = torch.randint(w_full - w + 1, (b, k, 1), generator=generator, device=dev)
        rows, cols = torch.arange(h_full, device=dev), torch.arange(w_full, device=dev)
        in_rows = (rows >= top) & (rows < top + h)  # [B, k, H]
        in_cols = (cols >= left) & (cols < left + w)  # [B, k, W]
        plane = (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1)  # [B, H, W]
        return plane[:, None].expand(b, depth, h_full, w_full).reshape(b, n)

    pred = blocks(num_targets, target_scale, target_aspect)
    keep = blocks(1, context_scale, (1.0, 1.0))
    # Guarantees: at least one token outside pred (a whole column through the leading axes, so
    # targets keep their full extent), then at least one in the context.
    full = pred.all(dim=1, keepdim=True)
    column = _pick_one(pred, generator).view(b, depth, h_full * w_full).any(dim=1, keepdim=True)
    pred = pred & ~(full & column.expand(b, depth, h_full * w_full).reshape(b, n))
    keep = keep & ~pred
    empty = ~keep.any(dim=1, keepdim=True)
    keep = keep | (empty & _pick_one(~pred, generator))
    pred = _trim(pred, int(pred.sum(1).min()), generator)
    keep = _trim(keep, int(keep.sum(1).min()), generator)
    return _from_bool(keep, pred, tokens)


def point_block_mask(tokens: TokenSet, generator: torch.Generator, ratio: float) -> Mask:
    """Point-MAE block: per sample, the ``int(N * ratio)`` tokens nearest (Euclidean, on ``coords``;
    ties by index) a random centre token are predicted. Works on sets (``grid`` may be None)."""
    b, n = _size(tokens, "point_block")
    dev = generator.device
    dtype = torch.promote_types(tokens.coords.dtype, torch.float32)
    coords = tokens.coords.detach().to(dev, dtype)  # layout only, never the contents
    centre = torch.randint(n, (b,), generator=generator, device=dev)
    dist = (coords - coords[torch.arange(b, device=dev), centre][:, None]).norm(dim=-1)  # [B, N]
    pred, keep = _split(dist.argsort(dim=1, stable=True), _n_pred(n, ratio))
    return _out(keep, pred, tokens)


def create_masker(cfg: MaskConfig) -> Masker:
    """The masker named by ``cfg.name``, as a callable ``(tokens, generator) -> Mask``."""
    if cfg.name == "multiblock":
        for key, (lo, hi), upper in (("target_scale", cfg.target_scale, 1.0),
                                     ("target_aspect", cfg.target_aspect, math.inf),
                                     ("context_scale", cfg.context_scale, 1.0)):
            if not 0 < lo <= hi <= upper:
                raise ConfigError(f"mask.{key}", f"expected 0 < low <= high <= {upper}, got ({lo}, {hi})")
        return partial(multiblock_mask, num_targets=cfg.num_targets, target_scale=cfg.target_scale,
                       target_aspect=cfg.target_aspect, context_scale=cfg.context_scale)
    makers = {"random": random_mask, "block": block_mask, "tube": tube_mask, "point_block": point_block_mask}
    if cfg.name not in makers:
        raise ConfigError(KEY, f"unknown masker {cfg.name!r}; allowed: {', '.join(MASKERS)}")
    return partial(makers[cfg.name], ratio=cfg.ratio)


# --------------------------------------------------------------------------- helpers


def _size(tokens: TokenSet, name: str) -> tuple[int, int]:
    b, n = tokens.batch_size, tokens.num_tokens
    if n < 2:
        raise ConfigError(KEY, f"masker '{name}' needs at least 2 tokens (one visible, one predicted), "
                               f"got {n}")
    return b, n


def _grid(tokens: TokenSet, name: str) -> tuple[int, ...]:
    if tokens.grid is None:
        raise ConfigError(KEY, f"masker '{name}' needs a token grid, but these tokens form an unordered set; "
                               "use 'random' or 'point_block'")
    return tuple(tokens.grid)


def _n_pred(n: int, ratio: float) -> int:
    return min(max(int(n * ratio), 1), n - 1)


def _positions(grid: tuple[int, ...], device: torch.device) -> Tensor:
    """Row-major grid index of every cell, ``[prod(grid), len(grid)]`` float."""
    axes = torch.meshgrid(*[torch.arange(g, device=device, dtype=torch.float32) for g in grid], indexing="ij")
    return torch.stack(axes, dim=-1).reshape(-1, len(grid))


def _lexsort(keys: list[Tensor]) -> Tensor:
    """Per-row permutation sorting by ``keys[0]``, ties by ``keys[1]``, … (all ``[B, N]``)."""
    order = keys[-1].argsort(dim=1)
    for key in reversed(keys[:-1]):
        order = order.gather(1, key.gather(1, order).argsort(dim=1, stable=True))
    return order


def _split(order: Tensor, n_first: int) -> tuple[Tensor, Tensor]:
    """A per-row permutation ``[B, N]`` → its first ``n_first`` and the rest, each sorted."""
    return order[:, :n_first].sort(dim=1).values, order[:, n_first:].sort(dim=1).values


def _block_shape(h_full: int, w_full: int, area: float, aspect: float) -> tuple[int, int]:
    """Height and width (each >= 1, within the plane) of a block of ``area`` cells, h/w = aspect."""
    if h_full == 1 or w_full == 1:
        h, w = (1, round(area)) if h_full == 1 else (round(area), 1)
    else:
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    return min(max(h, 1), h_full), min(max(w, 1), w_full)


def _pick_one(member: Tensor, generator: torch.Generator) -> Tensor:
    """``[B, N]`` bool with one random member of each row of ``member`` (row 0 if it has none)."""
    key = torch.where(member, torch.rand(member.shape, generator=generator, device=member.device), 2.0)
    return torch.zeros_like(member).scatter_(1, key.argmin(dim=1, keepdim=True), True)


def _trim(member: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Keep ``count`` random members of each row of ``member`` ``[B, N]`` bool (each has >= count)."""
    key = torch.where(member, torch.rand(member.shape, generator=generator, device=member.device), 2.0)
    return torch.zeros_like(member).scatter_(1, key.argsort(dim=1)[:, :count], True)


def _from_bool(keep: Tensor, pred: Tensor, tokens: TokenSet) -> Mask:
    """Boolean ``[B, N]`` sets with equal counts per row → sorted index tensors."""
    b = keep.shape[0]
    return _out(keep.nonzero()[:, 1].reshape(b, -1), pred.nonzero()[:, 1].reshape(b, -1), tokens)


def _out(keep: Tensor, pred: Tensor, tokens: TokenSet) -> Mask:
    device = tokens.patches.device
    return Mask(keep=keep.to(device, torch.long), pred=pred.to(device, torch.long))
