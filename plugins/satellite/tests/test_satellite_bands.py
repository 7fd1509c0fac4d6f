"""Band metadata: the sensor catalogue, name matching, JSON cards, check_bands messages, RGB choice."""

from __future__ import annotations

import json

import pytest

from mpt.errors import ConfigError, DataError
from mpt_satellite.bands import SENSORS, Band, BandSet, band_key, check_bands, rgb_indices, sensor

S2 = SENSORS["sentinel2"]
L7 = SENSORS["landsat7"]
S2_10M = S2.select(["B02", "B03", "B04", "B08"])


def test_sentinel2_catalogue() -> None:
    assert S2.names == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    assert S2.wavelengths == (443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190)
    assert [b.gsd_m for b in S2] == [60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20]
    assert S2.sensor == "sentinel2" and sensor("Sentinel-2") is S2


def test_landsat7_catalogue() -> None:
    assert L7.names == ("B1", "B2", "B3", "B4", "B5", "B7")
    assert L7.wavelengths == (485, 560, 660, 835, 1650, 2220)
    assert {b.gsd_m for b in L7} == {30}
    with pytest.raises(ConfigError, match="unknown sensor 'landsat9'.*sentinel2, landsat7"):
        sensor("landsat9")


def test_band_key_ignores_case_zeros_and_prefix() -> None:
    assert {band_key(n) for n in ("B02", "b2", "band 2", "BAND_02", "2", "02")} == {"B2"}
    assert band_key("B8A") == band_key("b08a") == band_key("8A") == "B8A"
    assert band_key("red") == "RED" and band_key("swir-16") == "SWIR16"


def test_index_by_name_alias_and_common_name() -> None:
    assert S2.index("B2") == 1 and S2.index("b8a") == 8 and S2.index("red") == 3
    assert S2.index("rededge") is None  # three red-edge bands: ambiguous, never a guess
    assert L7.index("10") == 0 and L7.index("70") == 5  # GLCF file codes of ETM+ bands 1 and 7
    assert L7.index("nir") == 3 and L7.index("B6") is None
    with pytest.raises(DataError, match=r"no band 'B6'; available bands: B1, B2, B3, B4, B5, B7 \(sensor landsat7\)"):
        L7.select(["B3", "B6"])
    assert L7.select(["30", "20", "10"]).names == ("B3", "B2", "B1")


def test_bandset_rejects_duplicates_and_bad_bands() -> None:
    with pytest.raises(ValueError, match="duplicate band names"):
        BandSet([Band("B02"), Band("B2")])
    with pytest.raises(ValueError, match="wavelength_nm must be a positive number"):
        Band("x", wavelength_nm=-1.0)
    with pytest.raises(ValueError, match="scale must be finite and non-zero"):
        Band("x", scale=0.0)
    with pytest.raises(TypeError):
        BandSet(["B02"])  # type: ignore[list-item]
    assert isinstance(S2[1:3], BandSet) and S2[1:3].names == ("B02", "B03") and S2[0].name == "B01"


def test_card_round_trip_through_json() -> None:
    bands = BandSet([Band("B04", 665.0, 10.0, nodata=0.0, scale=1e-4, offset=-0.1, common_name="red"),
                     Band("t", None, None)], sensor="custom")
    card = json.loads(json.dumps(bands.to_card()))
    assert BandSet.from_card(card) == bands
    assert BandSet.from_card(json.dumps(card)) == bands
    assert BandSet.from_card(S2.to_card()) == S2


@pytest.mark.parametrize(("card", "match"), [
    ("{not json", "not a band card"),
    ({"bands": "B02"}, "a 'bands' list"),
    ({"bands": [{"name": "B02", "colour": "blue"}]}, r"unknown fields \['colour'\]"),
    ({"version": 99, "bands": []}, "card version 99"),
    ({"bands": [{"name": ""}]}, "non-empty name"),
])
def test_bad_cards_are_config_errors(card: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        BandSet.from_card(card, where="encoder.bands")  # type: ignore[arg-type]
    assert err.value.key == "encoder.bands"


def test_check_bands_accepts_the_same_bands() -> None:
    check_bands(S2_10M, S2.select(["b2", "B3", "4", "B08"]), "scene.tif")
    # wavelengths within the tolerance (SRF-weighted S2A B08 832.8 nm vs the nominal 842 nm)
    check_bands(S2_10M, BandSet([*S2_10M[:3], Band("B08", 832.8)]), "scene.tif")


def test_check_bands_other_order() -> None:
    with pytest.raises(DataError) as err:
        check_bands(S2_10M, S2.select(["B04", "B03", "B02", "B08"]), "scene.tif")
    msg = str(err.value)
    assert msg.startswith("scene.tif: band mismatch")
    assert "expected [B02 (490 nm), B03 (560 nm), B04 (665 nm), B08 (842 nm)]" in msg
    assert "got [B04 (665 nm), B03 (560 nm), B02 (490 nm), B08 (842 nm)]" in msg
    assert "the same bands in another order" in msg
    assert "select bands with data.bands=[B02, B03, B04, B08] in this order" in msg


def test_check_bands_extra_bands() -> None:
    with pytest.raises(DataError, match=r"extra bands B01, B05.*data.bands=\[B02, B03, B04, B08\] in this order"):
        check_bands(S2_10M, S2.select(["B01", "B02", "B03", "B04", "B05", "B08"]), "scene.tif")


def test_check_bands_other_bands() -> None:
    with pytest.raises(ConfigError) as err:
        check_bands(S2_10M, S2.select(["B02", "B03", "B04", "B11"]), "data.bands", kind="config")
    msg = str(err.value)
    assert err.value.key == "data.bands"
    assert "missing bands B08 (842 nm)" in msg and "bands not expected: B11 (1610 nm)" in msg
    assert "the data must provide every expected band" in msg


def test_check_bands_other_sensor_under_the_same_names() -> None:
    s2_b1_b4 = S2.select(["B01", "B02", "B03", "B04"])
    with pytest.raises(DataError, match=r"same names but other wavelengths \(B01 is 485 nm, expected 443 nm; B02 is "
                                        r"560 nm, expected 490 nm; .*another sensor\?"):
        check_bands(s2_b1_b4, L7.select(["B1", "B2", "B3", "B4"]), "lsat.tif")


def test_check_bands_missing_wavelength() -> None:
    unnamed = BandSet([Band(n) for n in S2_10M.names])
    with pytest.raises(DataError, match=r"got \[B02 \(no wavelength\).*no centre wavelength for B02, B03, B04, B08"
                                        r".*sensor='sentinel2'"):
        check_bands(S2_10M, unnamed, "scene.tif")
    check_bands(unnamed, S2_10M, "scene.tif")  # the expected side not knowing them is fine


def test_check_bands_same_wavelengths_other_names() -> None:
    common = BandSet([Band(b.common_name or "", b.wavelength_nm) for b in S2_10M])  # blue, green, red, nir
    with pytest.raises(DataError, match=r"their wavelengths match under other names.*rename the bands "
                                        r"\(blue→B02, green→B03, red→B04, nir→B08\)"):
        check_bands(S2_10M, common, "scene.tif")


def test_rgb_indices_for_the_catalogues() -> None:
    assert rgb_indices(S2) == (3, 2, 1)  # B04, B03, B02; B01 (443 nm, coastal) is not blue
    assert rgb_indices(S2_10M) == (2, 1, 0)
    assert rgb_indices(L7) == (2, 1, 0)  # B3, B2, B1 (B4 is Landsat's NIR)
    assert rgb_indices(S2.select(["B08", "B04", "B03", "B02"])) == (1, 2, 3)


def test_rgb_indices_by_name_or_wavelength_only() -> None:
    assert rgb_indices(BandSet([Band("Blue"), Band("nir"), Band("RED"), Band("green")])) == (2, 3, 0)
    by_wavelength = BandSet([Band("c", 480.0), Band("a", 650.0), Band("b", 550.0), Band("d", 443.0)])
    assert rgb_indices(by_wavelength) == (1, 2, 0)
    assert rgb_indices(S2.select(["B08", "B11", "B12"])) is None
    assert rgb_indices(BandSet([Band("B04"), Band("B03"), Band("B02")])) is None  # names alone are ambiguous
    assert rgb_indices(S2.select(["B01", "B03", "B04"])) is None  # coastal only: no blue
