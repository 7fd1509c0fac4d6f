"""The satellite dataset and modality: chips, nodata, band metadata, fitted statistics, the card."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine

import mpt
from mpt.errors import ConfigError
from mpt_satellite.bands import sensor
from mpt_satellite.config import SatelliteDataConfig, SatelliteTokenizerConfig
from mpt_satellite.dataset import SatelliteDataset
from mpt_satellite.io import write_geotiff
from mpt_satellite.modality import DEMO_DATA

ROOT = Path(__file__).resolve().parents[3]
LANDSAT = Path(os.environ.get("MPT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "satellite" / "landsat7"


def scene(path: Path, nodata_rows: int = 0, width: int = 48) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.integers(100, 3000, size=(4, 40, width)).astype(np.uint16)
    a[:, :nodata_rows] = 0
    bands = sensor("sentinel2").select(["B02", "B03", "B04", "B08"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_geotiff(path, a, bands, crs="EPSG:32632", transform=Affine(10, 0, 500000, 0, -10, 5000000), nodata=0)
    return path, a


def test_chips_are_windows_of_the_scene_with_metadata_and_nan_for_nodata(tmp_path: Path) -> None:
    path, a = scene(tmp_path / "s.tif", nodata_rows=3)
    ds = SatelliteDataset(path, "probe", SatelliteDataConfig(size=16, stride=16), progress=False)
    assert len(ds) == 9 and ds.chips[2] == (0, 0, 32)  # 3 × 3 chips, the last flush with the edge
    s = ds[2]
    want = a[:, :16, 32:48].astype(np.float32)
    got = s.input.numpy()
    assert np.isnan(got[:, :3]).all() and np.array_equal(got[:, 3:], want[:, 3:])
    assert s.meta["gsd"] == 10.0 and s.meta["bands"] == ["B02", "B03", "B04", "B08"] and s.source == str(path)
    torch.testing.assert_close(s.meta["wavelengths"], torch.tensor([490.0, 560.0, 665.0, 842.0]))
    with pytest.warns(UserWarning, match="3 of 9 chips have more than 10% missing"):
        few = SatelliteDataset(path, "probe", SatelliteDataConfig(size=16, stride=16, max_nodata=0.1),
                               progress=False)
    assert len(few) == 6 and few.skipped_chips == 3


def test_fit_fills_bands_wavelengths_and_statistics_of_valid_pixels(tmp_path: Path) -> None:
    path, a = scene(tmp_path / "s.tif", nodata_rows=8, width=40)
    modality = mpt.get_modality("satellite")
    ds = SatelliteDataset(path, "probe", SatelliteDataConfig(size=40, stride=40, max_nodata=0.5), progress=False)
    fitted = modality.fit(ds, SatelliteTokenizerConfig(), progress=False)
    assert fitted.bands == ["B02", "B03", "B04", "B08"] and fitted.wavelengths == [490.0, 560.0, 665.0, 842.0]
    valid = a[:, 8:].reshape(4, -1).astype(np.float64)  # one chip; its first 8 rows are nodata
    np.testing.assert_allclose(fitted.mean, valid.mean(1), rtol=1e-6)
    np.testing.assert_allclose(fitted.std, valid.std(1), rtol=1e-4)
    with pytest.raises(ConfigError, match="tokenizer.bands"):
        modality.fit(ds, dataclasses.replace(fitted, bands=["B03", "B02", "B04", "B08"]), progress=False)


def test_demo_data_and_recipes() -> None:
    modality = mpt.get_modality("satellite")
    ds = modality.dataset(None, "train", SatelliteDataConfig(size=32, stride=16, gsd=10.0))
    assert [Path(s).name for s in ds.sources] == ["sentinel2_B02_B03_B04_B08.tif"] and len(ds) == 18 * 18
    assert (DEMO_DATA / "ATTRIBUTION.md").is_file() and ds[0].meta["gsd"] == 10.0
    assert modality.downstream_data(SatelliteDataConfig(repeats=4)).repeats == 1


@pytest.mark.skipif(not LANDSAT.is_dir(), reason=f"needs the shared Landsat-7 scene at {LANDSAT}")
def test_landsat_band_folder_reads_as_one_scene_with_its_nodata() -> None:
    ds = SatelliteDataset(LANDSAT, "probe", SatelliteDataConfig(size=64, sensor="landsat7"), progress=False)
    assert len(ds.bands) == 6 and ds.info[0].gsd_m == pytest.approx(28.5)
    assert ds.skipped_chips > 0 and all(bool(torch.isfinite(ds[i].input).any()) for i in range(len(ds)))


def test_multi_date_stacks_of_one_grid_ordered_by_date(tmp_path: Path) -> None:
    from mpt.config import build_config
    from mpt.trainer import pretrain

    for day in ("20200310", "20190101", "20200601"):
        scene(tmp_path / "stack" / f"s2_{day}.tif")
    ds = SatelliteDataset(tmp_path / "stack", "probe", SatelliteDataConfig(size=16, stride=16, stack=True),
                          progress=False)
    s = ds[0]
    assert s.input.shape == (3, 4, 16, 16) and len(ds) == 9
    assert s.meta["dates"].tolist() == [17897.0, 18331.0, 18414.0]  # 2019-01-01, 2020-03-10, 2020-06-01
    scene(tmp_path / "other" / "a_20200101.tif")
    scene(tmp_path / "other" / "b.tif")
    with pytest.raises(ConfigError, match="data.stack.*b.tif has no acquisition date"):
        SatelliteDataset(tmp_path / "other", "probe", SatelliteDataConfig(size=16, stack=True), progress=False)
    modality = mpt.get_modality("satellite")  # a short SatMAE-temporal style run: dates encoded, loss falls
    cfg = build_config(modality, "demo", None, ("data.size=16", "data.stride=8", "data.stack=true",
                                                "tokenizer.time_dim=16", "tokenizer.group_dim=16", "model.dim=64",
                                                "model.depth=2", "mae.decoder_dim=64", "mae.decoder_depth=1",
                                                "train.batch_size=8", "data.gsd=null"),
                       {"train": {"max_steps": 30, "log_every": 1, "figure_every": 30}})
    pretrain(cfg, modality, tmp_path / "run", data=tmp_path / "stack", progress=False)
    import json

    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses
