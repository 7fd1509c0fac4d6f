"""Pixel normalisation shared by every pixel modality (images, video, …): per-channel mean/std.

A pixel tokenizer takes raw float pixels in [0, 1] and applies ``(x - mean) / std`` per channel in
its ``normalize`` — the one normalisation path, so that datasets, figures and encoder users never
normalise themselves. :func:`channel_stats` resolves and checks the statistics of a tokenizer
config (ImageNet's for RGB, as MAE and VideoMAE use them), :func:`check_pixels` rejects inputs that
are not raw pixels, and :class:`PixelNorm` applies the statistics to ``[B, C, ...]`` tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mpt.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OTHER_MEAN, OTHER_STD = 0.5, 0.25  # per channel, for any channel count other than 3


def channel_stats(channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  key: str = "tokenizer") -> tuple[list[float], list[float]]:
    """``(mean, std)`` per channel: the given ones, else ImageNet's for 3 channels and 0.5 / 0.25 for
    any other count. A ConfigError naming ``{key}.mean`` / ``{key}.std`` unless there is one value
    per channel and every std is > 0."""
    rgb = channels == 3
    mean = list(mean) if mean else (list(IMAGENET_MEAN) if rgb else [OTHER_MEAN] * channels)
    std = list(std) if std else (list(IMAGENET_STD) if rgb else [OTHER_STD] * channels)
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise ConfigError(f"{key}.{name}", f"{len(values)} values for {channels} channels ({key}.channels); "
                                               "give one per channel")
    if min(std) <= 0:
        raise ConfigError(f"{key}.std", f"every std must be > 0, got {std}")
    return [float(v) for v in mean], [float(v) for v in std]


def check_pixels(x: Tensor, example: str = "uint8 images .float() / 255") -> None:
    """A DataError unless ``x`` holds finite float pixels roughly in [0, 1]: integer input, NaN/Inf,
    0-255 values or already normalised ones (anything well outside [0, 1]) are refused."""
    if not x.is_floating_point():
        raise DataError("input batch", f"{x.dtype} pixels: pass float pixels in [0, 1] (e.g. {example})")
    if not x.numel():
        return
    if not bool(torch.isfinite(x).all()):
        raise DataError("input batch", "NaN or Inf pixels: raw pixels are finite; check the data's source")
    lo, hi = float(x.amin()), float(x.amax())
    if lo < -0.5 or hi > 1.5:
        raise DataError("input batch", f"pixel values in [{lo:.4g}, {hi:.4g}]: the encoder takes raw pixels in "
                                       "[0, 1] (8-bit values / 255), not 0-255 and not mean/std-normalised ones "
                                       "(the tokenizer's normalize applies mean/std itself)")


class PixelNorm(nn.Module):
    """``(x - mean) / std`` per channel on ``[B, C, ...]`` (channels on axis 1) and its inverse.
    The statistics are non-persistent buffers: a tokenizer's card stores them, not its weights."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]), persistent=False)
        self.register_buffer("std", torch.tensor([float(v) for v in std]), persistent=False)

    def _shape(self, x: Tensor) -> tuple[int, ...]:
        return (1, len(self.mean)) + (1,) * (x.ndim - 2)

    def standardize(self, x: Tensor) -> Tensor:
        """Raw ``[0, 1]`` pixels ``[B, C, ...]`` → what the encoder sees."""
        shape = self._shape(x)
        return (x.float() - self.mean.to(x.device).view(shape)) / self.std.to(x.device).view(shape)

    def unstandardize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`standardize` (figures)."""
        shape = self._shape(x)
        return x.float() * self.std.to(x.device).view(shape) + self.mean.to(x.device).view(shape)
