"""Reading satellite scenes: GeoTIFF files through rasterio (GDAL), read by windows.

A *scene* is one grid of co-registered bands, either

- one GeoTIFF (``.tif``/``.tiff``) holding all bands (a multi-band file), or
- a folder of single-band GeoTIFFs, one file per band, all on the same grid (same CRS, shape and
  transform) — the layout of Landsat and Sentinel-2 products and of the ``lsat7_2000_{10..70}.tif``
  sample folder.

Band names. In a multi-band file, band ``i`` is named by its GDAL band description (what
:func:`write_geotiff` writes); a file without descriptions names its bands ``"1"``…``"N"`` (rasterio's
1-based indexes) — unless a ``sensor`` is given and the file has exactly that sensor's band count, then
they are the catalogue bands in catalogue order. In a band folder a band is named by its file name: the
stems are split at ``_``, ``-``, ``.`` and spaces, the tokens shared by all files at the start and at the
end are dropped, and what is left is the name (when several tokens are left and exactly one looks like a
band code, ``B04``/``B8A``/``10``, that one). So ``lsat7_2000_10.tif`` … ``lsat7_2000_70.tif`` are bands
``"10"``…``"70"``, ``LE07_…_20000301_…_B1.TIF`` is ``"B1"`` and ``T32TQM_20200101T101010_B04_10m.tif``
is ``"B04"``; the bands come in file-name order (catalogue order with a ``sensor``). Names are matched
by :func:`~mpt_satellite.bands.band_key` (``"B2"`` is ``"B02"``) and, with a ``sensor``
(``"sentinel2"``, ``"landsat7"``), through the sensor's aliases and common names (``"10"`` is Landsat-7
``B1``), which then also supply the centre wavelength. A band's wavelength is read from its band tags:
``wavelength_nm`` (written by :func:`write_geotiff`), GDAL's ``IMAGERY`` domain ``CENTRAL_WAVELENGTH_UM``
(GDAL ≥ 3.10) or ENVI-style ``wavelength`` + ``wavelength_units``.

Acquisition date: a dataset tag (``ACQUISITION_DATE``, ``DATE_ACQUIRED`` (Landsat MTL), ``SENSING_TIME``,
``DATETIME_ACQUIRED``, ``datetime`` (STAC); not ``TIFFTAG_DATETIME``, the time the file was written), else
the first ``YYYYMMDD`` or ``YYYY-MM-DD`` (years 1950-2099, a real calendar date, not part of a longer
digit run) in the file stem, else (a band folder) in the folder name; band files that disagree are a
DataError. Landsat product ids carry the acquisition date
before the processing date, hence the first. ``lsat7_2000_10`` holds a year only: no date.

Pixel size (:attr:`SceneInfo.gsd_m`) comes from the transform: the length of one pixel step along a
row and along a column, in CRS units times the CRS's metres per unit (a projected CRS in US feet is
converted). For a geographic CRS (degrees) it is an approximation on a spherical Earth (radius
6 371 008.8 m) at the latitude of the scene's centre — it varies across a large scene; without a CRS
(a plain TIFF) it is None.

A window is read with rasterio's ``Window`` (:func:`read_window`): only the blocks it touches are
decoded, so a scene larger than memory is never read whole; :func:`probe_scene` reads only the header
and the last block of each band (the end of the file: a truncated file fails there). A
:class:`SceneInfo` holds no open file (it pickles to DataLoader workers); :func:`read_window` keeps the
last :data:`OPEN_FILES` datasets open per process and thread, reopening a file whose size or
modification time changed.

Every unusable input is a :class:`~mpt.errors.DataError` naming the file (and the band): a missing,
empty, corrupt or truncated file, one GDAL does not read as a GeoTIFF, band files whose CRS, shape or
transform differ (naming both files and the values), a requested band that is not there (listing the
available names), a multi-band file in a band folder, band files with different acquisition dates.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mpt.errors import DataError
from mpt.files import find_files, window_starts
from mpt.registry import optional_import
from mpt_satellite.bands import WAVELENGTH_TOLERANCE_NM, Band, BandSet, band_key
from mpt_satellite.bands import sensor as sensor_catalogue

if TYPE_CHECKING:
    from affine import Affine  # rasterio's transform type

__all__ = ["DATE_TAGS", "EARTH_RADIUS_M", "EXTENSIONS", "OPEN_FILES", "SceneInfo", "chip_grid", "close_files",
           "find_rasters", "nodata_share", "parse_date", "probe_scene", "read_window", "write_geotiff"]

EXTENSIONS = (".tif", ".tiff")
DATE_TAGS = ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "DATETIME_ACQUIRED", "DATETIME")
EARTH_RADIUS_M = 6371008.8  # mean Earth radius (IUGG), for the pixel size of geographic CRSs
SENSOR_TAG = "MPT_SENSOR"  # dataset tag: the BandSet's sensor name, written by write_geotiff
OPEN_FILES = 64  # datasets read_window keeps open per process (LRU)
RASTERIO_HINT = "pip install rasterio (GDAL bindings: the raster reader of mpt-satellite)"
BAND_CODE = re.compile(r"(?:B|BAND)?\d{1,2}A?", re.IGNORECASE)
_DATE_COMPACT = re.compile(r"(?<!\d)((?:19[5-9]|20\d)\d)(\d{2})(\d{2})(?!\d)")
_DATE_DASHED = re.compile(r"(?<!\d)((?:19[5-9]|20\d)\d)[-:/](\d{2})[-:/](\d{2})(?!\d)")


def import_rasterio() -> Any:  # noqa: ANN401 - the rasterio module
    return optional_import("rasterio", "reading satellite scenes", RASTERIO_HINT)


@dataclass(frozen=True)
class SceneInfo:
    """What reading windows of a scene needs, from its headers (checked by :func:`probe_scene`).

    Per band ``i`` (the selected bands, in the selected order): ``bands[i]`` (name, wavelength,
    nodata, scale, offset), the file ``files[i]`` and its 1-based band index ``indexes[i]`` in that
    file, its stored dtype ``dtypes[i]``. ``crs`` is the CRS as text (``"EPSG:32119"``, else WKT; None
    without georeference), ``transform`` the affine pixel → CRS transform of pixel corners,
    ``pixel_size_m`` the (x, y) pixel size in metres (see the module docstring), ``available`` the names
    of every band of the scene before selection."""

    path: Path
    height: int
    width: int
    bands: BandSet
    files: tuple[Path, ...]
    indexes: tuple[int, ...]
    dtypes: tuple[str, ...]
    crs: str | None
    transform: Affine
    pixel_size_m: tuple[float, float] | None
    date: dt.date | None
    available: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.bands)

    @property
    def names(self) -> tuple[str, ...]:
        return self.bands.names

    @property
    def nodata(self) -> tuple[float | None, ...]:
        return tuple(b.nodata for b in self.bands)

    @property
    def dtype(self) -> str:
        """The dtype all bands fit in (numpy's result type of ``dtypes``)."""
        return str(np.result_type(*self.dtypes))

    @property
    def gsd_m(self) -> float | None:
        """Ground sampling distance: the mean of the x and y pixel size in metres (None: unknown)."""
        return None if self.pixel_size_m is None else (self.pixel_size_m[0] + self.pixel_size_m[1]) / 2


def find_rasters(path: str | Path, layout: Literal["auto", "files", "folders"] = "auto") -> list[Path]:
    """The scenes under ``path``, sorted: each a GeoTIFF file (:data:`EXTENSIONS`) or a band folder.

    ``path`` itself if it is a file; a folder is searched recursively and its files are grouped by the
    folder holding them: with ``layout="files"`` every file is a scene, with ``"folders"`` every folder
    holding GeoTIFFs is one band-folder scene, with ``"auto"`` a folder of two or more single-band files
    is a band folder and a folder of multi-band files holds one scene per file (their headers are read
    to tell). A folder mixing single- and multi-band files, an unreadable file (under ``"auto"``), a
    missing path or a folder without GeoTIFFs is a DataError."""
    path = Path(path)
    files = find_files(path, EXTENSIONS, kind="GeoTIFF")
    if path.is_file():
        return files
    if layout not in ("auto", "files", "folders"):
        raise ValueError(f"layout must be 'auto', 'files' or 'folders', got {layout!r}")
    if layout == "files":
        return files
    groups: dict[Path, list[Path]] = {}
    for f in files:
        groups.setdefault(f.parent, []).append(f)
    scenes: list[Path] = []
    for folder, members in groups.items():
        if layout == "folders":
            scenes.append(folder)
            continue
        counts = {f: _open_header(f)[0] for f in members}
        single = [f for f, c in counts.items() if c == 1]
        multi = [f for f, c in counts.items() if c > 1]
        if single and multi:
            raise DataError(folder, f"mixes single-band files ({single[0].name}) and multi-band files "
                                    f"({multi[0].name}: {counts[multi[0]]} bands): a scene is one multi-band file "
                                    "or a folder of single-band files; move them apart, or pass layout='files'")
        scenes.extend([folder] if len(single) >= 2 else members)
    return sorted(scenes)


def _open_header(path: Path) -> tuple[int, str]:
    rasterio = import_rasterio()
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return int(src.count), str(src.driver)
    except Exception as exc:  # noqa: BLE001 - GDAL errors come as several classes
        raise DataError(path, f"cannot be read as a GeoTIFF ({_reason(exc)}): corrupt or truncated?") from None


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes)")


def _reason(exc: BaseException) -> str:
    """GDAL's own message: rasterio wraps it ("Read failed. See previous exception") in ``__cause__``."""
    while exc.__cause__ is not None or (exc.__context__ is not None and "previous exception" in str(exc)):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def parse_date(text: str) -> dt.date | None:
    """The first valid ``YYYYMMDD`` / ``YYYY-MM-DD`` (also ``YYYY:MM:DD``, ``YYYY/MM/DD``) date in
    ``text`` (years 1950-2099, not part of a longer digit run), or None."""
    for pattern in (_DATE_DASHED, _DATE_COMPACT):
        for m in pattern.finditer(text):
            try:
                return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                continue
    return None


def _tag_date(tags: dict[str, str]) -> dt.date | None:
    upper = {k.upper(): v for k, v in tags.items()}
    for key in DATE_TAGS:
        if key in upper:
            date = parse_date(upper[key])
            if date is not None:
                return date
    return None


def _band_tokens(stems: Sequence[str]) -> list[str]:
    """Band names of the files of a band folder from their stems (see the module docstring)."""
    split = [[t for t in re.split(r"[_\-.\s]+", s) if t] for s in stems]
    if len(split) < 2:
        tokens = split[0] if split and split[0] else list(stems)
        return [tokens[-1]]
    shortest = min(len(t) for t in split)
    head = 0
    while head < shortest - 1 and len({t[head] for t in split}) == 1:
        head += 1
    tail = 0
    while tail < shortest - 1 - head and len({t[-1 - tail] for t in split}) == 1:
        tail += 1
    names = []
    for stem, tokens in zip(stems, split, strict=True):
        rest = tokens[head:len(tokens) - tail] or [stem]
        codes = [t for t in rest if BAND_CODE.fullmatch(t)]
        names.append(codes[0] if len(rest) > 1 and len(codes) == 1 else "_".join(rest))
    return names


def probe_scene(path: str | Path, bands: Sequence[str] | None = None,
                sensor: str | BandSet | None = None) -> SceneInfo:
    """Check a scene (a multi-band GeoTIFF or a band folder) and describe it; only headers and the last
    block of each selected band are read.

    ``bands`` selects bands by name, in that order (None: all, in file order; in a band folder in
    file-name order, or catalogue order with a ``sensor``);
    ``sensor`` (a :data:`~mpt_satellite.bands.SENSORS` name such as ``"landsat7"``, or a BandSet)
    resolves names through the sensor's catalogue, which then names the bands and supplies wavelengths,
    GSDs and common names the files lack; a file's own wavelength must agree with it (within
    :data:`~mpt_satellite.bands.WAVELENGTH_TOLERANCE_NM`). Checks: every file is a readable GeoTIFF
    whose last block decodes (else corrupt/truncated), every band file of a folder is single-band and
    has the CRS, shape and transform of the first (else a DataError naming both files and the property),
    every requested band exists (else a DataError listing the available names), the band files agree
    on the acquisition date."""
    path = Path(path)
    catalogue = sensor_catalogue(sensor) if isinstance(sensor, str) else sensor
    if path.is_dir():
        return _probe_folder(path, bands, catalogue)
    if path.suffix.lower() not in EXTENSIONS and path.is_file():
        raise DataError(path, f"unsupported extension '{path.suffix}'; supported: {', '.join(EXTENSIONS)}")
    return _probe_file(path, bands, catalogue)


def _resolve(name: str, catalogue: BandSet | None) -> Band | None:
    if catalogue is None:
        return None
    i = catalogue.index(name)
    return None if i is None else catalogue[i]


def _pick(available: Sequence[str], bands: Sequence[str] | None, where: Path,
          catalogue: BandSet | None = None) -> list[int]:
    """Positions in ``available`` of the requested ``bands`` (by band_key; with a catalogue, a requested
    alias or common name first becomes the catalogue name), in their order."""
    if bands is None:
        return list(range(len(available)))
    if isinstance(bands, str):
        raise TypeError(f"bands must be a sequence of band names, got the string {bands!r}")
    keys = [band_key(n) for n in available]
    picked: list[int] = []
    for n in bands:
        c = catalogue.index(n) if catalogue is not None else None
        key = band_key(catalogue[c].name if catalogue is not None and c is not None else n)
        if key not in keys:
            raise DataError(where, f"no band '{n}'; available bands: {', '.join(available)}")
        i = keys.index(key)
        if i in picked:
            raise DataError(where, f"band '{n}' requested twice in bands={list(bands)}")
        picked.append(i)
    return picked


def _band_from_file(src: Any, bidx: int, name: str, path: Path,  # noqa: ANN401 - a rasterio dataset
                    known: Band | None) -> Band:
    """The Band of band ``bidx`` of an open file: its name, tags, nodata, scale/offset; ``known`` (a
    catalogue band) fills in what the file lacks and must agree with what it has."""
    tags = {k.lower(): v for k, v in src.tags(bidx).items()}
    wavelength = _float(tags.get("wavelength_nm"))
    if wavelength is None:
        um = _float(src.tags(bidx, ns="IMAGERY").get("CENTRAL_WAVELENGTH_UM"))
        wavelength = None if um is None else um * 1000.0
    if wavelength is None and "wavelength" in tags:
        value, unit = _float(tags["wavelength"]), tags.get("wavelength_units", "").lower()
        factor = {"nanometers": 1.0, "nm": 1.0, "micrometers": 1000.0, "microns": 1000.0, "um": 1000.0}.get(unit)
        wavelength = None if value is None or factor is None else value * factor
    gsd = _float(tags.get("gsd_m"))
    common = tags.get("common_name") or None
    if known is not None:
        if wavelength is not None and known.wavelength_nm is not None \
                and abs(wavelength - known.wavelength_nm) > WAVELENGTH_TOLERANCE_NM:
            raise DataError(path, f"band {bidx} ('{name}') has centre wavelength {wavelength:g} nm in the file but "
                                  f"{known.describe()} in the sensor catalogue: another band under this name? "
                                  "Fix the file's band tags or select other bands")
        name = known.name
        wavelength = wavelength if wavelength is not None else known.wavelength_nm
        gsd = gsd if gsd is not None else known.gsd_m
        common = common or known.common_name
    nodata = src.nodatavals[bidx - 1]
    return Band(name=name, wavelength_nm=wavelength, gsd_m=gsd, nodata=None if nodata is None else float(nodata),
                scale=float(src.scales[bidx - 1]), offset=float(src.offsets[bidx - 1]), common_name=common)


def _float(value: object) -> float | None:
    try:
        out = float(str(value))
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _open(path: Path) -> Any:  # noqa: ANN401 - a rasterio dataset
    """``rasterio.open`` for reading; an unreadable or non-GeoTIFF file is a DataError."""
    rasterio = import_rasterio()
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            src = rasterio.open(path)
    except Exception as exc:  # noqa: BLE001 - GDAL errors come as several classes
        raise DataError(path, f"cannot be read as a GeoTIFF ({_reason(exc)}): corrupt or truncated?") from None
    if src.driver != "GTiff":
        src.close()
        raise DataError(path, f"not a GeoTIFF (GDAL reads it as {src.driver}); convert it, e.g. "
                              "gdal_translate -of GTiff IN OUT.tif")
    return src


def _check_tail(src: Any, path: Path, bidx: int, name: str) -> None:  # noqa: ANN401 - a rasterio dataset
    """Decode the last block of band ``bidx``: a file cut short fails there."""
    from rasterio.windows import Window

    bh, bw = src.block_shapes[bidx - 1]
    row, col = (src.height - 1) // bh * bh, (src.width - 1) // bw * bw
    try:
        src.read(bidx, window=Window(col, row, min(bw, src.width - col), min(bh, src.height - row)))
    except Exception as exc:  # noqa: BLE001 - GDAL errors come as several classes
        raise DataError(path, f"band {bidx} ('{name}'): its last block does not decode ({_reason(exc)}): "
                              "truncated or corrupt?") from None


def _grid(src: Any) -> tuple[str | None, Affine, tuple[float, float] | None]:  # noqa: ANN401 - a rasterio dataset
    """(CRS text, transform, pixel size in metres) of an open file."""
    crs = src.crs
    transform = src.transform
    if crs is None:
        return None, transform, None
    text = crs.to_string() or crs.to_wkt()
    step_x = math.hypot(transform.a, transform.d)  # one column step
    step_y = math.hypot(transform.b, transform.e)  # one row step
    if crs.is_geographic:
        x, y = src.width / 2, src.height / 2
        lat = transform.d * x + transform.e * y + transform.f  # x: longitude, y: latitude (GIS axis order)
        metres = math.pi / 180 * EARTH_RADIUS_M
        return text, transform, (step_x * metres * math.cos(math.radians(lat)), step_y * metres)
    try:
        factor = float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - CRSError for CRSs without linear units
        return text, transform, None
    return text, transform, (step_x * factor, step_y * factor)


def _same_transform(a: Affine, b: Affine) -> bool:
    return all(abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y)) for x, y in zip(a[:6], b[:6], strict=True))


def _probe_file(path: Path, bands: Sequence[str] | None, catalogue: BandSet | None) -> SceneInfo:
    src = _open(path)
    with src:
        described = [d for d in src.descriptions if d]
        if len(described) == src.count:
            names = [str(d) for d in src.descriptions]
            known = [_resolve(n, catalogue) for n in names]
        elif catalogue is not None and src.count == len(catalogue):
            names, known = list(catalogue.names), list(catalogue)
        elif catalogue is not None:
            raise DataError(path, f"its {src.count} bands have no names (GDAL band descriptions), so they cannot be "
                                  f"matched to the {len(catalogue)} bands of {catalogue.sensor or 'the sensor'} "
                                  f"({', '.join(catalogue.names)}): write band descriptions (write_geotiff, or "
                                  "gdal_edit -bandname) or split the file into one file per band")
        else:
            names = [str(i) for i in src.indexes]
            known = [None] * src.count
        own = list(names)  # as the file has them, for messages
        if catalogue is not None:
            names = [k.name if k is not None else n for n, k in zip(names, known, strict=True)]
        picked = _pick(names, bands, path, catalogue)
        for i in picked:
            if catalogue is not None and known[i] is None:
                raise DataError(path, f"band {i + 1} ('{names[i]}') is not a band of "
                                      f"{catalogue.sensor or 'the sensor'} ({', '.join(catalogue.names)}); "
                                      "select other bands with bands=[...]")
        chosen = [_band_from_file(src, i + 1, own[i], path, known[i]) for i in picked]
        for i in picked:
            _check_tail(src, path, i + 1, names[i])
        crs, transform, pixel = _grid(src)
        date = _tag_date(src.tags()) or parse_date(path.stem)
        return SceneInfo(path=path, height=int(src.height), width=int(src.width),
                         bands=_bandset(chosen, catalogue, src.tags()), files=(path,) * len(picked),
                         indexes=tuple(i + 1 for i in picked),
                         dtypes=tuple(str(src.dtypes[i]) for i in picked), crs=crs, transform=transform,
                         pixel_size_m=pixel, date=date, available=tuple(names))


def _bandset(bands: list[Band], catalogue: BandSet | None, tags: dict[str, str]) -> BandSet:
    """The BandSet of the chosen bands; its sensor is the catalogue's, else the file's ``MPT_SENSOR`` tag."""
    return BandSet(bands, catalogue.sensor if catalogue is not None else tags.get(SENSOR_TAG) or None)


def _probe_folder(path: Path, bands: Sequence[str] | None, catalogue: BandSet | None) -> SceneInfo:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise DataError(path, f"a band folder without GeoTIFF files ({', '.join(EXTENSIONS)})")
    tokens = _band_tokens([f.stem for f in files])
    known = [_resolve(t, catalogue) for t in tokens]
    names = [k.name if k is not None else t for t, k in zip(tokens, known, strict=True)]
    keys = [band_key(n) for n in names]
    for i, k in enumerate(keys):
        if keys.index(k) != i:
            j = keys.index(k)
            raise DataError(path, f"two files are band '{names[i]}': {files[j].name} and {files[i].name}; "
                                  "keep one band file per band in a scene folder")
    picked = _pick(names, bands, path, catalogue)
    if catalogue is not None:
        for i in picked:
            if known[i] is None:
                raise DataError(files[i], f"band '{tokens[i]}' (from the file name) is not a band of "
                                          f"{catalogue.sensor or 'the sensor'} ({', '.join(catalogue.names)}); "
                                          "select bands with bands=[...]")
        if bands is None:  # all of a sensor's bands: in catalogue order (B8A after B08, not after B12)
            picked.sort(key=lambda i: catalogue.names.index(known[i].name))  # type: ignore[union-attr]
    chosen: list[Band] = []
    dtypes: list[str] = []
    ref: tuple[Path, int, int, str | None, Affine, tuple[float, float] | None] | None = None
    dates: dict[Path, dt.date] = {}
    first_tags: dict[str, str] = {}
    for i in picked:
        f = files[i]
        src = _open(f)
        with src:
            if src.count != 1:
                raise DataError(f, f"has {src.count} bands, but a band folder holds one single-band file per band; "
                                   "move the multi-band file out, or read it as a scene of its own")
            crs, transform, pixel = _grid(src)
            if ref is None:
                ref = (f, int(src.height), int(src.width), crs, transform, pixel)
            else:
                _check_same_grid(ref, f, int(src.height), int(src.width), crs, transform)
            chosen.append(_band_from_file(src, 1, tokens[i], f, known[i]))
            dtypes.append(str(src.dtypes[0]))
            _check_tail(src, f, 1, names[i])
            tags = src.tags()
            first_tags = first_tags or tags
            date = _tag_date(tags) or parse_date(f.stem)
            if date is not None:
                dates[f] = date
    if len(set(dates.values())) > 1:
        (fa, da), (fb, db) = next((a, b) for a in dates.items() for b in dates.items() if a[1] != b[1])
        raise DataError(path, f"band files of different dates: {fa.name} is {da}, {fb.name} is {db}; "
                              "a scene folder holds the bands of one acquisition")
    date = next(iter(dates.values()), None) or parse_date(path.name)
    assert ref is not None
    _, height, width, crs, transform, pixel = ref
    return SceneInfo(path=path, height=height, width=width, bands=_bandset(chosen, catalogue, first_tags),
                     files=tuple(files[i] for i in picked), indexes=(1,) * len(picked), dtypes=tuple(dtypes),
                     crs=crs, transform=transform, pixel_size_m=pixel, date=date, available=tuple(names))


def _check_same_grid(ref: tuple[Path, int, int, str | None, Affine, tuple[float, float] | None], f: Path,
                     height: int, width: int, crs: str | None, transform: Affine) -> None:
    rf, rh, rw, rcrs, rtransform, _ = ref
    hint = ("the bands of a scene folder must share one grid: resample them to one grid first (e.g. gdalwarp "
            "-tr XRES YRES -te ... for every band) or select bands of one resolution with bands=[...]")
    if (height, width) != (rh, rw):
        raise DataError(f, f"shape {height}×{width} (rows×columns) differs from {rf.name}'s {rh}×{rw}; {hint}")
    if crs != rcrs and not _same_crs(crs, rcrs):
        raise DataError(f, f"CRS {crs} differs from {rf.name}'s CRS {rcrs}; {hint}")
    if not _same_transform(transform, rtransform):
        raise DataError(f, f"transform {tuple(round(v, 6) for v in transform[:6])} differs from {rf.name}'s "
                           f"{tuple(round(v, 6) for v in rtransform[:6])} (pixel size or origin); {hint}")


def _same_crs(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    from rasterio.crs import CRS

    try:
        return bool(CRS.from_user_input(a) == CRS.from_user_input(b))
    except Exception:  # noqa: BLE001 - CRSError
        return False


def read_window(info: SceneInfo, row: int, col: int, size: int,
                bands: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` × ``size`` window of the scene whose top-left pixel is (``row``, ``col``) →
    (float32 ``[C, size, size]`` physical values, bool ``[C, size, size]`` valid mask), for the bands
    ``bands`` (names, that order; None: ``info.bands``).

    Only that window is read (rasterio ``Window``; the blocks it touches). A pixel is invalid where it
    equals the band's ``nodata`` (``info.bands[i].nodata``, compared with the stored value), is NaN or
    ±Inf, is masked by the file's mask band (an internal or ``.msk`` mask, an alpha band), or lies
    outside the scene (a window may overhang the edge; a scene smaller than ``size`` is padded); its
    value is then 0. Elsewhere the value is ``stored * scale + offset`` of the band."""
    from rasterio.enums import MaskFlags
    from rasterio.windows import Window

    if size <= 0:
        raise ValueError(f"window size must be positive, got {size}")
    if not (-size < row < info.height and -size < col < info.width):
        raise IndexError(f"{info.path}: a {size}×{size} window at ({row}, {col}) lies outside the "
                         f"{info.height}×{info.width} scene")
    picked = _pick(info.names, bands, info.path, info.bands)
    out = np.zeros((len(picked), size, size), np.float32)
    valid = np.zeros((len(picked), size, size), bool)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + size, info.height), min(col + size, info.width)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    inner = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
    by_file: dict[Path, list[int]] = {}
    for k, i in enumerate(picked):
        by_file.setdefault(info.files[i], []).append(k)
    for f, ks in by_file.items():
        idx = [info.indexes[picked[k]] for k in ks]
        names = ", ".join(info.bands[picked[k]].name for k in ks)
        src = _cached_open(f)
        try:
            raw = src.read(idx, window=window)
            flags = [src.mask_flag_enums[b - 1] for b in idx]
            masks = (src.read_masks(idx, window=window) > 0
                     if any(MaskFlags.per_dataset in fl or MaskFlags.alpha in fl for fl in flags) else None)
        except Exception as exc:  # noqa: BLE001 - GDAL errors come as several classes
            _drop_cached(f)
            raise DataError(f, f"band(s) {names}: reading rows {r0}..{r1 - 1}, columns {c0}..{c1 - 1} failed "
                               f"({_reason(exc)}): corrupt or truncated?") from None
        for j, k in enumerate(ks):
            band = info.bands[picked[k]]
            stored = raw[j]
            ok = np.isfinite(stored) if stored.dtype.kind == "f" else np.ones(stored.shape, bool)
            if band.nodata is not None and not math.isnan(band.nodata) and _representable(band.nodata, stored.dtype):
                ok &= stored != stored.dtype.type(band.nodata)  # NaN nodata: isfinite above
            if masks is not None:
                ok &= masks[j]
            if band.scale != 1.0 or band.offset != 0.0:  # in float64: DN × 1e-4 − 0.1 cancels badly in float32
                values = (stored.astype(np.float64) * band.scale + band.offset).astype(np.float32)
            else:
                values = stored.astype(np.float32)
            values[~ok] = 0.0
            out[k][inner] = values
            valid[k][inner] = ok
    return out, valid


_OPEN: OrderedDict[tuple[int, int, Path], tuple[tuple[int, int], Any]] = OrderedDict()


def _cached_open(path: Path) -> Any:  # noqa: ANN401 - a rasterio dataset
    """An open dataset for :func:`read_window`, kept in a small LRU (:data:`OPEN_FILES` per process and
    thread: opening costs ~2 ms a file, reading a chip ~0.03 ms). A handle is reused only by the process
    and thread that opened it (never across a DataLoader fork) and only while the file's size and
    modification time are unchanged."""
    try:
        st = path.stat()
    except OSError:
        st = None
    key = (os.getpid(), threading.get_ident(), path)
    stamp = (st.st_size, st.st_mtime_ns) if st is not None else (-1, -1)
    hit = _OPEN.get(key)
    if hit is not None and hit[0] == stamp:
        _OPEN.move_to_end(key)
        return hit[1]
    _drop_cached(path)
    src = _open(path)
    _OPEN[key] = (stamp, src)
    while len(_OPEN) > OPEN_FILES:
        _, (_, old) = _OPEN.popitem(last=False)
        old.close()
    return src


def _drop_cached(path: Path) -> None:
    for key in [k for k in _OPEN if k[2] == path]:
        _, src = _OPEN.pop(key)
        if key[0] == os.getpid():  # a parent's handle in a forked child is left alone
            src.close()


def close_files() -> None:
    """Close the datasets :func:`read_window` keeps open (e.g. before files are rewritten on Windows)."""
    for path in {k[2] for k in _OPEN}:
        _drop_cached(path)


def _representable(value: float, dtype: np.dtype) -> bool:
    """Whether ``value`` is a value of ``dtype`` (a nodata outside an integer type never matches)."""
    if dtype.kind == "f":
        return True
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def chip_grid(info: SceneInfo, size: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Top-left (row, col) of ``size`` × ``size`` chips covering the scene, row-major: every ``stride``
    (default ``size``: no overlap) pixels, plus a last chip flush with the bottom / right edge where the
    stride does not land there. A scene side shorter than ``size`` has one chip at 0 (padded by
    :func:`read_window`)."""
    if size <= 0 or (stride is not None and stride <= 0):
        raise ValueError(f"chip size and stride must be positive, got size={size}, stride={stride}")
    step = size if stride is None else stride

    return [(r, c) for r in window_starts(info.height, size, step) for c in window_starts(info.width, size, step)]


def nodata_share(valid: np.ndarray, pixels: bool = False) -> float:
    """Share of invalid values in a valid mask ``[C, H, W]`` (or ``[H, W]``): over all bands and pixels,
    or with ``pixels=True`` the share of pixels where at least one band is invalid."""
    valid = np.asarray(valid, bool)
    if valid.size == 0:
        return 0.0
    if pixels and valid.ndim == 3:
        return float(1.0 - valid.all(axis=0).mean())
    return float(1.0 - valid.mean())


def write_geotiff(path: str | Path, array: np.ndarray, bands: BandSet, crs: object = None,
                  transform: Affine | None = None, nodata: float | None = None, *, date: dt.date | None = None,
                  compress: str = "deflate", blocksize: int = 256) -> Path:
    """Write ``array`` ``[C, H, W]`` as a GeoTIFF whose band ``i`` is ``bands[i]``: the band names as GDAL
    band descriptions, per-band tags ``wavelength_nm``, ``gsd_m``, ``common_name`` (and the ``IMAGERY``
    domain ``CENTRAL_WAVELENGTH_UM``), the bands' scale and offset, the BandSet's sensor as the
    ``MPT_SENSOR`` tag, one ``nodata`` for the file (default: the bands' nodata, which must then agree —
    GeoTIFF has one nodata per file) and ``date`` as the ``ACQUISITION_DATE`` tag, so :func:`probe_scene`
    recovers the BandSet and the date. ``crs`` is anything rasterio's ``CRS.from_user_input`` takes
    (``"EPSG:32119"``); ``crs=None`` and ``transform=None`` write a plain TIFF without georeference.
    Tiled (``blocksize``, a multiple of 16) when both sides are at least ``blocksize``; ``compress``: a
    GDAL compression ("deflate", "lzw", "none"). GDAL writes the file's directory after the data, so a
    truncated file of this writer does not open at all."""
    rasterio = import_rasterio()
    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[0] != len(bands):
        raise ValueError(f"write_geotiff needs an array [C, H, W] with C = {len(bands)} bands "
                         f"({', '.join(bands.names)}), got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if nodata is None:
        values = {b.nodata for b in bands if b.nodata is not None}
        if len(values) > 1:
            raise ValueError(f"the bands have different nodata values {sorted(values)}, but a GeoTIFF has one "
                             "nodata value per file: pass nodata=")
        nodata = next(iter(values), None)
    profile: dict[str, Any] = {"driver": "GTiff", "height": array.shape[1], "width": array.shape[2],
                               "count": array.shape[0], "dtype": array.dtype.name, "nodata": nodata}
    if crs is not None:
        profile["crs"] = rasterio.crs.CRS.from_user_input(crs)
    if transform is not None:
        profile["transform"] = transform
    if compress.lower() != "none":
        profile["compress"] = compress
    if array.shape[1] >= blocksize and array.shape[2] >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array)
            for i, band in enumerate(bands, start=1):
                dst.set_band_description(i, band.name)
                tags = {"wavelength_nm": band.wavelength_nm, "gsd_m": band.gsd_m, "common_name": band.common_name}
                dst.update_tags(i, **{k: (f"{v:g}" if isinstance(v, float) else v)
                                      for k, v in tags.items() if v is not None})
                if band.wavelength_nm is not None:
                    dst.update_tags(i, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=f"{band.wavelength_nm / 1000:g}")
            dst.scales = tuple(b.scale for b in bands)
            dst.offsets = tuple(b.offset for b in bands)
            if date is not None:
                dst.update_tags(ACQUISITION_DATE=date.isoformat())
            if bands.sensor is not None:
                dst.update_tags(**{SENSOR_TAG: bands.sensor})
    return path
