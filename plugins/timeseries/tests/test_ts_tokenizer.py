"""RevIN, patching and the PatchTST tokenizer: shapes, inverses, missing values, channel handling."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mpt.backbone import build_backbone
from mpt.config import ModelConfig
from mpt.contract import Batch
from mpt.errors import ConfigError, DataError
from mpt_timeseries.config import TimeSeriesTokenizerConfig
from mpt_timeseries.modality import TimeSeries
from mpt_timeseries.ops import num_patches, patchify, revin_denorm, revin_norm, revin_stats, unpatchify
from mpt_timeseries.tokenizer import SeriesTokenizer


def series(b: int = 3, c: int = 4, t: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, t, generator=g).cumsum(-1) * 5 + 100


def test_revin_round_trip_and_statistics() -> None:
    x = series()
    mean, std = revin_stats(x, 1e-5)
    z = revin_norm(x, mean, std)
    torch.testing.assert_close(z.mean(-1), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(-1, unbiased=False), torch.ones(3, 4), atol=1e-4, rtol=0)
    torch.testing.assert_close(revin_denorm(z, mean, std), x, atol=1e-4, rtol=1e-6)


def test_revin_ignores_missing_values_and_survives_constant_channels() -> None:
    x = series(1, 3, 40)
    x[0, 0, 10:20] = float("nan")
    x[0, 1] = 7.0  # constant channel: std would be 0
    mean, std = revin_stats(x, 1e-5)
    observed = torch.cat([x[0, 0, :10], x[0, 0, 20:]])
    assert mean[0, 0, 0].item() == pytest.approx(observed.mean().item(), rel=1e-5)
    assert std[0, 0, 0].item() == pytest.approx((observed.var(unbiased=False) + 1e-5).sqrt().item(), rel=1e-4)
    z = revin_norm(x, mean, std)
    assert z[0, 0, 10:20].isnan().all() and torch.isfinite(z[0, 0, :10]).all()
    assert torch.equal(z[0, 1], torch.zeros(40))  # constant → zeros, no division by zero
    torch.testing.assert_close(revin_denorm(z, mean, std)[0, 1], x[0, 1])


@pytest.mark.parametrize(("t", "patch", "stride"), [(48, 12, 12), (50, 12, 12), (50, 16, 8), (5, 12, 12), (7, 3, 2)])
def test_patchify_unpatchify_round_trip(t: int, patch: int, stride: int) -> None:
    x = series(2, 3, t)
    p = patchify(x, patch, stride)
    n = num_patches(t, patch, stride)
    assert p.shape == (2, 3, n, patch)
    assert (n - 1) * stride + patch >= t and (n == 1 or (n - 2) * stride + patch < t)  # fewest that cover t
    for k in range(n):
        window = x[..., k * stride : k * stride + patch]
        torch.testing.assert_close(p[:, :, k, : window.shape[-1]], window)
        assert p[:, :, k, window.shape[-1]:].isnan().all()  # padding past the end is missing, not zeros
    torch.testing.assert_close(unpatchify(p, stride, t), x)


def tok(**kw) -> SeriesTokenizer:  # noqa: ANN003
    torch.manual_seed(0)
    return SeriesTokenizer(TimeSeriesTokenizerConfig(**{"patch": 8, "stride": 8, **kw}), dim=16)


def test_channel_independence_folds_channels_into_rows() -> None:
    x = series(3, 4, 64)
    tokens = tok().tokenize(Batch.of(x))
    assert tokens.patches.shape == (12, 8, 8) and tokens.rows_per_sample == 4 and tokens.grid == (8,)
    assert tok().patch_shape == tokens.patch_shape == (8,) and SeriesTokenizer.grid_axes == 1
    assert tokens.valid is None
    torch.testing.assert_close(tokens.coords[5, :, 0], torch.arange(8.0))
    # row 5 = sample 1, channel 1, RevIN-normalised
    mean, std = revin_stats(x[1:2, 1:2])
    torch.testing.assert_close(tokens.patches[5].reshape(-1), ((x[1, 1] - mean[0, 0]) / std[0, 0]))
    # the same tokenizer takes any channel count and any length
    assert tok().tokenize(Batch.of(series(2, 1, 30))).patches.shape == (2, 4, 8)


def test_mixed_channels_make_one_token_per_patch() -> None:
    t = tok(channels="mixed", num_channels=4)
    x = series(3, 4, 64)
    tokens = t.tokenize(Batch.of(x))
    assert tokens.patches.shape == (3, 8, 4, 8) and tokens.rows_per_sample == 1
    assert t.patch_shape == tokens.patch_shape == (4, 8)  # declared from the config, not measured
    assert t.embed(tokens).shape == (3, 8, 16)
    with pytest.raises(ConfigError, match="mixes 4 channels, the batch has 3") as info:
        t.tokenize(Batch.of(series(3, 3, 64)))
    assert info.value.key == "tokenizer.num_channels"
    with pytest.raises(ConfigError, match="num_channels"):
        tok(channels="mixed")


def test_missing_values_make_padding_tokens_and_read_as_zero() -> None:
    x = series(2, 2, 64)
    x[0, 1, 16:32] = float("nan")  # patches 2 and 3 of sample 0, channel 1 are fully missing
    x[1, 0, 5] = float("nan")  # one missing value inside patch 0 of sample 1, channel 0
    t = tok()
    tokens = t.tokenize(Batch.of(x))
    expected = torch.ones(4, 8, dtype=torch.bool)
    expected[1, 2:4] = False
    assert tokens.valid is not None and torch.equal(tokens.valid, expected)
    assert tokens.patches[2, 0, 5].isnan()  # missing values stay NaN in the raw patches (no target)
    emb = t.embed(tokens)
    assert torch.isfinite(emb).all()
    filled = dataclasses.replace(tokens, patches=tokens.patches.nan_to_num(0.0))
    torch.testing.assert_close(emb, t.embed(filled))


def test_bad_batches_are_clean_errors() -> None:
    with pytest.raises(DataError, match=r"\[B, C, T\]"):
        tok().tokenize(Batch.of(torch.randn(4, 64)))


@pytest.mark.parametrize("channels", ["independent", "mixed"])
def test_revin_is_the_one_normalisation_of_the_input_path(channels: str) -> None:
    """RevIN runs once, inside tokenize (normalize is the identity): through Backbone.tokens — the
    input path of training, feature extraction and load_encoder — a series in other units and at
    another level gives the same tokens, and the raw batch's stats invert the tokens' values."""
    cfg = TimeSeriesTokenizerConfig(patch=8, stride=8, channels=channels, num_channels=3, revin_eps=1e-12)
    backbone = build_backbone(TimeSeries(), cfg, ModelConfig(dim=16, depth=1, heads=2)).eval()
    x = series(2, 3, 64)
    batch = Batch(input=x, sources=["a", "b"])
    assert backbone.tokenizer.normalize(batch) is batch  # the identity
    tokens = backbone.tokens(batch)
    torch.testing.assert_close(tokens.patches, backbone.tokenizer.tokenize(batch).patches)
    moved = backbone.tokens(Batch.of(x * 1000 - 5e4))
    torch.testing.assert_close(moved.patches, tokens.patches, atol=1e-4, rtol=0)
    flat = tokens.patches.reshape(2, 3, 8, 8) if channels == "independent" else tokens.patches.permute(0, 2, 1, 3)
    mean, std = backbone.tokenizer.stats(batch)  # of the raw batch
    torch.testing.assert_close(backbone.tokenizer.denormalize(flat.reshape(2, 3, 64), (mean, std)), x,
                               atol=1e-3, rtol=1e-5)


def test_learned_positions_cover_max_len_and_name_the_limit() -> None:
    t = tok(pos="learned", max_len=64)
    assert t.pos.table.shape == (8, 16)
    tokens = t.tokenize(Batch.of(series(1, 2, 40)))  # shorter input: the first 5 positions
    torch.testing.assert_close(t.pos(tokens.coords)[0], t.pos.table[:5])
    long = t.tokenize(Batch.of(series(1, 2, 72)))
    with pytest.raises(ValueError, match="exceed the learned position table"):
        t.pos(long.coords)
