"""Chamfer-L2 reconstruction target of Point-MAE (Pang et al., ECCV 2022)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from mpt.contract import Target, weighted_mean
from mpt_pointcloud.ops import chamfer_l2_per_set


class ChamferTarget(Target):
    """The decoder predicts each masked group's K points (xyz relative to its centre);
    the loss is Chamfer-L2 between predicted and true groups (order-free)."""

    def pred_dim(self, patch_shape: Sequence[int]) -> int:
        return int(patch_shape[0]) * 3

    def loss(self, pred: Tensor, patches: Tensor, weight: Tensor | None = None) -> Tensor:
        """``pred [B, Nt, K·3]``, ``patches [B, Nt, K, C]``, ``weight [B, Nt]`` (or None) → scalar:
        the Chamfer-L2 of every group, averaged over the groups under ``weight``
        (:func:`mpt.contract.weighted_mean`; with no weight, Point-MAE's ``cdl2`` over all groups)."""
        b, n, k = patches.shape[:3]
        per_group = chamfer_l2_per_set(pred.reshape(-1, k, 3).float(), patches[..., :3].reshape(-1, k, 3).float())
        return weighted_mean(per_group.reshape(b, n), weight)

    def reconstruct(self, pred: Tensor, patches: Tensor) -> Tensor:
        """``[B, Nt, K·3]`` → ``[B, Nt, K, 3]`` (relative to the group centres)."""
        return pred.reshape(*pred.shape[:2], patches.shape[2], 3)
