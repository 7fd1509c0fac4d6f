"""3-D patch tokenizer of medical volumes (UNETR / Primus-style ViT stem: ``Conv3d(C, D, p, stride=p)``).

A batch (``batch.tensor``) is ``[B, C, X, Y, Z]``: crops in RAS at the plan's spacing with raw
intensities, NaN where the crop extends past the volume (what the dataset gives), or whole raw
volumes as stored with ``meta["affine"]`` (:func:`mpt_medical.plan.raw_batch`), which ``normalize``
first brings into the plan's frame (:func:`mpt_medical.plan.prepare_batch`). ``normalize`` then applies
the intensity policy (:func:`mpt_medical.plan.intensity`); ``tokenize`` cuts ``px × py × pz`` patches
on the ``(X/px, Y/py, Z/pz)`` grid (x-major); ``embed`` is ``Linear(C·px·py·pz → D)`` with NaN read as
0 (the conv stem with its weight reshaped). A patch without any voxel is padding (``valid`` False);
the MAE target never scores a NaN voxel.

Positions: 3-D sin-cos of the patch index (MAE's axis convention, the last axis first), each axis
scaled by ``spacing / reference_spacing``: plain indices for volumes resampled to the plan's spacing,
physical positions for volumes kept at their own (``data.spacing: none``), so anisotropic and
differently sized voxels sit where they are in millimetres.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mpt.contract import Batch, Tokenizer, TokenSet
from mpt.errors import ConfigError, DataError
from mpt.patches import patchify, unpatchify
from mpt_medical.config import MedicalTokenizerConfig
from mpt_medical.plan import intensity, prepare_batch, triple


class MedicalTokenizer(Tokenizer):
    """``[B, C, X, Y, Z]`` → (``normalize``) → patches ``[B, N, C, px, py, pz]``, coords ``[B, N, 3]``,
    ``grid = (X/px, Y/py, Z/pz)``; ``grid_axes = 3`` (3-D block and multiblock maskers apply);
    ``weight`` = the foreground share of each patch with ``foreground_weight``."""

    coord_dim = 3
    pos_kind = "sincos"
    grid_axes = 3
    missing_values = True  # NaN = outside the volume (crop padding)

    def __init__(self, config: MedicalTokenizerConfig, dim: int) -> None:
        self.patch = triple(config.patch, "tokenizer.patch")
        if config.intensity == "mri" and config.foreground == "above":
            raise ConfigError("tokenizer.foreground", "intensity mri z-scores inside foreground 'nonzero' (voxels "
                                                      "!= 0) or 'all'; 'above' is the CT rule")
        if config.window is not None and (len(config.window) != 2 or config.window[0] >= config.window[1]):
            raise ConfigError("tokenizer.window", f"expected [low, high] with low < high, got {config.window}")
        self.crop = None if config.crop is None else triple(config.crop, "tokenizer.crop")
        if self.crop is not None and any(c % p for c, p in zip(self.crop, self.patch, strict=True)):
            raise ConfigError("tokenizer.crop", f"crop {list(self.crop)} is not a multiple of the patch "
                                                f"{list(self.patch)} on every axis")
        self.spacing = None if config.spacing is None else triple(config.spacing, "tokenizer.spacing", float)
        self.reference = None if config.reference_spacing is None else triple(
            config.reference_spacing, "tokenizer.reference_spacing", float)
        self.patch_shape = (config.channels, *self.patch)
        super().__init__(dim)
        self.config = config
        self.proj = nn.Linear(config.channels * self.patch[0] * self.patch[1] * self.patch[2], dim)
        nn.init.xavier_uniform_(self.proj.weight)

    def check(self, x: Tensor) -> None:
        """A clear error for a batch this tokenizer cannot cut: wrong rank, channels or sizes."""
        if x.ndim != 5:
            raise DataError("input batch", f"a volume batch is [B, C, X, Y, Z], got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.channels:
            raise DataError("input batch", f"{x.shape[1]} channels, this encoder takes {self.config.channels} "
                                           "(tokenizer.channels); choose data.layout_4d or the sequences it was "
                                           "trained on")
        if any(s % p for s, p in zip(x.shape[2:], self.patch, strict=True)):
            raise DataError("input batch", f"volume {tuple(x.shape[2:])} voxels is not a multiple of the patch "
                                           f"{self.patch}: use data.crop = a multiple of tokenizer.patch")

    def normalize(self, batch: Batch) -> Batch:
        """Raw volumes (``meta["affine"]``) → the plan's frame; then the intensity policy. Foreground
        ``[B, 1, X, Y, Z]`` goes to ``meta["foreground"]`` (token weights)."""
        cfg = self.config
        if "affine" in batch.meta:
            batch = prepare_batch(batch, orientation=cfg.orientation, spacing=self.spacing, crop=self.crop,
                                  patch=self.patch)
        x = batch.tensor
        self.check(x)
        if bool(torch.isinf(x).any()):
            raise DataError("input batch", "±Inf voxels: volumes hold finite values (NaN only where no voxel is)")
        out, fg = intensity(x.float(), batch.meta, policy=cfg.intensity, foreground=cfg.foreground,
                            threshold=cfg.threshold, window=cfg.window, mean=cfg.mean, std=cfg.std)
        return batch.replace(input=out, foreground=fg)

    def _coords(self, batch: Batch, grid: tuple[int, int, int], device: torch.device) -> Tensor:
        b = batch.batch_size
        axes = [torch.arange(g, device=device, dtype=torch.float32) for g in grid]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(1, -1, 3).expand(b, -1, -1)
        spacing = batch.meta.get("spacing")
        if self.reference is None or spacing is None:
            return coords
        scale = torch.as_tensor(spacing, dtype=torch.float32, device=device) / torch.tensor(self.reference,
                                                                                            device=device)
        return coords * scale[:, None, :]

    @torch.no_grad()
    def tokenize(self, batch: Batch) -> TokenSet:
        """A normalised batch → patches in (x, y, z) order, positions, validity and foreground weights."""
        x = batch.tensor
        self.check(x)
        grid = tuple(s // p for s, p in zip(x.shape[2:], self.patch, strict=True))
        patches = patchify(x.float(), self.patch)  # [B, N, C, px, py, pz]
        observed = ~patches.flatten(2).isnan().all(-1)
        if not bool(observed.any(1).all()):
            raise DataError("input batch", "a volume without any voxel in its crop (all NaN)")
        weight = None
        fg = batch.meta.get("foreground")
        if self.config.foreground_weight and fg is not None:
            weight = patchify(fg.float(), self.patch).flatten(2).mean(-1)  # foreground share [B, N]
        return TokenSet(patches=patches, coords=self._coords(batch, grid, x.device), grid=grid,  # type: ignore[arg-type]
                        valid=None if bool(observed.all()) else observed, weight=weight)

    def embed(self, tokens: TokenSet) -> Tensor:
        """``tokens.patches`` ``[B, n, C, px, py, pz]`` (NaN read as 0) → ``[B, n, dim]``."""
        return self.proj(tokens.patches.flatten(2).nan_to_num(0.0).to(self.proj.weight.dtype))

    def untokenize(self, patches: Tensor, grid: tuple[int, ...]) -> Tensor:
        """``[B, N, C, px, py, pz]`` on ``grid`` → ``[B, C, X, Y, Z]`` (figures)."""
        return unpatchify(patches, grid)

    def plan(self) -> dict[str, Any]:
        """The preprocessing plan in words and numbers (the card's ``plan``; ``mpt info`` prints it)."""
        cfg = self.config
        if cfg.intensity == "mri":
            policy = (f"mri: per-volume z-score over the foreground ({cfg.foreground}: "
                      + ("voxels != 0 as stored" if cfg.foreground == "nonzero" else "every voxel")
                      + "), whole volume before cropping; 0 outside the foreground")
        elif cfg.intensity == "ct":
            policy = f"ct: clip to {cfg.window} HU, then (x - {cfg.mean}) / {cfg.std} (training foreground)"
        else:
            policy = "none: raw values"
        return {"orientation": cfg.orientation, "spacing_mm": cfg.spacing if cfg.spacing is not None
                else "kept (each volume's own; positions scaled to reference_spacing)",
                "reference_spacing_mm": cfg.reference_spacing, "interpolation": "linear (separable trilinear)",
                "intensity": policy, "crop": list(self.crop) if self.crop is not None else "whole volume",
                "order": "statistics (stored voxels) → orientation → resampling → centre crop → intensity"}

    def card(self) -> dict[str, Any]:
        return {"patch": list(self.patch), "channels": self.config.channels, "plan": self.plan(),
                "input": "[B, C, X, Y, Z]: raw volumes as stored with meta['affine'] [B, 4, 4] "
                         "(mpt_medical.raw_batch(path)), replayed through the plan; or crops of the medical "
                         "dataset (RAS, plan spacing, raw intensities, NaN padding)",
                "patch_layout": "[C, px, py, pz] flattened channel-first (Conv3d stem weight = proj.weight "
                                "reshaped to [dim, C, px, py, pz])",
                "positions": "3-D sin-cos of (x, y, z) patch indices × spacing / reference_spacing, z block first"}
