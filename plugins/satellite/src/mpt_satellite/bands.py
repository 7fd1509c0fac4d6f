"""Spectral band metadata: what each channel of a scene is, and checking that two band lists agree.

A :class:`Band` is one channel: its name, centre wavelength, nominal ground sampling distance,
nodata value and the ``scale``/``offset`` that turn stored values into physical ones
(``value = stored * scale + offset``, GDAL's convention). A :class:`BandSet` is the ordered tuple
of a scene's or a model's bands, with a JSON card (:meth:`BandSet.to_card` / :meth:`BandSet.from_card`)
so a pretrained encoder can record the bands it was trained on.

Band names are compared through :func:`band_key`: case, spaces, ``_``/``-`` and a leading
``BAND``/``B`` and leading zeros are ignored (``"B02"``, ``"b2"``, ``"band2"`` and ``"2"`` are the
same band; ``"B8A"`` and ``"B08A"`` too). A sensor of :data:`SENSORS` also knows the aliases of its
file conventions (:data:`ALIASES`: the Landsat-7 ``lsat7_2000_10`` files use the two-digit GLCF band
codes 10, 20, 30, 40, 50, 70 for ETM+ bands 1, 2, 3, 4, 5, 7) and its STAC ``eo:common_name`` s
(``"red"``, ``"nir"``, … where unique within the sensor).

Centre wavelengths (nm) and GSDs of the catalogue:

- Sentinel-2 MSI: ESA, Sentinel-2 User Handbook (ESA Standard Document, 2015), Table "Sentinel-2
  spectral bands" — the nominal centres also listed by GDAL's SENTINEL2 driver documentation
  (B01 443, B02 490, B03 560, B04 665, B05 705, B06 740, B07 783, B08 842, B8A 865, B09 945,
  B10 1375, B11 1610, B12 2190 nm; 10 m: B02-B04, B08; 20 m: B05-B07, B8A, B11, B12; 60 m: B01,
  B09, B10). The SRF-weighted centres of ESA's spectral response functions
  (COPE-GSEG-EOPG-TN-15-0007 v3.0) differ by up to 12 nm (S2A: B08 832.8, B12 2202.4 nm; S2B
  B12 2185.7 nm), within the default tolerance of :func:`check_bands`.
- Landsat-7 ETM+: USGS, Landsat 7 Data Users Handbook, band designations — the midpoints of the
  bandpasses 0.45-0.52, 0.52-0.60, 0.63-0.69, 0.77-0.90, 1.55-1.75, 2.09-2.35 µm (bands 1-5, 7:
  485, 560, 660, 835, 1650, 2220 nm), 30 m. The thermal band 6 (60 m) and pan band 8 (15 m) are
  left out: they are not reflectance bands of the same grid.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, overload

from mpt.errors import ConfigError, DataError

__all__ = ["ALIASES", "SENSORS", "WAVELENGTH_TOLERANCE_NM", "Band", "BandSet", "band_key", "check_bands",
           "rgb_indices", "sensor"]

WAVELENGTH_TOLERANCE_NM = 20.0  # check_bands: centre wavelengths this close are the same band
CARD_VERSION = 1


def band_key(name: str) -> str:
    """The comparison key of a band name: upper case without spaces, ``_`` or ``-``; ``B``/``BAND``
    followed by a number (leading zeros dropped, an ``A`` suffix kept) → ``"B<n>[A]"``, as is a bare
    number. ``band_key("B02") == band_key("b2") == band_key("band 2") == band_key("2") == "B2"``."""
    s = re.sub(r"[\s_\-]", "", str(name)).upper()
    m = re.fullmatch(r"(?:BAND|B)?0*(\d+)(A?)", s)
    return f"B{int(m.group(1))}{m.group(2)}" if m else s


@dataclass(frozen=True)
class Band:
    """One spectral channel. ``wavelength_nm``: centre wavelength (None: unknown, e.g. a file without
    band metadata); ``gsd_m``: nominal ground sampling distance of the sensor band (the pixel size of
    a scene is :attr:`~mpt_satellite.io.SceneInfo.gsd_m`, from its transform); ``nodata``: the stored
    value marking missing pixels; physical value = stored × ``scale`` + ``offset``; ``common_name``:
    the STAC ``eo:common_name`` ("red", "nir", "swir16", …) when known."""

    name: str
    wavelength_nm: float | None = None
    gsd_m: float | None = None
    nodata: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    common_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a band needs a non-empty name, got {self.name!r}")
        for attr in ("wavelength_nm", "gsd_m"):
            value = getattr(self, attr)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"band {self.name}: {attr} must be a positive number or None, got {value!r}")
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.offset)):
            raise ValueError(f"band {self.name}: scale must be finite and non-zero and offset finite, "
                             f"got scale={self.scale!r}, offset={self.offset!r}")

    @property
    def key(self) -> str:
        """:func:`band_key` of the name."""
        return band_key(self.name)

    def describe(self) -> str:
        """``"B04 (665 nm)"`` / ``"10 (no wavelength)"``: how messages show a band."""
        if self.wavelength_nm is None:
            return f"{self.name} (no wavelength)"
        return f"{self.name} ({self.wavelength_nm:g} nm)"


@dataclass(frozen=True)
class BandSet:
    """The ordered bands of a scene or a model (channel ``i`` of an array is ``bands[i]``); a
    sequence of :class:`Band`. ``sensor`` names the catalogue entry it came from, if any."""

    bands: tuple[Band, ...]
    sensor: str | None = None

    def __init__(self, bands: Iterable[Band], sensor: str | None = None) -> None:
        bands = tuple(bands)
        for b in bands:
            if not isinstance(b, Band):
                raise TypeError(f"a BandSet holds Band objects, got {b!r}")
        keys = [b.key for b in bands]
        dup = sorted({b.name for b in bands if keys.count(b.key) > 1})
        if dup:
            raise ValueError(f"duplicate band names {dup} in {[b.name for b in bands]}")
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "sensor", sensor)

    def __len__(self) -> int:
        return len(self.bands)

    def __iter__(self) -> Iterator[Band]:
        return iter(self.bands)

    @overload
    def __getitem__(self, index: int) -> Band: ...
    @overload
    def __getitem__(self, index: slice) -> BandSet: ...
    def __getitem__(self, index: int | slice) -> Band | BandSet:
        if isinstance(index, slice):
            return BandSet(self.bands[index], self.sensor)
        return self.bands[index]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @property
    def wavelengths(self) -> tuple[float | None, ...]:
        """Centre wavelengths in nm, None where unknown."""
        return tuple(b.wavelength_nm for b in self.bands)

    def describe(self) -> str:
        """``"[B02 (490 nm), B03 (560 nm)]"``."""
        return "[" + ", ".join(b.describe() for b in self.bands) + "]"

    def index(self, name: str) -> int | None:
        """Position of the band called ``name`` (by :func:`band_key`, then the sensor's aliases and
        unique common names), None if there is none."""
        key = band_key(name)
        for i, b in enumerate(self.bands):
            if b.key == key:
                return i
        alias = ALIASES.get(self.sensor or "", {}).get(str(name).strip())
        if alias is not None:
            return self.index(alias)
        common = [i for i, b in enumerate(self.bands)
                  if b.common_name is not None and b.common_name.lower() == str(name).strip().lower()]
        return common[0] if len(common) == 1 else None

    def select(self, names: Sequence[str], where: str | Path = "bands") -> BandSet:
        """The bands called ``names``, in that order (see :meth:`index`); a name that is not here is a
        DataError on ``where`` listing the available names."""
        picked = []
        for n in names:
            i = self.index(n)
            if i is None:
                raise DataError(where, f"no band '{n}'; available bands: {', '.join(self.names)}"
                                       + (f" (sensor {self.sensor})" if self.sensor else ""))
            picked.append(self.bands[i])
        return BandSet(picked, self.sensor)

    def to_card(self) -> dict[str, Any]:
        """A JSON-serialisable description (``json.dumps`` works on it); :meth:`from_card` inverts it."""
        return {"version": CARD_VERSION, "sensor": self.sensor, "bands": [asdict(b) for b in self.bands]}

    @classmethod
    def from_card(cls, card: Mapping[str, Any] | str, where: str = "bands") -> BandSet:
        """The BandSet of a card (a dict or its JSON text); a malformed card is a ConfigError on ``where``."""
        try:
            if isinstance(card, str):
                card = json.loads(card)
            if not isinstance(card, Mapping) or not isinstance(card.get("bands"), list):
                raise ValueError("expected an object with a 'bands' list")
            if card.get("version", CARD_VERSION) != CARD_VERSION:
                raise ValueError(f"card version {card.get('version')!r}, this mpt-satellite reads {CARD_VERSION}")
            known = {f.name for f in fields(Band)}
            bands = []
            for i, b in enumerate(card["bands"]):
                if not isinstance(b, Mapping):
                    raise ValueError(f"band {i} is {b!r}, not an object")
                unknown = set(b) - known
                if unknown:
                    raise ValueError(f"band {i}: unknown fields {sorted(unknown)} (known: {sorted(known)})")
                bands.append(Band(**b))
            return cls(bands, card.get("sensor"))
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise ConfigError(where, f"not a band card ({exc})") from None


def _sentinel2() -> BandSet:
    table = [  # name, centre nm, GSD m, STAC common name
        ("B01", 443, 60, "coastal"), ("B02", 490, 10, "blue"), ("B03", 560, 10, "green"), ("B04", 665, 10, "red"),
        ("B05", 705, 20, "rededge"), ("B06", 740, 20, "rededge"), ("B07", 783, 20, "rededge"), ("B08", 842, 10, "nir"),
        ("B8A", 865, 20, "nir08"), ("B09", 945, 60, "nir09"), ("B10", 1375, 60, "cirrus"), ("B11", 1610, 20, "swir16"),
        ("B12", 2190, 20, "swir22"),
    ]
    return BandSet([Band(n, float(w), float(g), common_name=c) for n, w, g, c in table], "sentinel2")


def _landsat7() -> BandSet:
    table = [("B1", 485, "blue"), ("B2", 560, "green"), ("B3", 660, "red"), ("B4", 835, "nir"),
             ("B5", 1650, "swir16"), ("B7", 2220, "swir22")]
    return BandSet([Band(n, float(w), 30.0, common_name=c) for n, w, c in table], "landsat7")


SENSORS: dict[str, BandSet] = {"sentinel2": _sentinel2(), "landsat7": _landsat7()}
"""Band catalogue by sensor name (sources in the module docstring)."""

ALIASES: dict[str, dict[str, str]] = {
    # GLCF/CalView file names: band number × 10 (61/62 thermal, 80 pan are not in the catalogue)
    "landsat7": {"10": "B1", "20": "B2", "30": "B3", "40": "B4", "50": "B5", "70": "B7"},
}
"""File-convention band names of a sensor that :func:`band_key` alone would not map."""


def sensor(name: str) -> BandSet:
    """The catalogue BandSet of sensor ``name`` (``"sentinel2"``, ``"landsat7"``; case, ``-``/``_`` ignored)."""
    key = re.sub(r"[\s_\-]", "", name).lower()
    if key not in SENSORS:
        raise ConfigError("sensor", f"unknown sensor '{name}'; known: {', '.join(SENSORS)}")
    return SENSORS[key]


def _close(a: float | None, b: float | None, tol: float) -> bool:
    return a is not None and b is not None and abs(a - b) <= tol


def check_bands(expected: BandSet, got: BandSet, where: str | Path, *, kind: Literal["data", "config"] = "data",
                tol_nm: float = WAVELENGTH_TOLERANCE_NM) -> None:
    """Raise unless ``got`` has the bands of ``expected`` in the same order (names by :func:`band_key`;
    where both know a band's centre wavelength, within ``tol_nm``; where ``expected`` knows it, ``got``
    must too). The error — a DataError on ``where`` (a file) or, with ``kind="config"``, a ConfigError
    on ``where`` (a config key) — lists both band lists, says what differs (missing or extra bands,
    another order, a missing or different wavelength, names that differ but wavelengths that match)
    and how to map them. Nothing is ever reordered or dropped silently."""
    problem, fix = _band_mismatch(expected, got, tol_nm)
    if problem is None:
        return
    message = f"band mismatch: expected {expected.describe()}, got {got.describe()}: {problem}; {fix}"
    if kind == "config":
        raise ConfigError(str(where), message)
    raise DataError(where, message)


def _band_mismatch(expected: BandSet, got: BandSet, tol: float) -> tuple[str | None, str]:
    keys = [b.key for b in got]
    order = "[" + ", ".join(b.name for b in expected) + "]"
    if [b.key for b in expected] == keys:
        unknown = [e.name for e, g in zip(expected, got, strict=True)
                   if e.wavelength_nm is not None and g.wavelength_nm is None]
        if unknown:
            return (f"no centre wavelength for {', '.join(unknown)}",
                    "write band metadata into the files (write_geotiff stores it as band tags) or name the "
                    "sensor (e.g. sensor='sentinel2') so the catalogue supplies it")
        off = [f"{e.name} is {g.wavelength_nm:g} nm, expected {e.wavelength_nm:g} nm"
               for e, g in zip(expected, got, strict=True)
               if e.wavelength_nm is not None and g.wavelength_nm is not None
               and not _close(e.wavelength_nm, g.wavelength_nm, tol)]
        if off:
            return (f"same names but other wavelengths ({'; '.join(off)}; tolerance {tol:g} nm)",
                    "these are other bands under the same names (another sensor?): use data of the expected "
                    "sensor, or fix the band metadata of the files")
        return None, ""
    missing = [e for e in expected if e.key not in keys]
    extra = [g for g in got if g.key not in {e.key for e in expected}]
    if not missing:
        what = "the same bands in another order" if not extra else (
            f"extra bands {', '.join(b.name for b in extra)}")
        return what, f"select bands with data.bands={order} in this order"
    # names differ: do the wavelengths say which band is which?
    pairs: list[tuple[Band, Band | None]] = []
    for e in missing:
        match = [g for g in extra if _close(e.wavelength_nm, g.wavelength_nm, tol)]
        pairs.append((e, match[0] if len(match) == 1 else None))
    problem = f"missing bands {', '.join(e.describe() for e in missing)}"
    if extra:
        problem += f"; bands not expected: {', '.join(g.describe() for g in extra)}"
    if all(g is not None for _, g in pairs):
        mapping = ", ".join(f"{g.name}→{e.name}" for e, g in pairs if g is not None)
        return (problem + " (their wavelengths match under other names)",
                f"rename the bands ({mapping}) and select data.bands={order} in this order")
    return problem, (f"the data must provide every expected band; select data.bands={order} in this order "
                     "from data that has them, or pretrain a model on the bands you have")


RGB_RANGES_NM = {"red": (620.0, 700.0), "green": (520.0, 600.0), "blue": (450.0, 520.0)}
RGB_CENTRES_NM = {"red": 660.0, "green": 560.0, "blue": 485.0}


def rgb_indices(bands: BandSet | Sequence[Band]) -> tuple[int, int, int] | None:
    """Positions of the red, green and blue bands (for figures): by name or ``common_name``
    ("red"/"green"/"blue", case-insensitive), else by centre wavelength (the band nearest to 660/560/
    485 nm within red 620-700, green 520-600, blue 450-520 nm). None if a colour has no band.
    Catalogue names alone (``"B04"``) are not used: B04 is red for Sentinel-2 but NIR for Landsat-7."""
    bands = list(bands)
    picked: list[int] = []
    for colour in ("red", "green", "blue"):
        by_name = [i for i, b in enumerate(bands)
                   if colour in (b.name.strip().lower(), (b.common_name or "").lower())]
        if by_name:
            picked.append(by_name[0])
            continue
        lo, hi = RGB_RANGES_NM[colour]
        near = [(abs(b.wavelength_nm - RGB_CENTRES_NM[colour]), i) for i, b in enumerate(bands)
                if b.wavelength_nm is not None and lo <= b.wavelength_nm <= hi]
        if not near:
            return None
        picked.append(min(near)[1])
    if len(set(picked)) < 3:
        return None
    return picked[0], picked[1], picked[2]
