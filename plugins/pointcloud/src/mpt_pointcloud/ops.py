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


def normalize_clouds(x: Tensor, length: Tensor | None = None) -> Tensor:
    """Point-MAE ``pc_norm`` on the xyz columns of ``[..., P, 3+F]``: centre each cloud at its
    centroid and scale it to the unit sphere (feature columns are left as they are).

    ``length`` ``[B]`` (for ``[B, P, 3+F]``): only the first ``length[b]`` points of cloud ``b`` are
    real (the rest padding); the centroid and radius are theirs alone."""
    xyz = x[..., :3]
    if length is None:
        centred = xyz - xyz.mean(dim=-2, keepdim=True)
        radius = centred.norm(dim=-1).amax(dim=-1)
    else:
        real = (torch.arange(x.shape[-2], device=x.device) < length.to(x.device)[:, None]).unsqueeze(-1)
        centre = (xyz * real).sum(-2, keepdim=True) / real.sum(-2, keepdim=True).clamp_min(1)
        centred = xyz - centre
        radius = (centred.norm(dim=-1) * real[..., 0]).amax(dim=-1)
    return torch.cat([centred / radius[..., None, None].clamp_min(1e-12), x[..., 3:]], dim=-1)


def fill_padding(x: Tensor, length: Tensor) -> Tensor:
    """``[B, P, C]`` clouds of which only the first ``length[b]`` points are real: the padding rows
    replaced by the real points repeated cyclically (farthest-point sampling, which takes the first
    of equal points, then never picks them)."""
    n = length.to(x.device).long().clamp_min(1)[:, None]  # [B, 1]
    idx = torch.arange(x.shape[1], device=x.device)[None] % n  # [B, P]
    return torch.gather(x, 1, idx[..., None].expand_as(x))


def knn(query: Tensor, points: Tensor, k: int, real: Tensor | None = None) -> Tensor:
    """The ``k`` nearest ``points`` of every query, nearest first: ``[B, M, 3]``, ``[B, P, 3]``
    → ``LongTensor [B, M, k]``. ``real`` ``[B, P]`` bool (optional): points marked False (padding)
    come after every real one."""
    d = torch.cdist(query, points)
    if real is not None:
        d = d.masked_fill(~real[:, None, :].to(d.device), float("inf"))
    return d.topk(k, dim=-1, largest=False, sorted=True).indices


def chamfer_l2_per_set(a: Tensor, b: Tensor) -> Tensor:
    """Chamfer-L2 of each pair of sets: mean squared NN distance a→b plus mean b→a, per set.
    ``a`` ``[N, K, 3]``, ``b`` ``[N, L, 3]`` → ``[N]``."""
    d = (a.unsqueeze(2) - b.unsqueeze(1)).pow(2).sum(-1)  # [N, K, L]
    return d.min(2).values.mean(-1) + d.min(1).values.mean(-1)


def chamfer_l2(a: Tensor, b: Tensor) -> Tensor:
    """Point-MAE's ``cdl2``: mean squared NN distance a→b plus mean b→a (over all points of
    all sets; every set has K resp. L points, so this is the mean of :func:`chamfer_l2_per_set`).
    ``a`` ``[N, K, 3]``, ``b`` ``[N, L, 3]`` → scalar."""
    return chamfer_l2_per_set(a, b).mean()
