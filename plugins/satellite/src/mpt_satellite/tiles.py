"""Tiled inference: a feature raster over a scene of any size (``mpt embed ENCODER --data scene.tif
--out features.tif``).

The scene is cut into non-overlapping ``data.size`` tiles (the last row and column overhang the edge:
those pixels are missing), read window by window, embedded ``batch_size`` tiles at a time by the
frozen encoder, and each tile's ``[h, w, D]`` patch features (band groups averaged) are written into
its window of the output GeoTIFF — D bands, one pixel per ``patch × patch`` input pixels, the
scene's CRS, its transform scaled by the patch. Patches without any valid pixel are NaN (the
output's nodata). Memory holds one batch of tiles and GDAL's block cache (capped at
:data:`GDAL_CACHE_MB`), never the scene or the output.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mpt.contract import Batch
from mpt_satellite.config import SatelliteDataConfig
from mpt_satellite.io import import_rasterio, probe_scene, read_window

GDAL_CACHE_MB = 256  # GDAL's block cache while tiling (its default, 5 % of RAM, would dominate the process)


def write_feature_raster(backbone: Any, scene: Path, out: Path, config: SatelliteDataConfig,  # noqa: ANN401
                         batch_size: int = 64, progress: bool = True) -> Path:
    """Embed every tile of ``scene`` with ``backbone`` (an :func:`mpt.load_encoder` result) → ``out``."""
    from rasterio.windows import Window

    rasterio = import_rasterio()
    info = probe_scene(scene, config.bands, config.sensor)
    tok = backbone.tokenizer
    p, size = int(tok.patch), config.size
    if size % p:
        raise ValueError(f"data.size={size} is not a multiple of the encoder's patch {p}")
    cells = size // p
    rows, cols = math.ceil(info.height / size), math.ceil(info.width / size)
    height, width = math.ceil(info.height / p), math.ceil(info.width / p)
    gsd = config.gsd if config.gsd is not None else info.gsd_m
    waves = torch.tensor([math.nan if b.wavelength_nm is None else b.wavelength_nm for b in info.bands])
    profile = {"driver": "GTiff", "height": height, "width": width, "count": backbone.dim, "dtype": "float32",
               "crs": info.crs, "transform": info.transform @ info.transform.scale(p, p), "nodata": math.nan,
               # strips of one tile row: each is written once, whole (no block rewritten, no file growth)
               "tiled": False, "blockysize": cells, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    backbone.eval()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(out, "w", **profile) as dst, torch.no_grad():
        for r in tqdm(range(rows), desc=f"tiling {scene.name}", unit="tile row", disable=not progress, leave=False):
            h = min(cells, height - r * cells)
            strip = np.full((backbone.dim, h, width), np.nan, np.float32)  # one row of tiles, written at once
            for start in range(0, cols, batch_size):
                part = range(start, min(start + batch_size, cols))
                grid = embed_tiles(backbone, [read_window(info, r * size, c * size, size) for c in part], info,
                                   gsd, waves, cells)
                for c, tile in zip(part, grid.numpy(), strict=True):
                    w = min(cells, width - c * cells)
                    strip[:, :, c * cells : c * cells + w] = tile[:h, :w].transpose(2, 0, 1)
            dst.write(strip, window=Window(0, r * cells, width, h))
    return out


def embed_tiles(backbone: Any, windows: list[tuple[np.ndarray, np.ndarray]], info: Any,  # noqa: ANN401
                gsd: float | None, waves: torch.Tensor, cells: int) -> torch.Tensor:
    """``read_window`` results → ``[n, cells, cells, D]`` patch features (band groups averaged; NaN for
    patches without a valid pixel and for tiles without any, which are not embedded)."""
    x = torch.from_numpy(np.stack([np.where(valid, values, np.nan).astype(np.float32) for values, valid in windows]))
    grid = torch.full((len(windows), cells, cells, backbone.dim), math.nan)
    seen = ~x.isnan().flatten(1).all(1)
    n = int(seen.sum())
    if n:
        meta = {"bands": [list(info.names)] * n, "wavelengths": waves.expand(n, -1),
                "gsd": torch.full((n,), math.nan if gsd is None else float(gsd))}
        enc = backbone(Batch(input=x[seen], meta=meta))
        feats = enc.tokens.float()
        if enc.valid is not None:
            feats = feats.masked_fill(~enc.valid[..., None], math.nan)
        grid[seen] = feats.reshape(n, -1, cells, cells, feats.shape[-1]).nanmean(1)
    return grid

