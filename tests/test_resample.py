"""Loading a pretrained encoder at another input size: position-table resampling and the
channel-count rule (``mpt.load_encoder(path, tokenizer={...})``)."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

import mpt
import mpt.registry
from mpt.backbone import Backbone, build_backbone
from mpt.config import Config, ModelConfig, build_config
from mpt.contract import Batch, Modality, Tokenizer, TokenSet
from mpt.errors import CheckpointError, ConfigError
from mpt.pos_embed import resample_pos_table
from mpt.pretrained import adapt_channels, channel_mixing, encoder_card, save_encoder

TINY = ["model.dim=32", "model.depth=1", "model.heads=2"]


def save(tmp_path: Path, modality: str, *sets: str, name: str = "encoder") -> tuple[Path, Backbone]:
    """A randomly initialised encoder of ``modality`` saved as ``tmp_path/name`` (and the backbone)."""
    mod = mpt.get_modality(modality)
    cfg = build_config(mod, sets=[*TINY, *sets])
    torch.manual_seed(0)
    backbone = build_backbone(mod, cfg.tokenizer, cfg.model).eval()
    return save_encoder(backbone, encoder_card(cfg, backbone, {"data": "test"}), tmp_path / name), backbone


def load(path: Path, **overrides: Any) -> Backbone:
    """``mpt.load_encoder`` with overrides, expecting one adaptation warning per adapted tensor."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = mpt.load_encoder(path, tokenizer=overrides)
    notes = [str(w.message) for w in caught]
    assert len(notes) >= len(enc.adapted) and all(any(n.startswith(k) for n in notes) for k in enc.adapted)
    return enc


def features(encoder: Backbone, batch: Tensor) -> Tensor:
    with torch.no_grad():
        return encoder(batch).tokens


def grid_table(shape: tuple[int, ...], fn: Any) -> Tensor:
    """``fn(u, v, ...)`` at the cell centres ``(i + 0.5) / n`` of ``shape`` → ``[prod(shape), 1]``."""
    axes = [(torch.arange(n, dtype=torch.float64) + 0.5) / n for n in shape]
    return fn(*torch.meshgrid(*axes, indexing="ij")).reshape(-1, 1)


# --- resample_pos_table -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(7,), (3, 5), (2, 3, 4)])
def test_resample_at_the_same_size_is_the_table_itself(size: tuple[int, ...]) -> None:
    table = torch.randn(math.prod(size), 6)
    out = resample_pos_table(table, size, size)
    assert torch.equal(out, table) and out.data_ptr() != table.data_ptr()


def test_linear_resample_of_a_ramp_is_a_ramp() -> None:
    slopes = torch.tensor([1.0, -2.0, 0.5])
    table = torch.arange(10, dtype=torch.float32)[:, None] * slopes + torch.tensor([3.0, 0.0, -1.0])
    # Shrinking: every new cell centre lies between old ones, so the ramp is sampled exactly.
    small = resample_pos_table(table, (10,), (4,))
    src = (torch.arange(4) + 0.5) * 10 / 4 - 0.5
    torch.testing.assert_close(small, src[:, None] * slopes + table[0], atol=1e-5, rtol=0)
    # Growing: a ramp of slope old/new inside; the new cells outside the old end centres take the end values.
    big = resample_pos_table(table[:8], (8,), (16,))
    steps = big.diff(dim=0)
    torch.testing.assert_close(steps[1:-1], (slopes * 0.5).expand(13, 3), atol=1e-5, rtol=0)
    assert torch.equal(big[0], table[0]) and torch.equal(big[-1], table[7])


def test_2d_growth_of_a_smooth_table_stays_smooth_and_keeps_the_axes() -> None:
    def fn(u: Tensor, v: Tensor) -> Tensor:
        return torch.sin(math.pi * u) * torch.cos(math.pi * 0.5 * v) + 0.5 * u * v

    for old, new in (((14, 9), (24, 16)), ((16, 12), (24, 8)), ((9, 14), (16, 24))):  # non-square, mixed
        got = resample_pos_table(grid_table(old, fn).float(), old, new)
        want = grid_table(new, fn).float()
        nearest = F.interpolate(grid_table(old, fn).float().t().reshape(1, 1, *old), size=new).reshape(-1, 1)
        err, err_nearest = (got - want).abs().max(), (nearest - want).abs().max()
        assert err < 0.05 and err < err_nearest / 2, (old, new, float(err), float(err_nearest))
    # Row-major layout: a table that varies along one axis only still does after resampling.
    rows = grid_table((5, 7), lambda u, v: u + 0 * v).float()
    out = resample_pos_table(rows, (5, 7), (9, 4)).reshape(9, 4)
    assert torch.allclose(out, out[:, :1].expand(9, 4)) and out[:, 0].diff().min() > 0
    cols = grid_table((5, 7), lambda u, v: 0 * u + v).float()
    out = resample_pos_table(cols, (5, 7), (3, 11)).reshape(3, 11)
    assert torch.allclose(out, out[:1].expand(3, 11)) and out[0].diff().min() > 0


def test_3d_resample_and_bad_arguments() -> None:
    table = grid_table((2, 3, 4), lambda a, b, c: a + 2 * b - c).float()
    out = resample_pos_table(table, (2, 3, 4), (4, 3, 2))
    assert out.shape == (24, 1) and torch.isfinite(out).all()
    assert resample_pos_table(table.bfloat16(), (2, 3, 4), (3, 3, 3)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="table over the grid"):
        resample_pos_table(table, (2, 3, 5), (4, 3, 2))
    with pytest.raises(ValueError, match="same number"):
        resample_pos_table(table, (2, 3, 4), (24,))
    with pytest.raises(ValueError, match="1-3 axes"):
        resample_pos_table(torch.zeros(16, 2), (2, 2, 2, 2), (3, 2, 2, 2))


# --- the channel rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("old,new", [(3, 1), (3, 4), (3, 6), (3, 2), (1, 3), (4, 4)])
def test_channel_rule_keeps_cyclically_repeated_inputs(old: int, new: int) -> None:
    mix = channel_mixing(old, new)
    assert torch.allclose(mix.sum(0), torch.ones(old, dtype=torch.float64))  # constant input: same output
    w = torch.randn(5, old, 4)
    out = adapt_channels(w, new, dim=1)
    assert out.shape == (5, new, 4)
    if new >= old:  # an input whose new channels repeat the old ones gives the same output
        x = torch.randn(old, 4)
        torch.testing.assert_close(torch.einsum("dcp,cp->d", out, x[torch.arange(new) % old]),
                                   torch.einsum("dcp,cp->d", w, x))
    if new == 1:
        torch.testing.assert_close(out[:, 0], w.sum(1))
    if new % old == 0:  # timm's adapt_input_conv: repeat and scale by C_old / C_new
        torch.testing.assert_close(out, w.repeat(1, new // old, 1) * old / new)


# --- load_encoder: time series --------------------------------------------------------------------


def test_timeseries_learned_table_resampled_to_a_longer_context(tmp_path: Path) -> None:
    path, trained = save(tmp_path, "timeseries", "tokenizer.pos=learned", "tokenizer.max_len=96",
                         "tokenizer.patch=12", "tokenizer.stride=12")
    x96 = torch.randn(2, 3, 96).cumsum(-1)
    x192 = torch.randn(2, 3, 192).cumsum(-1)
    plain = mpt.load_encoder(path)
    assert plain.adapted == []
    with pytest.raises(ValueError, match="exceed the learned position table"):
        plain(x192)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same size: nothing adapted, nothing said
        same = mpt.load_encoder(path, tokenizer={"max_len": 96})
    assert same.adapted == []
    assert torch.equal(features(same, x96), features(plain, x96))
    torch.testing.assert_close(features(plain, x96), features(trained, x96), atol=1e-6, rtol=0)

    with pytest.warns(UserWarning, match=r"position table resampled from \(8,\) to \(16,\)"):
        longer = mpt.load_encoder(path, tokenizer={"max_len": 192})
    assert longer.adapted == ["tokenizer.pos.table"]
    assert longer.tokenizer.pos_size == (16,)
    out = features(longer, x192)
    assert out.shape == (2, 3 * 16, 32) and torch.isfinite(out).all()
    old, new = trained.tokenizer.pos.table.detach(), longer.tokenizer.pos.table
    assert torch.equal(new[0], old[0]) and torch.equal(new[-1], old[-1])  # the ends map onto the old ends
    torch.testing.assert_close(new[1], 0.75 * old[0] + 0.25 * old[1])  # cell 1 of 16 sits at 0.25 of the old grid
    torch.testing.assert_close(new, resample_pos_table(old, (8,), (16,)))
    # Everything outside the position table is the saved encoder's.
    for k, v in trained.state_dict().items():
        if k != "tokenizer.pos.table":
            assert torch.equal(longer.state_dict()[k], v), k

    with pytest.warns(UserWarning, match=r"from \(8,\) to \(4,\)"):
        shorter = mpt.load_encoder(path, tokenizer={"max_len": 48})
    assert features(shorter, x96[..., :48]).shape == (2, 3 * 4, 32)


def test_timeseries_mixed_channel_count(tmp_path: Path) -> None:
    path, trained = save(tmp_path, "timeseries", "tokenizer.channels=mixed", "tokenizer.num_channels=3",
                         "tokenizer.patch=10", "tokenizer.stride=10")
    x = torch.randn(2, 3, 60).cumsum(-1)
    want = features(trained, x)
    with pytest.warns(UserWarning, match=r"tokenizer.proj.weight: adapted from \(32, 30\) to \(32, 50\)"):
        five = mpt.load_encoder(path, tokenizer={"num_channels": 5})
    assert five.adapted == ["tokenizer.proj.weight"]
    torch.testing.assert_close(features(five, x[:, [0, 1, 2, 0, 1]]), want, atol=1e-5, rtol=1e-5)
    grey = x[:, :1]
    one = load(path, num_channels=1)
    torch.testing.assert_close(features(one, grey), features(trained, grey.expand(-1, 3, -1)), atol=1e-5, rtol=1e-5)
    # Fewer channels fold: channel 2 is added into channel 0, exact when they carry the same series.
    folded = x.clone()
    folded[:, 2] = folded[:, 0]
    two = load(path, num_channels=2)
    torch.testing.assert_close(features(two, folded[:, :2]), features(trained, folded), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="tokenizer.num_channels"):
        features(five, x)  # the adapted encoder takes the new count only


def test_timeseries_unsupported_changes_name_the_key(tmp_path: Path) -> None:
    path, _ = save(tmp_path, "timeseries", "tokenizer.patch=12", "tokenizer.stride=12")
    with pytest.raises(ConfigError, match="tokenizer.patch") as err:
        mpt.load_encoder(path, tokenizer={"patch": 6, "stride": 6})
    assert err.value.key == "tokenizer.patch"
    with pytest.raises(ConfigError, match="tokenizer.channels"):
        mpt.load_encoder(path, tokenizer={"channels": "mixed", "num_channels": 3})
    with pytest.raises(CheckpointError, match=r"tokenizer.pos: 'sincos' -> 'learned'.*new: \['tokenizer.pos.table'\]"):
        mpt.load_encoder(path, tokenizer={"pos": "learned"})  # a tensor the saved encoder does not have
    with pytest.raises(ConfigError, match="tokenizer.max_lenn") as err:
        mpt.load_encoder(path, tokenizer={"max_lenn": 1024})
    assert err.value.key == "tokenizer.max_lenn"
    with pytest.raises(ConfigError, match="tokenizer.max_len"):
        mpt.load_encoder(path, tokenizer={"max_len": 0})
    with pytest.raises(ConfigError, match="mapping"):
        mpt.load_encoder(path, tokenizer=[("max_len", 10)])  # type: ignore[arg-type]
    # independent channels: any count already works, nothing to adapt
    enc = mpt.load_encoder(path, tokenizer={"num_channels": 7})
    assert enc.adapted == [] and features(enc, torch.randn(1, 7, 48)).shape == (1, 7 * 4, 32)


# --- load_encoder: images -----------------------------------------------------------------------

EVEN = ["tokenizer.patch=8", "tokenizer.channels=3", "tokenizer.mean=[0.5,0.5,0.5]", "tokenizer.std=[0.25,0.25,0.25]"]


def test_image_rgb_encoder_loaded_for_grey_images(tmp_path: Path) -> None:
    path, trained = save(tmp_path, "image", *EVEN)
    grey = torch.rand(2, 1, 32, 24)
    with pytest.warns(UserWarning, match=r"tokenizer.proj.weight: adapted from \(32, 192\) to \(32, 64\)"):
        one = mpt.load_encoder(path, tokenizer={"channels": 1, "mean": [0.5], "std": [0.25]})
    assert one.adapted == ["tokenizer.proj.weight"] and one.tokenizer.channels == 1
    torch.testing.assert_close(one.tokenizer.proj.weight, trained.tokenizer.proj.weight.reshape(32, 3, 64).sum(1))
    torch.testing.assert_close(features(one, grey), features(trained, grey.expand(-1, 3, -1, -1)),
                               atol=1e-5, rtol=1e-5)


def test_image_three_to_four_bands(tmp_path: Path) -> None:
    path, trained = save(tmp_path, "image", *EVEN)
    four = load(path, channels=4, mean=[0.5] * 4, std=[0.25] * 4)
    const = torch.full((2, 3, 16, 16), 0.3)
    torch.testing.assert_close(features(four, torch.full((2, 4, 16, 16), 0.3)), features(trained, const),
                               atol=1e-5, rtol=1e-5)
    rgb = torch.rand(2, 3, 16, 16)  # a 4th band that repeats the 1st: the RGB features exactly
    torch.testing.assert_close(features(four, rgb[:, [0, 1, 2, 0]]), features(trained, rgb), atol=1e-5, rtol=1e-5)


def test_image_channel_change_and_normalisation_statistics(tmp_path: Path) -> None:
    # The card's per-channel statistics do not fit another count: they must be given ...
    explicit, _ = save(tmp_path, "image", *EVEN)
    with pytest.raises(ConfigError, match="tokenizer.mean.*overrides") as err:
        mpt.load_encoder(explicit, tokenizer={"channels": 1})
    assert err.value.key == "tokenizer.mean"
    # ... unless the encoder was trained with the defaults: then the new count's defaults apply, said aloud.
    default, _ = save(tmp_path, "image", "tokenizer.patch=8", name="default")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one = mpt.load_encoder(default, tokenizer={"channels": 1})
    notes = [str(w.message) for w in caught]
    assert any(re.search(r"tokenizer.mean/std not given for 1 channels.*mean \[0.5\], std \[0.25\]", n)
               for n in notes), notes
    assert any(n.startswith("tokenizer.proj.weight: adapted") for n in notes), notes
    assert one.tokenizer.stats == ([0.5], [0.25])
    with pytest.raises(ConfigError, match="tokenizer.patch"):
        mpt.load_encoder(default, tokenizer={"patch": 4})
    with pytest.raises(ConfigError, match="tokenizer.chanels"):
        mpt.load_encoder(default, tokenizer={"chanels": 1})


# --- load_encoder: point clouds ------------------------------------------------------------------

PC = ["tokenizer.num_groups=8", "tokenizer.group_size=8", "tokenizer.hidden=32"]


def test_pointcloud_feature_count(tmp_path: Path) -> None:
    path, trained = save(tmp_path, "pointcloud", *PC, "tokenizer.features=2")
    cloud = torch.randn(2, 128, 5)
    want = features(trained, cloud)
    four = load(path, features=4)
    assert four.adapted == ["tokenizer.first.0.weight"]
    torch.testing.assert_close(features(four, cloud[..., [0, 1, 2, 3, 4, 3, 4]]), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="tokenizer.features"):
        mpt.load_encoder(path, tokenizer={"features": 0})
    # From an xyz-only encoder, new feature columns start at zero: the same encoder, whatever the features.
    xyz, xyz_trained = save(tmp_path, "pointcloud", *PC, name="xyz")
    with_f = load(xyz, features=3)
    torch.testing.assert_close(features(with_f, torch.cat([cloud[..., :3], torch.randn(2, 128, 3)], -1)),
                               features(xyz_trained, cloud[..., :3]), atol=1e-5, rtol=1e-5)
    # A change no rule covers: the default hook names the tensor, the shapes and the setting.
    with pytest.raises(CheckpointError, match=r"tokenizer.first.0.weight.*\(16, 3\).*\(32, 3\).*tokenizer.hidden"):
        mpt.load_encoder(xyz, tokenizer={"hidden": 64})


# --- strictness ---------------------------------------------------------------------------------


def test_a_file_that_does_not_match_its_card_fails_with_or_without_overrides(tmp_path: Path) -> None:
    path, _ = save(tmp_path, "timeseries", "tokenizer.pos=learned", "tokenizer.max_len=96",
                   "tokenizer.patch=12", "tokenizer.stride=12")
    weights = load_file(str(path / "model.safetensors"))
    weights["tokenizer.pos.table"] = torch.zeros(16, 32)  # a table the card does not describe
    save_file(weights, str(path / "model.safetensors"))
    for overrides in (None, {"max_len": 192}):
        with pytest.raises(CheckpointError, match=r"does not match its card.*tokenizer.pos.table: file \(16, 32\)"):
            mpt.load_encoder(path, tokenizer=overrides)


# --- a 2-D learned grid (toy modality) ----------------------------------------------------------


@dataclass
class GridConfig:
    rows: int = 4
    cols: int = 6


class GridTokenizer(Tokenizer):
    """``[B, rows, cols]`` → one token per cell, learned 2-D positions over ``(rows, cols)``."""

    coord_dim = 2
    pos_kind = "learned"
    grid_axes = 2

    def __init__(self, config: GridConfig, dim: int) -> None:
        self.patch_shape = (1,)
        super().__init__(dim, (config.rows, config.cols))
        self.proj = nn.Linear(1, dim)

    def tokenize(self, batch: Batch) -> TokenSet:
        x = batch.tensor
        b, r, c = x.shape
        rr, cc = torch.meshgrid(torch.arange(r), torch.arange(c), indexing="ij")
        coords = torch.stack([rr, cc], -1).reshape(1, r * c, 2).float().expand(b, -1, -1)
        return TokenSet(patches=x.reshape(b, r * c, 1), coords=coords, grid=(r, c))

    def embed(self, tokens: TokenSet) -> Tensor:
        return self.proj(tokens.patches)

    def card(self) -> dict[str, Any]:
        return {}


class GridModality(Modality):
    name = "toygrid"
    data_config = GridConfig
    tokenizer_config = GridConfig

    def tokenizer(self, config: GridConfig, dim: int) -> Tokenizer:
        return GridTokenizer(config, dim)


def test_2d_learned_grid_resampled_even_when_the_table_keeps_its_shape(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(mpt.registry._loaded, "toygrid", GridModality())
    cfg = Config(modality="toygrid", data=GridConfig(), tokenizer=GridConfig(), model=ModelConfig(dim=16, depth=1,
                                                                                                  heads=2))
    torch.manual_seed(0)
    trained = build_backbone(GridModality(), cfg.tokenizer, cfg.model).eval()
    path = save_encoder(trained, encoder_card(cfg, trained, {}), tmp_path / "grid")
    table = trained.tokenizer.pos.table.detach()
    with pytest.warns(UserWarning, match=r"resampled from \(4, 6\) to \(6, 4\) \(bicubic"):
        turned = mpt.load_encoder(path, tokenizer={"rows": 6, "cols": 4})  # same [24, D] table, other grid
    assert turned.adapted == ["tokenizer.pos.table"]
    torch.testing.assert_close(turned.tokenizer.pos.table, resample_pos_table(table, (4, 6), (6, 4)))
    assert not torch.allclose(turned.tokenizer.pos.table, table)
    big = load(path, rows=8, cols=12)
    assert features(big, torch.randn(2, 8, 12)).shape == (2, 96, 16)
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(features(load(path, rows=4, cols=6), x), features(trained, x), atol=0, rtol=0)
