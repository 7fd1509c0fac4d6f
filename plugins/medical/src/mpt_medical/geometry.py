"""Voxel geometry of the preprocessing plan: orientation to RAS, resampling to a target spacing, crops.

One implementation serves the dataset (a crop read slab by slab from the file) and a loaded encoder
(a whole raw volume given by the user), so both see the same voxels (:mod:`mpt_medical.plan`).

* Orientation: nibabel's ``io_orientation`` of the affine gives, per stored axis, the RAS axis it
  becomes and whether it flips — an exact permutation and flip, no interpolation (what
  ``nibabel.as_closest_canonical`` does). A rotation left after it (oblique scans) is ignored, as
  nnU-Net and nnssl ignore it: voxels are resampled in voxel space.
* Resampling: output voxel ``j`` of an axis lies at ``j · new`` mm from the first stored voxel
  centre, i.e. at stored position ``j · new / old``; linear interpolation between its two stored
  neighbours (separable: trilinear on the three axes). The output has ``floor((n - 1) · old / new) + 1``
  voxels, so it never extends past the last stored voxel (nibabel's ``resample_to_output`` grid,
  without its extrapolated last voxel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

EPS = 1e-6  # tolerance when comparing voxel sizes (mm) and interpolation positions


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm of each stored axis: the norms of the affine's first three columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(0))


def ras_orientation(affine: np.ndarray, enabled: bool = True) -> np.ndarray:
    """``[3, 2]`` nibabel orientation: row ``a`` = (RAS axis of stored axis ``a``, +1 or -1 flip);
    the identity when ``enabled`` is False (``orientation: none``)."""
    if not enabled:
        return np.array([[0, 1], [1, 1], [2, 1]], dtype=np.float64)
    from nibabel.orientations import io_orientation

    return io_orientation(np.asarray(affine, dtype=np.float64))


def ras_shape(shape: Sequence[int], ornt: np.ndarray) -> tuple[int, int, int]:
    """The spatial shape after orientation: stored axis ``a`` becomes axis ``ornt[a, 0]``."""
    out = [0, 0, 0]
    for a, (axis, _) in enumerate(ornt):
        out[int(axis)] = int(shape[a])
    return out[0], out[1], out[2]


def ras_spacing(affine: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Voxel sizes in the oriented axis order."""
    sizes = voxel_sizes(affine)
    out = np.zeros(3)
    for a, (axis, _) in enumerate(ornt):
        out[int(axis)] = sizes[a]
    return out


def orient(x: Tensor, ornt: np.ndarray) -> Tensor:
    """``[..., X, Y, Z]`` in stored axis order → oriented (axes permuted and flipped per ``ornt``)."""
    lead = x.ndim - 3
    flips = [lead + a for a, (_, f) in enumerate(ornt) if f < 0]
    if flips:
        x = x.flip(flips)
    perm = [0, 0, 0]
    for a, (axis, _) in enumerate(ornt):
        perm[int(axis)] = lead + a
    return x.permute(*range(lead), *perm)


def stored_slices(lo: Sequence[int], hi: Sequence[int], shape: Sequence[int], ornt: np.ndarray) -> tuple[slice, ...]:
    """The stored-array slices holding the oriented index box ``[lo, hi)`` (``shape``: stored shape)."""
    out = []
    for a, (axis, flip) in enumerate(ornt):
        k, n = int(axis), int(shape[a])
        out.append(slice(lo[k], hi[k]) if flip > 0 else slice(n - hi[k], n - lo[k]))
    return tuple(out)


def resampled_size(n: int, old: float, new: float | None) -> int:
    """Voxels of an axis of ``n`` voxels of ``old`` mm resampled to ``new`` mm (None: unchanged)."""
    if new is None or abs(new - old) <= EPS * max(old, 1.0):
        return n
    return int(math.floor((n - 1) * old / new + EPS)) + 1


def source_range(start: int, size: int, n: int, old: float, new: float | None) -> tuple[int, int]:
    """Stored voxels ``[lo, hi)`` that output voxels ``[start, start + size)`` interpolate from."""
    if new is None or abs(new - old) <= EPS * max(old, 1.0):
        return max(start, 0), min(start + size, n)
    ratio = new / old
    first, last = max(start, 0), start + size - 1
    lo = int(math.floor(first * ratio + EPS))
    hi = int(math.floor(last * ratio + EPS)) + 2
    return min(lo, n - 1), min(hi, n)


def _axis(x: Tensor, dim: int, start: int, size: int, offset: int, n: int, old: float, new: float | None) -> Tensor:
    """Output voxels ``[start, start + size)`` of axis ``dim`` from ``x``, whose index 0 is stored
    voxel ``offset`` of an axis of ``n`` stored voxels; outside the output grid → NaN."""
    m = resampled_size(n, old, new)
    if m == n and start >= 0 and start + size <= n and start >= offset and start + size <= offset + x.shape[dim]:
        return x.narrow(dim, start - offset, size)  # no interpolation, inside the volume: a view
    j = torch.arange(start, start + size, dtype=torch.float64)
    inside = (j >= 0) & (j < m)
    pos = j if new is None or m == n else j * (new / old)
    pos = pos.clamp(0, n - 1)
    i0 = torch.floor(pos + EPS).clamp(max=n - 1)
    w = (pos - i0).clamp(0, 1)
    w = torch.where(w < EPS, torch.zeros_like(w), w)
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=n - 1)
    shape = [1] * x.ndim
    shape[dim] = size
    a = x.index_select(dim, (i0 - offset).clamp(0, x.shape[dim] - 1))
    needs = w > 0
    if bool(needs.any()):
        b = x.index_select(dim, (i1 - offset).clamp(0, x.shape[dim] - 1))
        wt = w.to(x.dtype).reshape(shape)
        a = torch.lerp(a, b, wt)
    if not bool(inside.all()):
        a = a.masked_fill(~inside.reshape(shape), math.nan)
    return a


def resample_box(x: Tensor, offset: Sequence[int], shape: Sequence[int], spacing: Sequence[float],
                 target: Sequence[float] | None, start: Sequence[int], size: Sequence[int]) -> Tensor:
    """The output box ``[start, start + size)`` (voxels of the grid at ``target`` mm) of an oriented
    volume of ``shape`` voxels of ``spacing`` mm, from ``x`` ``[C, ...]`` = its stored voxels from
    ``offset`` on (the whole volume, or the slab :func:`source_range` names). Output voxels outside the
    volume's grid (a crop larger than the volume) are NaN. ``target`` None: no resampling."""
    out = x
    for k in range(3):
        new = None if target is None else float(target[k])
        out = _axis(out, out.ndim - 3 + k, int(start[k]), int(size[k]), int(offset[k]), int(shape[k]),
                    float(spacing[k]), new)
    return out
