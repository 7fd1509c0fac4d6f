"""Config sections of the medical modality (``data:`` and ``tokenizer:`` in a recipe).

The preprocessing plan — orientation, target spacing, intensity policy with its statistics, crop —
is the tokenizer config: the modality's ``fit`` completes it from the training data (the resolved
spacing, the crop, CT statistics), the encoder card stores it, and a loaded encoder replays it on a
raw volume (:mod:`mpt_medical.plan`). nnssl keeps its plan beside the checkpoint for the same reason
(Wald et al., "An OpenMind for 3D medical vision SSL", 2025).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mpt.config import bounded

SPACINGS = ("onemmiso", "median", "none")


@dataclass
class MedicalDataConfig:
    """How NIfTI volumes become 3-D crops (nnssl / OpenMind: 160³ crops of volumes resampled to 1 mm).

    Every volume is reoriented to RAS (``orientation``; an exact axis permutation and flip, no
    interpolation) and resampled to ``spacing`` mm — ``onemmiso`` (1 mm isotropic), ``median`` (the
    per-axis median voxel size of the training volumes), ``none`` (kept; each volume's own spacing is
    recorded and enters the token positions) or three numbers — by linear interpolation on a grid
    that starts at the first voxel centre and never extends past the last one. 4-D files hold
    ``channels`` (one sample, C channels: multi-sequence MRI) or ``volumes`` (one sample per 3-D
    volume: fMRI frames). The train split takes ``crops`` random crops of ``crop`` voxels per volume
    per epoch, each sampled inside the volume's bounding box of foreground voxels with probability
    ``foreground_crops``; other splits take the centre crop. A volume smaller than the crop is padded
    with NaN (no voxel there: never embedded as a value, never a target). Files are read when an item
    needs them, one slab at a time; the header and the intensity statistics of each are read once.
    """

    spacing: Literal["onemmiso", "median", "none"] | list[float] = "onemmiso"  # target voxel size (mm)
    orientation: Literal["RAS", "none"] = "RAS"  # RAS: closest canonical axes (nibabel.as_closest_canonical)
    crop: int | list[int] = 160  # crop size in voxels: one side, or (x, y, z)
    layout_4d: Literal["channels", "volumes"] = "channels"  # 4-D files: channels of one sample, or volumes
    channels: int | None = bounded(None, ge=1)  # expected channels per sample (None: from the first file)
    crops: int = bounded(1, ge=1)  # random crops per volume per epoch (train split)
    foreground_crops: float = bounded(0.5, ge=0, le=1)  # share of train crops centred in the foreground box
    flip: bool = False  # train: random flips along each axis (off: left and right differ in anatomy)


@dataclass
class MedicalTokenizerConfig:
    """3-D patches of the preprocessed volume (see :mod:`mpt_medical.tokenizer`) and the plan.

    ``intensity``: ``mri`` — per-volume z-score ``(x - mean) / std`` with the statistics of the
    foreground voxels (``foreground: nonzero`` — voxels ≠ 0 as stored, nnU-Net's rule for skull-stripped
    or templated MRI; ``all`` — every voxel), voxels outside the foreground set to 0; ``ct`` — Hounsfield
    units clipped to ``window`` then ``(x - mean) / std`` with dataset-level statistics of the clipped
    foreground (nnU-Net's CTNormalization; ``window`` None: the 0.5 / 99.5 percentiles of the
    training foreground, ``foreground: above`` — voxels > ``threshold`` HU, default -500: the body);
    ``none`` — raw values. A constant volume or foreground gets std 1 (never a division by zero).
    """

    patch: int | list[int] = 16  # patch size in voxels: one side, or (x, y, z) for anisotropic voxels
    channels: int = bounded(1, ge=1)  # image channels (filled from the data by fit)
    intensity: Literal["mri", "ct", "none"] = "mri"  # intensity policy (see above)
    foreground: Literal["nonzero", "all", "above"] = "nonzero"  # foreground rule of the statistics
    threshold: float = -500.0  # foreground: above — voxels above this value (HU for CT)
    window: list[float] | None = None  # ct: [low, high] clip in HU; None = fitted 0.5/99.5 percentiles
    mean: float | None = None  # ct: mean of the clipped foreground; None until fitted
    std: float | None = bounded(None, gt=0)  # ct: std of the clipped foreground; None until fitted
    foreground_weight: bool = False  # weight each token's loss by its foreground share (TokenSet.weight)
    # The geometric part of the plan, filled by fit from the data config and the training volumes:
    orientation: Literal["RAS", "none"] = "RAS"  # orientation volumes are brought to
    spacing: float | list[float] | None = None  # target voxel size (mm); None = volumes keep their own (spacing none)
    reference_spacing: list[float] | None = None  # mm per voxel at which positions are patch indices (median)
    crop: int | list[int] | None = None  # centre crop a loaded encoder takes of a raw volume (None: the whole volume)
