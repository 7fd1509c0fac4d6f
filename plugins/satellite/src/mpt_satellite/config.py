"""Config sections of the satellite modality (``data:`` and ``tokenizer:`` in a recipe).

Per-band normalisation (``mean``/``std`` of the raw physical values) lives in ``tokenizer:``: the
modality's ``fit`` completes it from the training chips, the encoder card stores it and
:func:`mpt.load_encoder` rebuilds it, so a loaded encoder takes the raw values the dataset gives
(NaN where missing) and there is one normalisation path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mpt.config import bounded


@dataclass
class SatelliteDataConfig:
    """How scenes become chips (SatMAE: 96² crops of fMoW-Sentinel; SSL4EO-S12: 224² patches).

    A scene — a multi-band GeoTIFF/COG or a folder of single-band files of one grid — is cut into
    ``size`` × ``size`` chips every ``stride`` pixels (default ``size``; the last chip flush with the
    edge), read window by window, never whole. ``bands`` selects and orders bands by name (None: all,
    in the file's order); ``sensor`` (sentinel2, landsat7) supplies wavelengths and aliases by band
    name. Pixels equal to a band's nodata, NaN or Inf are missing; chips with more than ``max_nodata``
    of their pixels missing are left out and counted. ``gsd``: metres per pixel for files without a
    CRS (otherwise taken from the transform). The train split flips chips (``flip``). With ``stack``,
    scenes of the same grid and different acquisition dates (from tags or file names) are one
    multi-date sample ``[T, C, size, size]`` ordered by date (SatMAE-temporal); every stack must hold
    the same number of dates.
    """

    bands: list[str] | None = None  # band names to read, in this order (None: every band of the scene)
    sensor: str | None = None  # band catalogue: sentinel2 | landsat7 (names, aliases, wavelengths)
    size: int = bounded(96, ge=1)  # chip side in pixels; a multiple of tokenizer.patch
    stride: int | None = bounded(None, ge=1)  # pixels between chip corners (None: = size, no overlap)
    max_nodata: float = bounded(0.5, ge=0, le=1)  # chips with a larger share of missing pixels are left out
    gsd: float | None = bounded(None, gt=0)  # metres per pixel when the file has no CRS
    flip: bool = True  # train: random horizontal and vertical flips
    repeats: int = bounded(1, ge=1)  # passes over the chips per epoch
    stack: bool = False  # scenes of one grid (CRS, transform, shape) at different dates → [T, C, H, W] samples


@dataclass
class SatelliteTokenizerConfig:
    """How raw multispectral chips become tokens (see :mod:`mpt_satellite.tokenizer`).

    ``kind: groups`` — SatMAE (Cong et al. NeurIPS 2022, ``models_mae_group_channels.py``): one patch
    embedding per spectral group of ``groups`` (SatMAE: B2,3,4,8 / B5,6,7,8A / B11,12), tokens on the
    ``(G, H/p, W/p)`` grid, positions = spatial sin-cos ‖ a ``group_dim``-wide group encoding.
    ``kind: anyband`` — DOFA (Xiong et al. 2024): one token per spatial patch over all bands, its
    embedding weights generated from each band's centre wavelength, so one encoder embeds any band set.

    ``gsd_positions``: Scale-MAE (Reed et al. ICCV 2023): the spatial coordinates are scaled per sample
    by ``gsd / reference_gsd`` (the batch's ``meta["gsd"]`` in metres). ``time_dim``: width of the date
    encoding of multi-date stacks ``[B, T, C, H, W]`` (SatMAE-temporal style; needs ``meta["dates"]``).
    """

    bands: list[str] = field(default_factory=list)  # band names in input order (filled from the data by fit)
    wavelengths: list[float] | None = None  # centre wavelength per band, nm; None = from the sensor catalogue
    sensor: str | None = None  # catalogue sensor (sentinel2, landsat7) supplying wavelengths by band name
    mean: list[float] | None = None  # per-band mean of the raw values; None until fitted on the training data
    std: list[float] | None = None  # per-band std of the raw values (> 0); None until fitted
    patch: int = bounded(8, ge=1)  # patch side p in pixels (SatMAE: 8 on 96² chips)
    kind: Literal["groups", "anyband"] = "groups"  # SatMAE band groups or DOFA wavelength-conditioned embedding
    groups: list[list[str]] | None = None  # groups: band names per group (each band in one group); None = one group
    group_dim: int = bounded(256, ge=2)  # groups: channels of the group encoding in the position (SatMAE: 256)
    gsd_positions: bool = False  # Scale-MAE: spatial coordinates × gsd / reference_gsd (needs meta["gsd"])
    reference_gsd: float = bounded(10.0, gt=0)  # metres per pixel at which coordinates are plain patch indices
    time_dim: int = bounded(0, ge=0)  # channels of the date encoding (even; 0 = single-date input only)
