"""Real pretraining runs on the shared Landsat-7 scene (band folder, nodata) and the demo chip:
MAE and JEPA lower the loss; the card holds the bands; a loaded encoder refuses other bands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import mpt
from mpt.config import build_config
from mpt.contract import Batch
from mpt.errors import DataError
from mpt.trainer import pretrain

ROOT = Path(__file__).resolve().parents[3]
LANDSAT = Path(os.environ.get("MPT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "satellite" / "landsat7"
SMALL = ("model.dim=64", "model.depth=2", "mae.decoder_dim=64", "mae.decoder_depth=1", "jepa.predictor_dim=64",
         "jepa.predictor_depth=1", "tokenizer.group_dim=16", "train.batch_size=8")
LANDSAT_SETS = ("data.sensor=landsat7", "data.size=32", "data.stride=32", "data.gsd=null", "data.repeats=2",
                "tokenizer.groups=[[B1,B2,B3],[B4,B5,B7]]")


def run(out: Path, *sets: str, data: Path | None, steps: int = 60, objective: str = "mae") -> list[float]:
    modality = mpt.get_modality("satellite")
    cfg = build_config(modality, "demo", None, (*SMALL, *sets),
                       {"objective": objective, "train": {"max_steps": steps, "log_every": 1, "figure_every": steps}})
    pretrain(cfg, modality, out, data=data, progress=False)
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.skipif(not LANDSAT.is_dir(), reason=f"needs the shared Landsat-7 scene at {LANDSAT}")
@pytest.mark.parametrize("objective", ["mae", "jepa"])
def test_mae_and_jepa_lower_the_loss_on_landsat(tmp_path: Path, objective: str) -> None:
    losses = run(tmp_path / "run", *LANDSAT_SETS, data=LANDSAT, objective=objective)
    assert all(v == v for v in losses)  # nodata never reaches the loss as NaN
    assert mean(losses[-10:]) < (0.85 if objective == "mae" else 0.7) * mean(losses[:5]), losses
    card = json.loads((tmp_path / "run" / "encoder" / "config.json").read_text())
    assert card["tokenizer"]["config"]["bands"] == ["B1", "B2", "B3", "B4", "B5", "B7"]


def test_demo_run_card_and_band_checks_of_a_loaded_encoder(tmp_path: Path) -> None:
    losses = run(tmp_path / "run", data=None, steps=40)
    assert mean(losses[-8:]) < 0.9 * mean(losses[:5]), losses
    assert (tmp_path / "run" / "figures" / "step-000040.png").is_file()
    encoder = mpt.load_encoder(tmp_path / "run" / "encoder")
    x = torch.rand(2, 4, 16, 16) * 3000
    with torch.no_grad():
        out = encoder(Batch(input=x, meta={"bands": [["B02", "B03", "B04", "B08"]] * 2, "gsd": torch.full((2,), 10.0)}))
    assert out.pooled.shape == (2, 64)
    with pytest.raises(DataError, match="B03.*B02|B02.*B03"):
        encoder(Batch(input=x, meta={"bands": [["B03", "B02", "B04", "B08"]] * 2}))


def test_feature_raster_over_a_scene_keeps_its_georeference(tmp_path: Path) -> None:
    """`mpt embed ENCODER --data scene.tif --out features.tif`: one pixel per patch, same CRS, the
    transform scaled by the patch, NaN where a patch has no valid pixel, features equal to the
    encoder's on the same tile."""
    import numpy as np
    import rasterio
    from affine import Affine
    from typer.testing import CliRunner

    from mpt_cli.app import app
    from mpt_satellite.bands import sensor
    from mpt_satellite.io import write_geotiff

    run(tmp_path / "run", data=None, steps=2)
    scene = np.random.default_rng(0).integers(100, 3000, size=(4, 40, 72)).astype(np.uint16)
    scene[:, :, 64:] = 0  # the last 8 columns are nodata
    transform = Affine(10, 0, 500000, 0, -10, 5000000)
    path = write_geotiff(tmp_path / "scene.tif", scene, sensor("sentinel2").select(["B02", "B03", "B04", "B08"]),
                         crs="EPSG:32632", transform=transform, nodata=0)
    result = CliRunner().invoke(app, ["embed", str(tmp_path / "run" / "encoder"), "--data", str(path), "--out",
                                      str(tmp_path / "features.tif")])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "features.tif") as out:
        feats = out.read()
        assert (out.count, out.height, out.width) == (64, 10, 18) and str(out.crs) == "EPSG:32632"
        assert out.transform == transform * Affine.scale(4, 4)
    assert np.isnan(feats[:, :, 16:]).all() and not np.isnan(feats[:, :, :16]).any()
    encoder = mpt.load_encoder(tmp_path / "run" / "encoder")
    with torch.no_grad():
        tile = torch.from_numpy(scene[:, :32, :32].astype(np.float32))[None]
        want = encoder(Batch(input=tile, meta={"gsd": torch.tensor([10.0])})).tokens[0]  # [2 groups × 64, D]
    want = want.reshape(2, 8, 8, -1).mean(0).permute(2, 0, 1).numpy()
    np.testing.assert_allclose(feats[:, :8, :8], want, rtol=1e-4, atol=1e-4)
