"""The ViT tokenizer: patch layout, conv-stem equivalence, any channel count and size, normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mpt
from mpt.backbone import build_backbone
from mpt.config import build_config, parse
from mpt.contract import Batch, TokenSet
from mpt.errors import ConfigError, DataError
from mpt.masking import random_mask
from mpt.pixels import IMAGENET_MEAN, IMAGENET_STD
from mpt_image.config import ImageTokenizerConfig
from mpt_image.tokenizer import ImageTokenizer, patchify, unpatchify


def tokenizer(dim: int = 32, **values: object) -> ImageTokenizer:
    return ImageTokenizer(parse(ImageTokenizerConfig, values, "tokenizer"), dim)


def cut(tok: ImageTokenizer, x: torch.Tensor) -> TokenSet:
    """What the core does with a raw batch: ``normalize`` then ``tokenize``."""
    return tok.tokenize(tok.normalize(Batch(x)))


def test_patchify_unpatchify_round_trip_and_layout() -> None:
    x = torch.rand(2, 3, 48, 80)
    p = patchify(x, 8)
    assert p.shape == (2, 60, 3, 8, 8)
    assert torch.equal(unpatchify(p, (6, 10)), x)
    k = 2 * 10 + 7  # row-major: patch (2, 7)
    assert torch.equal(p[1, k], x[1, :, 16:24, 56:64])
    with pytest.raises(ValueError, match="does not hold"):
        unpatchify(p, (5, 10))


def test_embed_is_the_vit_conv_stem() -> None:
    tok = tokenizer(dim=24, patch=4, channels=3)
    x = torch.rand(2, 3, 12, 16)
    tokens = cut(tok, x)
    conv = F.conv2d(tok.standardize(x), tok.proj.weight.view(24, 3, 4, 4), tok.proj.bias, stride=4)
    assert torch.allclose(tok.embed(tokens), conv.flatten(2).transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_any_channel_count_end_to_end(channels: int) -> None:
    tok = tokenizer(dim=16, patch=8, channels=channels)
    x = torch.rand(3, channels, 32, 24)
    tokens = cut(tok, x)
    assert tokens.patches.shape == (3, 12, channels, 8, 8) and tokens.grid == (4, 3)
    assert tokens.patch_shape == tok.patch_shape == (channels, 8, 8)
    mask = random_mask(tokens, torch.Generator().manual_seed(0), ratio=0.75)
    visible = tokens.select(mask.keep)
    h = tok.embed(visible) + tok.pos(visible.coords)
    assert h.shape == (3, 3, 16) and torch.isfinite(h).all()
    h.sum().backward()
    assert tok.proj.weight.grad is not None and tok.proj.weight.grad.abs().sum() > 0
    mean = [0.485, 0.456, 0.406] if channels == 3 else [0.5] * channels
    assert tok.card()["mean"] == pytest.approx(mean) and tok.card()["channels"] == channels


def test_non_square_images_get_their_grid_and_distinct_positions() -> None:
    tok = tokenizer(dim=64, patch=8)
    tokens = cut(tok, torch.rand(2, 3, 48, 80))
    assert tokens.grid == (6, 10) and tokens.num_tokens == 60
    cells = {tuple(int(v) for v in rc) for rc in tokens.coords[1]}
    assert cells == {(r, c) for r in range(6) for c in range(10)}
    assert tokens.coords[0, 11].tolist() == [1.0, 1.0]  # row-major, (row, col)
    pos = tok.pos(tokens.coords[0])
    assert pos.shape == (60, 64)
    gaps = torch.cdist(pos, pos) + torch.eye(60) * 1e3
    assert gaps.min() > 0.1  # every cell of the 6×10 grid has its own position


def mae_2d_table(d: int, rows: int, cols: int) -> np.ndarray:
    """MAE's ``get_2d_sincos_pos_embed`` (util/pos_embed.py) re-derived: ``meshgrid(grid_w, grid_h)``
    (xy indexing), first half of the width from ``grid[0]`` (the column), second from ``grid[1]``."""
    def one_d(width: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float64) / (width / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    return np.concatenate([one_d(d // 2, grid[0]), one_d(d // 2, grid[1])], axis=1)


@pytest.mark.parametrize(("size", "grid"), [((224, 224), (14, 14)), ((48, 80), (3, 5))])
def test_positions_are_the_mae_table(size: tuple[int, int], grid: tuple[int, int]) -> None:
    tok = tokenizer(dim=768, patch=16)
    tokens = cut(tok, torch.rand(1, 3, *size))
    assert tokens.grid == grid
    pos = tok.pos(tokens.coords)[0].double().numpy()
    np.testing.assert_allclose(pos, mae_2d_table(768, *grid), atol=1e-5)


def test_declared_patch_shape_and_grid_axes() -> None:
    """PLUGIN_API 2: the model is sized from the config, never from data."""
    tok = tokenizer(patch=14, channels=2)
    assert tok.patch_shape == (2, 14, 14) and ImageTokenizer.grid_axes == 2
    assert cut(tok, torch.rand(1, 2, 28, 42)).patch_shape == tok.patch_shape


@pytest.mark.parametrize("step", ["normalize", "tokenize"])
def test_sizes_and_channels_that_do_not_fit_are_clear_errors(step: str) -> None:
    tok = tokenizer(patch=16)
    run = tok.normalize if step == "normalize" else tok.tokenize
    with pytest.raises(DataError, match=r"50×64 pixels .* multiples of 16 .* 48×64"):
        run(Batch(torch.rand(1, 3, 50, 64)))
    with pytest.raises(ConfigError, match="tokenizer.channels") as info:
        run(Batch(torch.rand(1, 1, 32, 32)))
    assert "batch has 1 channels" in str(info.value)
    with pytest.raises(DataError, match=r"\[B, C, H, W\]"):
        run(Batch(torch.rand(3, 32, 32)))


def test_normalize_standardises_each_channel_and_tokenize_does_not() -> None:
    x = torch.empty(1, 3, 16, 16)
    x[0, 0], x[0, 1], x[0, 2] = 0.0, 0.5, 1.0
    patches = cut(tokenizer(patch=8), x).patches  # [1, 4, 3, 8, 8]
    expected = [(v - m) / s for v, m, s in zip((0.0, 0.5, 1.0), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    for c in range(3):
        assert torch.allclose(patches[0, :, c], torch.tensor(expected[c]), atol=1e-6)
    grey = cut(tokenizer(patch=8, channels=1), torch.full((1, 1, 8, 8), 0.75)).patches
    assert torch.allclose(grey, torch.tensor(1.0))  # (0.75 - 0.5) / 0.25
    own = cut(tokenizer(patch=8, channels=2, mean=[0.1, 0.2], std=[0.5, 2.0]), torch.ones(1, 2, 8, 8)).patches
    assert torch.allclose(own[0, 0, 0], torch.tensor(1.8)) and torch.allclose(own[0, 0, 1], torch.tensor(0.4))
    raw = torch.rand(2, 3, 16, 24)
    assert torch.equal(tokenizer(patch=8).tokenize(Batch(raw)).patches, patchify(raw, 8))  # no second normalisation


def test_normalize_checks_raw_pixels_for_encoder_users() -> None:
    tok = tokenizer()
    x = torch.rand(1, 3, 16, 16)
    batch = Batch(x, meta={"gsd": torch.tensor([0.5])}, sources=["a.png"], labels=torch.tensor([2]))
    out = tok.normalize(batch)
    assert torch.allclose(out.tensor, tok.standardize(x)) and torch.equal(batch.tensor, x)  # a new batch
    assert out.sources == ["a.png"] and torch.equal(out.labels, batch.labels) and "gsd" in out.meta
    with pytest.raises(DataError, match="float pixels"):
        tok.normalize(Batch((x * 255).to(torch.uint8)))
    with pytest.raises(DataError, match="not 0-255"):
        tok.normalize(Batch(x * 255))
    with pytest.raises(DataError, match="mean/std-normalised"):
        tok.normalize(Batch((x - 0.45) / 0.225))


def test_the_core_normalizes_raw_batches_before_tokenize() -> None:
    """Backbone.tokens (training, feature extraction, load_encoder) calls normalize, then tokenize."""
    modality = mpt.get_modality("image")
    cfg = build_config(modality, "demo", sets=("data.size=32", "tokenizer.patch=8", "model.dim=32",
                                                "model.depth=1", "model.heads=2"))
    backbone = build_backbone(modality, cfg.tokenizer, cfg.model)
    x = torch.rand(2, 3, 32, 32)
    for raw in (x, Batch(x)):
        tokens = backbone.tokens(raw)
        assert torch.allclose(tokens.patches, patchify(backbone.tokenizer.standardize(x), 8))
    with pytest.raises(DataError, match="not 0-255"):
        backbone(x * 255)


def test_bad_statistics_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="tokenizer.mean.*2 values for 3 channels"):
        tokenizer(mean=[0.5, 0.5])
    with pytest.raises(ConfigError, match="tokenizer.std"):
        tokenizer(channels=1, std=[0.0])


def test_card_is_json_and_describes_the_input() -> None:
    card = tokenizer(patch=14).card()
    json.dumps(card)
    assert card["patch"] == 14 and card["std"] == pytest.approx(list(IMAGENET_STD))
    assert "[0, 1]" in card["input"] and "normalize" in card["input_normalization"]
