"""Maskers: split a :class:`~mpt.contract.TokenSet` into visible (``keep``) and predicted tokens.

Every masker is registered by name in :data:`mpt.registry.MASKERS` when this module is imported,
with its own config dataclass (``mae.mask: {name: tube, ratio: 0.9}``) and the least number of
token-grid axes it needs (``grid_axes``; 0 = works on unordered sets):

* ``random`` (0) — MAE (He et al. 2022): per-sample argsort of uniform noise.
* ``block`` (1) — BEiT / SimMIM-style contiguous block on a token grid of any number of axes.
* ``tube`` (2) — VideoMAE (Tong et al. 2022): one spatial random mask repeated at every time step.
* ``multiblock`` (1) — I-JEPA (Assran et al. 2023): target rectangles + a context block without
  them; on grids with >= 3 axes the rectangles span every leading axis (V-JEPA), or with
  ``boxes: true`` are boxes over every axis (3-D multi-block of volumes).
* ``multiblock_families`` (1) — V-JEPA (Bardes et al. 2024; V-JEPA 2's configs): one mask per block
  family (8 blocks of spatial scale 0.15, 2 of 0.7), each block spanning every leading axis (all
  frames); the context is the complement of the family's targets.
* ``point_block`` (0) — Point-MAE (Pang et al. 2022) "block": the tokens nearest a random centre.
* ``bands`` (2) — time/frequency band masking on a (time, frequency) grid: whole time columns and
  whole frequency rows (AudioMAE's ``random_masking_2d``, Huang et al. 2022; SSAST's frame masking
  and SpecAugment's time/frequency masks, Park et al. 2019, in token units).
* ``dual`` (0, and 2 with its default ``running_cell`` decoder mask, plus what its encoder masker
  needs) — VideoMAE V2 (Wang et al. CVPR 2023) dual masking: an encoder masker (``tube``) and a
  decoder mask, ``Mask.decode``: running-cell (a 2 × 2 spatial cell whose kept positions shift by one
  every frame) or random.

Contract. A masker is built by ``MASKERS.get(name).build(params, key=key)`` (:func:`create_masker`),
``key`` being the config section (``"mae.mask"``) that every ConfigError it raises names. It is a
pure function of the token layout (``grid``, ``coords``, ``valid``, ``groups``, B, N) and a
``torch.Generator``; it never reads token contents. It returns ``Mask(keep [B, Nk], pred [B, Np])``
(a list of them for ``multiblock_families``): long indices sorted ascending per row, disjoint, with
the same counts for every sample, and at least one visible and one predicted token. Random draws are
made on the generator's device (normally the CPU) and the result is moved to ``tokens.patches.device``.

Padding (``tokens.valid``). A masker decides per sample on boolean ``[B, N]`` sets among the VALID
tokens (``random`` keeps ``int(n_b * (1 - ratio))`` of the ``n_b`` valid tokens of sample ``b``; grid
maskers intersect their cells with ``valid``) and :func:`pack_mask` turns the sets into index tensors
of equal counts: rows with fewer members are filled with padding tokens (which attention, the decoder
and the loss ignore), rows with more predicted members than fit drop random ones. No padding token is
kept or predicted while valid tokens suffice; without padding (``valid`` None or all True) every masker
draws and returns exactly what it did before padding was supported.

Groups (``tokens.groups`` ``[B, N]`` long, or None for one group). The core maskers ignore them. A
masker that masks groups independently (SatMAE's independent masking across band groups) builds its
sets group by group: for each group id ``g``, ``members = valid & (tokens.groups == g)``; apply the
per-sample rule within ``members`` (e.g. :func:`random_keep` with ``valid=members``), take the union
over groups of the kept (and of the predicted) sets, and hand both to :func:`pack_mask`. Such maskers
are registered by plugins through the ``mpt.maskers`` entry point.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor

from mpt.config import Choice, bounded, choice, parse
from mpt.contract import Mask, Masker, Masks, TokenSet, as_masks
from mpt.errors import ConfigError
from mpt.registry import MASKERS, Registered

# --------------------------------------------------------------------------- configs


@dataclass
class RatioConfig:
    """``random``, ``block``, ``point_block``: share of each sample's (valid) tokens predicted."""

    ratio: float = bounded(0.75, gt=0, lt=1)  # share of the (valid) tokens hidden from the encoder


@dataclass
class TubeMaskConfig:
    """``tube``: share of the spatial cells predicted at every time step (VideoMAE: 0.9)."""

    ratio: float = bounded(0.9, gt=0, lt=1)  # share of the spatial cells hidden at every time step


@dataclass
class BandsConfig:
    """``bands``: shares of the time columns and of the frequency rows of a (time, frequency) grid
    hidden, each chosen uniformly per sample (AudioMAE fine-tuning: 0.2 / 0.2)."""

    time: float = bounded(0.4, ge=0, lt=1)  # share of each sample's (valid) time columns hidden
    freq: float = bounded(0.4, ge=0, lt=1)  # share of the frequency rows hidden


@dataclass
class MultiblockConfig:
    """``multiblock`` (I-JEPA): ``num_targets`` target blocks of area ``target_scale`` × plane and
    aspect ``target_aspect`` (height / width), one context block of area ``context_scale`` × plane."""

    num_targets: int = bounded(4, ge=1)  # target blocks per sample (I-JEPA: 4)
    target_scale: tuple[float, float] = (0.15, 0.2)  # target block area / plane area, drawn per batch
    target_aspect: tuple[float, float] = (0.75, 1.5)  # target block height / width, drawn per batch
    context_scale: tuple[float, float] = (0.85, 1.0)  # context block area / plane area
    boxes: bool = False  # blocks are boxes over every grid axis (3-D volumes) instead of spanning the leading axes


@dataclass
class BlockFamily:
    """One V-JEPA mask family: ``num_blocks`` blocks, each of area ``scale`` × the spatial plane
    (the last two grid axes) and aspect in ``aspect``, spanning every leading axis (all frames)."""

    num_blocks: int = bounded(1, ge=1)  # blocks of this family per sample
    scale: float = bounded(0.15, gt=0, le=1)  # block area / plane area (blocks span every leading axis)
    aspect: tuple[float, float] = (0.75, 1.5)  # block height / width


def _vjepa_families() -> list[BlockFamily]:
    return [BlockFamily(num_blocks=8, scale=0.15), BlockFamily(num_blocks=2, scale=0.7)]


@dataclass
class FamiliesConfig:
    """``multiblock_families`` (V-JEPA): one mask per family (default: V-JEPA's short-range 8 × 0.15
    and long-range 2 × 0.7 blocks, aspect (0.75, 1.5), temporal scale 1.0)."""

    families: list[BlockFamily] = field(default_factory=_vjepa_families)  # one mask per family (V-JEPA: 8×0.15, 2×0.7)


@dataclass
class DualMaskConfig:
    """``dual`` (VideoMAE V2): the ``encoder`` masker and the decoder mask.

    ``decoder_ratio``: share of the tokens the decoder drops (VideoMAE V2's ``decoder_mask_ratio``;
    0.5 keeps half of every frame). ``decoder``: "running_cell" (VideoMAE V2) or "random" (per sample,
    like ``random``)."""

    encoder: Choice = choice("maskers", "tube")  # the encoder's masker (VideoMAE V2: tube 0.9)
    decoder_ratio: float = bounded(0.5, gt=0, lt=1)  # share of the tokens the decoder drops
    decoder: Literal["running_cell", "random"] = "running_cell"  # how the decoder's tokens are chosen


# --------------------------------------------------------------------------- maskers


def random_mask(tokens: TokenSet, generator: torch.Generator, ratio: float = 0.75, key: str = "mask") -> Mask:
    """MAE: keep ``int(n * (1 - ratio))`` of each sample's ``n`` valid tokens (clamped to [1, n-1]),
    chosen uniformly per sample; the other valid tokens are predicted."""
    _size(tokens, "random", key)
    valid = _valid(tokens, generator.device)
    keep = random_keep(valid, generator, ratio)
    return pack_mask(keep, valid & ~keep, tokens, generator)


def block_mask(tokens: TokenSet, generator: torch.Generator, ratio: float = 0.75, key: str = "mask") -> Mask:
    """One contiguous box of ``int(n * ratio)`` valid grid cells per sample (any number of grid axes).

    Cells are ranked by the Chebyshev distance from a random (valid) centre cell, each axis divided
    by a random log-uniform scale in (0.5, 2); ties go to the smaller scaled Euclidean distance, then
    to noise. Every chosen cell thus has a chosen face neighbour nearer the centre: one connected box,
    filled except for part of its outermost layer.
    """
    grid = _grid(tokens, "block", key)
    b, n = _size(tokens, "block", key)
    dev = generator.device
    valid = _valid(tokens, dev)
    pos = _positions(grid, dev)  # [N, D]
    centre = pos[_random_token(valid, generator)]  # [B, D]
    log_scale = (torch.rand(b, len(grid), generator=generator, device=dev) * 2 - 1) * math.log(2.0)
    rel = (pos - centre[:, None]).abs() / log_scale.exp()[:, None]  # [B, N, D], scale in (0.5, 2)
    noise = torch.rand(b, n, generator=generator, device=dev)
    chebyshev = torch.where(valid, rel.amax(-1), math.inf)  # padding ranks last
    order = _lexsort([chebyshev, rel.square().sum(-1), noise])
    pred = _ranks(order) < _counts(valid, ratio)[:, None]
    return pack_mask(valid & ~pred, pred, tokens, generator)


def bands_mask(tokens: TokenSet, generator: torch.Generator, time: float = 0.4, freq: float = 0.4,
               key: str = "mask") -> Mask:
    """Grid ``(T, F)``: per sample ``int(t_b * time)`` of its ``t_b`` valid time columns and
    ``int(F * freq)`` frequency rows are hidden whole (every cell of them predicted), the other valid
    cells kept. Columns holding only padding are never chosen, so a short clip loses its share of
    its own columns."""
    grid = _grid(tokens, "bands", key)
    b, _ = _size(tokens, "bands", key)
    if len(grid) != 2:
        raise ConfigError(f"{key}.name", f"masker 'bands' needs a (time, frequency) grid of 2 axes, got {grid}")
    t, f = grid
    dev = generator.device
    valid = _valid(tokens, dev)

    def lines(present: Tensor, share: float) -> Tensor:  # [B, L] valid lines → [B, L] hidden lines
        noise = torch.rand(present.shape, generator=generator, device=dev).masked_fill(~present, 2.0)
        count = (present.sum(1).double() * share).floor().long()
        return _ranks(noise.argsort(dim=1)) < count[:, None]

    cells = valid.view(b, t, f)
    hidden = lines(cells.any(2), time)[:, :, None] | lines(cells.any(1), freq)[:, None, :]
    keep, pred = _one_each(valid & ~hidden.reshape(b, -1), valid & hidden.reshape(b, -1), valid, generator)
    return pack_mask(keep, pred, tokens, generator)


def tube_mask(tokens: TokenSet, generator: torch.Generator, ratio: float = 0.9, key: str = "mask") -> Mask:
    """VideoMAE: grid ``(T, *spatial)``; ``int(S * ratio)`` spatial cells (S = prod(spatial)) are
    predicted at every one of the T steps, so ``Np = T * int(S * ratio)`` without padding."""
    grid = _grid(tokens, "tube", key)
    b, _ = _size(tokens, "tube", key)
    s = math.prod(grid[1:])
    if len(grid) < 2 or s < 2:
        raise ConfigError(f"{key}.name", f"masker 'tube' needs a grid (time, *space) with at least 2 spatial "
                                         f"cells, got grid {grid}; use 'random' or 'block'")
    dev = generator.device
    valid = _valid(tokens, dev)
    order = torch.rand(b, s, generator=generator, device=dev).argsort(dim=1)[:, : _n_pred(s, ratio)]
    spatial = torch.zeros(b, s, dtype=torch.bool, device=dev).scatter_(1, order, True)
    tube = spatial[:, None].expand(b, grid[0], s).reshape(b, -1)
    keep, pred = _one_each(valid & ~tube, valid & tube, valid, generator)  # padding may cover a side
    return pack_mask(keep, pred, tokens, generator)


def multiblock_mask(
    tokens: TokenSet,
    generator: torch.Generator,
    num_targets: int = 4,
    target_scale: tuple[float, float] = (0.15, 0.2),
    target_aspect: tuple[float, float] = (0.75, 1.5),
    context_scale: tuple[float, float] = (0.85, 1.0),
    boxes: bool = False,
    key: str = "mask",
) -> Mask:
    """I-JEPA multi-block: ``pred`` = union of ``num_targets`` target blocks, ``keep`` = one context
    block minus the targets (both among valid tokens).

    Blocks (see :func:`_blocks`) have sizes drawn once per batch, positions per sample; the context
    block has aspect 1. With ``boxes`` they are boxes over every grid axis (:func:`_boxes`: the 3-D
    multi-block of volumes) rather than rectangles spanning the leading axes. Both sets are then cut
    to equal counts by :func:`pack_mask`.
    """
    grid = _grid(tokens, "multiblock", key)
    b, _ = _size(tokens, "multiblock", key)
    valid = _valid(tokens, generator.device)
    make = _boxes if boxes else _blocks
    pred = make(grid, b, num_targets, target_scale, target_aspect, generator) & valid
    keep = make(grid, b, 1, context_scale, (1.0, 1.0), generator)
    if boxes:  # where the targets cover every valid token, one of them stays visible
        full = (pred | ~valid).all(dim=1, keepdim=True)
        pred = pred & ~(full & _pick_one(pred, generator))
    else:
        pred = _free_column(pred, valid, grid, generator)
    keep = keep & ~pred & valid
    empty = ~keep.any(dim=1, keepdim=True)
    keep = keep | (empty & _pick_one(~pred & valid, generator))
    keep, pred = _one_each(keep, pred, valid, generator)  # targets that fell on padding only
    return pack_mask(keep, pred, tokens, generator)


def multiblock_families_mask(tokens: TokenSet, generator: torch.Generator,
                             families: Sequence[BlockFamily] = tuple(_vjepa_families()),
                             key: str = "mask") -> list[Mask]:
    """V-JEPA: one Mask per family — ``pred`` = union of the family's blocks (spanning every leading
    axis: temporal scale 1.0), ``keep`` = every other valid token; equal counts via :func:`pack_mask`."""
    grid = _grid(tokens, "multiblock_families", key)
    b, _ = _size(tokens, "multiblock_families", key)
    valid = _valid(tokens, generator.device)
    masks = []
    for family in families:
        pred = _blocks(grid, b, family.num_blocks, (family.scale, family.scale), family.aspect, generator)
        pred = _free_column(pred & valid, valid, grid, generator)
        keep, pred = _one_each(valid & ~pred, pred, valid, generator)  # blocks that fell on padding only
        masks.append(pack_mask(keep, pred, tokens, generator))
    return masks


def point_block_mask(tokens: TokenSet, generator: torch.Generator, ratio: float = 0.75, key: str = "mask") -> Mask:
    """Point-MAE block: per sample, the ``int(n * ratio)`` valid tokens nearest (Euclidean, on
    ``coords``; ties by index) a random valid centre token are predicted. Works on sets."""
    b, _ = _size(tokens, "point_block", key)
    dev = generator.device
    valid = _valid(tokens, dev)
    dtype = torch.promote_types(tokens.coords.dtype, torch.float32)
    coords = tokens.coords.detach().to(dev, dtype)  # layout only, never the contents
    centre = _random_token(valid, generator)
    dist = (coords - coords[torch.arange(b, device=dev), centre][:, None]).norm(dim=-1)  # [B, N]
    order = torch.where(valid, dist, math.inf).argsort(dim=1, stable=True)
    pred = _ranks(order) < _counts(valid, ratio)[:, None]
    return pack_mask(valid & ~pred, pred, tokens, generator)


def dual_mask(tokens: TokenSet, generator: torch.Generator, encoder: Masker, decoder_ratio: float = 0.5,
              decoder: Literal["running_cell", "random"] = "running_cell", key: str = "mask") -> Mask:
    """VideoMAE V2 dual masking: ``keep``/``pred`` from ``encoder``, ``decode`` ``[B, Nd]`` = the tokens
    the decoder keeps (:func:`running_cell_keep` or :func:`random_keep` with ``decoder_ratio``).

    The decoder reconstructs :meth:`Mask.targets` = ``pred ∩ decode``; both that part of ``decode``
    and the rest (decoder-kept visible tokens) are cut to the batch's smallest count by dropping
    random members, and every sample keeps at least one target.
    """
    masks = as_masks(encoder(tokens, generator))
    if len(masks) != 1 or masks[0].decode is not None:
        raise ConfigError(f"{key}.encoder.name", "dual masking needs an encoder masker that gives one plain "
                                                 "mask (keep, pred), e.g. 'tube' or 'random'")
    enc = masks[0]
    valid = _valid(tokens, generator.device)
    if decoder == "running_cell":
        kept = running_cell_keep(tokens, generator, decoder_ratio, key)
    else:
        kept = random_keep(valid, generator, decoder_ratio)
    pred = _members(enc.pred.to(valid.device), tokens.num_tokens)
    hidden = pred & valid
    pool = torch.where(hidden.any(dim=1, keepdim=True), hidden, pred)  # padding only if nothing valid is hidden
    target = _ensure_one(kept & hidden, pool, generator)
    target = _trim(target, int(target.sum(1).min()), generator)
    seen = kept & ~pred  # decoder-kept visible tokens (kept holds valid tokens only)
    seen = _trim(seen, int(seen.sum(1).min()), generator)
    decode = _indices(target | seen).to(enc.pred.device)
    return Mask(keep=enc.keep, pred=enc.pred, decode=decode)


def running_cell_keep(tokens: TokenSet, generator: torch.Generator, ratio: float = 0.5,
                      key: str = "mask") -> Tensor:
    """VideoMAE V2's running-cell decoder mask: ``[B, N]`` bool, True where the decoder keeps a token.

    Grid ``(T, *spatial)``: the first axis is time. The spatial grid is tiled with cells of 2 along
    every spatial axis (1 along an axis of size 1), of ``c`` positions each (4 on a 2-D plane); in
    every cell ``m = int(c * ratio)`` positions are dropped. Position ``l`` of a cell (row-major) is
    dropped at frame ``t`` iff ``(l + t + phase) mod c < m``, ``phase`` drawn per sample from [0, c):
    the dropped positions shift by one every frame, so within any ``c`` frames every position is kept
    ``c - m`` times. Padding tokens are never kept.
    """
    grid = tokens.grid
    if grid is None or len(grid) < 2:
        raise ConfigError(f"{key}.decoder", f"the running_cell decoder mask needs a token grid (time, *space) "
                                            f"with >= 2 axes, got {'a set' if grid is None else grid}; "
                                            "use decoder: random")
    b = tokens.batch_size
    dev = generator.device
    pos = _positions(tuple(grid), dev).long()  # [N, D]
    extent = [min(2, g) for g in grid[1:]]
    local = torch.zeros(pos.shape[0], dtype=torch.long, device=dev)
    for axis, e in enumerate(extent, start=1):
        local = local * e + pos[:, axis] % e
    c = math.prod(extent)
    phase = torch.randint(c, (b, 1), generator=generator, device=dev)
    slot = (local + pos[:, 0] + phase) % c  # [B, N]
    return (slot >= int(c * ratio)) & _valid(tokens, dev)


def random_keep(valid: Tensor, generator: torch.Generator, ratio: float) -> Tensor:
    """MAE's rule among the ``valid`` ``[B, N]`` bool tokens of each row: ``[B, N]`` bool with
    ``int(n * (1 - ratio))`` (clamped to [1, n-1]; 0 if n < 2) of the row's ``n`` valid tokens, by
    argsort of uniform noise (on ``valid.device``). Also the per-group rule of group-wise maskers."""
    b, n = valid.shape
    noise = torch.rand(b, n, generator=generator, device=valid.device)
    order = torch.where(valid, noise, 2.0).argsort(dim=1)  # valid tokens first, in random order
    return _ranks(order) < _counts(valid, 1 - ratio)[:, None]


def pack_mask(keep: Tensor, pred: Tensor, tokens: TokenSet, generator: torch.Generator) -> Mask:
    """Per-sample sets ``keep``, ``pred`` ``[B, N]`` bool (on the generator's device; only their valid
    members count) → a :class:`Mask` with the same counts in every row.

    ``Nk = max_b |keep_b|`` and ``Np = min(max_b |pred_b|, N - Nk)`` when every valid token is in one
    of the sets (``random``); in general each count (at least 1) is lowered to what every row can reach
    with its padding. Rows with fewer members are filled with padding tokens (never the same in both
    sets); rows with more drop random members (generator: ``pred`` first, then ``keep``; both draws are
    made on every call, so without padding an equal-count masker's result does not depend on them).
    """
    valid = _valid(tokens, keep.device)
    keep, pred = keep & valid, pred & valid
    padding = ~valid
    spare = padding.sum(1)
    n_keep_b, n_pred_b = keep.sum(1), pred.sum(1)
    n_keep = int(torch.minimum(n_keep_b.max().clamp_min(1), (n_keep_b + spare).min()))
    fill_keep = (n_keep - n_keep_b).clamp_min(0)
    n_pred = int(torch.minimum(n_pred_b.max().clamp_min(1), (n_pred_b + spare - fill_keep).min()))
    if n_keep < 1 or n_pred < 1:
        raise ValueError(f"pack_mask: a masker left a sample with {n_keep_b.tolist()} visible and "
                         f"{n_pred_b.tolist()} predicted tokens and no padding to fill up with; every sample "
                         "needs at least one of each")
    pred = _trim(pred, n_pred, generator)
    keep = _trim(keep, n_keep, generator)
    fill_pred = (n_pred - pred.sum(1))[:, None]
    slot = padding.cumsum(1) - 1  # order of each padding token among its row's padding
    keep = keep | (padding & (slot < fill_keep[:, None]))
    pred = pred | (padding & (slot >= fill_keep[:, None]) & (slot < fill_keep[:, None] + fill_pred))
    device = tokens.patches.device
    return Mask(keep=_indices(keep).to(device), pred=_indices(pred).to(device))


# --------------------------------------------------------------------------- registry


def create_masker(masker: Choice, key: str = "mae.mask") -> Masker:
    """The masker ``masker.name`` built from ``masker.params``, as a callable
    ``(tokens, generator) -> Mask | list[Mask]``; its errors name ``key`` (``"mae.mask.name"`` …)."""
    item = MASKERS.get(masker.name, f"{key}.name")
    params = masker.params if masker.params is not None or item.config is None else item.config()
    return item.build(params, key=key)


def check_masker(masker: Choice, grid_axes: int, key: str, maker: str = "the tokenizer") -> None:
    """Refuse, before training, a masker (or a masker nested in its parameters, e.g. ``dual``'s
    encoder) that needs more token-grid axes than ``maker`` gives (``grid_axes``, 0 = a set):
    a ConfigError on ``{key}.name`` listing the maskers that work there with their defaults.

    A masker whose needs depend on its parameters also registers ``extra={"check": fn}``, called as
    ``fn(params, grid_axes, key, maker)`` to raise its own ConfigError (``dual``'s running-cell decoder)."""
    _check(masker, grid_axes, key, maker, suggest=True)


def _check(masker: Choice, grid_axes: int, key: str, maker: str, suggest: bool) -> None:
    item = MASKERS.get(masker.name, f"{key}.name")
    if grid_axes < item.grid_axes:
        layout = "an unordered set" if grid_axes == 0 else f"a grid of {grid_axes} axes"
        fits = " or ".join(repr(n) for n in _fitting(grid_axes)) if suggest else "another masker"
        raise ConfigError(f"{key}.name", f"masker {masker.name!r} needs a token grid with >= {item.grid_axes} "
                                         f"axes; {maker} makes {layout} (grid_axes={grid_axes}): use {fits}")
    params = masker.params
    for f in dataclasses.fields(params) if dataclasses.is_dataclass(params) else ():
        value = getattr(params, f.name)
        if isinstance(value, Choice) and f.metadata.get("registry") == "maskers":
            _check(value, grid_axes, f"{key}.{f.name}", maker, suggest)
    extra_check = item.extra.get("check")
    if extra_check is not None:
        extra_check(params, grid_axes, key, maker)


def _fitting(grid_axes: int) -> list[str]:
    """Registered maskers that work with their default parameters on ``grid_axes`` axes."""
    out = []
    for name in MASKERS.names():
        item = MASKERS.get(name, "name")
        try:
            params = None if item.config is None else parse(item.config, {}, name)
            _check(Choice(name, params), grid_axes, name, "", suggest=False)
        except ConfigError:
            continue
        out.append(name)
    return out


def _check_dual(params: DualMaskConfig, grid_axes: int, key: str, maker: str) -> None:
    if params.decoder == "running_cell" and grid_axes < 2:
        layout = "an unordered set" if grid_axes == 0 else f"a grid of {grid_axes} axes"
        raise ConfigError(f"{key}.decoder", f"the running_cell decoder mask needs a token grid (time, *space) "
                                            f"with >= 2 axes; {maker} makes {layout} (grid_axes={grid_axes}): "
                                            "use decoder: random")


def _ratio_build(fn: Callable[..., Masks]) -> Callable[..., Masker]:
    def build(params: Any, key: str = "mask") -> Masker:
        return partial(fn, ratio=params.ratio, key=key)

    return build


def _build_multiblock(params: MultiblockConfig, key: str = "mask") -> Masker:
    _check_span(params.target_scale, 1.0, f"{key}.target_scale")
    _check_span(params.target_aspect, math.inf, f"{key}.target_aspect")
    _check_span(params.context_scale, 1.0, f"{key}.context_scale")
    return partial(multiblock_mask, num_targets=params.num_targets, target_scale=params.target_scale,
                   target_aspect=params.target_aspect, context_scale=params.context_scale, boxes=params.boxes,
                   key=key)


def _build_families(params: FamiliesConfig, key: str = "mask") -> Masker:
    if not params.families:
        raise ConfigError(f"{key}.families", "give at least one block family")
    for i, family in enumerate(params.families):
        _check_span(family.aspect, math.inf, f"{key}.families[{i}].aspect")
    return partial(multiblock_families_mask, families=list(params.families), key=key)


def _build_bands(params: BandsConfig, key: str = "mask") -> Masker:
    if params.time == 0 and params.freq == 0:
        raise ConfigError(f"{key}.time", "bands hides nothing with time 0 and freq 0; give one a share > 0")
    return partial(bands_mask, time=params.time, freq=params.freq, key=key)


def _build_dual(params: DualMaskConfig, key: str = "mask") -> Masker:
    return partial(dual_mask, encoder=create_masker(params.encoder, f"{key}.encoder"),
                   decoder_ratio=params.decoder_ratio, decoder=params.decoder, key=key)


def _check_span(lo_hi: tuple[float, float], upper: float, key: str) -> None:
    lo, hi = lo_hi
    if not 0 < lo <= hi <= upper:
        raise ConfigError(key, f"expected 0 < low <= high <= {upper}, got ({lo}, {hi})")


for _item in (
    Registered("random", _ratio_build(random_mask), RatioConfig, "MAE: uniform random per sample", 0),
    Registered("block", _ratio_build(block_mask), RatioConfig, "BEiT/SimMIM: one contiguous block", 1),
    Registered("tube", _ratio_build(tube_mask), TubeMaskConfig, "VideoMAE: one spatial mask at every step", 2),
    Registered("multiblock", _build_multiblock, MultiblockConfig, "I-JEPA: target blocks + context block", 1),
    Registered("multiblock_families", _build_families, FamiliesConfig,
               "V-JEPA: one mask per block family, blocks spanning all frames", 1),
    Registered("point_block", _ratio_build(point_block_mask), RatioConfig,
               "Point-MAE: the tokens nearest a random centre", 0),
    Registered("bands", _build_bands, BandsConfig, "AudioMAE/SSAST: whole time columns and frequency rows", 2),
    Registered("dual", _build_dual, DualMaskConfig, "VideoMAE V2: encoder mask + running-cell decoder mask", 0,
               extra={"check": _check_dual}),
):
    MASKERS.register(_item)


# --------------------------------------------------------------------------- helpers


def _size(tokens: TokenSet, name: str, key: str) -> tuple[int, int]:
    b, n = tokens.batch_size, tokens.num_tokens
    if n < 2:
        raise ConfigError(f"{key}.name", f"masker '{name}' needs at least 2 tokens (one visible, one "
                                         f"predicted), got {n}")
    return b, n


def _grid(tokens: TokenSet, name: str, key: str) -> tuple[int, ...]:
    if tokens.grid is None:
        raise ConfigError(f"{key}.name", f"masker '{name}' needs a token grid, but these tokens form an "
                                         "unordered set; use 'random' or 'point_block'")
    return tuple(tokens.grid)


def _valid(tokens: TokenSet, device: torch.device) -> Tensor:
    """``tokens.valid`` on ``device`` (all True ``[B, N]`` when None)."""
    if tokens.valid is None:
        return torch.ones(tokens.batch_size, tokens.num_tokens, dtype=torch.bool, device=device)
    return tokens.valid.to(device, torch.bool)


def _n_pred(n: int, ratio: float) -> int:
    return min(max(int(n * ratio), 1), n - 1)


def _counts(valid: Tensor, share: float) -> Tensor:
    """``int(n * share)`` clamped to [1, n-1] for each row's ``n`` valid tokens (0 if n < 2), ``[B]``.
    Float64, like Python's ``int(n * share)``."""
    n = valid.sum(1)
    count = (n.double() * share).floor().long()
    return torch.minimum(count.clamp_min(1), n - 1).clamp_min(0)


def _ranks(order: Tensor) -> Tensor:
    """Inverse of a per-row permutation ``[B, N]``: the rank of every token."""
    ranks = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ranks)


def _random_token(valid: Tensor, generator: torch.Generator) -> Tensor:
    """A uniformly random valid token per row, ``[B]`` long: ``randint(N)`` when every token is valid
    (the draw made before padding was supported), else one random valid token (row 0 if none)."""
    b, n = valid.shape
    if bool(valid.all()):
        return torch.randint(n, (b,), generator=generator, device=valid.device)
    return _random_member(valid, generator)


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


def _plane(grid: tuple[int, ...]) -> tuple[int, int, int]:
    """``(depth, H, W)``: blocks are spans of a 1-axis grid, rectangles on the last two axes otherwise,
    spanning all ``depth`` cells of the leading axes."""
    h, w = (1, grid[0]) if len(grid) == 1 else grid[-2:]
    return math.prod(grid) // (h * w), h, w


def _blocks(grid: tuple[int, ...], b: int, k: int, scale: tuple[float, float], aspect: tuple[float, float],
            generator: torch.Generator) -> Tensor:
    """``[B, N]`` bool: the union of ``k`` blocks per sample. Area (``scale`` × plane) and aspect
    (height / width) are drawn uniformly once per call, positions per sample and block."""
    dev = generator.device
    depth, h_full, w_full = _plane(grid)

    def uniform(lo_hi: tuple[float, float]) -> float:
        return lo_hi[0] + torch.rand(1, generator=generator, device=dev).item() * (lo_hi[1] - lo_hi[0])

    h, w = _block_shape(h_full, w_full, uniform(scale) * h_full * w_full, uniform(aspect))
    top = torch.randint(h_full - h + 1, (b, k, 1), generator=generator, device=dev)
    left = torch.randint(w_full - w + 1, (b, k, 1), generator=generator, device=dev)
    rows, cols = torch.arange(h_full, device=dev), torch.arange(w_full, device=dev)
    in_rows = (rows >= top) & (rows < top + h)  # [B, k, H]
    in_cols = (cols >= left) & (cols < left + w)  # [B, k, W]
    plane = (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1)  # [B, H, W]
    return plane[:, None].expand(b, depth, h_full, w_full).reshape(b, -1)


def _boxes(grid: tuple[int, ...], b: int, k: int, scale: tuple[float, float], aspect: tuple[float, float],
           generator: torch.Generator) -> Tensor:
    """``[B, N]`` bool: the union of ``k`` boxes over every axis of ``grid`` per sample. Volume
    (``scale`` × N cells) and one side factor per axis (uniform in ``aspect``; sides proportional to
    them) are drawn once per call, positions per sample and box; sides are rounded and kept in the grid."""
    dev = generator.device
    n_ax = len(grid)

    def uniform(lo_hi: tuple[float, float], count: int = 1) -> Tensor:
        draw = torch.rand(count, generator=generator, device=dev, dtype=torch.float64)
        return lo_hi[0] + draw * (lo_hi[1] - lo_hi[0])

    volume = float(uniform(scale)) * math.prod(grid)
    factors = uniform(aspect, n_ax)
    sides = factors * (volume / float(factors.prod())) ** (1.0 / n_ax)
    sides = [min(max(int(round(float(s))), 1), g) for s, g in zip(sides, grid, strict=True)]
    inside = torch.ones(b, k, *grid, dtype=torch.bool, device=dev)
    for axis, (g, side) in enumerate(zip(grid, sides, strict=True)):
        first = torch.randint(g - side + 1, (b, k, 1), generator=generator, device=dev)
        cells = torch.arange(g, device=dev)
        hit = (cells >= first) & (cells < first + side)  # [B, k, g]
        shape = [b, k] + [g if a == axis else 1 for a in range(n_ax)]
        inside = inside & hit.view(shape)
    return inside.any(dim=1).reshape(b, -1)


def _free_column(pred: Tensor, valid: Tensor, grid: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """``pred`` ``[B, N]`` minus, in rows where it covers every valid token, the whole column (all
    leading-axis cells) of one random member, so blocks keep their full extent and a token stays visible."""
    b = pred.shape[0]
    depth, h, w = _plane(grid)
    full = (pred | ~valid).all(dim=1, keepdim=True)
    column = _pick_one(pred, generator).view(b, depth, h * w).any(dim=1, keepdim=True)
    return pred & ~(full & column.expand(b, depth, h * w).reshape(b, -1))


def _block_shape(h_full: int, w_full: int, area: float, aspect: float) -> tuple[int, int]:
    """Height and width (each >= 1, within the plane) of a block of ``area`` cells, h/w = aspect."""
    if h_full == 1 or w_full == 1:
        h, w = (1, round(area)) if h_full == 1 else (round(area), 1)
    else:
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    return min(max(h, 1), h_full), min(max(w, 1), w_full)


def _random_member(member: Tensor, generator: torch.Generator) -> Tensor:
    """One random member of each row of ``member`` ``[B, N]`` bool, ``[B]`` long (0 if it has none)."""
    key = torch.where(member, torch.rand(member.shape, generator=generator, device=member.device), 2.0)
    return key.argmin(dim=1)


def _pick_one(member: Tensor, generator: torch.Generator) -> Tensor:
    """``[B, N]`` bool with one random member of each row of ``member`` (row 0 if it has none)."""
    return torch.zeros_like(member).scatter_(1, _random_member(member, generator)[:, None], True)


def _ensure_one(member: Tensor, pool: Tensor, generator: torch.Generator) -> Tensor:
    """``member`` ``[B, N]`` bool, plus one random ``pool`` token in rows that have no member but a
    pool token. Draws only when some row needs it (never without padding)."""
    need = ~member.any(dim=1, keepdim=True) & pool.any(dim=1, keepdim=True)
    if not bool(need.any()):
        return member
    return member | (need & _pick_one(pool, generator))


def _one_each(keep: Tensor, pred: Tensor, valid: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Disjoint valid sets ``keep``, ``pred`` ``[B, N]`` bool, where every row with >= 2 valid tokens
    has at least one of each: an empty side gets a random valid token of neither set, else one of the
    other side's (which then holds every valid token). Draws only when some row needs it."""
    enough = valid.sum(1, keepdim=True) >= 2

    def give(member: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
        spare = valid & ~member & ~other
        pool = torch.where(spare.any(dim=1, keepdim=True), spare, other) & enough
        grown = _ensure_one(member, pool, generator)
        return grown, other & ~grown

    pred, keep = give(pred, keep)
    keep, pred = give(keep, pred)
    return keep, pred


def _trim(member: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """At most ``count`` random members of each row of ``member`` ``[B, N]`` bool (rows with fewer
    keep all). The random key is drawn on every call."""
    key = torch.where(member, torch.rand(member.shape, generator=generator, device=member.device), 2.0)
    if int(member.sum(1).max()) <= count:
        return member
    return torch.zeros_like(member).scatter_(1, key.argsort(dim=1)[:, :count], True) & member


def _members(index: Tensor, n: int) -> Tensor:
    """Index tensor ``[B, k]`` → ``[B, n]`` bool."""
    return torch.zeros(index.shape[0], n, dtype=torch.bool, device=index.device).scatter_(1, index, True)


def _indices(member: Tensor) -> Tensor:
    """``[B, N]`` bool with equal counts per row → sorted long indices ``[B, count]``."""
    return member.nonzero()[:, 1].reshape(member.shape[0], -1)
