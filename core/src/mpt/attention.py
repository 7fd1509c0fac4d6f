"""Attention masks for :class:`mpt.encoder.Transformer`: the one place SDPA masks are built.

Every mask is boolean with SDPA's convention (True = may attend), shaped ``[B, 1, q, k]`` with
``q`` either 1 (the same keys for every query) or the sequence length, and covers the whole
sequence the blocks see, prefix tokens (CLS, registers) first. Masks meet in :func:`combine`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor


def padding_mask(valid: Tensor | None, prefix: int = 0) -> Tensor | None:
    """``[B, n]`` validity (False = padding) → key mask ``[B, 1, 1, prefix + n]``; None → None.

    The ``prefix`` tokens are always attended. A row without any valid token (all padding, e.g. a
    masker kept only padding of a short series) attends to all its tokens, so its output stays
    finite; losses ignore such tokens anyway."""
    if valid is None:
        return None
    valid = valid | ~valid.any(dim=1, keepdim=True)
    if prefix:
        valid = torch.cat([valid.new_ones(valid.shape[0], prefix), valid], dim=1)
    return valid[:, None, None, :]


def window_mask(coords: Tensor, window: Sequence[int], shift: Sequence[int] | None = None,
                prefix: int = 0) -> Tensor:
    """Local window attention on a token grid → ``[B, 1, prefix + n, prefix + n]``.

    ``coords`` ``[B, n, A]``: the grid index of each token along ``A`` axes (integer values, any
    dtype; the tokens may be any subset of the grid in any order, e.g. an MAE decoder's kept and
    mask tokens). Token ``i`` attends to token ``j`` iff on every axis
    ``floor((c_i + shift) / window) == floor((c_j + shift) / window)``: non-overlapping windows of
    ``window`` cells (Swin, Liu et al. ICCV 2021), displaced by ``shift`` cells (``shift =
    window // 2`` gives Swin's shifted windows without the cyclic roll: the edge windows are
    partial, which is what Swin's roll plus mask computes). AudioMAE's decoder (Huang et al.
    NeurIPS 2022) alternates ``shift`` 0 and ``window // 2`` from block to block. The ``prefix``
    tokens attend to everything and are attended by everything."""
    axes = coords.shape[-1]
    if len(window) != axes or (shift is not None and len(shift) != axes):
        raise ValueError(f"window_mask: coords have {axes} axes, window {tuple(window)}, shift "
                         f"{None if shift is None else tuple(shift)}")
    size = coords.new_tensor(window)
    offset = coords.new_zeros(axes) if shift is None else coords.new_tensor(shift)
    cell = torch.div(coords + offset, size, rounding_mode="floor")  # [B, n, A] window index
    same = (cell[:, :, None, :] == cell[:, None, :, :]).all(dim=-1)  # [B, n, n]
    if prefix:
        b, n = same.shape[:2]
        full = same.new_ones(b, prefix + n, prefix + n)
        full[:, prefix:, prefix:] = same
        same = full
    return same[:, None]


def combine(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of the masks (broadcast; None entries ignored; None when all are None).

    A query row the AND leaves without any key (a padded token whose window holds only padding)
    attends to all keys instead, as in :func:`padding_mask`: an empty row makes softmax NaN, and a
    NaN output poisons every token that attends to it. Only such rows change."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    mask = functools.reduce(torch.logical_and, present)
    return mask | ~mask.any(dim=-1, keepdim=True)
