"""The ViT tokenizer: patch layout, conv-stem equivalence, any channel count and size, normalisation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mpt.config import parse
from mpt.errors import ConfigError, DataError
from mpt.masking import random_mask
from mpt_image.config import IMAGENET_MEAN, IMAGENET_STD, ImageTokenizerConfig
from mpt_image.tokenizer import ImageTokenizer, patchify, unpatchify


def tokenizer(dim: int = 32, **values: object) -> ImageTokenizer:
    return ImageTokenizer(parse(ImageTokenizerConfig, values, "tokenizer"), dim)


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
    tokens = tok.tokenize(x)
    conv = F.conv2d(tok.standardize(x), tok.proj.weight.view(24, 3, 4, 4), tok.proj.bias, stride=4)
    assert torch.allclose(tok.embed(tokens.patches), conv.flatten(2).transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_any_channel_count_end_to_end(channels: int) -> None:
    tok = tokenizer(dim=16, patch=8, channels=channels)
    x = torch.rand(3, channels, 32, 24)
    tokens = tok.tokenize(x)
    assert tokens.patches.shape == (3, 12, channels, 8, 8) and tokens.grid == (4, 3)
    mask = random_mask(tokens, torch.Generator().manual_seed(0), ratio=0.75)
    visible = tokens.select(mask.keep)
    h = tok.embed(visible.patches) + tok.pos(visible.coords)
    assert h.shape == (3, 3, 16) and torch.isfinite(h).all()
    h.sum().backward()
    assert tok.proj.weight.grad is not None and tok.proj.weight.grad.abs().sum() > 0
    mean = [0.485, 0.456, 0.406] if channels == 3 else [0.5] * channels
    assert tok.card()["mean"] == pytest.approx(mean) and tok.card()["channels"] == channels


def test_non_square_images_get_their_grid_and_distinct_positions() -> None:
    tok = tokenizer(dim=64, patch=8)
    tokens = tok.tokenize(torch.rand(2, 3, 48, 80))
    assert tokens.grid == (6, 10) and tokens.num_tokens == 60
    cells = {tuple(int(v) for v in rc) for rc in tokens.coords[1]}
    assert cells == {(r, c) for r in range(6) for c in range(10)}
    assert tokens.coords[0, 11].tolist() == [1.0, 1.0]  # row-major, (row, col)
    pos = tok.pos(tokens.coords[0])
    assert pos.shape == (60, 64)
    gaps = torch.cdist(pos, pos) + torch.eye(60) * 1e3
    assert gaps.min() > 0.1  # every cell of the 6×10 grid has its own position


def test_sizes_and_channels_that_do_not_fit_are_clear_errors() -> None:
    tok = tokenizer(patch=16)
    with pytest.raises(DataError, match=r"50×64 pixels .* multiples of 16 .* 48×64"):
        tok.tokenize(torch.rand(1, 3, 50, 64))
    with pytest.raises(ConfigError, match="tokenizer.channels") as info:
        tok.tokenize(torch.rand(1, 1, 32, 32))
    assert "batch has 1 channels" in str(info.value)
    with pytest.raises(DataError, match=r"\[B, C, H, W\]"):
        tok.tokenize(torch.rand(3, 32, 32))


def test_tokenize_standardises_each_channel() -> None:
    x = torch.empty(1, 3, 16, 16)
    x[0, 0], x[0, 1], x[0, 2] = 0.0, 0.5, 1.0
    patches = tokenizer(patch=8).tokenize(x).patches  # [1, 4, 3, 8, 8]
    expected = [(v - m) / s for v, m, s in zip((0.0, 0.5, 1.0), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    for c in range(3):
        assert torch.allclose(patches[0, :, c], torch.tensor(expected[c]), atol=1e-6)
    grey = tokenizer(patch=8, channels=1).tokenize(torch.full((1, 1, 8, 8), 0.75)).patches
    assert torch.allclose(grey, torch.tensor(1.0))  # (0.75 - 0.5) / 0.25
    own = tokenizer(patch=8, channels=2, mean=[0.1, 0.2], std=[0.5, 2.0]).tokenize(torch.ones(1, 2, 8, 8)).patches
    assert torch.allclose(own[0, 0, 0], torch.tensor(1.8)) and torch.allclose(own[0, 0, 1], torch.tensor(0.4))


def test_bad_statistics_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="tokenizer.mean.*2 values for 3 channels"):
        tokenizer(mean=[0.5, 0.5])
    with pytest.raises(ConfigError, match="tokenizer.std"):
        tokenizer(channels=1, std=[0.0])


def test_normalize_checks_raw_pixels_for_encoder_users() -> None:
    tok = tokenizer()
    x = torch.rand(1, 3, 16, 16)
    assert tok.normalize(x) is x  # tokenize applies mean/std: nothing to do here
    with pytest.raises(DataError, match="float pixels"):
        tok.normalize((x * 255).to(torch.uint8))
    with pytest.raises(DataError, match="not 0-255"):
        tok.normalize(x * 255)
    with pytest.raises(DataError, match="mean/std-normalised"):
        tok.normalize((x - 0.45) / 0.225)


def test_card_is_json_and_describes_the_input() -> None:
    card = tokenizer(patch=14).card()
    json.dumps(card)
    assert card["patch"] == 14 and card["std"] == pytest.approx(list(IMAGENET_STD))
    assert "[0, 1]" in card["input"]
