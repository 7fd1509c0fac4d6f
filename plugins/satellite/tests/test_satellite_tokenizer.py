"""Satellite tokenizers: SatMAE band groups, Scale-MAE GSD positions, any-band (DOFA) embedding, dates."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from mpt.backbone import Backbone, check_tokenizer
from mpt.config import Choice, MAEConfig
from mpt.contract import Batch, TokenSet
from mpt.encoder import Transformer
from mpt.errors import ConfigError, DataError
from mpt.masking import RatioConfig, TubeMaskConfig, create_masker
from mpt.objectives import MAE
from mpt.pos_embed import SplitPosEmbed, sincos_nd
from mpt.targets import PatchTarget
from mpt_satellite.anyband import AnyBandTokenizer
from mpt_satellite.bands import SENSORS
from mpt_satellite.config import SatelliteTokenizerConfig
from mpt_satellite.tokenizer import (
    SatellitePosEmbed,
    SatelliteTokenizer,
    create_tokenizer,
    date_encoding,
    patchify,
    scaled_width,
    unpatchify,
)

S2 = SENSORS["sentinel2"]
L7 = SENSORS["landsat7"]
BANDS = ["B02", "B03", "B04", "B08", "B11"]
GROUPS = [["B04", "B02"], ["B03", "B08"], ["B11"]]  # SatMAE-style groups, a smaller last one
DIM = 32


def config(**kw: object) -> SatelliteTokenizerConfig:
    base: dict[str, object] = {"bands": BANDS, "sensor": "sentinel2", "mean": [100.0, 200.0, 300.0, 400.0, 500.0],
                               "std": [10.0, 20.0, 30.0, 40.0, 50.0], "patch": 4, "groups": GROUPS, "group_dim": 8}
    return SatelliteTokenizerConfig(**{**base, **kw})  # type: ignore[arg-type]


def tokenizer(**kw: object) -> SatelliteTokenizer:
    return create_tokenizer(config(**kw), DIM)


def anyband(**kw: object) -> SatelliteTokenizer:
    return tokenizer(kind="anyband", groups=None, **kw)


def chips(b: int = 2, c: int = 5, h: int = 8, w: int = 12, t: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (b, c, h, w) if t is None else (b, t, c, h, w)
    return torch.randn(shape, generator=g)


def cell(x: torch.Tensor, r: int, c: int, p: int = 4) -> torch.Tensor:
    return x[..., r * p : (r + 1) * p, c * p : (c + 1) * p]


# --------------------------------------------------------------------------- groups


def test_group_tokens_are_the_groups_bands_sliced_group_major_and_nan_padded() -> None:
    tok = tokenizer()
    x = chips()
    tokens = tok.tokenize(Batch(x))
    idx = [[2, 0], [1, 3], [4]]  # band positions of GROUPS
    assert tok.patch_shape == (2, 4, 4) and tokens.patches.shape == (2, 3 * 6, 2, 4, 4)
    assert tokens.grid == (3, 2, 3) and type(tok).grid_axes == 3 and tokens.valid is None
    for g, bands in enumerate(idx):
        for r in range(2):
            for c in range(3):
                n = g * 6 + r * 3 + c  # group-major, then row-major
                torch.testing.assert_close(tokens.patches[:, n, : len(bands)], cell(x[:, bands], r, c))
                assert tokens.patches[:, n, len(bands):].isnan().all()  # padding of the smaller group
                assert tokens.groups is not None and tokens.groups[:, n].tolist() == [g, g]
                assert tokens.coords[:, n].tolist() == [[r, c, g]] * 2  # (row, col, group)
    torch.testing.assert_close(tok.untokenize(tokens.patches, tokens.grid)[:, 0], x)
    torch.testing.assert_close(unpatchify(patchify(x, 4), (2, 3)), x)


def test_every_band_group_has_its_own_linear() -> None:
    tok = tokenizer()
    tokens = tok.tokenize(Batch(chips()))
    projs = [p for p in tok.proj if isinstance(p, nn.Linear)]
    assert [p.in_features for p in projs] == [2 * 16, 2 * 16, 16]
    before = tok.embed(tokens).detach()
    with torch.no_grad():
        projs[1].weight.add_(1.0)
    after = tok.embed(tokens).detach()
    changed = (after - before).abs().amax(-1) > 1e-6  # [B, N]
    assert tokens.groups is not None
    assert torch.equal(changed, tokens.groups == 1)
    sub = tokens.select(torch.tensor([[17, 3, 8], [0, 12, 5]]))  # any subset embeds as in the full set
    torch.testing.assert_close(tok.embed(sub), torch.stack([after[0, [17, 3, 8]], after[1, [0, 12, 5]]]))


def test_missing_pixels_embed_as_zero_never_nan_and_empty_tokens_are_invalid() -> None:
    for tok in (tokenizer(), anyband()):
        x = chips()
        x[0, 1, 0:2, 0:3] = math.nan  # part of a patch
        x[1, :, 4:8, 8:12] = math.nan  # every band of one cell: no observed value
        tokens = tok.tokenize(tok.normalize(Batch(x)))
        out = tok.embed(tokens)
        assert torch.isfinite(out).all()
        zeroed = TokenSet(patches=tokens.patches.nan_to_num(0.0), coords=tokens.coords, grid=tokens.grid,
                          groups=tokens.groups)
        torch.testing.assert_close(out, tok.embed(zeroed))
        assert tokens.grid is not None and tokens.valid is not None
        per_cell = tokens.grid[0] if len(tokens.grid) == 3 else 1  # groups: one token per group and cell
        assert (~tokens.valid).sum(1).tolist() == [0, per_cell]
        assert not tokens.valid[1].reshape(tokens.grid)[..., 1, 2].any()


def test_random_masks_groups_independently_and_tube_hides_the_same_cells_in_every_group() -> None:
    tok = tokenizer()
    tokens = tok.tokenize(Batch(chips(b=4, h=16, w=16)))  # grid (3, 4, 4)
    g, s = 3, 16

    def hidden(name: str, params: object) -> torch.Tensor:
        mask = create_masker(Choice(name, params))(tokens, torch.Generator().manual_seed(0))
        assert not isinstance(mask, list)
        out = torch.zeros(4, g * s, dtype=torch.bool).scatter_(1, mask.pred, True)
        return out.reshape(4, g, s)

    tube = hidden("tube", TubeMaskConfig(ratio=0.75))
    assert (tube == tube[:, :1]).all() and tube.sum().item() == 4 * 3 * 12  # same spatial cells in every group
    rand = hidden("random", RatioConfig(ratio=0.75))
    assert rand.sum().item() == 4 * 36 and not (rand == rand[:, :1]).all()  # independent across groups


def test_split_positions_group_part_per_group_spatial_part_shared_and_decoder_rule() -> None:
    tok = tokenizer()
    assert isinstance(tok.pos, SplitPosEmbed) and tok.pos.group_dim == 8
    tokens = tok.tokenize(Batch(chips()))
    pos = tok.pos(tokens.coords)[0].reshape(3, 6, DIM)  # [G, L, D]
    spatial, group = pos[..., : DIM - 8], pos[..., DIM - 8 :]
    assert (group == group[:, :1]).all() and not torch.equal(group[0, 0], group[1, 0])
    assert (spatial == spatial[:1]).all()
    torch.testing.assert_close(spatial[0], sincos_nd(tokens.coords[0, :6, :2], DIM - 8))
    torch.testing.assert_close(group[:, 0], sincos_nd(torch.arange(3.0)[:, None], 8))
    dec = tok.make_pos(16)  # the decoder's width: group_dim scaled by 16 / 32
    assert isinstance(dec, SplitPosEmbed) and dec.group_dim == 4 and dec(tokens.coords).shape == (2, 18, 16)
    assert scaled_width(256, 512, 1024) == 128  # SatMAE: 256 of 1024, 128 of its 512-wide decoder
    big = SatelliteTokenizer(config(group_dim=256, patch=8), 1024)
    assert big.make_pos(512).group_dim == 128  # type: ignore[operator]
    with pytest.raises(ConfigError, match="tokenizer.group_dim.*< 32"):
        tokenizer(group_dim=32)
    with pytest.raises(ConfigError, match="tokenizer.group_dim.*spatial"):
        tokenizer(group_dim=30)


def test_gsd_positions_scale_the_spatial_coordinates_per_sample() -> None:
    tok = tokenizer(gsd_positions=True, reference_gsd=10.0)
    x = chips()
    tokens = tok.tokenize(Batch(x, meta={"gsd": torch.tensor([10.0, 20.0])}))
    torch.testing.assert_close(tokens.coords[1, :, :2], 2 * tokens.coords[0, :, :2])
    assert torch.equal(tokens.coords[1, :, 2], tokens.coords[0, :, 2])  # the group id is no distance
    torch.testing.assert_close(tokens.coords[0], tokenizer().tokenize(Batch(x)).coords[0])
    pos = tok.pos(tokens.coords)
    assert not torch.allclose(pos[0, 1:6, : DIM - 8], pos[1, 1:6, : DIM - 8])
    torch.testing.assert_close(pos[:, :, DIM - 8 :], pos[[0, 0], :, DIM - 8 :])
    with pytest.raises(DataError, match="meta\\['gsd'\\]"):
        tok.tokenize(Batch(x))
    with pytest.raises(DataError, match="positive"):
        tok.tokenize(Batch(x, meta={"gsd": torch.tensor([10.0, math.nan])}))


# --------------------------------------------------------------------------- normalisation


def test_normalize_is_per_band_standardisation_keeping_nan() -> None:
    tok = tokenizer()
    x = chips() * 5 + 300
    x[0, 2, 1, 1] = math.nan
    out = tok.normalize(Batch(x)).tensor
    mean = torch.tensor([100.0, 200.0, 300.0, 400.0, 500.0])[:, None, None]
    std = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])[:, None, None]
    torch.testing.assert_close(out, (x - mean) / std, equal_nan=True)
    assert out[0, 2, 1, 1].isnan() and out.isnan().sum() == 1
    torch.testing.assert_close(tok.unstandardize(out), x, equal_nan=True)


def test_normalize_errors_name_the_problem() -> None:
    tok = tokenizer()
    x = chips()
    bad = x.clone()
    bad[0, 0, 0, 0] = math.inf
    with pytest.raises(DataError, match="Inf"):
        tok.normalize(Batch(bad))
    with pytest.raises(DataError, match="4 bands.*5 bands \\['B02', 'B03', 'B04', 'B08', 'B11'\\]"):
        tok.normalize(Batch(x[:, :4]))
    with pytest.raises(DataError, match="do not split into 4×4"):
        tok.normalize(Batch(x[..., :10]))
    with pytest.raises(DataError, match=r"\[B, C, H, W\]"):
        tok.normalize(Batch(x[0]))
    names = [["B02", "B03", "B04", "B8A", "B11"]] * 2
    with pytest.raises(DataError, match="expected \\[B02.*B08.*got \\[B02.*B8A"):
        tok.normalize(Batch(x, meta={"bands": names}))
    wl = torch.tensor([S2.wavelengths[i] for i in (1, 2, 3, 7, 11)]).float()
    ok = Batch(x, meta={"bands": [["b2", "B3", "B4", "B8", "B11"]] * 2, "wavelengths": wl.expand(2, -1)})
    tok.normalize(ok)  # same bands, other spelling, wavelengths within tolerance
    with pytest.raises(DataError, match="other wavelengths"):
        tok.normalize(ok.replace(wavelengths=(wl + torch.tensor([0, 0, 0, 100, 0])).expand(2, -1)))
    with pytest.raises(ConfigError, match="tokenizer.mean"):
        tokenizer(mean=None)
    with pytest.raises(ConfigError, match="tokenizer.std"):
        tokenizer(std=[1.0, 1.0])
    with pytest.raises(ConfigError, match="tokenizer.groups.*B12"):
        tokenizer(groups=[["B02", "B03", "B04", "B08", "B12"]])
    with pytest.raises(ConfigError, match="tokenizer.groups.*\\['B11'\\] are in no group"):
        tokenizer(groups=[["B02", "B03", "B04", "B08"]])


# --------------------------------------------------------------------------- any band


def test_anyband_embeds_any_band_set_from_its_wavelengths() -> None:
    tok = anyband()
    assert isinstance(tok, AnyBandTokenizer) and isinstance(tok, SatelliteTokenizer)
    assert type(tok).grid_axes == 2 and tok.patch_shape == (5, 4, 4)
    outs = []
    for bands in (S2.select(["B02", "B03", "B04", "B08"]), L7, S2):  # 4, 6 and 13 bands
        c = len(bands)
        x = chips(c=c, seed=c)
        wl = torch.tensor(bands.wavelengths).float().expand(2, -1)
        meta = {"wavelengths": wl, "bands": [list(bands.names)] * 2, "mean": torch.zeros(c), "std": torch.ones(c)}
        tokens = tok.tokenize(tok.normalize(Batch(x, meta=meta)))
        assert tokens.grid == (2, 3) and tokens.patches.shape == (2, 6, c, 4, 4)
        assert tokens.coords.shape == (2, 6, 2 + c)  # (row, col, λ_1 … λ_C)
        out = tok.embed(tokens)
        assert out.shape == (2, 6, DIM) and torch.isfinite(out).all()
        perm = torch.randperm(c, generator=torch.Generator().manual_seed(1))
        shuffled = Batch(x[:, perm], meta={**meta, "wavelengths": wl[:, perm],
                                            "bands": [[bands.names[i] for i in perm]] * 2})
        torch.testing.assert_close(tok.embed(tok.tokenize(shuffled)), out, atol=1e-5, rtol=1e-5)  # Σ over bands
        outs.append(out)
    # the config's bands: the config's wavelengths, the same tokens as with them given in meta
    x = chips()
    plain = tok.embed(tok.tokenize(tok.normalize(Batch(x))))
    given = Batch(x, meta={"wavelengths": tok.config_wavelengths.expand(2, -1)})  # type: ignore[operator]
    torch.testing.assert_close(tok.embed(tok.tokenize(tok.normalize(given))), plain)
    # a subset of the config's bands normalises with their statistics by name
    sub = Batch(x[:, [3, 1]] * 0 + torch.tensor([400.0, 200.0])[:, None, None],
                meta={"bands": [["B08", "B03"]] * 2, "wavelengths": torch.tensor([842.0, 560.0]).expand(2, -1)})
    assert tok.normalize(sub).tensor.abs().max() == 0
    with pytest.raises(DataError, match="meta\\['wavelengths'\\]"):
        tok.tokenize(Batch(chips(c=6)))
    with pytest.raises(DataError, match="statistics"):
        tok.normalize(Batch(chips(c=6), meta={"wavelengths": torch.tensor(L7.wavelengths).float()}))
    with pytest.raises(ConfigError, match="tokenizer.wavelengths"):
        anyband(sensor=None)


def test_anyband_positions_ignore_the_wavelength_columns() -> None:
    tok = anyband()
    tokens = tok.tokenize(Batch(chips()))
    assert isinstance(tok.pos, SatellitePosEmbed)
    pos = tok.pos(tokens.coords)
    torch.testing.assert_close(pos, sincos_nd(tokens.coords[..., :2], DIM))
    assert tok.make_pos(16)(tokens.coords).shape == (2, 6, 16)


# --------------------------------------------------------------------------- dates


def test_multi_date_stacks_tokenize_per_date_with_a_date_encoding() -> None:
    tok = tokenizer(time_dim=8)
    x = chips(t=3)
    days = torch.tensor([[18000.0, 18100.0, 18465.0], [19000.0, 19010.0, 19020.0]])
    tokens = tok.tokenize(Batch(x, meta={"dates": days}))
    n = 3 * 6
    assert tokens.grid == (3 * 3, 2, 3) and tokens.patches.shape == (2, 3 * n, 2, 4, 4)
    assert tokens.coords.shape == (2, 3 * n, 4)
    for t in range(3):  # date-major: each date's tokens are its single-date tokens
        single = tokenizer().tokenize(Batch(x[:, t]))
        part = slice(t * n, (t + 1) * n)
        torch.testing.assert_close(tokens.patches[:, part], single.patches, equal_nan=True)
        torch.testing.assert_close(tokens.coords[:, part, :3], single.coords)
        assert tokens.groups is not None and torch.equal(tokens.groups[:, part], single.groups)  # type: ignore[arg-type]
        torch.testing.assert_close(tokens.coords[:, part, 3], (days[:, t] / 365.25)[:, None].expand(2, n))
    pos = tok.pos(tokens.coords)  # spatial (32 - 8 - 8) ‖ group (8) ‖ date (8)
    assert pos.shape == (2, 3 * n, DIM)
    date = pos[..., -8:].reshape(2, 3, n, 8)
    assert (date == date[:, :, :1]).all() and not torch.allclose(date[:, 0], date[:, 1])
    torch.testing.assert_close(date[:, :, 0], date_encoding(days / 365.25, 8))
    inner = pos[..., :-8].reshape(2, 3, n, DIM - 8)
    assert (inner == inner[:, :1]).all()  # same cell and group at another date: the same spatial ‖ group part
    week = date_encoding(torch.tensor([0.0, 7 / 365.25]), 8)
    torch.testing.assert_close(week[0, [0, 4]], week[1, [0, 4]], atol=1e-4, rtol=0)  # the fastest period: a week
    tube = create_masker(Choice("tube", TubeMaskConfig(ratio=0.5)))(tokens, torch.Generator().manual_seed(0))
    assert not isinstance(tube, list)
    hidden = torch.zeros(2, 3 * n, dtype=torch.bool).scatter_(1, tube.pred, True).reshape(2, 9, 6)
    assert (hidden == hidden[:, :1]).all()  # consistent across dates and groups
    any_tok = anyband(time_dim=8)
    a = any_tok.tokenize(Batch(x, meta={"dates": days}))
    assert a.grid == (3, 2, 3) and a.coords.shape == (2, 18, 3 + 5) and any_tok.embed(a).shape == (2, 18, DIM)
    one = tok.tokenize(Batch(x[:, 0], meta={"date": days[:, 0]}))  # a single date with a date column
    assert one.grid == (3, 2, 3) and torch.equal(one.coords, tokens.coords[:, :n])
    with pytest.raises(ConfigError, match="tokenizer.time_dim"):
        tokenizer().normalize(Batch(x))
    with pytest.raises(DataError, match="meta\\['dates'\\]"):
        tok.tokenize(Batch(x))
    with pytest.raises(DataError, match="NaN"):
        tok.tokenize(Batch(x, meta={"dates": days.clone().fill_(math.nan)}))


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("kind", ["groups", "anyband"])
def test_mae_step_card_and_copies(kind: str) -> None:
    tok = tokenizer() if kind == "groups" else anyband()
    check_tokenizer(tok, "satellite")
    backbone = Backbone(tok, Transformer(DIM, 1, 2))
    model = MAE(backbone, PatchTarget(), MAEConfig(decoder_dim=16, decoder_depth=1, decoder_heads=2))
    x = chips(h=16, w=16) * 10 + 300
    x[0, 1, :5, :5] = math.nan
    tokens = backbone.tokens(Batch(x, meta={"bands": [BANDS] * 2}))
    mask = create_masker(Choice("random", RatioConfig()))(tokens, torch.Generator().manual_seed(0))
    assert not isinstance(mask, list)
    out = model(tokens, [mask])
    assert math.isfinite(out.loss.item())
    out.loss.backward()
    assert all(p.grad is not None for p in tok.parameters())
    card = tok.card()
    json.dumps(card)
    assert card["kind"] == kind and card["bands"] == BANDS and card["wavelengths"] == [490, 560, 665, 842, 1610]
    assert card["mean"] == config().mean and "input" in card and "input_normalization" in card
    if kind == "groups":
        assert card["groups"] == GROUPS
    teacher = copy.deepcopy(backbone)  # JEPA's EMA teacher
    assert type(teacher.tokenizer) is type(tok)
    torch.testing.assert_close(teacher.encode(tokens), backbone.encode(tokens))


@pytest.mark.parametrize("make", [tokenizer, anyband])
def test_embedding_under_bf16_autocast_matches_fp32(make) -> None:  # noqa: ANN001 - a tokenizer factory
    """Mixed precision (what --precision bf16 runs): per-group / per-band-set projections stay one tensor."""
    tok = make()
    tokens = tok.tokenize(tok.normalize(Batch(input=chips() * 10 + 300)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = tok.embed(tokens)
    torch.testing.assert_close(low.float(), tok.embed(tokens), atol=0.1, rtol=0.05)
