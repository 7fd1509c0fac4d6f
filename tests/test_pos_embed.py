"""Position embeddings: sincos_nd against independent numpy versions of MAE's and V-JEPA's tables,
per-axis widths, SatMAE's spatial ‖ group split, identity embeddings, "none", MLP and learned tables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mpt.contract import Tokenizer
from mpt.errors import CheckpointError, ConfigError
from mpt.optim import param_groups
from mpt.pos_embed import (
    POS_KINDS,
    IdentityEmbed,
    LearnedPosEmbed,
    MLPPosEmbed,
    NoPosEmbed,
    SinCosPosEmbed,
    SplitPosEmbed,
    create_pos_embed,
    remap_ids,
    sincos_nd,
)
from mpt.pretrained import adapt_tokenizer_weights


def mae_1d(d: int, pos: np.ndarray) -> np.ndarray:
    """MAE's ``get_1d_sincos_pos_embed_from_grid``: positions ``pos`` (any shape, flattened) → [M, d]."""
    omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,k->mk", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def mae_2d(d: int, rows: int, cols: int) -> np.ndarray:
    """MAE's ``get_2d_sincos_pos_embed`` (AudioMAE's ``_flexible`` for rows != cols) → [rows·cols, d]:
    ``meshgrid(grid_w, grid_h)`` (xy indexing), first half from ``grid[0]``, second from ``grid[1]``."""
    grid_h = np.arange(rows, dtype=np.float32)
    grid_w = np.arange(cols, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, rows, cols)
    emb_h = mae_1d(d // 2, grid[0])
    emb_w = mae_1d(d // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def vjepa_3d(d: int, size: int, depth: int, uniform_power: bool) -> np.ndarray:
    """V-JEPA's ``get_3d_sincos_pos_embed`` → [depth·size·size, d]: ``meshgrid(grid_h, grid_d, grid_w)``
    (xy indexing: tokens [d, h, w]), blocks [depth, h, w] of d/2, d/4, d/4 channels, or 2·ceil(d/6)
    each with ``uniform_power``, cut to ``d``."""
    grid_d = np.arange(depth, dtype=float)
    grid_h = np.arange(size, dtype=float)
    grid_w = np.arange(size, dtype=float)
    grid_h, grid_d, grid_w = np.meshgrid(grid_h, grid_d, grid_w)
    if uniform_power:
        dh = dw = dd = int(np.ceil(d / 6) * 2)
    else:
        dh, dw, dd = d // 4, d // 4, d // 2
    emb = np.concatenate([mae_1d(dd, grid_d), mae_1d(dh, grid_h), mae_1d(dw, grid_w)], axis=1)
    return emb[:, :d]


def reference(coords: np.ndarray, dim: int) -> np.ndarray:
    """mpt's rule: an even share of the width per axis, the LAST axis first, zero-padded."""
    m, c = coords.shape
    d = 2 * (dim // (2 * c))
    parts = [mae_1d(d, coords[:, i]) for i in reversed(range(c))]
    out = np.concatenate(parts, axis=1)
    return np.concatenate([out, np.zeros((m, dim - out.shape[1]))], axis=1)


def grid_coords(*shape: int) -> torch.Tensor:
    """Row-major integer coordinates of a grid, in grid-axis order: ``[prod(shape), len(shape)]``."""
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    return torch.stack(axes, -1).reshape(-1, len(shape))


# --- sincos_nd: the axis convention -------------------------------------------------------------


@pytest.mark.parametrize("dim", [768, 32])
def test_2d_table_equals_mae_on_a_14x14_grid(dim: int) -> None:
    got = sincos_nd(grid_coords(14, 14), dim).double().numpy()
    np.testing.assert_allclose(got, mae_2d(dim, 14, 14), atol=1e-5)


@pytest.mark.parametrize("shape", [(8, 3), (3, 8)])
def test_2d_table_equals_mae_on_non_square_grids(shape: tuple[int, int]) -> None:
    # AudioMAE's time × mel grid: rows = time frames, cols = mel bins.
    got = sincos_nd(grid_coords(*shape), 24).double().numpy()
    np.testing.assert_allclose(got, mae_2d(24, *shape), atol=1e-5)


def test_2d_table_is_not_the_transpose() -> None:
    # (row, col) coords with the blocks in coords order would be MAE's table for the transposed grid.
    coords = grid_coords(4, 5)
    natural = sincos_nd(coords, 16, order=(0, 1)).double().numpy()
    assert not np.allclose(natural, mae_2d(16, 4, 5), atol=1e-3)


def test_3d_convention_is_x_then_y_then_t() -> None:
    coords = grid_coords(2, 3, 4)  # (t, row, col)
    t, r, c = (coords[:, i].double().numpy() for i in range(3))
    want = np.concatenate([mae_1d(10, c), mae_1d(10, r), mae_1d(10, t), np.zeros((24, 2))], axis=1)
    np.testing.assert_allclose(sincos_nd(coords, 32).double().numpy(), want, atol=1e-5)


@pytest.mark.parametrize("d", [64, 48])
def test_vjepa_3d_table_through_widths_and_order(d: int) -> None:
    coords = grid_coords(2, 3, 3)  # (t, row, col), V-JEPA's [d, h, w] token order
    got = sincos_nd(coords, d, widths=(d // 2, d // 4, d // 4), order=(0, 1, 2)).double().numpy()
    np.testing.assert_allclose(got, vjepa_3d(d, 3, 2, uniform_power=False), atol=1e-5)


@pytest.mark.parametrize("d", [48, 40])  # 40: V-JEPA cuts 3 × 14 channels to 40
def test_vjepa_uniform_power_table(d: int) -> None:
    w = 2 * math.ceil(d / 6)
    coords = grid_coords(2, 3, 3)
    got = sincos_nd(coords, 3 * w, widths=(w, w, w), order=(0, 1, 2))[..., :d].double().numpy()
    np.testing.assert_allclose(got, vjepa_3d(d, 3, 2, uniform_power=True), atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 3), dim=st.integers(6, 80), m=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_sincos_matches_the_rule_on_random_coords(c: int, dim: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    coords = rng.uniform(-40, 40, size=(m, c)).astype(np.float32)
    got = sincos_nd(torch.from_numpy(coords), dim).numpy()
    assert got.shape == (m, dim)
    np.testing.assert_allclose(got, reference(coords, dim), atol=1e-4)


# --- per-axis widths ----------------------------------------------------------------------------


def test_widths_size_each_axis_block_and_pad_the_rest() -> None:
    coords = torch.rand(7, 2) * 9  # (row, col)
    got = sincos_nd(coords, 20, widths=(4, 10)).double().numpy()
    row, col = coords[:, 0].double().numpy(), coords[:, 1].double().numpy()
    want = np.concatenate([mae_1d(10, col), mae_1d(4, row), np.zeros((7, 6))], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    module = SinCosPosEmbed(2, 20, widths=(4, 10))
    torch.testing.assert_close(module(coords[None])[0], sincos_nd(coords, 20, widths=(4, 10)))


@pytest.mark.parametrize(("widths", "message"), [
    ((4, 5), "even"), ((4, 0), "even"), ((8, 8, 8), "coords have 2"), ((12, 12), "sum to 24 > dim=20"),
])
def test_bad_widths_are_errors(widths: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sincos_nd(torch.zeros(3, 2), 20, widths=widths)
    with pytest.raises(ValueError, match=message):
        SinCosPosEmbed(2, 20, widths=widths)


@pytest.mark.parametrize("order", [(0, 0), (1,), (0, 2)])
def test_bad_order_is_an_error(order: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="not a permutation"):
        sincos_nd(torch.zeros(3, 2), 20, order=order)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 4), dim=st.integers(8, 50))
def test_zero_padding_when_not_divisible(c: int, dim: int) -> None:
    coords = torch.rand(5, c) * 10
    out = sincos_nd(coords, dim)
    used = c * 2 * (dim // (2 * c))
    assert out.shape == (5, dim)
    assert torch.all(out[:, used:] == 0)
    # every used channel carries signal: sin² + cos² = 1 per axis and frequency
    half = dim // (2 * c)
    per_axis = out[:, :used].reshape(5, c, 2, half)
    torch.testing.assert_close(per_axis[:, :, 0] ** 2 + per_axis[:, :, 1] ** 2, torch.ones(5, c, half))


def test_batched_leading_axes_and_dtype() -> None:
    coords = torch.rand(2, 6, 3) * 8
    out = sincos_nd(coords, 24)
    assert out.shape == (2, 6, 24)
    torch.testing.assert_close(out[1], sincos_nd(coords[1], 24))
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        assert sincos_nd(coords.to(dtype), 24).dtype == dtype


def test_dim_too_small_is_an_error() -> None:
    with pytest.raises(ValueError, match="too small"):
        sincos_nd(torch.zeros(4, 3), 5)


@pytest.mark.parametrize("shape", [(5, 9), (2, 3, 11), (17,)])
def test_injective_on_non_square_grids(shape: tuple[int, ...]) -> None:
    emb = SinCosPosEmbed(len(shape), 48)(grid_coords(*shape)[None])[0]
    dist = torch.cdist(emb, emb) + torch.eye(emb.shape[0]) * 1e9
    assert dist.min() > 1e-3


def test_sincos_module_has_no_parameters_and_matches_function() -> None:
    module = SinCosPosEmbed(3, 36)
    assert list(module.parameters()) == []
    assert len(module.state_dict()) == 0
    coords = torch.rand(2, 10, 3) * 5
    out = module(coords)
    assert out.shape == (2, 10, 36)
    torch.testing.assert_close(out, sincos_nd(coords, 36))
    with pytest.raises(ValueError):
        module(torch.rand(2, 10, 2))


# --- SatMAE's split: spatial ‖ group ------------------------------------------------------------


def satmae_coords(groups: int, rows: int, cols: int) -> torch.Tensor:
    """SatMAE's token layout [G, L]: every group repeats the spatial grid; coords (row, col, group)."""
    spatial = grid_coords(rows, cols).repeat(groups, 1)
    group = torch.arange(groups, dtype=torch.float32).repeat_interleave(rows * cols)[:, None]
    return torch.cat([spatial, group], dim=1)[None]


def test_split_is_mae_spatial_then_sincos_group() -> None:
    module = SplitPosEmbed(3, 48, 16)
    assert list(module.parameters()) == []
    got = module(satmae_coords(3, 4, 4))[0].double().numpy()
    want = np.concatenate([np.tile(mae_2d(32, 4, 4), (3, 1)), mae_1d(16, np.repeat(np.arange(3), 16))], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_split_with_a_learned_group_part() -> None:
    module = SplitPosEmbed(3, 40, 8, num_groups=3)
    coords = satmae_coords(3, 2, 5)
    out = module(coords)
    assert out.shape == (1, 30, 40)
    torch.testing.assert_close(out[0, :, :32], sincos_nd(coords[0, :, :2], 32))
    torch.testing.assert_close(out[0, :, 32:], module.group.table.repeat_interleave(10, dim=0))
    out.sum().backward()
    assert module.group.table.grad is not None and module.group.table.grad.abs().min() > 0
    assert [name for name, _ in module.named_parameters()] == ["group.table"]
    with pytest.raises(ValueError, match="identity table of 3 ids"):
        module(satmae_coords(4, 2, 5))


@pytest.mark.parametrize(("args", "message"), [
    ((1, 32, 8), "coord_dim >= 2"), ((3, 32, 7), "even"), ((3, 32, 32), "< dim=32"), ((3, 10, 8), "too small"),
])
def test_split_bad_settings_are_errors(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SplitPosEmbed(*args)


# --- identity embeddings ------------------------------------------------------------------------


def test_identity_embedding_is_a_lookup_with_gradient() -> None:
    emb = IdentityEmbed(5, 12)
    ids = torch.tensor([[0, 3, 3], [4, 1, 0]])
    out = emb(ids)
    assert out.shape == (2, 3, 12)
    torch.testing.assert_close(out, emb.table[ids])
    torch.testing.assert_close(emb(ids[..., None].float()), out)  # the coordinate column form
    out.sum().backward()
    assert emb.table.grad is not None
    assert emb.table.grad[[0, 1, 3, 4]].abs().min() > 0 and emb.table.grad[2].abs().sum() == 0


def test_identity_ids_out_of_range_or_fractional_are_errors() -> None:
    emb = IdentityEmbed(4, 8)
    for bad in (torch.tensor([[0, 4]]), torch.tensor([[-1, 0]])):
        with pytest.raises(ValueError, match=r"identity table of 4 ids \(0\.\.3\)"):
            emb(bad)
    with pytest.raises(ValueError, match="integers"):
        emb(torch.tensor([[0.0, 1.5]]))
    with pytest.raises(ValueError, match=r"\[B, n\] or \[B, n, 1\]"):
        emb(torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="num_ids"):
        IdentityEmbed(0, 8)


@dataclass
class IdConfig:
    num_ids: int


class IdTokenizer(Tokenizer):
    """A tokenizer whose position is one identity id per token (only ``pos`` matters here)."""

    coord_dim = 1
    pos_kind = "identity"


def test_identity_table_is_never_resampled_on_load() -> None:
    saved, new = IdTokenizer(8, (5,)), IdTokenizer(8, (7,))
    assert isinstance(saved.pos, IdentityEmbed) and not isinstance(saved.pos, LearnedPosEmbed)
    weights = {"tokenizer.pos.table": saved.pos.table.detach().clone()}
    with pytest.raises(CheckpointError, match=r"tokenizer\.pos\.table has shape \(5, 8\)"):
        adapt_tokenizer_weights(weights, saved, new, IdConfig(5), IdConfig(7), Path("enc/model.safetensors"))
    torch.testing.assert_close(weights["tokenizer.pos.table"], saved.pos.table.detach())


def test_remap_ids_is_the_explicit_rule_for_another_count() -> None:
    table = torch.randn(5, 3)
    torch.testing.assert_close(remap_ids(table, [4, 0, 0]), table[[4, 0, 0]])
    with pytest.raises(ValueError, match=r"0\.\.4 \(the saved table has 5 ids\)"):
        remap_ids(table, [0, 5])


def test_identity_tables_get_no_weight_decay() -> None:
    model = nn.ModuleDict({"tokenizer": nn.ModuleDict({"pos": IdentityEmbed(4, 8), "proj": nn.Linear(8, 8)})})
    decay, no_decay = param_groups(model, 0.05)
    table = model["tokenizer"]["pos"].table
    assert any(p is table for p in no_decay["params"]) and not any(p is table for p in decay["params"])


# --- "none", MLP, learned, create_pos_embed -----------------------------------------------------


def test_no_position_is_zeros_without_parameters() -> None:
    emb = create_pos_embed("none", 3, 16)
    assert isinstance(emb, NoPosEmbed) and list(emb.parameters()) == []
    out = emb(torch.rand(2, 5, 3, dtype=torch.float64))
    assert out.shape == (2, 5, 16) and out.dtype == torch.float64 and torch.all(out == 0)


def test_mlp_pos_embed_shape_and_gradient() -> None:
    module = MLPPosEmbed(3, 40)
    assert module.net[0].in_features == 3 and module.net[0].out_features == 128
    assert isinstance(module.net[1], torch.nn.GELU)
    coords = torch.rand(2, 7, 3, requires_grad=True)
    out = module(coords)
    assert out.shape == (2, 7, 40)
    out.square().sum().backward()
    assert coords.grad is not None and coords.grad.abs().sum() > 0
    for p in module.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_create_pos_embed_kinds_and_errors() -> None:
    assert POS_KINDS == ("sincos", "mlp", "learned", "identity", "none")
    assert isinstance(create_pos_embed("sincos", 2, 16), SinCosPosEmbed)
    mlp = create_pos_embed("mlp", 3, 16)
    assert isinstance(mlp, MLPPosEmbed) and mlp(torch.zeros(1, 4, 3)).shape == (1, 4, 16)
    ident = create_pos_embed("identity", 1, 16, (6,))
    assert isinstance(ident, IdentityEmbed) and ident.table.shape == (6, 16)
    with pytest.raises(ConfigError, match="sincos, mlp, learned, identity, none") as info:
        create_pos_embed("rotary", 2, 16)
    assert info.value.key == "tokenizer.pos_kind"
    with pytest.raises(ConfigError, match="grid size"):
        create_pos_embed("learned", 2, 16)
    for coord_dim, size in ((1, None), (2, (6,)), (1, (0,))):
        with pytest.raises(ConfigError, match="one integer id per token"):
            create_pos_embed("identity", coord_dim, 16, size)


def test_learned_table_is_a_row_major_lookup_and_rejects_outside_positions() -> None:
    emb = create_pos_embed("learned", 2, 8, (3, 4))
    assert isinstance(emb, LearnedPosEmbed) and emb.table.shape == (12, 8)
    coords = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [2.0, 3.0]]])
    out = emb(coords)
    torch.testing.assert_close(out[0], emb.table[[0, 6, 11]])
    out.sum().backward()
    assert emb.table.grad is not None and emb.table.grad[[0, 6, 11]].abs().sum() > 0
    assert emb.table.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="exceed the learned position table of \\[3, 4\\]"):
        emb(torch.tensor([[[3.0, 0.0]]]))
