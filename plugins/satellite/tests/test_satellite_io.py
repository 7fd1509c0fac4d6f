"""Scene readers: band files and names, windowed reads, nodata, scale/offset, grid checks, every bad input."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from mpt.errors import DataError
from mpt_satellite import io as sio
from mpt_satellite.bands import SENSORS, Band, BandSet, check_bands, rgb_indices
from mpt_satellite.io import (
    _band_tokens,
    chip_grid,
    find_rasters,
    nodata_share,
    parse_date,
    probe_scene,
    read_window,
    write_geotiff,
)

ROOT = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("MPT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "satellite"
LANDSAT7 = SHARED / "landsat7"
UTM = "EPSG:32632"
T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)  # 10 m pixels
S2_10M = SENSORS["sentinel2"].select(["B02", "B03", "B04", "B08"])


def ramp(c: int, h: int, w: int, dtype: str = "float32") -> np.ndarray:
    """``[c, h, w]`` with a distinct value per element: ``1000 c + w r + col + 1``."""
    return (np.arange(c)[:, None, None] * 1000 + np.arange(h * w).reshape(h, w) + 1).astype(dtype)


def band_folder(tmp_path: Path, names: list[str], prefix: str = "scene_", h: int = 40, w: int = 30,
                transform: Affine = T10) -> tuple[Path, np.ndarray]:
    """A folder of single-band files ``<prefix><name>.tif`` and their stacked data."""
    folder = tmp_path / "scene"
    folder.mkdir(exist_ok=True)
    data = ramp(len(names), h, w)
    for i, n in enumerate(names):
        write_geotiff(folder / f"{prefix}{n}.tif", data[i:i + 1], BandSet([Band(n)]), UTM, transform)
    return folder, data


def full(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


# --------------------------------------------------------------------------- write / probe round trip


def test_write_geotiff_round_trip(tmp_path: Path) -> None:
    bands = BandSet([Band(b.name, b.wavelength_nm, b.gsd_m, nodata=0.0, common_name=b.common_name) for b in S2_10M],
                    "sentinel2")
    data = ramp(4, 300, 260, "uint16")
    path = write_geotiff(tmp_path / "s2.tif", data, bands, UTM, T10, date=dt.date(2021, 6, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2.tif"]  # everything inside the TIFF, no .aux.xml
    info = probe_scene(path)
    assert info.bands == bands  # names, wavelengths, GSDs, nodata, scale/offset, common names and sensor
    assert (info.height, info.width, info.count, info.dtype, info.crs) == (300, 260, 4, "uint16", UTM)
    assert info.transform == T10 and info.gsd_m == 10.0 and info.date == dt.date(2021, 6, 3)
    assert info.files == (path,) * 4 and info.indexes == (1, 2, 3, 4) and info.available == bands.names
    check_bands(S2_10M, info.bands, path)
    assert pickle.loads(pickle.dumps(info)) == info  # goes to DataLoader workers
    np.testing.assert_array_equal(full(path), data)


def test_write_geotiff_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"C = 4 bands \(B02, B03, B04, B08\), got shape \(3, 5, 5\)"):
        write_geotiff(tmp_path / "x.tif", np.zeros((3, 5, 5)), S2_10M, UTM, T10)
    with pytest.raises(ValueError, match="different nodata values"):
        write_geotiff(tmp_path / "x.tif", np.zeros((2, 5, 5)), BandSet([Band("a", nodata=0), Band("b", nodata=-1)]))


def test_wavelengths_from_envi_and_gdal_imagery_tags(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "x.tif", ramp(2, 8, 8), BandSet([Band("a"), Band("b")]), UTM, T10)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(1, wavelength="0.665", wavelength_units="Micrometers")
        dst.update_tags(2, ns="IMAGERY", CENTRAL_WAVELENGTH_UM="0.842")
    assert probe_scene(path).bands.wavelengths == pytest.approx((665.0, 842.0))


# --------------------------------------------------------------------------- windows and chips


@pytest.mark.parametrize("shape", [(3, 300, 280), (2, 37, 53)])  # tiled 256² blocks / strips
def test_windows_equal_slices_of_the_full_array(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    names = ["a", "b", "c"][:shape[0]]
    path = write_geotiff(tmp_path / "x.tif", ramp(*shape), BandSet([Band(n) for n in names]), UTM, T10)
    info = probe_scene(path)
    whole = full(path)  # small: the test may read it whole
    for size, stride in ((32, None), (100, 60), (shape[1], 7)):
        for row, col in chip_grid(info, size, stride):
            x, valid = read_window(info, row, col, size)
            h, w = min(size, info.height - row), min(size, info.width - col)
            assert x.dtype == np.float32 and x.shape == valid.shape == (shape[0], size, size)
            np.testing.assert_array_equal(x[:, :h, :w], whole[:, row:row + h, col:col + w])
            assert valid[:, :h, :w].all() and not valid[:, h:].any() and not valid[:, :, w:].any()
            assert not x[:, h:].any() and not x[:, :, w:].any()


def test_window_overhanging_the_edge_is_padded_invalid(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "x.tif", ramp(1, 20, 20), BandSet([Band("a")]), UTM, T10)
    info = probe_scene(path)
    x, valid = read_window(info, -5, 15, 10)
    np.testing.assert_array_equal(x[0, 5:, :5], ramp(1, 20, 20)[0, :5, 15:])
    assert valid[0, 5:, :5].all() and valid.sum() == 25 and nodata_share(valid) == 0.75
    with pytest.raises(IndexError, match="outside the 20×20 scene"):
        read_window(info, 20, 0, 10)


def test_chip_grid_covers_the_scene_and_ends_flush(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "x.tif", ramp(1, 70, 45), BandSet([Band("a")]), UTM, T10)
    info = probe_scene(path)
    for size, stride in ((16, None), (16, 10), (30, 30), (45, 5), (100, None)):
        grid = chip_grid(info, size, stride)
        covered = np.zeros((70, 45), int)
        for r, c in grid:
            covered[r:r + size, c:c + size] += 1
        assert covered.min() >= 1, (size, stride)
        rows, cols = sorted({r for r, _ in grid}), sorted({c for _, c in grid})
        assert rows[0] == 0 and cols[0] == 0
        assert rows[-1] == max(0, 70 - size) and cols[-1] == max(0, 45 - size)  # flush with the edge
        assert len(grid) == len(set(grid)) == len(rows) * len(cols)
        if stride is not None and size < 45:
            assert all(b - a <= stride for a, b in zip(cols, cols[1:], strict=False))
    assert chip_grid(info, 16)[:4] == [(0, 0), (0, 16), (0, 29), (16, 0)]
    with pytest.raises(ValueError, match="positive"):
        chip_grid(info, 16, 0)


def test_nodata_nan_and_inf_are_invalid(tmp_path: Path) -> None:
    data = ramp(2, 16, 16)
    data[0, 1, 2] = -99999.0
    data[0, 3, 4] = np.nan
    data[1, 5, 6] = np.inf
    data[1, 7, 8] = -np.inf
    path = write_geotiff(tmp_path / "x.tif", data, BandSet([Band("a"), Band("b")]), UTM, T10, nodata=-99999.0)
    info = probe_scene(path)
    assert info.nodata == (-99999.0, -99999.0)
    x, valid = read_window(info, 0, 0, 16)
    bad = [(0, 1, 2), (0, 3, 4), (1, 5, 6), (1, 7, 8)]
    assert (~valid).sum() == 4 and all(not valid[i] and x[i] == 0 for i in bad)
    assert np.isfinite(x).all()
    keep = valid.copy()
    np.testing.assert_array_equal(x[keep], data[keep])
    assert nodata_share(valid) == pytest.approx(4 / (2 * 256))
    assert nodata_share(valid, pixels=True) == pytest.approx(4 / 256)


def test_integer_nodata_and_a_nodata_outside_the_dtype(tmp_path: Path) -> None:
    data = ramp(1, 8, 8, "uint16")
    data[0, 0, :3] = 0
    path = write_geotiff(tmp_path / "x.tif", data, BandSet([Band("a", nodata=0.0)]), UTM, T10)
    _, valid = read_window(probe_scene(path), 0, 0, 8)
    assert (~valid).sum() == 3 and not valid[0, 0, :3].any()
    other = write_geotiff(tmp_path / "y.tif", ramp(1, 8, 8, "uint8"), BandSet([Band("a")]), UTM, T10)
    info = probe_scene(other)
    info = dataclasses.replace(info, bands=BandSet([Band("a", nodata=-99999.0)]))
    assert read_window(info, 0, 0, 8)[1].all()  # -99999 is no uint8 value: nothing matches it


def test_scale_and_offset_are_applied(tmp_path: Path) -> None:
    data = ramp(2, 8, 8, "uint16") + 1000
    data[1, 0, 0] = 0
    bands = BandSet([Band("B04", 665.0, nodata=0.0, scale=1e-4, offset=-0.1), Band("B08", 842.0, nodata=0.0)])
    path = write_geotiff(tmp_path / "x.tif", data, bands, UTM, T10)
    info = probe_scene(path)
    assert [(b.scale, b.offset) for b in info.bands] == [(1e-4, -0.1), (1.0, 0.0)]
    x, valid = read_window(info, 0, 0, 8)
    np.testing.assert_allclose(x[0], data[0] * 1e-4 - 0.1, rtol=1e-6)
    np.testing.assert_array_equal(x[1][valid[1]], data[1][valid[1]])
    assert not valid[1, 0, 0] and x[1, 0, 0] == 0


def test_internal_mask_band_marks_invalid(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "x.tif", ramp(2, 16, 16), BandSet([Band("a"), Band("b")]), UTM, T10)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dst:
        mask = np.full((16, 16), 255, np.uint8)
        mask[:4] = 0
        dst.write_mask(mask)
    _, valid = read_window(probe_scene(path), 0, 0, 16)
    assert not valid[:, :4].any() and valid[:, 4:].all()


# --------------------------------------------------------------------------- band selection


def test_band_selection_by_name_and_order_in_a_multiband_file(tmp_path: Path) -> None:
    data = ramp(4, 10, 10)
    path = write_geotiff(tmp_path / "x.tif", data, S2_10M, UTM, T10)
    info = probe_scene(path, bands=["B08", "b2", "B04"])
    assert info.names == ("B08", "B02", "B04") and info.indexes == (4, 1, 3)
    assert info.available == S2_10M.names
    x, _ = read_window(info, 0, 0, 10)
    np.testing.assert_array_equal(x, data[[3, 0, 2]])
    y, _ = read_window(info, 0, 0, 10, bands=["B04", "B08"])  # a further selection at read time
    np.testing.assert_array_equal(y, data[[2, 3]])
    assert probe_scene(path, bands=["nir", "red"], sensor="sentinel2").names == ("B08", "B04")  # common names


def test_missing_band_lists_the_available_names(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "x.tif", ramp(4, 10, 10), S2_10M, UTM, T10)
    with pytest.raises(DataError, match=r"x.tif: no band 'B05'; available bands: B02, B03, B04, B08") as err:
        probe_scene(path, bands=["B02", "B05"])
    assert err.value.path == str(path)
    info = probe_scene(path)
    with pytest.raises(DataError, match="no band 'B11'; available bands: B02, B03, B04, B08"):
        read_window(info, 0, 0, 4, bands=["B11"])
    with pytest.raises(DataError, match="requested twice"):
        probe_scene(path, bands=["B02", "b2"])


def test_file_without_band_names(tmp_path: Path) -> None:
    plain = BandSet([Band(str(i)) for i in range(1, 7)])
    path = write_geotiff(tmp_path / "x.tif", ramp(6, 8, 8), plain, UTM, T10)
    with rasterio.open(path, "r+") as dst:
        for i in range(1, 7):
            dst.set_band_description(i, "")
    assert probe_scene(path).names == ("1", "2", "3", "4", "5", "6")  # rasterio's 1-based indexes
    assert probe_scene(path, bands=["B3", "1"]).names == ("3", "1")
    info = probe_scene(path, sensor="landsat7")  # exactly the sensor's 6 bands: catalogue order
    assert info.names == SENSORS["landsat7"].names and info.bands.wavelengths[0] == 485.0
    with pytest.raises(DataError, match=r"its 6 bands have no names .* 13 bands of sentinel2 .*gdal_edit -bandname"):
        probe_scene(path, sensor="sentinel2")


def test_file_wavelength_contradicting_the_sensor(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "x.tif", ramp(1, 8, 8), BandSet([Band("B4", 835.0)]), UTM, T10)
    assert probe_scene(path, sensor="landsat7").names == ("B4",)
    with pytest.raises(DataError, match=r"band 1 \('B4'\) has centre wavelength 835 nm in the file but B04 \(665 nm\)"):
        probe_scene(path, sensor="sentinel2")


# --------------------------------------------------------------------------- band folders


@pytest.mark.parametrize(("stems", "names"), [
    (["lsat7_2000_10", "lsat7_2000_20", "lsat7_2000_70"], ["10", "20", "70"]),
    (["LE07_L1TP_016035_20000301_20160919_01_T1_B1", "LE07_L1TP_016035_20000301_20160919_01_T1_B7"], ["B1", "B7"]),
    (["T32TQM_20200101T101010_B04_10m", "T32TQM_20200101T101010_B8A_20m"], ["B04", "B8A"]),
    (["red", "green", "nir"], ["red", "green", "nir"]),
    (["scene-B02", "scene-B03"], ["B02", "B03"]),
    (["only_B04"], ["B04"]),
])
def test_band_names_from_file_names(stems: list[str], names: list[str]) -> None:
    assert _band_tokens(stems) == names


def test_band_folder_reads_like_a_multiband_file(tmp_path: Path) -> None:
    folder, data = band_folder(tmp_path, ["10", "20", "30", "40", "50", "70"], prefix="lsat7_2000_")
    info = probe_scene(folder)
    assert info.names == ("10", "20", "30", "40", "50", "70") and info.bands.wavelengths == (None,) * 6
    assert info.files == tuple(folder / f"lsat7_2000_{n}.tif" for n in info.names) and info.indexes == (1,) * 6
    for row, col in chip_grid(info, 16, 12):
        x, valid = read_window(info, row, col, 16)
        np.testing.assert_array_equal(x, data[:, row:row + 16, col:col + 16])
        assert valid.all()
    sel = probe_scene(folder, bands=["30", "20", "10"])
    np.testing.assert_array_equal(read_window(sel, 0, 0, 8)[0], data[[2, 1, 0], :8, :8])
    cat = probe_scene(folder, sensor="landsat7", bands=["red", "green", "blue"])
    assert cat.names == ("B3", "B2", "B1") and cat.bands.wavelengths == (660.0, 560.0, 485.0)
    assert rgb_indices(probe_scene(folder, sensor="landsat7").bands) == (2, 1, 0)
    assert find_rasters(tmp_path) == [folder]


def test_band_folder_of_a_sensor_is_in_catalogue_order(tmp_path: Path) -> None:
    folder, data = band_folder(tmp_path, ["B02", "B08", "B8A", "B11"], prefix="T32TQM_20200101T101010_")
    assert probe_scene(folder).names == ("B02", "B08", "B11", "B8A")  # file-name order
    info = probe_scene(folder, sensor="sentinel2")
    assert info.names == ("B02", "B08", "B8A", "B11") and info.date == dt.date(2020, 1, 1)
    np.testing.assert_array_equal(read_window(info, 0, 0, 8)[0], data[:, :8, :8])  # files written in this order


def test_band_folder_with_a_file_outside_the_sensor(tmp_path: Path) -> None:
    folder, _ = band_folder(tmp_path, ["B1", "B2", "B6"])
    with pytest.raises(DataError, match=r"scene_B6.tif: band 'B6' \(from the file name\) is not a band of landsat7"):
        probe_scene(folder, sensor="landsat7")
    assert probe_scene(folder, sensor="landsat7", bands=["B2", "B1"]).names == ("B2", "B1")


@pytest.mark.parametrize(("change", "match"), [
    ("crs", r"scene_b.tif: CRS EPSG:32633 differs from scene_a.tif's CRS EPSG:32632"),
    ("shape", r"scene_b.tif: shape 40×31 \(rows×columns\) differs from scene_a.tif's 40×30"),
    ("transform", r"scene_b.tif: transform \(20.0, 0.0, 500000.0, 0.0, -20.0, 5000000.0\) differs from "
                  r"scene_a.tif's \(10.0, .*gdalwarp"),
])
def test_band_files_on_other_grids(tmp_path: Path, change: str, match: str) -> None:
    folder, _ = band_folder(tmp_path, ["a", "c"])
    data = ramp(1, 40, 31 if change == "shape" else 30)
    write_geotiff(folder / "scene_b.tif", data, BandSet([Band("b")]), "EPSG:32633" if change == "crs" else UTM,
                  Affine(20.0, 0.0, 500000.0, 0.0, -20.0, 5000000.0) if change == "transform" else T10)
    with pytest.raises(DataError, match=match) as err:
        probe_scene(folder)
    assert err.value.path == str(folder / "scene_b.tif")
    assert probe_scene(folder, bands=["a", "c"]).names == ("a", "c")  # the other bands alone are fine


def test_band_folder_problems(tmp_path: Path) -> None:
    folder, _ = band_folder(tmp_path, ["B02", "B03"])
    write_geotiff(folder / "scene_B2.tif", ramp(1, 40, 30), BandSet([Band("x")]), UTM, T10)
    with pytest.raises(DataError, match="two files are band 'B2': scene_B02.tif and scene_B2.tif"):
        probe_scene(folder)
    os.remove(folder / "scene_B2.tif")
    write_geotiff(folder / "scene_B04.tif", ramp(2, 40, 30), BandSet([Band("x"), Band("y")]), UTM, T10)
    with pytest.raises(DataError, match="scene_B04.tif: has 2 bands, but a band folder holds one single-band file"):
        probe_scene(folder)
    with pytest.raises(DataError, match="mixes single-band files"):
        find_rasters(tmp_path)
    assert len(find_rasters(tmp_path, layout="files")) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="a band folder without GeoTIFF files"):
        probe_scene(empty)


def test_find_rasters(tmp_path: Path) -> None:
    for i in range(2):
        write_geotiff(tmp_path / f"multi{i}.tif", ramp(3, 8, 8), BandSet([Band("a"), Band("b"), Band("c")]), UTM, T10)
    folder, _ = band_folder(tmp_path, ["B02", "B03"])
    (tmp_path / "notes.txt").write_text("not a raster")
    assert find_rasters(tmp_path) == [tmp_path / "multi0.tif", tmp_path / "multi1.tif", folder]
    assert find_rasters(tmp_path / "multi1.tif") == [tmp_path / "multi1.tif"]
    assert find_rasters(tmp_path, layout="folders") == [tmp_path, folder]
    with pytest.raises(DataError, match="unsupported extension '.txt'"):
        find_rasters(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no such file or folder"):
        find_rasters(tmp_path / "nothing")
    (tmp_path / "void").mkdir()
    with pytest.raises(DataError, match="no GeoTIFF files in this folder"):
        find_rasters(tmp_path / "void")


# --------------------------------------------------------------------------- bad files


def test_empty_corrupt_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.tif: empty file \(0 bytes\)"):
        probe_scene(tmp_path / "empty.tif")
    (tmp_path / "text.tif").write_text("hello, not a tiff")
    with pytest.raises(DataError, match="text.tif: cannot be read as a GeoTIFF .*not recognized"):
        probe_scene(tmp_path / "text.tif")
    good = write_geotiff(tmp_path / "good.tif", np.random.default_rng(0).random((2, 300, 280), np.float32),
                         BandSet([Band("a"), Band("b")]), UTM, T10)
    blob = good.read_bytes()
    (tmp_path / "cut.tif").write_bytes(blob[:len(blob) // 2])  # GDAL writes the directory last: it is gone
    with pytest.raises(DataError, match="cut.tif: cannot be read as a GeoTIFF .*TIFFReadDirectory"):
        probe_scene(tmp_path / "cut.tif")
    rasterio.shutil.copy(good, tmp_path / "head.tif", driver="GTiff", compress="deflate")  # directory first
    blob = (tmp_path / "head.tif").read_bytes()
    (tmp_path / "head_cut.tif").write_bytes(blob[:int(len(blob) * 0.9)])
    with pytest.raises(DataError, match=r"head_cut.tif: band 1 \('a'\): its last block does not decode"):
        probe_scene(tmp_path / "head_cut.tif")
    with pytest.raises(DataError, match="no such file"):
        probe_scene(tmp_path / "missing.tif")
    with pytest.raises(DataError, match="unsupported extension '.png'"):
        (tmp_path / "x.png").write_bytes(b"\x89PNG")
        probe_scene(tmp_path / "x.png")


def test_a_file_changed_after_probing(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "x.tif", ramp(1, 8, 8), BandSet([Band("a")]), UTM, T10)
    info = probe_scene(path)
    np.testing.assert_array_equal(read_window(info, 0, 0, 8)[0], ramp(1, 8, 8))
    assert sio._cached_open(path) is sio._cached_open(path)  # kept open between reads
    write_geotiff(path, ramp(1, 8, 8) * 2, BandSet([Band("a")]), UTM, T10)
    os.utime(path, ns=(1, 1))  # another modification time, whatever the clock resolution
    np.testing.assert_array_equal(read_window(info, 0, 0, 8)[0], ramp(1, 8, 8) * 2)  # reopened
    path.write_bytes(b"")
    with pytest.raises(DataError, match="x.tif: empty file"):
        read_window(info, 0, 0, 8)
    sio.close_files()
    assert not sio._OPEN


# --------------------------------------------------------------------------- georeference and dates


def test_pixel_size_in_metres(tmp_path: Path) -> None:
    bands = BandSet([Band("a")])
    feet = write_geotiff(tmp_path / "ft.tif", ramp(1, 4, 4), bands, "EPSG:2264", Affine(100.0, 0, 0, 0, -100.0, 0))
    assert probe_scene(feet).pixel_size_m == pytest.approx((30.48006, 30.48006))  # NC State Plane, US survey feet
    geo = write_geotiff(tmp_path / "geo.tif", ramp(1, 4, 4), bands, "EPSG:4326",
                        Affine(0.001, 0, 10.0, 0, -0.001, 60.002))  # centre at 60° N
    dx, dy = probe_scene(geo).pixel_size_m or (0, 0)
    assert dy == pytest.approx(111.19, rel=1e-3) and dx == pytest.approx(111.19 / 2, rel=1e-3)
    rotated = write_geotiff(tmp_path / "rot.tif", ramp(1, 4, 4), bands, UTM, Affine(6.0, 8.0, 0, 8.0, -6.0, 0))
    assert probe_scene(rotated).gsd_m == pytest.approx(10.0)
    plain = write_geotiff(tmp_path / "plain.tif", ramp(1, 4, 4), bands)
    info = probe_scene(plain)
    assert info.crs is None and info.pixel_size_m is None and info.gsd_m is None
    assert read_window(info, 0, 0, 4)[1].all()


@pytest.mark.parametrize(("text", "date"), [
    ("LE07_L1TP_016035_20000301_20160919_01_T1_B1", dt.date(2000, 3, 1)),  # acquisition before processing
    ("T32TQM_20200101T101010_B04", dt.date(2020, 1, 1)),
    ("scene_2019-07-14_rgb", dt.date(2019, 7, 14)),
    ("2000:03:01 10:00:00", dt.date(2000, 3, 1)),
    ("lsat7_2000_10", None),  # a year only
    ("id_20201345_x", None),  # month 13
    ("tile_120200101", None),  # part of a longer digit run
    ("x_18500101", None),
])
def test_parse_date(text: str, date: dt.date | None) -> None:
    assert parse_date(text) == date


def test_dates_from_tags_file_names_and_folder(tmp_path: Path) -> None:
    bands = BandSet([Band("a")])
    tagged = write_geotiff(tmp_path / "x_20010101.tif", ramp(1, 4, 4), bands, UTM, T10, date=dt.date(2002, 2, 2))
    assert probe_scene(tagged).date == dt.date(2002, 2, 2)  # the tag wins over the name
    with rasterio.open(tagged, "r+") as dst:
        dst.update_tags(ACQUISITION_DATE="", TIFFTAG_DATETIME="2024:05:05 12:00:00")  # write time: ignored
    assert probe_scene(tagged).date == dt.date(2001, 1, 1)
    folder = tmp_path / "S2A_20230405"
    folder.mkdir()
    for n in ("B02", "B03"):
        write_geotiff(folder / f"{n}.tif", ramp(1, 4, 4), BandSet([Band(n)]), UTM, T10)
    assert probe_scene(folder).date == dt.date(2023, 4, 5)
    write_geotiff(folder / "B04.tif", ramp(1, 4, 4), BandSet([Band("B04")]), UTM, T10, date=dt.date(2023, 4, 6))
    assert probe_scene(folder).date == dt.date(2023, 4, 6)  # a band file's own date wins over the folder name
    write_geotiff(folder / "B08.tif", ramp(1, 4, 4), BandSet([Band("B08")]), UTM, T10, date=dt.date(2023, 4, 5))
    with pytest.raises(DataError, match="S2A_20230405: band files of different dates: B04.tif is 2023-04-06, "
                                        "B08.tif is 2023-04-05"):
        probe_scene(folder)


# --------------------------------------------------------------------------- the shared Landsat-7 sample


@pytest.mark.shared_data
@pytest.mark.skipif(not LANDSAT7.is_dir(), reason=f"needs the shared sample data {LANDSAT7} (absent; set "
                                                  "MPT_SHARED_DATA)")
def test_shared_landsat7_folder() -> None:
    assert find_rasters(LANDSAT7) == [LANDSAT7]
    info = probe_scene(LANDSAT7, sensor="landsat7")
    assert info.names == ("B1", "B2", "B3", "B4", "B5", "B7") and info.available == info.names
    assert (info.height, info.width, info.crs) == (443, 489, "EPSG:32119")
    assert info.gsd_m == 28.5 and info.pixel_size_m == (28.5, 28.5) and info.date is None
    assert info.dtypes == ("float32",) * 5 + ("int16",)  # band 7 is int16 with nodata -32768
    assert info.nodata == (-99999.0,) * 5 + (-32768.0,)
    assert rgb_indices(info.bands) == (2, 1, 0)
    whole = np.stack([full(f)[0] for f in info.files]).astype(np.float32)
    for row, col in chip_grid(info, 128, 100):
        x, valid = read_window(info, row, col, 128)
        ref = whole[:, row:row + 128, col:col + 128]
        expect = ref != np.array(info.nodata, np.float32)[:, None, None]
        np.testing.assert_array_equal(valid, expect)
        np.testing.assert_array_equal(x, np.where(expect, ref, 0))
    x, valid = read_window(info, 0, 0, max(info.height, info.width))
    share = [nodata_share(v[:info.height, :info.width]) for v in valid]
    assert share[:5] == pytest.approx([0.1533] * 5, abs=1e-4) and share[5] == pytest.approx(0.3764, abs=1e-4)
    assert x[valid].min() >= 1 and x[valid].max() <= 255  # 8-bit DNs stored as float32
    raw = probe_scene(LANDSAT7, bands=["70", "10"])  # without the sensor: the file-name codes
    assert raw.names == ("70", "10") and raw.bands.wavelengths == (None, None)
