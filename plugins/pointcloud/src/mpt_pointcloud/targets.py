"""Chamfer-L2 reconstruction target of Point-MAE (Pang et al., ECCV 2022)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from mpt.contract import Target
from mpt_pointcloud.ops import chamfer_l2


class ChamferTarget(Target):
    """The decoder predicts each masked group's K points (xyz relative to its centre);
    the loss is Chamfer-L2 between predicted and true groups (order-free)."""

    def pred_dim(self, patch_shape: Sequence[int]) -> int:
        return int(patch_shape[0]) * 3

    def loss(self, pred: Tensor, patches: Tensor) -> Tensor:
        """``pred [B, Np, K·3]``, ``patches [B, Np, K, C]`` → scalar."""
        k = patches.shape[2]
        return chamfer_l2(pred.reshape(-1, k, 3).float(), patches[..., :3].reshape(-1, k, 3).float())

    def reconstruct(self, pred: Tensor, patches: Tensor) -> Tensor:
        """``[B, Np, K·3]`` → ``[B, Np, K, 3]`` (relative to the group centres)."""
        return pred.reshape(*pred.shape[:2], patches.shape[2], 3)
