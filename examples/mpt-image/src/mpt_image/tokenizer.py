"""ViT patch tokenizer (Dosovitskiy et al. ICLR 2021) as MAE uses it (He et al. CVPR 2022,
facebookresearch/mae ``models_mae.py``: ``PatchEmbed``, ``patchify``/``unpatchify``, fixed 2-D
sin-cos positions; I-JEPA, Assran et al. CVPR 2023, tokenizes the same way).

A raw batch (``mpt.contract.Batch``; ``batch.tensor``) is ``[B, C, H, W]`` float pixels in [0, 1],
any H and W that are multiples of the patch size. The core calls ``normalize`` (a check of the raw
pixels, then ``(x - mean) / std`` per channel) and then ``tokenize`` (``p × p`` patches of the
normalised pixels), in training and in :func:`mpt.load_encoder` alike; ``embed`` is
``Linear(C·p·p → D)`` on the patch flattened channel-first, which is the ViT
``Conv2d(C, D, kernel=p, stride=p)`` stem with its weight reshaped to ``[D, C·p·p]``. Coords are
(row, col) patch indices; their sin-cos position equals MAE's 2-D table (see :class:`ImageTokenizer`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mpt.contract import Batch, Tokenizer, TokenSet
from mpt.errors import ConfigError, DataError
from mpt.pixels import PixelNorm, channel_stats, check_pixels
from mpt_image.config import ImageTokenizerConfig


def patchify(images: Tensor, patch: int) -> Tensor:
    """``[B, C, H, W]`` → ``[B, N, C, p, p]``, N = (H/p)·(W/p) patches in row-major order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c, patch, patch)


def unpatchify(patches: Tensor, grid: tuple[int, int]) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, N, C, p, p]`` with N = rows·cols → ``[B, C, rows·p, cols·p]``."""
    b, n, c, p, _ = patches.shape
    rows, cols = grid
    if rows * cols != n:
        raise ValueError(f"unpatchify: grid {grid} does not hold {n} patches")
    x = patches.reshape(b, rows, cols, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, rows * p, cols * p)


class ImageTokenizer(Tokenizer):
    """``[B, C, H, W]`` in [0, 1] → (``normalize``: per-channel mean/std) → patches ``[B, N, C, p, p]``
    of normalised pixels, coords ``[B, N, 2]`` = (row, col) patch indices in grid-axis order,
    ``grid = (H/p, W/p)``; ``patch_shape = (C, p, p)`` and ``grid_axes = 2``, known from the config.

    The core's 2-D sin-cos of these coords (:func:`mpt.pos_embed.sincos_nd`, last axis first) is
    MAE's ``get_2d_sincos_pos_embed`` table exactly — the column index in the first half of the
    width, the row index in the second, tokens row-major — so MAE/I-JEPA encoders see the positions
    they were trained with; it is computed from the coords, so any image size works without
    interpolation."""

    coord_dim = 2
    pos_kind = "sincos"
    grid_axes = 2  # a 2-D token grid (rows, cols): every grid masker applies (random, block, multiblock)

    def __init__(self, config: ImageTokenizerConfig, dim: int) -> None:
        c = config.channels
        mean, std = channel_stats(c, config.mean, config.std)
        self.patch_shape = (c, config.patch, config.patch)  # what one token holds: sizes the MAE head
        super().__init__(dim)
        self.config = config
        self.patch, self.channels = config.patch, c
        self.stats = (mean, std)  # for the card
        self.pixels = PixelNorm(mean, std)
        self.proj = nn.Linear(c * config.patch**2, dim)
        nn.init.xavier_uniform_(self.proj.weight)  # MAE initialize_weights: the patch stem like a Linear

    def check(self, batch: Tensor) -> None:
        """A clear error for a batch this tokenizer cannot cut: wrong rank, channels or size."""
        if batch.ndim != 4:
            raise DataError("input batch", f"an image batch is [B, C, H, W], got shape {tuple(batch.shape)}")
        b, c, h, w = batch.shape
        if c != self.channels:
            raise ConfigError("tokenizer.channels", f"this tokenizer embeds {self.channels}-channel images, the "
                                                    f"batch has {c} channels; pretrain with tokenizer.channels={c} "
                                                    f"or convert the images (data.channels={self.channels})")
        p = self.patch
        if h % p or w % p:
            raise DataError("input batch", f"images of {h}×{w} pixels (H×W) do not split into {p}×{p} patches; "
                                           f"height and width must be multiples of {p} (tokenizer.patch): "
                                           f"resize or crop to e.g. {max(p, h // p * p)}×{max(p, w // p * p)} "
                                           "(mpt pretrain: choose data.size as a multiple of the patch)")

    def standardize(self, images: Tensor) -> Tensor:
        """``(x - mean) / std`` per channel: raw ``[0, 1]`` pixels → what the encoder sees."""
        return self.pixels.standardize(images)

    def unstandardize(self, images: Tensor) -> Tensor:
        """Inverse of :meth:`standardize` (``[B, C, H, W]``), for figures."""
        return self.pixels.unstandardize(images)

    def normalize(self, batch: Batch) -> Batch:
        """Raw ``[0, 1]`` pixels → ``(x - mean) / std`` per channel: what the encoder sees.

        The core calls this before :meth:`tokenize` on every batch — in training, feature extraction and
        :func:`mpt.load_encoder` alike — so the dataset, the figures (``Figure.batch``) and encoder users
        all handle raw pixels and never normalise themselves. Checks first that the batch holds float
        pixels in [0, 1] of this tokenizer's channel count: uint8 input, 0-255 values or already
        normalised values are a clear error."""
        x = batch.tensor
        self.check(x)
        check_pixels(x)
        return batch.replace(input=self.standardize(x))

    @torch.no_grad()
    def tokenize(self, batch: Batch) -> TokenSet:
        """A normalised batch (:meth:`normalize`) → ``p × p`` patches, row-major, with (row, col) coords."""
        x = batch.tensor
        self.check(x)
        b, _, h, w = x.shape
        p = self.patch
        rows, cols = h // p, w // p
        patches = patchify(x.float(), p)
        r, c = torch.meshgrid(torch.arange(rows, device=x.device), torch.arange(cols, device=x.device),
                              indexing="ij")
        coords = torch.stack([r, c], dim=-1).reshape(1, rows * cols, 2).float().expand(b, -1, -1)
        return TokenSet(patches=patches, coords=coords, grid=(rows, cols))

    def embed(self, tokens: TokenSet) -> Tensor:
        """``tokens.patches`` ``[B, n, C, p, p]`` → ``[B, n, dim]`` (the ViT conv stem, token by token)."""
        return self.proj(tokens.patches.flatten(2).to(self.proj.weight.dtype))

    def adapt_weight(self, name: str, saved: Tensor, saved_config: Any) -> Tensor:
        """A pretrained encoder loaded with another ``tokenizer.channels`` (``mpt.load_encoder(path,
        tokenizer={"channels": 1})``): the patch stem ``proj.weight`` ``[D, C_old·p·p]`` becomes
        ``[D, C_new·p·p]`` by :func:`mpt.pretrained.adapt_channels` (timm's ``adapt_input_conv``: one
        channel = the sum over the old ones; more channels repeat the old ones cyclically, each copy
        scaled so that a constant image gives the same activation). The bias is unchanged.

        ``mean``/``std`` are per channel, so the card's values cannot serve another count: give them
        in the overrides; without them (the card's were the defaults too) the new count's defaults
        apply, with a warning. Any other change of the stem (``patch``) is refused."""
        old = saved_config
        if name == "proj.weight" and old.patch == self.patch and old.channels != self.channels:
            import warnings

            from mpt.pretrained import adapt_channels

            defaulted = [k for k in ("mean", "std") if getattr(self.config, k) is None]
            if defaulted:
                warnings.warn(f"tokenizer.{'/'.join(defaulted)} not given for {self.channels} channels (the encoder "
                              f"had {old.channels}): using the defaults for {self.channels} channels (mean "
                              f"{self.stats[0]}, std {self.stats[1]}); pass tokenizer.mean and tokenizer.std "
                              "to choose others", stacklevel=2)
            w = saved.reshape(saved.shape[0], old.channels, self.patch**2)
            return adapt_channels(w, self.channels, dim=1).reshape(saved.shape[0], -1)
        if name == "proj.weight" and old.patch != self.patch:
            raise ConfigError("tokenizer.patch", f"the encoder was pretrained with {old.patch}×{old.patch} patches; "
                                                 f"its patch stem cannot be loaded at patch {self.patch} (not "
                                                 "supported): keep the card's tokenizer.patch")
        return super().adapt_weight(name, saved, saved_config)

    def card(self) -> dict[str, Any]:
        return {"patch": self.patch, "channels": self.channels,
                "mean": self.stats[0], "std": self.stats[1],
                "input": "[B, C, H, W] float pixels in [0, 1] (8-bit values / 255), H and W multiples of patch",
                "input_normalization": "(x - mean) / std per channel, applied by the tokenizer's normalize "
                                       "(before tokenize, by the core): pass raw [0, 1] pixels, not normalised ones",
                "patch_layout": "[C, p, p] flattened channel-first (Conv2d stem weight = proj.weight "
                                "reshaped to [dim, C, p, p])"}
