"""Maskers: exact counts, disjointness, determinism, and the shape each paper's masker promises."""

from __future__ import annotations

import math
from collections import deque

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mpt.config import MaskConfig
from mpt.contract import Mask, TokenSet
from mpt.errors import ConfigError
from mpt.masking import (
    block_mask,
    create_masker,
    multiblock_mask,
    point_block_mask,
    random_mask,
    tube_mask,
)

FAST = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**31 - 1)
ratios = st.floats(0.05, 0.95)


def grid_coords(grid: tuple[int, ...]) -> torch.Tensor:
    axes = torch.meshgrid(*[torch.arange(g, dtype=torch.float32) for g in grid], indexing="ij")
    return torch.stack(axes, -1).reshape(-1, len(grid))


def make_tokens(grid: tuple[int, ...], batch: int = 3, seed: int = 0) -> TokenSet:
    n = math.prod(grid)
    data = torch.Generator().manual_seed(seed)
    coords = grid_coords(grid)[None].expand(batch, n, len(grid)).clone()
    return TokenSet(patches=torch.randn(batch, n, 2, 3, generator=data), coords=coords, grid=grid)


def make_points(batch: int, n: int, seed: int = 0) -> TokenSet:
    data = torch.Generator().manual_seed(seed)
    return TokenSet(patches=torch.randn(batch, n, 8, 3, generator=data),
                    coords=torch.rand(batch, n, 3, generator=data, dtype=torch.float64))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check(mask: Mask, batch: int, n: int) -> None:
    """The contract every masker must meet."""
    keep, pred = mask.keep, mask.pred
    assert keep.dtype == torch.long and pred.dtype == torch.long
    assert keep.shape[0] == batch and pred.shape[0] == batch
    assert keep.shape[1] >= 1 and pred.shape[1] >= 1
    assert keep.shape[1] + pred.shape[1] <= n
    for idx in (keep, pred):
        assert idx.min() >= 0 and idx.max() < n
        assert torch.all(idx[:, 1:] > idx[:, :-1])  # sorted, no repeats
    both = torch.zeros(batch, n, dtype=torch.long)
    both.scatter_add_(1, keep, torch.ones_like(keep)).scatter_add_(1, pred, torch.ones_like(pred))
    assert both.max() <= 1  # disjoint


def check_complement(mask: Mask, n: int) -> None:
    assert mask.keep.shape[1] + mask.pred.shape[1] == n


def pred_cells(mask: Mask, b: int, grid: tuple[int, ...]) -> torch.Tensor:
    cells = torch.zeros(math.prod(grid), dtype=torch.bool)
    cells[mask.pred[b]] = True
    return cells.reshape(grid)


def components(cells: torch.Tensor) -> int:
    """Number of face-connected (4-connected in 2-D) components of a boolean N-D array."""
    todo = {tuple(i) for i in cells.nonzero().tolist()}
    count = 0
    while todo:
        count += 1
        queue = deque([todo.pop()])
        while queue:
            cell = queue.popleft()
            for axis in range(len(cell)):
                for step in (-1, 1):
                    nb = cell[:axis] + (cell[axis] + step,) + cell[axis + 1:]
                    if nb in todo:
                        todo.remove(nb)
                        queue.append(nb)
    return count


def bbox_fill(cells: torch.Tensor) -> float:
    idx = cells.nonzero()
    extent = (idx.max(0).values - idx.min(0).values + 1).prod().item()
    return idx.shape[0] / extent


grids = st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple).filter(lambda g: math.prod(g) >= 2)
spatio_temporal = st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda g: st.sampled_from([g, g[:2]])).filter(lambda g: math.prod(g[1:]) >= 2)


# ------------------------------------------------------------------ random (MAE)

@FAST
@given(grid=grids, batch=st.integers(1, 4), ratio=ratios, seed=seeds)
def test_random_counts_and_contract(grid: tuple[int, ...], batch: int, ratio: float, seed: int) -> None:
    n = math.prod(grid)
    mask = random_mask(make_tokens(grid, batch), gen(seed), ratio)
    check(mask, batch, n)
    check_complement(mask, n)
    assert mask.keep.shape[1] == min(max(int(n * (1 - ratio)), 1), n - 1)


def test_random_coverage_is_uniform() -> None:
    ratio, n = 0.75, 16
    mask = random_mask(make_points(4000, n), gen(1), ratio)
    hits = torch.zeros(n)
    hits.scatter_add_(0, mask.pred.flatten(), torch.ones(mask.pred.numel()))
    freq = hits / 4000
    assert torch.all((freq - ratio).abs() < 0.04), freq


# ------------------------------------------------------------------ block

@FAST
@given(grid=grids, batch=st.integers(1, 4), ratio=ratios, seed=seeds)
def test_block_is_one_connected_region(grid: tuple[int, ...], batch: int, ratio: float, seed: int) -> None:
    n = math.prod(grid)
    mask = block_mask(make_tokens(grid, batch), gen(seed), ratio)
    check(mask, batch, n)
    check_complement(mask, n)
    assert mask.pred.shape[1] == min(max(int(n * ratio), 1), n - 1)
    for b in range(batch):
        assert components(pred_cells(mask, b, grid)) == 1


@FAST
@given(h=st.integers(2, 14), w=st.integers(2, 14), ratio=ratios, seed=seeds)
def test_block_2d_is_box_like(h: int, w: int, ratio: float, seed: int) -> None:
    mask = block_mask(make_tokens((h, w), 4), gen(seed), ratio)
    for b in range(4):
        cells = pred_cells(mask, b, (h, w))
        assert components(cells) == 1
        assert bbox_fill(cells) >= 0.4


def test_block_varies_with_seed_and_covers_the_grid() -> None:
    tokens = make_tokens((6, 8), 1)
    hits = torch.zeros(48)
    for seed in range(200):
        hits[block_mask(tokens, gen(seed), 0.3).pred[0]] += 1
    assert torch.all(hits > 0)  # every cell is predicted by some draw


# ------------------------------------------------------------------ tube (VideoMAE)

@FAST
@given(grid=spatio_temporal, batch=st.integers(1, 4), ratio=ratios, seed=seeds)
def test_tube_is_the_same_at_every_time_step(grid: tuple[int, ...], batch: int, ratio: float,
                                             seed: int) -> None:
    n, t, s = math.prod(grid), grid[0], math.prod(grid[1:])
    mask = tube_mask(make_tokens(grid, batch), gen(seed), ratio)
    check(mask, batch, n)
    check_complement(mask, n)
    assert mask.pred.shape[1] == t * min(max(int(s * ratio), 1), s - 1)
    for b in range(batch):
        per_step = pred_cells(mask, b, grid).reshape(t, s)
        assert torch.all(per_step == per_step[:1])


def test_tube_needs_time_and_space() -> None:
    with pytest.raises(ConfigError, match="tube"):
        tube_mask(make_tokens((12,)), gen(0), 0.5)
    with pytest.raises(ConfigError):
        tube_mask(make_tokens((4, 1)), gen(0), 0.5)


# ------------------------------------------------------------------ multiblock (I-JEPA / V-JEPA)

@FAST
@given(grid=st.lists(st.integers(2, 12), min_size=1, max_size=3).map(tuple), batch=st.integers(1, 5),
       k=st.integers(1, 5), seed=seeds)
def test_multiblock_contract(grid: tuple[int, ...], batch: int, k: int, seed: int) -> None:
    n = math.prod(grid)
    mask = multiblock_mask(make_tokens(grid, batch), gen(seed), num_targets=k)
    check(mask, batch, n)


@FAST
@given(grid=st.lists(st.integers(2, 12), min_size=1, max_size=3).map(tuple), k=st.integers(1, 5), seed=seeds)
@example(grid=(2, 2, 2), k=5, seed=989)  # targets covering every cell: the freed cell must be a whole column
def test_multiblock_single_sample_is_union_of_blocks(grid: tuple[int, ...], k: int, seed: int) -> None:
    # With one sample nothing is trimmed, so pred is exactly the union of the target blocks.
    mask = multiblock_mask(make_tokens(grid, 1), gen(seed), num_targets=k)
    check(mask, 1, math.prod(grid))
    cells = pred_cells(mask, 0, grid)
    plane = cells.reshape(-1, *grid[-2:]) if len(grid) >= 2 else cells[None]
    assert torch.all(plane == plane[:1])  # full extent along every leading axis (V-JEPA)
    assert components(plane[0]) <= k
    if k == 1:
        assert bbox_fill(plane[0]) == 1.0  # a single target is one rectangle / span


def test_multiblock_target_size_follows_scale() -> None:
    grid = (20, 20)
    for seed in range(20):
        mask = multiblock_mask(make_tokens(grid, 1), gen(seed), num_targets=1, target_scale=(0.15, 0.2))
        assert 0.1 * 400 <= mask.pred.shape[1] <= 0.25 * 400


@FAST
@given(batch=st.integers(1, 6), seed=seeds, lo=st.floats(0.01, 1.0), hi=st.floats(0.01, 1.0),
       grid=st.sampled_from([(2,), (3, 2), (2, 2, 2), (8, 9)]))
def test_multiblock_extreme_scales_still_valid(batch: int, seed: int, lo: float, hi: float,
                                               grid: tuple[int, ...]) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    mask = multiblock_mask(make_tokens(grid, batch), gen(seed), num_targets=6, target_scale=(lo, hi),
                           context_scale=(0.01, 1.0 - hi + 0.01))
    check(mask, batch, math.prod(grid))


def test_multiblock_trims_random_members() -> None:
    # Blocks span the whole time axis, so before trimming every time step holds the same cells.
    # Trimming the first (or last) members would always leave step 0 (or the last step) complete.
    grid = (4, 8, 8)
    tokens = make_tokens(grid, 4)
    first_short = last_short = False
    for seed in range(10):
        mask = multiblock_mask(tokens, gen(seed), num_targets=4)
        for b in range(4):
            per_step = pred_cells(mask, b, grid).reshape(4, -1).sum(1)
            first_short |= bool(per_step[0] < per_step.max())
            last_short |= bool(per_step[-1] < per_step.max())
    assert first_short and last_short


# ------------------------------------------------------------------ point_block (Point-MAE)

@FAST
@given(batch=st.integers(1, 4), n=st.integers(2, 64), ratio=ratios, seed=seeds, data=seeds)
def test_point_block_takes_the_nearest_tokens(batch: int, n: int, ratio: float, seed: int, data: int) -> None:
    tokens = make_points(batch, n, data)
    mask = point_block_mask(tokens, gen(seed), ratio)
    check(mask, batch, n)
    check_complement(mask, n)
    assert mask.pred.shape[1] == min(max(int(n * ratio), 1), n - 1)
    for b in range(batch):
        xyz = tokens.coords[b]
        pred, keep = xyz[mask.pred[b]], xyz[mask.keep[b]]
        ok = [torch.cdist(c[None], pred).max() <= torch.cdist(c[None], keep).min() + 1e-9 for c in pred]
        assert any(ok)


def test_point_block_works_on_grid_tokens() -> None:
    tokens = make_tokens((5, 6), 2)
    mask = point_block_mask(tokens, gen(3), 0.4)
    check(mask, 2, 30)
    for b in range(2):
        assert components(pred_cells(mask, b, (5, 6))) == 1


# ------------------------------------------------------------------ all maskers

MASKERS = {
    "random": lambda t, g: random_mask(t, g, 0.6),
    "block": lambda t, g: block_mask(t, g, 0.6),
    "tube": lambda t, g: tube_mask(t, g, 0.6),
    "multiblock": lambda t, g: multiblock_mask(t, g),
    "point_block": lambda t, g: point_block_mask(t, g, 0.6),
}


@pytest.mark.parametrize("name", MASKERS)
def test_deterministic_and_seed_dependent(name: str) -> None:
    tokens = make_tokens((4, 5, 6), 3)
    masker = MASKERS[name]
    first = masker(tokens, gen(7))
    again = masker(make_tokens((4, 5, 6), 3, seed=99), gen(7))  # other contents, same layout
    assert torch.equal(first.keep, again.keep) and torch.equal(first.pred, again.pred)
    others = [masker(tokens, gen(s)) for s in range(8, 14)]
    assert any(not torch.equal(first.pred, o.pred) or not torch.equal(first.keep, o.keep) for o in others)


@pytest.mark.parametrize("name", ["block", "tube", "multiblock"])
def test_grid_maskers_refuse_sets(name: str) -> None:
    with pytest.raises(ConfigError, match="grid") as info:
        MASKERS[name](make_points(2, 10), gen(0))
    assert info.value.key == "mask.name"


@pytest.mark.parametrize("name", MASKERS)
def test_too_few_tokens(name: str) -> None:
    with pytest.raises(ConfigError):
        MASKERS[name](make_tokens((1, 1, 1), 2), gen(0))


@pytest.mark.parametrize("name", MASKERS)
def test_result_follows_patch_device(name: str) -> None:
    tokens = make_tokens((2, 3, 4), 2)
    tokens.patches = torch.empty(tokens.patches.shape, device="meta")
    mask = MASKERS[name](tokens, gen(0))
    assert mask.keep.device.type == "meta" and mask.pred.device.type == "meta"


@pytest.mark.parametrize("name", ["random", "block", "tube", "point_block"])
def test_create_masker_matches_direct_call(name: str) -> None:
    tokens = make_tokens((3, 4, 5), 2)
    via_cfg = create_masker(MaskConfig(name=name, ratio=0.6))(tokens, gen(5))
    direct = MASKERS[name](tokens, gen(5))
    assert torch.equal(via_cfg.keep, direct.keep) and torch.equal(via_cfg.pred, direct.pred)


def test_create_masker_multiblock_and_errors() -> None:
    tokens = make_tokens((8, 8), 2)
    cfg = MaskConfig(name="multiblock", num_targets=2, target_scale=(0.1, 0.1))
    got = create_masker(cfg)(tokens, gen(1))
    want = multiblock_mask(tokens, gen(1), num_targets=2, target_scale=(0.1, 0.1))
    assert torch.equal(got.pred, want.pred) and torch.equal(got.keep, want.keep)
    with pytest.raises(ConfigError) as info:
        create_masker(MaskConfig(name="nope"))  # type: ignore[arg-type]
    assert info.value.key == "mask.name"
    with pytest.raises(ConfigError) as info:
        create_masker(MaskConfig(name="multiblock", target_scale=(0.3, 0.1)))
    assert info.value.key == "mask.target_scale"
