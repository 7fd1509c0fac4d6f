"""RevIN and patching of ``[B, C, T]`` series, missing values (NaN) included.

- RevIN (Kim et al., "Reversible Instance Normalization for Accurate Time-Series Forecasting
  against Distribution Shift", ICLR 2022), as PatchTST uses it: per sample and channel, subtract
  the mean over time and divide by ``sqrt(var + eps)`` (biased variance); ``revin_denorm``
  inverts it. Missing values are left out of the statistics and stay NaN; a constant channel
  becomes zeros (its std is ``sqrt(eps)``), never a division by zero.
- Patching (Nie et al., "A Time Series is Worth 64 Words", ICLR 2023): windows of ``patch``
  steps every ``stride`` steps; the end is padded with NaN to complete the last patch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def revin_stats(x: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """``x`` ``[B, C, T]`` → mean and std over time, each ``[B, C, 1]``, NaN ignored."""
    observed = ~x.isnan()
    n = observed.sum(-1, keepdim=True).clamp_min(1)
    x0 = x.nan_to_num(0.0)
    mean = x0.sum(-1, keepdim=True) / n
    var = ((x0 - mean) * observed).pow(2).sum(-1, keepdim=True) / n
    return mean, (var + eps).sqrt()


def revin_norm(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(x - mean) / std``; NaN (missing) stays NaN."""
    return (x - mean) / std


def revin_denorm(y: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Inverse of :func:`revin_norm`: ``y * std + mean`` (``y`` ``[B, C, *]``)."""
    return y * std + mean


def num_patches(length: int, patch: int, stride: int) -> int:
    """Patches that cover ``length`` steps: ``ceil((length - patch) / stride) + 1`` (at least 1)."""
    return max(math.ceil((length - patch) / stride), 0) + 1


def patchify(x: Tensor, patch: int, stride: int) -> Tensor:
    """``[B, C, T]`` → ``[B, C, N, patch]`` with ``N = num_patches(T, patch, stride)``; the steps
    past ``T`` that complete the last patch are NaN (missing)."""
    n = num_patches(x.shape[-1], patch, stride)
    padded = (n - 1) * stride + patch
    if padded > x.shape[-1]:
        x = torch.nn.functional.pad(x, (0, padded - x.shape[-1]), value=float("nan"))
    return x.unfold(-1, patch, stride)


def unpatchify(patches: Tensor, stride: int, length: int) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, C, N, patch]`` → ``[B, C, length]``.

    Overlapping patches are averaged where they overlap; NaN values do not count, and a step no
    patch observes is NaN.
    """
    b, c, n, p = patches.shape
    total = (n - 1) * stride + p
    index = (torch.arange(n, device=patches.device)[:, None] * stride
             + torch.arange(p, device=patches.device)).reshape(-1)  # [N * P]
    values = patches.reshape(b, c, n * p)
    observed = ~values.isnan()
    sums = values.new_zeros(b, c, total).index_add_(-1, index, values.nan_to_num(0.0))
    counts = values.new_zeros(b, c, total).index_add_(-1, index, observed.to(values.dtype))
    out = sums / counts
    return out[..., :length]
