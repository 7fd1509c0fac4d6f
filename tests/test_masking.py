"""Maskers: exact counts, disjointness, determinism, padding, and the shape each paper's masker promises."""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mpt.config import make_choice
from mpt.contract import Mask, Masks, TokenSet, as_masks
from mpt.errors import ConfigError
from mpt.masking import (
    BlockFamily,
    bands_mask,
    block_mask,
    create_masker,
    dual_mask,
    multiblock_families_mask,
    multiblock_mask,
    pack_mask,
    point_block_mask,
    random_mask,
    running_cell_keep,
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


@FAST
@given(grid=st.lists(st.integers(2, 8), min_size=2, max_size=3).map(tuple), batch=st.integers(1, 4),
       k=st.integers(1, 5), seed=seeds)
def test_multiblock_boxes_contract(grid: tuple[int, ...], batch: int, k: int, seed: int) -> None:
    mask = multiblock_mask(make_tokens(grid, batch), gen(seed), num_targets=k, boxes=True)
    check(mask, batch, math.prod(grid))


def test_multiblock_boxes_are_3d_boxes_not_columns() -> None:
    """One target box on a (8, 8, 8) volume grid: a filled box (its bounding box holds nothing else)
    that does not span the first axis, as the leading-axis blocks of video do."""
    grid = (8, 8, 8)
    spans = set()
    for seed in range(20):
        mask = multiblock_mask(make_tokens(grid, 1), gen(seed), num_targets=1, target_scale=(0.05, 0.1), boxes=True)
        cells = pred_cells(mask, 0, grid)
        idx = cells.nonzero()
        lo, hi = idx.min(0).values, idx.max(0).values + 1
        assert int(cells.sum()) == int((hi - lo).prod())  # filled box
        assert 0.02 * 512 <= int(cells.sum()) <= 0.15 * 512
        spans.add(int(hi[0] - lo[0]))
    assert max(spans) < 8  # never a full column along the first axis


def test_multiblock_boxes_from_the_config() -> None:
    masker = create_masker(make_choice("maskers", "multiblock", {"boxes": True, "num_targets": 2}, "jepa.mask"))
    mask = masker(make_tokens((6, 6, 6), 2), gen(0))
    check(as_masks(mask)[0], 2, 216)


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


# ------------------------------------------------------------------ every registered core masker

CORE = ("random", "block", "tube", "multiblock", "multiblock_families", "point_block", "dual")
SET_PARAMS = {"random": {}, "point_block": {}, "dual": {"encoder": "random", "decoder": "random"}}


def build(name: str, key: str = "mae.mask", **params: object) -> Any:
    """The registered masker ``name`` built from ``params`` (its results read as Mask or list)."""
    return create_masker(make_choice("maskers", name, dict(params), key), key)


def with_valid(tokens: TokenSet, valid: torch.Tensor | None) -> TokenSet:
    return dataclasses.replace(tokens, valid=valid)


def prefix_valid(lengths: list[int], n: int) -> torch.Tensor:
    return torch.arange(n)[None] < torch.tensor(lengths)[:, None]


def scattered_valid(batch: int, n: int, seed: int) -> torch.Tensor:
    """Random padding, at least 2 valid tokens per row."""
    g = gen(seed)
    valid = torch.rand(batch, n, generator=g) < torch.rand(batch, 1, generator=g)
    valid[:, :2] = True
    return valid[:, torch.randperm(n, generator=g)]


def check_padded(mask: Mask, valid: torch.Tensor) -> None:
    """Contract plus: a sample with >= 2 valid tokens sees and predicts at least one valid token."""
    check(mask, *valid.shape)
    enough = valid.sum(1) >= 2
    for idx in (mask.keep, mask.pred):
        assert torch.all(torch.gather(valid, 1, idx).any(1) | ~enough)


layouts = st.sampled_from(["none", "all", "prefix", "scattered"])


def make_valid(layout: str, batch: int, n: int, seed: int) -> torch.Tensor | None:
    if layout == "none":
        return None
    if layout == "all":
        return torch.ones(batch, n, dtype=torch.bool)
    if layout == "prefix":
        g = gen(seed)
        return prefix_valid(torch.randint(2, n + 1, (batch,), generator=g).tolist(), n)
    return scattered_valid(batch, n, seed)


@pytest.mark.parametrize("name", CORE)
@FAST
@given(grid=st.tuples(st.integers(2, 5), st.integers(2, 7), st.integers(2, 7)), batch=st.integers(1, 4),
       layout=layouts, seed=seeds)
def test_every_masker_contract_on_grids(name: str, grid: tuple[int, ...], batch: int, layout: str,
                                        seed: int) -> None:
    n = math.prod(grid)
    valid = make_valid(layout, batch, n, seed)
    tokens = with_valid(make_tokens(grid, batch), valid)
    masks = as_masks(build(name)(tokens, gen(seed)))
    assert len(masks) == (2 if name == "multiblock_families" else 1)
    for mask in masks:
        check_padded(mask, tokens.valid_or_ones())
        if mask.decode is not None:
            assert torch.all(mask.decode[:, 1:] > mask.decode[:, :-1])
            assert mask.targets().shape[1] >= 1  # equal non-zero counts, or targets() raises


@pytest.mark.parametrize("name", SET_PARAMS)
@FAST
@given(batch=st.integers(1, 4), n=st.integers(2, 40), layout=layouts, seed=seeds)
def test_set_maskers_contract_on_sets(name: str, batch: int, n: int, layout: str, seed: int) -> None:
    tokens = with_valid(make_points(batch, n, seed), make_valid(layout, batch, n, seed))
    mask = build(name, **SET_PARAMS[name])(tokens, gen(seed))
    check_padded(mask, tokens.valid_or_ones())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", CORE)
def test_deterministic_and_seed_dependent(name: str) -> None:
    tokens = make_tokens((4, 5, 6), 3)
    masker = build(name)
    first = as_masks(masker(tokens, gen(7)))
    again = as_masks(masker(make_tokens((4, 5, 6), 3, seed=99), gen(7)))  # other contents, same layout
    assert all(torch.equal(a.keep, b.keep) and torch.equal(a.pred, b.pred) for a, b in zip(first, again, strict=True))
    others = [as_masks(masker(tokens, gen(s)))[0] for s in range(8, 14)]
    assert any(not torch.equal(first[0].pred, o.pred) or not torch.equal(first[0].keep, o.keep) for o in others)


@pytest.mark.parametrize("name", ["block", "tube", "multiblock", "multiblock_families"])
def test_grid_maskers_refuse_sets(name: str) -> None:
    with pytest.raises(ConfigError, match="grid") as info:
        build(name, key="jepa.mask")(make_points(2, 10), gen(0))
    assert info.value.key == "jepa.mask.name"
    direct: dict[str, Callable[..., Masks]] = {"block": block_mask, "tube": tube_mask, "multiblock": multiblock_mask,
                                                "multiblock_families": multiblock_families_mask}
    with pytest.raises(ConfigError) as info:  # direct calls name the key they are given
        direct[name](make_points(2, 10), gen(0))
    assert info.value.key == "mask.name"


@pytest.mark.parametrize("name", CORE)
def test_too_few_tokens(name: str) -> None:
    with pytest.raises(ConfigError, match="at least 2 tokens"):
        build(name)(make_tokens((1, 1, 1), 2), gen(0))


@pytest.mark.parametrize("name", [n for n in CORE if n != "dual"])  # dual reads its encoder's indices back
def test_result_follows_patch_device(name: str) -> None:
    tokens = make_tokens((2, 3, 4), 2)
    tokens.patches = torch.empty(tokens.patches.shape, device="meta")
    for mask in as_masks(build(name)(tokens, gen(0))):
        assert mask.keep.device.type == "meta" and mask.pred.device.type == "meta"


@pytest.mark.parametrize("name", ["random", "block", "tube", "point_block"])
def test_create_masker_matches_direct_call(name: str) -> None:
    tokens = make_tokens((3, 4, 5), 2)
    direct = {"random": random_mask, "block": block_mask, "tube": tube_mask, "point_block": point_block_mask}
    via_cfg = build(name, ratio=0.6)(tokens, gen(5))
    want = direct[name](tokens, gen(5), 0.6)
    assert torch.equal(via_cfg.keep, want.keep) and torch.equal(via_cfg.pred, want.pred)


def test_create_masker_multiblock_matches_direct_call() -> None:
    tokens = make_tokens((8, 8), 2)
    got = build("multiblock", num_targets=2, target_scale=[0.1, 0.1])(tokens, gen(1))
    want = multiblock_mask(tokens, gen(1), num_targets=2, target_scale=(0.1, 0.1))
    assert torch.equal(got.pred, want.pred) and torch.equal(got.keep, want.keep)


# ------------------------------------------------------------------ padding (TokenSet.valid)

@pytest.mark.parametrize("name", CORE)
def test_all_valid_equals_no_padding(name: str) -> None:
    tokens = make_tokens((4, 5, 6), 3)
    plain = as_masks(build(name)(tokens, gen(3)))
    ones = as_masks(build(name)(with_valid(tokens, torch.ones(3, 120, dtype=torch.bool)), gen(3)))
    for a, b in zip(plain, ones, strict=True):
        assert torch.equal(a.keep, b.keep) and torch.equal(a.pred, b.pred)
        assert (a.decode is None and b.decode is None) or torch.equal(a.decode, b.decode)  # type: ignore[arg-type]


@FAST
@given(grid=grids, batch=st.integers(1, 4), ratio=ratios, seed=seeds)
def test_random_without_padding_is_the_pre_padding_rule(grid: tuple[int, ...], batch: int, ratio: float,
                                                        seed: int) -> None:
    # MAE's rule as it was before padding: argsort of one uniform draw, keep the first int(N(1-r)).
    n = math.prod(grid)
    n_keep = min(max(int(n * (1 - ratio)), 1), n - 1)
    order = torch.rand(batch, n, generator=gen(seed)).argsort(dim=1)
    mask = random_mask(make_tokens(grid, batch), gen(seed), ratio)
    assert torch.equal(mask.keep, order[:, :n_keep].sort(dim=1).values)
    assert torch.equal(mask.pred, order[:, n_keep:].sort(dim=1).values)


def test_tube_and_point_block_without_padding_are_the_pre_padding_rules() -> None:
    grid, ratio = (3, 4, 5), 0.6
    g = gen(4)
    spatial = torch.rand(2, 20, generator=g).argsort(dim=1)[:, :12]
    want = torch.zeros(2, 20, dtype=torch.bool).scatter_(1, spatial, True).repeat(1, 3)
    assert torch.equal(tube_mask(make_tokens(grid, 2), gen(4), ratio).pred, want.nonzero()[:, 1].reshape(2, -1))
    points = make_points(2, 30)
    g = gen(4)
    centre = torch.randint(30, (2,), generator=g)
    dist = (points.coords - points.coords[torch.arange(2), centre][:, None]).norm(dim=-1)
    want_pred = dist.argsort(dim=1, stable=True)[:, :18].sort(dim=1).values
    assert torch.equal(point_block_mask(points, gen(4), ratio).pred, want_pred)


def rule_counts(n_valid: torch.Tensor, share: float) -> torch.Tensor:
    return torch.tensor([min(max(int(n * share), 1), n - 1) if n >= 2 else 0 for n in n_valid.tolist()])


@FAST
@given(batch=st.integers(1, 5), n=st.integers(2, 40), ratio=ratios, seed=seeds,
       scattered=st.booleans(), small=st.booleans())
def test_random_with_padding_keeps_exact_counts_of_valid_tokens(batch: int, n: int, ratio: float, seed: int,
                                                                 scattered: bool, small: bool) -> None:
    g = gen(seed)
    valid = (torch.rand(batch, n, generator=g) < torch.rand(batch, 1, generator=g) if scattered
             else prefix_valid(torch.randint(0 if small else 2, n + 1, (batch,), generator=g).tolist(), n))
    mask = random_mask(with_valid(make_points(batch, n), valid), gen(seed), ratio)
    check(mask, batch, n)
    n_valid = valid.sum(1)
    keep_valid = torch.gather(valid, 1, mask.keep).sum(1)
    pred_valid = torch.gather(valid, 1, mask.pred).sum(1)
    want_keep = rule_counts(n_valid, 1 - ratio)
    assert torch.equal(keep_valid, want_keep)  # sample b keeps int(n_b (1 - ratio)) of its n_b valid tokens
    assert torch.equal(pred_valid, n_valid - want_keep)  # every other valid token is predicted
    n_keep = max(int(want_keep.max()), 1)
    assert mask.keep.shape[1] == n_keep  # padding only fills shorter rows
    assert mask.pred.shape[1] == min(max(int((n_valid - want_keep).max()), 1), n - n_keep)


@pytest.mark.parametrize("name", ["block", "point_block"])
@FAST
@given(batch=st.integers(1, 4), ratio=ratios, seed=seeds)
def test_block_maskers_with_padding_use_every_valid_token(name: str, batch: int, ratio: float, seed: int) -> None:
    grid = (5, 6)
    valid = scattered_valid(batch, 30, seed)
    tokens = with_valid(make_tokens(grid, batch), valid)
    mask = {"block": block_mask, "point_block": point_block_mask}[name](tokens, gen(seed), ratio)
    check_padded(mask, valid)
    pred_valid = torch.gather(valid, 1, mask.pred).sum(1)
    assert torch.equal(pred_valid, rule_counts(valid.sum(1), ratio))
    assert torch.equal(torch.gather(valid, 1, mask.keep).sum(1), valid.sum(1) - pred_valid)


def test_point_block_with_padding_takes_the_nearest_valid_tokens() -> None:
    points = make_points(3, 40, 5)
    points.coords[:, 20:] = 0.5  # padding sits in the middle of the cloud, nearest to many centres
    valid = prefix_valid([40, 30, 20], 40)
    for seed in range(5):
        mask = point_block_mask(with_valid(points, valid), gen(seed), 0.5)
        for b, n_b in enumerate([40, 30, 20]):
            pred = mask.pred[b][mask.pred[b] < n_b]
            rest = torch.tensor([i for i in range(n_b) if i not in set(pred.tolist())])
            xyz = points.coords[b]
            assert any(torch.cdist(xyz[c][None], xyz[pred]).max() <= torch.cdist(xyz[c][None], xyz[rest]).min()
                       for c in pred)


def test_tube_with_padded_frames_keeps_the_tube_on_valid_frames() -> None:
    grid, s = (6, 4, 5), 20
    frames = [6, 4, 2]
    valid = torch.stack([torch.arange(6).repeat_interleave(s) < t for t in frames])
    mask = tube_mask(with_valid(make_tokens(grid, 3), valid), gen(2), 0.75)
    check_padded(mask, valid)
    for b, t in enumerate(frames):
        cells = pred_cells(mask, b, grid).reshape(6, s)
        assert torch.all(cells[:t] == cells[:1]) and int(cells[0].sum()) == 15  # the same tube on every frame
        assert torch.gather(valid[b], 0, mask.keep[b]).sum() == t * 5


def test_pack_mask_fills_short_rows_with_padding() -> None:
    n = 10
    valid = prefix_valid([10, 6, 3], n)
    keep = torch.zeros(3, n, dtype=torch.bool)
    pred = torch.zeros(3, n, dtype=torch.bool)
    keep[0, :3], pred[0, 3:8] = True, True
    keep[1, :2], pred[1, 2:6] = True, True
    keep[2, :1], pred[2, 1:3] = True, True
    tokens = with_valid(make_points(3, n), valid)
    mask = pack_mask(keep, pred, tokens, gen(0))
    check(mask, 3, n)
    assert mask.keep.shape[1] == 3 and mask.pred.shape[1] == 5  # the largest sets
    for b in range(3):
        assert set(keep[b].nonzero().flatten().tolist()) <= set(mask.keep[b].tolist())  # nothing dropped
        assert set(pred[b].nonzero().flatten().tolist()) <= set(mask.pred[b].tolist())
    assert not valid[1, 6:].any() and set(mask.keep[1].tolist()) - {0, 1} <= set(range(6, 10))
    assert all(i >= 3 for i in set(mask.pred[2].tolist()) - {1, 2})  # fillers are padding
    for seed in range(5):  # padding members of the given sets do not count
        sloppy, clean = pack_mask(~pred, pred, tokens, gen(seed)), pack_mask(valid & ~pred, pred, tokens, gen(seed))
        assert torch.equal(sloppy.keep, clean.keep) and torch.equal(sloppy.pred, clean.pred)


def test_pack_mask_drops_random_extras_when_padding_runs_short() -> None:
    n = 10
    valid = prefix_valid([10, 6], n)
    keep = torch.zeros(2, n, dtype=torch.bool)
    pred = torch.zeros(2, n, dtype=torch.bool)
    keep[0, :8], pred[0, 8:] = True, True  # 8 visible: row 1 can reach at most 1 + 4 padding
    keep[1, :1], pred[1, 1:6] = True, True  # 5 predicted: row 0 has 2 and no padding
    tokens = with_valid(make_points(2, n), valid)
    kept = set()
    for seed in range(20):
        mask = pack_mask(keep, pred, tokens, gen(seed))
        check(mask, 2, n)
        assert mask.keep.shape[1] == 5 and mask.pred.shape[1] == 2
        assert set(mask.keep[0].tolist()) <= set(range(8)) and set(mask.pred[1].tolist()) <= set(range(1, 6))
        assert torch.equal(mask.pred[0], torch.tensor([8, 9])) and 0 in mask.keep[1].tolist()
        kept |= set(mask.keep[0].tolist())
    assert kept == set(range(8))  # random members are dropped, not always the same ones


# ------------------------------------------------------------------ dual masking (VideoMAE V2)

def frames(keep: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    return keep.reshape(keep.shape[0], grid[0], -1)


def test_running_cell_keeps_half_of_every_frame_and_runs_over_the_cell() -> None:
    grid = (9, 4, 6)
    kept = frames(running_cell_keep(make_tokens(grid, 16), gen(0), 0.5), grid)  # [B, T, S]
    assert torch.all(kept.sum(-1) == 12)  # exactly half of each frame
    for start in range(grid[0] - 3):
        assert torch.all(kept[:, start:start + 4].sum(1) == 2)  # twice in any 4 frames
        assert torch.all(kept[:, start:start + 3].any(1))  # at most 2 frames in a row without
    assert torch.equal(kept[:, 4:], kept[:, :-4]) and not torch.equal(kept[:, 1:], kept[:, :-1])
    cell = kept[:, 0].reshape(16, 4, 6)[:, :2, :2]
    assert torch.equal(kept[:, 0].reshape(16, 4, 6), cell.repeat(1, 2, 3))  # tiled 2 x 2 cells
    assert len({tuple(c.flatten().tolist()) for c in cell}) == 4  # one of 4 phases per sample


def test_running_cell_on_one_spatial_axis_and_other_ratios() -> None:
    kept = frames(running_cell_keep(make_tokens((6, 8), 4), gen(1), 0.5), (6, 8))
    assert torch.all(kept.sum(-1) == 4) and torch.all(kept[:, 1:] ^ kept[:, :-1])  # kept every other frame
    kept = frames(running_cell_keep(make_tokens((4, 4, 4), 4), gen(1), 0.25), (4, 4, 4))
    assert torch.all(kept.sum(-1) == 12)  # drops int(4 * 0.25) = 1 of every 2 x 2 cell
    with pytest.raises(ConfigError) as info:
        running_cell_keep(make_tokens((12,)), gen(0), 0.5, key="mae.mask")
    assert info.value.key == "mae.mask.decoder"


def test_dual_mask_decodes_part_of_the_hidden_and_visible_tokens() -> None:
    grid = (4, 8, 8)
    tokens = make_tokens(grid, 3)
    mask = build("dual")(tokens, gen(0))
    check(mask, 3, 256)
    assert mask.pred.shape[1] == 4 * int(64 * 0.9)  # the tube encoder mask
    assert mask.decode is not None
    keep, pred, decode = (set(map(tuple, _pairs(t))) for t in (mask.keep, mask.pred, mask.decode))
    assert keep & decode  # the decoder also keeps visible tokens
    targets = mask.targets()
    assert set(map(tuple, _pairs(targets))) == pred & decode and targets.shape[1] >= 1
    assert targets.shape[1] <= 0.5 * 256  # the decoder drops half of the tokens


def _pairs(index: torch.Tensor) -> list[list[int]]:
    return [[b, i] for b in range(index.shape[0]) for i in index[b].tolist()]


def test_dual_mask_with_padded_frames_decodes_no_padding() -> None:
    grid, s = (6, 4, 4), 16
    valid = torch.stack([torch.arange(6).repeat_interleave(s) < t for t in (6, 3, 5)])
    tokens = with_valid(make_tokens(grid, 3), valid)
    for seed in range(5):
        mask = build("dual", encoder={"name": "tube", "ratio": 0.75})(tokens, gen(seed))
        check_padded(mask, valid)
        assert mask.decode is not None and torch.gather(valid, 1, mask.decode).all()
        assert torch.gather(valid, 1, mask.targets()).all()


def test_dual_mask_on_sets_and_its_errors() -> None:
    points = make_points(3, 30)
    mask = build("dual", encoder="random", decoder="random", decoder_ratio=0.5)(points, gen(0))
    check(mask, 3, 30)
    assert mask.decode is not None and mask.decode.shape[1] >= mask.targets().shape[1] >= 1
    with pytest.raises(ConfigError) as info:
        build("dual", encoder="multiblock_families")(make_tokens((2, 8, 8), 2), gen(0))
    assert info.value.key == "mae.mask.encoder.name"
    with pytest.raises(ConfigError) as info:
        build("dual", encoder="tube")(points, gen(0))  # the encoder masker's errors name its own key
    assert info.value.key == "mae.mask.encoder.name"
    with pytest.raises(ConfigError) as info:
        dual_mask(make_tokens((12,)), gen(0), encoder=random_mask, key="mae.mask")
    assert info.value.key == "mae.mask.decoder"


# ------------------------------------------------------------------ multiblock families (V-JEPA)

def test_families_default_is_vjepa_two_masks_spanning_all_frames() -> None:
    grid = (4, 14, 14)
    sizes = torch.zeros(2)
    for seed in range(10):
        masks = build("multiblock_families")(make_tokens(grid, 1), gen(seed))
        assert isinstance(masks, list) and len(masks) == 2
        for i, mask in enumerate(masks):
            check(mask, 1, math.prod(grid))
            check_complement(mask, math.prod(grid))  # context = complement of the targets
            per_frame = pred_cells(mask, 0, grid).reshape(4, -1)
            assert torch.all(per_frame == per_frame[:1])  # temporal scale 1.0
            sizes[i] += mask.pred.shape[1]
    assert sizes[0] < sizes[1]  # 8 short-range blocks of 0.15 cover less than 2 long-range ones of 0.7


@pytest.mark.parametrize("scale", [0.15, 0.7])
def test_families_block_scale_follows_the_config(scale: float) -> None:
    grid = (2, 16, 16)
    shares = [multiblock_families_mask(make_tokens(grid, 1), gen(s), [BlockFamily(1, scale)])[0].pred.shape[1] / 512
              for s in range(30)]
    assert abs(sum(shares) / 30 - scale) < 0.02 and all(abs(x - scale) < 0.06 for x in shares)


def test_families_batch_has_equal_counts_and_trims_random_members() -> None:
    grid = (4, 8, 8)
    masks = multiblock_families_mask(make_tokens(grid, 4), gen(0), [BlockFamily(3, 0.2), BlockFamily(1, 0.5)])
    for mask in masks:
        check(mask, 4, 256)
    short_first = short_last = False
    for seed in range(10):
        mask = multiblock_families_mask(make_tokens(grid, 4), gen(seed), [BlockFamily(3, 0.2)])[0]
        for b in range(4):
            per_step = pred_cells(mask, b, grid).reshape(4, -1).sum(1)
            short_first |= bool(per_step[0] < per_step.max())
            short_last |= bool(per_step[-1] < per_step.max())
    assert short_first and short_last


# ------------------------------------------------------------------ bands (time/frequency)

@FAST
@given(t=st.integers(2, 12), f=st.integers(2, 9), batch=st.integers(1, 4), time=st.floats(0, 0.9),
       freq=st.floats(0, 0.9), seed=seeds)
def test_bands_hide_whole_time_columns_and_frequency_rows(t: int, f: int, batch: int, time: float, freq: float,
                                                          seed: int) -> None:
    tokens = make_tokens((t, f), batch)
    mask = bands_mask(tokens, gen(seed), time=time, freq=freq)
    check(mask, batch, t * f)
    check_complement(mask, t * f)
    for b in range(batch):
        cells = pred_cells(mask, b, (t, f))
        cols, rows = cells.all(1), cells.all(0)  # whole columns / rows hidden
        if int(t * time) + int(f * freq) == 0 or int(t * time) == t or int(f * freq) == f:
            continue  # nothing drawn (one cell forced) or every line of an axis: the union rule is moot
        assert int(cols.sum()) >= int(t * time) and int(rows.sum()) >= int(f * freq)
        assert torch.equal(cells, cols[:, None] | rows[None, :])  # nothing but those lines


def test_bands_with_padded_time_columns_hide_only_valid_ones() -> None:
    tokens = make_tokens((10, 4), 2)
    valid = torch.zeros(2, 10, 4, dtype=torch.bool)
    valid[0], valid[1, :4] = True, True  # sample 1: 4 of 10 time columns are real
    tokens = with_valid(tokens, valid.reshape(2, 40))
    mask = bands_mask(tokens, gen(0), time=0.5, freq=0.0)
    check_padded(mask, tokens.valid_or_ones())
    hidden = torch.zeros(2, 40, dtype=torch.bool).scatter_(1, mask.pred, True).view(2, 10, 4)
    real = hidden[1, :4]
    assert int(real.all(1).sum()) == 2 and not bool((real.any(1) & ~real.all(1)).any())  # 2 of its 4 columns
    assert int(hidden[0].all(1).sum()) == 5
    assert bands_mask(tokens, gen(0), time=0.5, freq=0.0).pred.equal(mask.pred)  # seeded


def test_bands_config_and_grid_errors() -> None:
    with pytest.raises(ConfigError, match="hides nothing") as info:
        build("bands", time=0.0, freq=0.0)
    assert info.value.key == "mae.mask.time"
    with pytest.raises(ConfigError, match="2 axes"):
        build("bands")(make_tokens((2, 3, 4), 2), gen(0))
    got = build("bands", time=0.3, freq=0.2)(make_tokens((8, 8), 2), gen(4))
    assert torch.equal(got.pred, bands_mask(make_tokens((8, 8), 2), gen(4), time=0.3, freq=0.2).pred)
