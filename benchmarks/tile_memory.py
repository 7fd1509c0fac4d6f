"""Peak memory and speed of tiled inference over a large generated scene (satellite feature rasters).

Writes a ``--gib`` GiB Sentinel-2 4-band uint16 GeoTIFF (random values, uncompressed, written block by
block) unless ``--scene`` names one, then runs ``mpt_satellite.tiles.write_feature_raster`` with the
encoder ``ENCODER`` and prints one JSON line: scene size, tiles, wall seconds, tiles/s, peak RSS of
the process (``ru_maxrss``) and its increase over the RSS before tiling. The scene is never read
whole, so the peak must stay near one batch of tiles, whatever ``--gib``.

    python benchmarks/tile_memory.py runs/sat/encoder --gib 2 --work /tmp/tiles
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_throughput import cpu_capability, load_avg  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_scene(path: Path, gib: float, block: int = 1024) -> Path:
    """A square 4-band uint16 scene of about ``gib`` GiB, written ``block`` rows at a time."""
    from affine import Affine

    from mpt_satellite.bands import sensor
    from mpt_satellite.io import import_rasterio, write_geotiff

    side = int(math.sqrt(gib * 2**30 / (4 * 2)) // block * block)
    bands = sensor("sentinel2").select(["B02", "B03", "B04", "B08"])
    first = np.zeros((4, block, side), np.uint16)
    write_geotiff(path, first, bands, crs="EPSG:32632", transform=Affine(10, 0, 500000, 0, -10, 5000000), nodata=0,
                  compress="none")  # the header, band names and wavelengths; then the full-size file below
    rasterio = import_rasterio()
    from rasterio.windows import Window

    with rasterio.open(path) as small:
        profile = {**small.profile, "height": side, "width": side, "compress": None, "BIGTIFF": "YES",
                   "tiled": True, "blockxsize": 256, "blockysize": 256}
        tags = [small.tags(i + 1) for i in range(4)]
        descriptions = small.descriptions
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for i in range(4):
            dst.update_tags(i + 1, **tags[i])
            dst.set_band_description(i + 1, descriptions[i])
        for row in range(0, side, block):
            dst.write(rng.integers(100, 4000, (4, block, side), dtype=np.uint16), window=Window(0, row, side, block))
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("encoder", type=Path)
    p.add_argument("--gib", type=float, default=2.0)
    p.add_argument("--scene", type=Path, default=None)
    p.add_argument("--work", type=Path, default=Path("runs/tiles"))
    p.add_argument("--size", type=int, default=64, help="tile side (data.size)")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    import mpt
    from mpt.features import data_config
    from mpt.pretrained import read_card
    from mpt_satellite.tiles import write_feature_raster

    args.work.mkdir(parents=True, exist_ok=True)
    scene = args.scene or write_scene(args.work / "scene.tif", args.gib)
    card = read_card(args.encoder)
    modality = mpt.get_modality("satellite")
    cfg = data_config(card, modality, [f"data.size={args.size}"])
    backbone = mpt.load_encoder(args.encoder)
    before = rss_mib()
    t0 = time.perf_counter()
    out = write_feature_raster(backbone, scene, args.work / "features.tif", cfg, batch_size=args.batch, progress=True)
    wall = time.perf_counter() - t0
    import rasterio

    with rasterio.open(scene) as src:
        h, w, c = src.height, src.width, src.count
        scene_gib = h * w * c * np.dtype(src.dtypes[0]).itemsize / 2**30
    tiles = math.ceil(h / args.size) * math.ceil(w / args.size)
    record = {"bench": "tile_memory", "scene_gib": scene_gib, "scene_shape": [c, h, w], "tile": args.size,
              "batch": args.batch, "tiles": tiles, "wall_s": wall, "tiles_per_s": tiles / wall,
              "rss_before_mib": before, "peak_rss_mib": rss_mib(), "peak_rss_increase_mib": rss_mib() - before,
              "features": str(out), "cpu_capability": cpu_capability(next(backbone.parameters()).device),
              "cpu_load": load_avg(), "encoder": str(args.encoder)}
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
