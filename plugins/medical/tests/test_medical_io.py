"""Every bad input of the issue gives a DataError naming the file, or a counted skip."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from medical_helpers import head, write

from mpt.errors import DataError
from mpt_medical.config import MedicalDataConfig
from mpt_medical.dataset import MedicalDataset
from mpt_medical.io import find_volumes, probe_volume


def truncated(tmp: Path) -> Path:
    source = write(tmp / "source.nii.gz", head((40, 40, 40)))
    raw = source.read_bytes()
    source.unlink()
    (tmp / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    return tmp / "truncated.nii.gz"


def patched_header(tmp: Path, name: str, pixdim: dict[int, float] | None = None,
                   srow_z: tuple[float, float, float, float] | None = None) -> Path:
    """A valid .nii whose header bytes are then edited (nibabel refuses to write such headers):
    ``pixdim[i]`` values, or an sform with row z ``srow_z`` (the qform switched off)."""
    path = write(tmp / f"{name}.nii", head())
    raw = bytearray(path.read_bytes())
    for i, v in (pixdim or {}).items():
        struct.pack_into("<f", raw, 76 + 4 * i, v)
    if pixdim:
        struct.pack_into("<hh", raw, 252, 0, 0)  # qform_code, sform_code 0: the affine comes from pixdim
    if srow_z is not None:
        struct.pack_into("<4f", raw, 312, *srow_z)
        struct.pack_into("<hh", raw, 252, 0, 1)
    path.write_bytes(bytes(raw))
    return path


def text_file(path: Path) -> Path:
    path.write_bytes(b"these are my notes, not a volume\n" * 20)
    return path


CASES = {
    "truncated": (truncated, "truncated or corrupt"),
    "2-D": (lambda t: write(t / "slice.nii.gz", head((20, 20, 1))[:, :, 0]), "2-D image"),
    "one slice": (lambda t: write(t / "slice3.nii", head((20, 20, 1))), "2-D image"),
    "5-D": (lambda t: write(t / "five.nii.gz", np.ones((6, 6, 6, 2, 2), np.float32)), "5-D array"),
    "zero spacing": (lambda t: patched_header(t, "zero-spacing", pixdim={1: 0.0}), "spacing"),
    "NaN spacing": (lambda t: patched_header(t, "nan-spacing", pixdim={2: float("nan")}), "spacing"),
    "singular affine": (lambda t: patched_header(t, "singular", srow_z=(0.0, 0.0, 0.0, 0.0)), "singular"),
    "constant": (lambda t: write(t / "constant.nii.gz", np.full((10, 10, 10), 7.0, np.float32)), "constant volume"),
    "NaN voxels": (lambda t: write(t / "nan.nii.gz", np.where(head() > 120, np.nan, head()).astype(np.float32)),
                   "NaN/Inf voxels"),
    "not NIfTI": (lambda t: text_file(t / "notes.nii"), "not a NIfTI|truncated or corrupt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_is_a_data_error_naming_it(tmp_path: Path, case: str) -> None:
    make, message = CASES[case]
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as err:
        probe_volume(path)
    assert err.value.path == str(path)


def test_bad_files_are_counted_skips_with_skip_bad_files(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    good = write(tmp_path / "data" / "good.nii.gz", head())
    bad = [make(tmp_path / "data") for make, _ in CASES.values()]
    cfg = MedicalDataConfig(spacing="none", crop=16)
    with pytest.raises(DataError):
        MedicalDataset(tmp_path / "data", "train", cfg, progress=False)
    ds = MedicalDataset(tmp_path / "data", "train", cfg, skip_bad_files=True, progress=False)
    assert ds.sources == [str(good)]
    assert sorted(p for p, _ in ds.skipped) == sorted(str(p) for p in bad)  # each counted, with its reason
    assert all(reason for _, reason in ds.skipped)


def test_file_names_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(b"x")
    with pytest.raises(DataError, match="not a NIfTI file name"):
        find_volumes(tmp_path / "a.csv.gz")
    with pytest.raises(DataError, match="no .nii"):
        find_volumes(tmp_path)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "v.nii.gz", head())
    assert find_volumes(tmp_path) == [tmp_path / "sub" / "v.nii.gz"]


def test_missing_nibabel_is_an_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mpt.errors import PluginError

    path = write(tmp_path / "v.nii.gz", head())
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel → ImportError
    with pytest.raises(PluginError, match="nibabel"):
        probe_volume(path)


def test_foreground_box_is_what_differs_from_the_background(tmp_path: Path) -> None:
    """The box foreground crops are drawn in: voxels unlike the commonest corner value, whether the
    background is 0, CT air or the negative floor of a z-scored file."""
    for background in (0.0, -1000.0, -1.7):
        vol = np.full((30, 30, 30), background, np.float32)
        vol[5:12, 8:20, 3:9] = np.linspace(1, 2, 7 * 12 * 6).reshape(7, 12, 6)
        vol[20:25, 2:4, 22:29] = background - 5.0  # darker than the background is foreground too
        info = probe_volume(write(tmp_path / f"v{background}.nii.gz", vol))
        assert info.boxes[0] == ((5, 2, 3), (25, 20, 29))
