"""Orientation and resampling against nibabel's own computations; slab reads equal whole-volume
resampling (the dataset's path and a loaded encoder's path see the same voxels)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from medical_helpers import head, nibabel_data, write
from nibabel.processing import resample_to_output

from mpt_medical.geometry import orient, ras_orientation, ras_spacing, resample_box, resampled_size, source_range
from mpt_medical.io import probe_volume, read_box


def whole(img: nib.Nifti1Image, target: tuple[float, float, float] | None) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(img.dataobj, dtype=np.float32))[None]
    ornt = ras_orientation(img.affine)
    y = orient(x, ornt)
    sp = ras_spacing(img.affine, ornt)
    size = [resampled_size(n, float(o), None if target is None else target[k]) for k, (n, o) in
            enumerate(zip(y.shape[1:], sp, strict=True))]
    return resample_box(y, (0, 0, 0), y.shape[1:], sp.tolist(), target, (0, 0, 0), size)[0]


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz"])
def test_orientation_equals_nibabel_closest_canonical(name: str) -> None:
    img = nib.load(str(nibabel_data() / name))  # LAS, as many scanners write
    canonical = nib.as_closest_canonical(img)
    assert nib.aff2axcodes(img.affine) != ("R", "A", "S")
    data = torch.from_numpy(np.asarray(img.dataobj, dtype=np.float32))
    data = data if data.ndim == 3 else data.permute(3, 0, 1, 2)
    ours = orient(data, ras_orientation(img.affine))
    want = np.asarray(canonical.dataobj, dtype=np.float32)
    want = want if want.ndim == 3 else np.moveaxis(want, 3, 0)
    np.testing.assert_array_equal(ours.numpy(), want)
    np.testing.assert_allclose(ras_spacing(img.affine, ras_orientation(img.affine)),
                               canonical.header.get_zooms()[:3], rtol=1e-6)


def test_permuted_and_flipped_storage_reads_the_same_ras_volume(tmp_path: Path) -> None:
    vol = head()
    a = write(tmp_path / "ras.nii.gz", vol)
    # stored as (y, x, z) with x and z reversed: voxel (j, i, k) = vol[n0-1-i, j, n2-1-k]
    stored = np.ascontiguousarray(vol[::-1, :, ::-1].transpose(1, 0, 2))
    n0, _, n2 = vol.shape
    m = np.array([[0, -1, 0, n0 - 1], [1, 0, 0, 0], [0, 0, -1, n2 - 1], [0, 0, 0, 1]], dtype=float)
    b = write(tmp_path / "permuted.nii.gz", stored, affine=m)
    ia, ib = probe_volume(a), probe_volume(b)
    assert ib.oriented_shape == ia.oriented_shape == vol.shape
    np.testing.assert_array_equal(read_box(ib, (2, 3, 4), (20, 25, 11)).numpy(), vol[None, 2:20, 3:25, 4:11])


@pytest.mark.parametrize("target", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (1.5, 3.0, 0.75)])
def test_resampling_equals_nibabel_resample_to_output(target: tuple[float, float, float]) -> None:
    """nibabel.processing.resample_to_output (scipy, order 1) on the same grid: equal voxels where its
    grid and ours overlap; ours stops at the last stored voxel (nibabel adds an extrapolated one)."""
    img = nib.as_closest_canonical(nib.load(str(nibabel_data() / "anatomical.nii")))  # 2 mm voxels, int16
    img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)  # nibabel keeps the dtype
    want = np.asarray(resample_to_output(img, target, order=1).dataobj, dtype=np.float32)
    ours = whole(img, target).numpy()
    for k in range(3):
        assert ours.shape[k] == int(np.floor((img.shape[k] - 1) * 2.0 / target[k] + 1e-6)) + 1
        assert want.shape[k] - 1 <= ours.shape[k] <= want.shape[k]
    x, y, z = ours.shape
    np.testing.assert_allclose(ours, want[:x, :y, :z], rtol=1e-4, atol=1e-3)


def test_slab_reads_equal_whole_volume_resampling(tmp_path: Path) -> None:
    vol = head((30, 26, 22))
    path = write(tmp_path / "v.nii", vol, spacing=(0.9, 1.3, 2.1))
    info = probe_volume(path)
    target = (1.0, 1.0, 1.0)
    full = whole(nib.load(str(path)), target)
    for start, size in [((0, 0, 0), (16, 16, 16)), ((7, 13, 20), (16, 16, 16)), ((-4, 20, 30), (16, 16, 16))]:
        ranges = [source_range(start[k], size[k], info.oriented_shape[k], info.spacing[k], target[k]) for k in range(3)]
        lo, hi = [r[0] for r in ranges], [r[1] for r in ranges]
        crop = resample_box(read_box(info, lo, hi), lo, info.oriented_shape, info.spacing, target, start, size)[0]
        m = full.shape
        want = torch.full(size, float("nan"))
        src = [slice(max(s, 0), min(s + n, mk)) for s, n, mk in zip(start, size, m, strict=True)]
        dst = [slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start, strict=True)]
        want[tuple(dst)] = full[tuple(src)]
        torch.testing.assert_close(crop, want, equal_nan=True, rtol=0, atol=0)


def test_no_resampling_keeps_voxels_exactly() -> None:
    img = nib.load(str(nibabel_data() / "anatomical.nii"))
    out = whole(img, None)
    np.testing.assert_array_equal(out.numpy(), np.asarray(nib.as_closest_canonical(img).dataobj, dtype=np.float32))
