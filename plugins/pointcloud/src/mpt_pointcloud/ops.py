"""Point-set operations in plain PyTorch (CPU and GPU, batched, no compiled extensions).

They replace the CUDA extensions Point-MAE (Pang et al., ECCV 2022) depends on: pointnet2_ops
``furthest_point_sample``, ``knn_cuda`` and ``chamfer_dist``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def farthest_point_sample(xyz: Tensor, n: int) -> Tensor:
    """Indices of ``n`` farthest-point samples per cloud: ``[B, P, 3]`` → ``LongTensor [B, n]``.

    Deterministic: starts at index 0 of every cloud (as pointnet2's FPS does); each next sample
    is the point farthest from those chosen so far (first index on ties).
    """
    b, p, _ = xyz.shape
    out = torch.empty(b, n, dtype=torch.long, device=xyz.device)
    dist = torch.full((b, p), float("inf"), dtype=xyz.dtype, device=xyz.device)
    far = torch.zeros(b, dtype=torch.long, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(n):
        out[:, i] = far
        d = (xyz - xyz[rows, far].unsqueeze(1)).pow(2).sum(-1)  # [B, P]
        dist = torch.minimum(dist, d)
        far = dist.argmax(-1)
    return out


def normalize_clouds(x: Tensor) -> Tensor:
    """Point-MAE ``pc_norm`` on the xyz columns of ``[..., P, 3+F]``: centre each cloud at its
    centroid and scale it to the unit sphere (feature columns are left as they are)."""
    xyz = x[..., :3] - x[..., :3].mean(dim=-2, keepdim=True)
    radius = xyz.norm(dim=-1).amax(dim=-1)[..., None, None].clamp_min(1e-12)
    return torch.cat([xyz / radius, x[..., 3:]], dim=-1)


def knn(query: Tensor, points: Tensor, k: int) -> Tensor:
    """The ``k`` nearest ``points`` of every query, nearest first: ``[B, M, 3]``, ``[B, P, 3]``
    → ``LongTensor [B, M, k]``."""
    return torch.cdist(query, points).topk(k, dim=-1, largest=False, sorted=True).indices


def chamfer_l2(a: Tensor, b: Tensor) -> Tensor:
    """Point-MAE's ``cdl2``: mean squared NN distance a→b plus mean b→a (over all points of
    all sets). ``a`` ``[N, K, 3]``, ``b`` ``[N, L, 3]`` → scalar."""
    d = (a.unsqueeze(2) - b.unsqueeze(1)).pow(2).sum(-1)  # [N, K, L]
    return d.min(2).values.mean() + d.min(1).values.mean()
