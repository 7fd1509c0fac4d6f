"""Tubelets, positions, normalisation checks and the masks of the paper recipes on the video grid."""

from __future__ import annotations

import math

import pytest
import torch

from mpt.config import make_choice
from mpt.contract import Batch
from mpt.errors import ConfigError, DataError
from mpt.masking import create_masker
from mpt.pos_embed import sincos_nd
from mpt_video.config import VideoTokenizerConfig
from mpt_video.tokenizer import VideoTokenizer, tubeletify, untubeletify


def test_tubelets_are_the_conv3d_windows_in_time_row_col_order() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 8, 12)  # [B, C, T, H, W]
    tub = tubeletify(x, 2, 4)  # grid (2, 2, 3)
    assert tub.shape == (2, 12, 3, 2, 4, 4)
    for n, (t, r, c) in enumerate((t, r, c) for t in range(2) for r in range(2) for c in range(3)):
        want = x[:, :, 2 * t : 2 * t + 2, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
        torch.testing.assert_close(tub[:, n], want)
    torch.testing.assert_close(untubeletify(tub, (2, 2, 3)), x)
    # the Linear stem equals Conv3d with its weight reshaped (VideoMAE's PatchEmbed)
    tok = VideoTokenizer(VideoTokenizerConfig(tubelet=2, patch=4), dim=16)
    conv = torch.nn.functional.conv3d(x, tok.proj.weight.view(16, 3, 2, 4, 4), tok.proj.bias, stride=(2, 4, 4))
    emb = tok.embed(tok.tokenize(Batch(input=x)))
    torch.testing.assert_close(emb, conv.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_coords_grid_and_mae_axis_convention_of_the_positions() -> None:
    tok = VideoTokenizer(VideoTokenizerConfig(tubelet=2, patch=8), dim=48)
    tokens = tok.tokenize(Batch(input=torch.rand(1, 3, 4, 16, 24)))
    assert tokens.grid == (2, 2, 3) and tokens.patch_shape == (3, 2, 8, 8) == tok.patch_shape
    assert tokens.coords[0, 7].tolist() == [1.0, 0.0, 1.0]  # token 7 = (t 1, row 0, col 1)
    pos = tok.pos(tokens.coords)[0]

    def one_axis(v: float, d: int = 16) -> torch.Tensor:  # MAE get_1d_sincos_pos_embed_from_grid
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        return torch.cat([torch.sin(v * omega), torch.cos(v * omega)]).float()

    want = torch.cat([one_axis(1.0), one_axis(0.0), one_axis(1.0)])  # column, row, then time
    torch.testing.assert_close(pos[7], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pos, sincos_nd(tokens.coords[0], 48))


def test_normalize_applies_imagenet_stats_and_refuses_bad_input() -> None:
    tok = VideoTokenizer(VideoTokenizerConfig(tubelet=2, patch=4), dim=16)
    x = torch.full((1, 3, 2, 4, 4), 0.5)
    out = tok.normalize(Batch(input=x)).tensor
    torch.testing.assert_close(out[0, :, 0, 0, 0], (0.5 - torch.tensor([0.485, 0.456, 0.406])) /
                               torch.tensor([0.229, 0.224, 0.225]))
    torch.testing.assert_close(tok.unstandardize(out), x)
    with pytest.raises(DataError, match="0-255"):
        tok.normalize(Batch(input=x * 255))
    with pytest.raises(DataError, match="uint8"):
        tok.normalize(Batch(input=(x * 255).to(torch.uint8)))
    with pytest.raises(DataError, match="NaN or Inf"):
        tok.normalize(Batch(input=x.clone().index_fill_(2, torch.tensor([1]), math.nan)))
    with pytest.raises(DataError, match=r"\[B, C, T, H, W\]"):
        tok.normalize(Batch(input=x[0]))
    with pytest.raises(DataError, match="multiple of 2"):
        tok.normalize(Batch(input=torch.rand(1, 3, 3, 4, 4)))
    with pytest.raises(DataError, match="multiple of 4"):
        tok.normalize(Batch(input=torch.rand(1, 3, 2, 6, 4)))
    with pytest.raises(ConfigError, match="tokenizer.channels"):
        tok.normalize(Batch(input=torch.rand(1, 1, 2, 4, 4)))
    with pytest.raises(ConfigError, match="RGB .3. or grey .1."):
        VideoTokenizer(VideoTokenizerConfig(channels=2), dim=16)
    grey = VideoTokenizer(VideoTokenizerConfig(tubelet=2, patch=4, channels=1), dim=16)
    assert grey.patch_shape == (1, 2, 4, 4) and grey.stats == ([0.5], [0.25])


def _masks(spec: dict, grid: tuple[int, int, int], batch: int = 3, seed: int = 0) -> list:
    tok = VideoTokenizer(VideoTokenizerConfig(tubelet=2, patch=16), dim=24)
    tokens = tok.tokenize(Batch(input=torch.zeros(batch, 3, 2 * grid[0], 16 * grid[1], 16 * grid[2])))
    masker = create_masker(make_choice("maskers", spec.pop("name"), spec, "mae.mask"))
    out = masker(tokens, torch.Generator().manual_seed(seed))
    return out if isinstance(out, list) else [out]


def test_videomae_tube_masking_on_the_16x224_grid() -> None:
    (mask,) = _masks({"name": "tube", "ratio": 0.9}, (8, 14, 14))
    assert mask.pred.shape == (3, 8 * int(196 * 0.9))  # 176 of 196 cells at each of the 8 time slots
    hidden = torch.zeros(3, 8 * 196, dtype=torch.bool).scatter_(1, mask.pred, True).view(3, 8, 196)
    assert bool((hidden == hidden[:, :1]).all())  # the same cells at every time step: tubes
    (again,) = _masks({"name": "tube", "ratio": 0.9}, (8, 14, 14))
    assert torch.equal(again.pred, mask.pred)  # a pure function of the generator


def test_videomae_v2_running_cell_decoder_keeps_half_of_every_frame() -> None:
    (mask,) = _masks({"name": "dual", "encoder": {"name": "tube", "ratio": 0.9}, "decoder_ratio": 0.5}, (8, 14, 14))
    targets = mask.targets()
    assert mask.decode is not None and targets.shape[0] == 3
    kept = torch.zeros(3, 8 * 196, dtype=torch.bool).scatter_(1, mask.decode, True)
    hidden = torch.zeros(3, 8 * 196, dtype=torch.bool).scatter_(1, mask.pred, True)
    assert bool((kept & hidden).sum(1).eq(targets.shape[1]).all())  # the loss: hidden and decoder-kept
    assert targets.shape[1] == pytest.approx(0.5 * 8 * 176, rel=0.05)


def test_vjepa_multiblock_masks_span_every_frame() -> None:
    masks = _masks({"name": "multiblock_families"}, (8, 14, 14))
    assert len(masks) == 2  # short-range (8 × 0.15) and long-range (2 × 0.7) families
    for mask in masks:
        hidden = torch.zeros(3, 8 * 196, dtype=torch.bool).scatter_(1, mask.pred, True).view(3, 8, 196)
        seen = torch.zeros(3, 8 * 196, dtype=torch.bool).scatter_(1, mask.keep, True).view(3, 8, 196)
        assert bool(hidden.any(dim=2).all())  # temporal scale 1.0: every frame has predicted tokens
        # blocks span all frames: the context sees no frame of a block's cells (counts are equalised
        # across the batch by dropping predicted tokens, as V-JEPA's collator truncates them)
        assert not bool((seen & hidden.any(dim=1, keepdim=True)).any())
    assert masks[1].pred.shape[1] > masks[0].pred.shape[1]

