"""Tubelet tokenizer (VideoMAE, Tong et al. NeurIPS 2022, ``modeling_pretrain.py``: ``PatchEmbed`` =
``Conv3d(C, D, kernel=(t, p, p), stride=(t, p, p))``; V-JEPA tokenizes the same way).

A raw batch (``batch.tensor``) is ``[B, C, T, H, W]`` float pixels in [0, 1] — VideoMAE's layout —
with T a multiple of the tubelet and H, W multiples of the patch. The core calls ``normalize``
(a check of the raw pixels, then ``(x - mean) / std`` per channel) and then ``tokenize``
(``t × p × p`` tubelets of the normalised pixels on the ``(T/t, H/p, W/p)`` grid, time-major), in
training and in :func:`mpt.load_encoder` alike. ``embed`` is ``Linear(C·t·p·p → D)`` on the tubelet
flattened channel-first: the Conv3d stem with its weight reshaped to ``[D, C·t·p·p]``.

Positions: coords are (time, row, col) tubelet indices and the core's fixed sin-cos
(:func:`mpt.pos_embed.sincos_nd`) encodes them in MAE's axis convention — the last axis first: the
column in the first third of the width, the row in the second, time in the third (MAE's 2-D table
extended by one axis, as MAE-ST's separable embedding orders space before time). VideoMAE itself
uses a 1-D sinusoid over the flattened token index; the 3-D form needs no table, so any clip length
or frame size works without interpolation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mpt.contract import Batch, Tokenizer, TokenSet
from mpt.errors import ConfigError, DataError
from mpt.patches import patchify, unpatchify
from mpt.pixels import PixelNorm, channel_stats, check_pixels
from mpt_video.config import VideoTokenizerConfig


def tubeletify(videos: Tensor, tubelet: int, patch: int) -> Tensor:
    """``[B, C, T, H, W]`` → ``[B, N, C, t, p, p]``, N = (T/t)·(H/p)·(W/p) in (time, row, col) order."""
    return patchify(videos, (tubelet, patch, patch))


def untubeletify(tubelets: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """Inverse of :func:`tubeletify`: ``[B, N, C, t, p, p]`` on ``grid`` (T', H', W') → ``[B, C, T, H, W]``."""
    return unpatchify(tubelets, grid)


class VideoTokenizer(Tokenizer):
    """``[B, C, T, H, W]`` in [0, 1] → (``normalize``) → tubelets ``[B, N, C, t, p, p]``, coords
    ``[B, N, 3]`` = (time, row, col) indices, ``grid = (T/t, H/p, W/p)``; ``patch_shape = (C, t, p, p)``,
    ``grid_axes = 3`` (time first: the ``tube``, ``dual`` and ``multiblock_families`` maskers apply)."""

    coord_dim = 3
    pos_kind = "sincos"
    grid_axes = 3

    def __init__(self, config: VideoTokenizerConfig, dim: int) -> None:
        c = config.channels
        if c not in (1, 3):
            raise ConfigError("tokenizer.channels", f"video tubelets are RGB (3) or grey (1), got {c}")
        mean, std = channel_stats(c, config.mean, config.std)
        self.patch_shape = (c, config.tubelet, config.patch, config.patch)
        super().__init__(dim)
        self.config = config
        self.tubelet, self.patch, self.channels = config.tubelet, config.patch, c
        self.stats = (mean, std)  # for the card
        self.pixels = PixelNorm(mean, std)
        self.proj = nn.Linear(c * config.tubelet * config.patch**2, dim)
        nn.init.xavier_uniform_(self.proj.weight)  # MAE's initialize_weights: the stem like a Linear

    def check(self, batch: Tensor) -> None:
        """A clear error for a batch this tokenizer cannot cut: wrong rank, channels or sizes."""
        if batch.ndim != 5:
            raise DataError("input batch", f"a video batch is [B, C, T, H, W], got shape {tuple(batch.shape)}")
        _, c, t, h, w = batch.shape
        if c != self.channels:
            raise ConfigError("tokenizer.channels", f"this tokenizer embeds {self.channels}-channel video, the batch "
                                                    f"has {c} channels; set data.channels={self.channels} (grey "
                                                    f"videos are converted) or pretrain with tokenizer.channels={c}")
        if t % self.tubelet:
            raise DataError("input batch", f"clips of {t} frames do not split into tubelets of {self.tubelet} frames "
                                           f"(tokenizer.tubelet): use data.frames = a multiple of {self.tubelet}")
        p = self.patch
        if h % p or w % p:
            raise DataError("input batch", f"frames of {h}×{w} pixels (H×W) do not split into {p}×{p} patches "
                                           f"(tokenizer.patch): use data.size = a multiple of {p}")

    def standardize(self, videos: Tensor) -> Tensor:
        """``(x - mean) / std`` per channel: raw ``[0, 1]`` pixels → what the encoder sees."""
        return self.pixels.standardize(videos)

    def unstandardize(self, videos: Tensor) -> Tensor:
        """Inverse of :meth:`standardize` on ``[B, C, ...]`` (figures)."""
        return self.pixels.unstandardize(videos)

    def normalize(self, batch: Batch) -> Batch:
        """Raw ``[0, 1]`` pixels → ``(x - mean) / std`` per channel (the only normalisation path).
        uint8 input, 0-255 values, already normalised values or NaN/Inf are a clear error."""
        x = batch.tensor
        self.check(x)
        check_pixels(x, "uint8 frames .float() / 255")
        return batch.replace(input=self.standardize(x))

    @torch.no_grad()
    def tokenize(self, batch: Batch) -> TokenSet:
        """A normalised batch → tubelets in (time, row, col) order with their grid indices as coords."""
        x = batch.tensor
        self.check(x)
        b, _, t, h, w = x.shape
        grid = (t // self.tubelet, h // self.patch, w // self.patch)
        axes = [torch.arange(g, device=x.device) for g in grid]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(1, -1, 3).float()
        return TokenSet(patches=tubeletify(x.float(), self.tubelet, self.patch), coords=coords.expand(b, -1, -1),
                        grid=grid)

    def embed(self, tokens: TokenSet) -> Tensor:
        """``tokens.patches`` ``[B, n, C, t, p, p]`` → ``[B, n, dim]`` (the Conv3d stem, token by token)."""
        return self.proj(tokens.patches.flatten(2).to(self.proj.weight.dtype))

    def card(self) -> dict[str, Any]:
        return {"tubelet": self.tubelet, "patch": self.patch, "channels": self.channels,
                "mean": self.stats[0], "std": self.stats[1],
                "input": "[B, C, T, H, W] float pixels in [0, 1] (8-bit values / 255); T a multiple of tubelet, "
                         "H and W multiples of patch",
                "input_normalization": "(x - mean) / std per channel, applied by the tokenizer's normalize "
                                       "(before tokenize, by the core): pass raw [0, 1] pixels",
                "patch_layout": "[C, t, p, p] flattened channel-first (Conv3d stem weight = proj.weight "
                                "reshaped to [dim, C, t, p, p])",
                "positions": "3-D sin-cos of (time, row, col) tubelet indices, column block first"}
