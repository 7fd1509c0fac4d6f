"""The preprocessing plan: what turns a raw volume into what the encoder saw in training.

Steps, in order, identical in training and in a loaded encoder:

1. **Intensity statistics** of each volume (MRI): per-channel mean and std of the foreground voxels
   as stored (``nonzero``: voxels ≠ 0; ``all``), over the whole volume — never over a crop.
2. **Orientation** to RAS (exact axis permutation and flip) and **resampling** to the target spacing
   (:mod:`mpt_medical.geometry`).
3. **Crop**: the training crops (random) or the centre crop of ``crop`` voxels (a loaded encoder,
   the probe and test splits); a volume smaller than the crop is padded with NaN, centred.
4. **Intensity policy** per voxel: MRI ``(x - mean) / std`` with step 1's statistics, 0 outside the
   foreground; CT clip to the window then ``(x - mean) / std`` with the fitted dataset statistics.

The dataset does 1–3 when it reads a crop (statistics computed once per file, only the slab a crop
needs is read) and passes the statistics in ``meta``; the tokenizer's ``normalize`` does 4. A raw
batch — ``Batch(input=[B, C, X, Y, Z] as stored, meta={"affine": [B, 4, 4]})``, what
:func:`raw_batch` reads from a file — gets 1–3 in ``normalize`` first, from the plan in the
tokenizer config the encoder card holds. So ``mpt.load_encoder(path)(raw_batch("scan.nii.gz"))``
sees the voxels training saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mpt.contract import Batch
from mpt.errors import ConfigError, DataError
from mpt_medical.geometry import orient, ras_orientation, ras_spacing, resample_box, resampled_size


def triple(value: int | float | Sequence[int | float], key: str, kind: type = int) -> tuple:
    """A size given as one number or three → three (a ConfigError naming ``key`` otherwise)."""
    values = [value] * 3 if isinstance(value, (int, float)) else list(value)
    if len(values) != 3 or any(v <= 0 for v in values):
        raise ConfigError(key, f"expected one positive number or three (x, y, z), got {value!r}")
    return tuple(kind(v) for v in values)


def centre_start(size: int, crop: int) -> int:
    """First output voxel of the centre crop of ``crop`` voxels on an axis of ``size`` (negative:
    the crop is larger and the volume sits centred in NaN padding)."""
    return (size - crop) // 2


def moments_of(x: Tensor, rule: str) -> Tensor:
    """Per-channel (mean, std) ``[C, 2]`` float64 of ``x`` ``[C, ...]`` over its ``rule`` voxels
    (``nonzero`` or ``all``), as the dataset computes them from the stored file."""
    v = x.flatten(1).double()
    out = torch.zeros(v.shape[0], 2, dtype=torch.float64)
    for c in range(v.shape[0]):
        sel = v[c][v[c] != 0] if rule == "nonzero" else v[c]
        if sel.numel():
            out[c, 0], out[c, 1] = sel.mean(), sel.std(unbiased=False)
    return out


def prepare_raw(x: Tensor, affine: np.ndarray, *, orientation: str, spacing: Sequence[float] | None,
                crop: Sequence[int] | None, patch: Sequence[int], source: str = "input batch"
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Steps 1–3 on one raw volume ``x`` ``[C, X, Y, Z]`` (stored axes) with its ``affine`` → the
    crop ``[C, cx, cy, cz]``, its spacing ``[3]`` and the moments ``[C, 2]`` of rule nonzero and all.
    Without a crop the whole volume is padded at its end to a multiple of ``patch`` (NaN)."""
    if x.ndim != 4:
        raise DataError(source, f"a raw volume is [C, X, Y, Z], got shape {tuple(x.shape)}")
    x = x.float()
    nonzero, every = moments_of(x, "nonzero"), moments_of(x, "all")
    ornt = ras_orientation(affine, orientation == "RAS")
    y = orient(x, ornt)
    old = ras_spacing(affine, ornt)
    shape = tuple(y.shape[1:])
    new = [float(s) for s in spacing] if spacing is not None else None
    sizes = [resampled_size(n, float(old[k]), None if new is None else new[k]) for k, n in enumerate(shape)]
    if crop is None:
        size = [math.ceil(m / p) * p for m, p in zip(sizes, patch, strict=True)]
        start = [0, 0, 0]
    else:
        size = list(crop)
        start = [centre_start(m, c) for m, c in zip(sizes, size, strict=True)]
    out = resample_box(y, (0, 0, 0), shape, old.tolist(), new, start, size)
    got = torch.tensor(new if new is not None else old.tolist(), dtype=torch.float32)
    return out, got, nonzero, every


def prepare_batch(batch: Batch, *, orientation: str, spacing: Sequence[float] | None,
                  crop: Sequence[int] | None, patch: Sequence[int]) -> Batch:
    """A raw batch (``meta["affine"]``) → the batch the dataset would give for the same files."""
    affines = batch.meta["affine"]
    affines = affines if isinstance(affines, Tensor) else torch.as_tensor(np.asarray(affines))
    x = batch.tensor
    if x.ndim != 5 or affines.shape != (x.shape[0], 4, 4):
        raise DataError("input batch", f"a raw batch is [B, C, X, Y, Z] with meta['affine'] [B, 4, 4], got "
                                       f"{tuple(x.shape)} and {tuple(affines.shape)}")
    parts = [prepare_raw(x[i], affines[i].double().cpu().numpy(), orientation=orientation, spacing=spacing,
                         crop=crop, patch=patch, source=batch.sources[i] if batch.sources else "input batch")
             for i in range(x.shape[0])]
    shapes = {tuple(p[0].shape) for p in parts}
    if len(shapes) > 1:
        raise DataError("input batch", f"the volumes of this raw batch preprocess to different shapes {sorted(shapes)} "
                                       "(no crop in the plan): pass them one at a time")
    meta = {k: v for k, v in batch.meta.items() if k != "affine"}
    meta.update(spacing=torch.stack([p[1] for p in parts]), moments_nonzero=torch.stack([p[2] for p in parts]),
                moments_all=torch.stack([p[3] for p in parts]))
    return Batch(input=torch.stack([p[0] for p in parts]).to(x.device), meta=meta, sources=list(batch.sources),
                 labels=batch.labels)


def raw_batch(path: str | Path, layout_4d: str = "channels") -> Batch:
    """A NIfTI file as a raw batch for a loaded encoder: ``[1, C, X, Y, Z]`` (or ``[V, 1, X, Y, Z]``
    for ``layout_4d="volumes"``) voxels as stored, ``meta["affine"]``; the encoder replays the plan."""
    from mpt_medical.io import read_raw

    data, affine = read_raw(path, layout_4d)
    x = data if data.ndim == 5 else data[None]
    aff = torch.as_tensor(affine, dtype=torch.float64)[None].expand(x.shape[0], 4, 4).clone()
    return Batch(input=x, meta={"affine": aff}, sources=[str(path)] * x.shape[0])


def intensity(x: Tensor, meta: dict, *, policy: str, foreground: str, threshold: float,
              window: Sequence[float] | None, mean: float | None, std: float | None) -> tuple[Tensor, Tensor]:
    """Step 4 on ``x`` ``[B, C, X, Y, Z]`` (NaN = no voxel) → (normalised ``x``, foreground
    ``[B, 1, X, Y, Z]`` bool: a voxel of any channel in the foreground). MRI takes the per-volume
    ``meta["moments_<rule>"]`` ``[B, C, 2]``; CT the fitted window, mean and std."""
    present = ~x.isnan()
    if foreground == "nonzero":
        fg = present & (x != 0)
    elif foreground == "above":
        fg = present & (x > threshold)
    else:
        fg = present
    if policy == "mri":
        mom = meta.get(f"moments_{foreground}")
        if mom is None:
            raise DataError("input batch", "intensity mri needs each volume's statistics (meta"
                                           f"['moments_{foreground}'] [B, C, 2]); pass raw volumes with meta['affine'] "
                                           "(mpt_medical.raw_batch) or samples of the medical dataset")
        mom = torch.as_tensor(mom, dtype=torch.float64).to(x.device)
        m = mom[..., 0].float()[:, :, None, None, None]
        s = mom[..., 1].float()[:, :, None, None, None]
        s = torch.where(s > 1e-8, s, torch.ones_like(s))  # a constant foreground: no division by zero
        out = torch.where(fg, (x - m) / s, torch.zeros_like(x))
        out = torch.where(present, out, x)  # NaN padding stays NaN
    elif policy == "ct":
        if window is None or mean is None or std is None:
            raise ConfigError("tokenizer.window", "intensity ct needs window, mean and std: fitted on the training "
                                                  "data by the trainer, or given in the recipe")
        out = (x.clamp(float(window[0]), float(window[1])) - mean) / (std if std > 1e-8 else 1.0)
    else:
        out = x
    return out, fg.any(1, keepdim=True)
