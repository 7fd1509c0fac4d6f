"""Position embeddings: sincos_nd against an independent numpy version of MAE's formula, MLP shape/grad."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpt.errors import ConfigError
from mpt.pos_embed import LearnedPosEmbed, MLPPosEmbed, SinCosPosEmbed, create_pos_embed, sincos_nd


def mae_1d(d: int, pos: np.ndarray) -> np.ndarray:
    """MAE's 1-D sin-cos embedding of positions ``pos`` [M] → [M, d] (float64)."""
    omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,k->mk", pos.astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def reference(coords: np.ndarray, dim: int) -> np.ndarray:
    """Per-axis MAE embedding with an even share of the width, concatenated, zero-padded."""
    m, c = coords.shape
    d = 2 * (dim // (2 * c))
    parts = [mae_1d(d, coords[:, i]) for i in range(c)]
    out = np.concatenate(parts, axis=1)
    return np.concatenate([out, np.zeros((m, dim - out.shape[1]))], axis=1)


def grid_coords(*shape: int) -> torch.Tensor:
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    return torch.stack(axes, -1).reshape(-1, len(shape))


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 2), dim=st.integers(4, 80), m=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_sincos_matches_mae_formula(c: int, dim: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    coords = rng.uniform(-40, 40, size=(m, c)).astype(np.float32)
    got = sincos_nd(torch.from_numpy(coords), dim).numpy()
    assert got.shape == (m, dim)
    np.testing.assert_allclose(got, reference(coords, dim), atol=1e-4)


def test_sincos_2d_equals_mae_table_on_a_grid() -> None:
    # MAE's 2-D table: first half embeds one grid axis, second half the other.
    coords = grid_coords(3, 7)
    got = sincos_nd(coords, 32).numpy()
    want = np.concatenate([mae_1d(16, coords[:, 0].numpy()), mae_1d(16, coords[:, 1].numpy())], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)


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
    assert isinstance(create_pos_embed("sincos", 2, 16), SinCosPosEmbed)
    mlp = create_pos_embed("mlp", 3, 16)
    assert isinstance(mlp, MLPPosEmbed) and mlp(torch.zeros(1, 4, 3)).shape == (1, 4, 16)
    with pytest.raises(ConfigError, match="sincos, mlp, learned") as info:
        create_pos_embed("rotary", 2, 16)
    assert info.value.key == "tokenizer.pos_kind"
    with pytest.raises(ConfigError, match="grid size"):
        create_pos_embed("learned", 2, 16)


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
