"""NIfTI readers (nibabel): headers probed once, voxels read one oriented box at a time.

A volume is checked when a dataset is built (:func:`probe_volume`: the header, then one pass over
the voxels for NaN/Inf, constant volumes and the intensity statistics of the plan) and read when an
item needs it (:func:`read_box`: only the stored slab a crop interpolates from; an uncompressed
``.nii`` is memory-mapped, a ``.nii.gz`` decompressed up to the slab). Nothing keeps a volume in
memory between items. Every problem is a :class:`~mpt.errors.DataError` naming the file.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mpt.errors import DataError
from mpt.files import find_files
from mpt.registry import optional_import
from mpt_medical.geometry import ras_orientation, ras_shape, ras_spacing, stored_slices

EXTENSIONS = (".nii", ".gz")  # .nii and .nii.gz (a .gz that is not .nii.gz is refused)
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, MemoryError)


def nibabel() -> Any:
    """The nibabel module, or a PluginError saying how to install it."""
    return optional_import("nibabel", "mpt-medical", "nibabel")


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def find_volumes(path: str | Path) -> list[Path]:
    """``path`` if it is a NIfTI file, else every ``.nii`` / ``.nii.gz`` below it (sorted)."""
    path = Path(path)
    if path.is_file() and not is_nifti(path):
        raise DataError(path, "not a NIfTI file name (.nii or .nii.gz)")
    files = [f for f in find_files(path, EXTENSIONS, kind="NIfTI") if is_nifti(f)]
    if not files:
        raise DataError(path, "no .nii or .nii.gz files in this folder")
    return files


@dataclass(frozen=True)
class Moments:
    """Per-channel mean and std of the voxels of a foreground rule, over a whole stored volume."""

    nonzero: tuple[tuple[float, float], ...]  # voxels != 0
    all: tuple[tuple[float, float], ...]  # every voxel

    def of(self, rule: str) -> Tensor:
        """``[C, 2]`` float64 (mean, std) of rule ``nonzero`` or ``all``."""
        return torch.tensor(self.nonzero if rule == "nonzero" else self.all, dtype=torch.float64)


@dataclass(frozen=True)
class VolumeInfo:
    """What probing a file found: the stored ``shape`` (3-D, or 4-D with ``frames``), its affine, the
    orientation to RAS, the oriented shape and spacing (mm), the foreground box of each frame
    (oriented voxel index ``[lo, hi)`` of the voxels that differ from the background, the commonest
    value of its eight corners) and its moments."""

    path: Path
    shape: tuple[int, ...]
    affine: np.ndarray
    ornt: np.ndarray
    oriented_shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    frames: int  # 4th-axis length (1 for 3-D files)
    boxes: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...]  # per frame
    moments: tuple[Moments, ...]  # per frame (each over its own channels: 1)


def load_image(path: Path) -> Any:
    """The nibabel image of ``path`` (header read, voxels not yet), or a DataError."""
    nib = nibabel()
    try:
        img = nib.load(str(path))
    except nib.filebasedimages.ImageFileError as exc:
        raise DataError(path, f"not a NIfTI image ({exc}); pass .nii / .nii.gz files written by a NIfTI writer") \
            from None
    except READ_ERRORS as exc:
        raise DataError(path, f"cannot read the NIfTI header ({type(exc).__name__}: {exc}); the file is "
                              "truncated or corrupt") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(path, f"a {type(img).__name__}, not a NIfTI-1/2 image")
    return img


def check_header(path: Path, img: Any) -> tuple[tuple[int, ...], np.ndarray]:
    """The stored shape and affine, or a DataError for a 2-D, 5-D, zero/NaN-spacing or singular one."""
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3 or min(shape[:3]) == 1:
        raise DataError(path, f"a 2-D image (shape {shape}): volumes need three spatial axes of more than one "
                              "voxel")
    if len(shape) > 4:
        raise DataError(path, f"a {len(shape)}-D array (shape {shape}): 3-D volumes or 4-D (x, y, z, channels or "
                              "frames) only; split the extra axes into separate files")
    zooms = stored_zooms(path, img)
    if not np.isfinite(zooms).all() or (zooms <= 0).any():
        raise DataError(path, f"voxel spacing {zooms.tolist()} mm in the header (pixdim) is not positive and finite; "
                              "fix the header (e.g. nibabel: img.header.set_zooms)")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(path, "the affine (sform/qform) is singular or not finite: the voxel axes do not span "
                              "space; fix the header's sform or qform")
    return shape, affine


def stored_zooms(path: Path, img: Any) -> np.ndarray:
    """The voxel sizes the header stores (pixdim 1-3), read without nibabel's header fixes, which
    replace a zero by 1 mm with only a log message."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as f:
            raw = type(img.header).from_fileobj(f, check=False)
    except READ_ERRORS as exc:
        raise DataError(path, f"cannot read the NIfTI header ({exc})") from None
    return np.asarray(raw["pixdim"][1:4], dtype=np.float64)


def stored_voxels(path: Path, img: Any) -> tuple[np.ndarray, float, float]:
    """The stored array before scl_slope/inter — a memory map for an uncompressed ``.nii``, the
    decompressed array in its stored dtype for ``.nii.gz`` — with its slope and intercept."""
    proxy = img.dataobj
    try:
        raw = proxy.get_unscaled()
    except READ_ERRORS as exc:
        raise DataError(path, f"cannot read the voxels ({type(exc).__name__}: {exc}); the file is truncated or "
                              "corrupt") from None
    slope = float(getattr(proxy, "slope", 1.0))
    inter = float(getattr(proxy, "inter", 0.0))
    return raw, (1.0 if not np.isfinite(slope) or slope == 0 else slope), (inter if np.isfinite(inter) else 0.0)


def read_stored(path: Path, img: Any, index: tuple[slice | int, ...] | None = None) -> np.ndarray:
    """Stored voxels (scaled by scl_slope/inter) as float32, all or ``[index]``: a slice of the memory
    map for an uncompressed file (nibabel's ``dataobj[index]`` reads it row by row), nibabel's proxy
    for a compressed one (it decompresses only up to the slab)."""
    try:
        if index is not None and not str(path).lower().endswith(".gz"):
            raw, slope, inter = stored_voxels(path, img)
            out = np.asarray(raw[index], dtype=np.float32)
            return out if (slope, inter) == (1.0, 0.0) else (out * np.float32(slope) + np.float32(inter))
        data = img.dataobj if index is None else img.dataobj[index]
        return np.asarray(data, dtype=np.float32)
    except READ_ERRORS as exc:
        raise DataError(path, f"cannot read the voxels ({type(exc).__name__}: {exc}); the file is truncated or "
                              "corrupt") from None


SLAB = 16  # planes of the last stored axis per pass when a volume is checked


@dataclass
class _Running:
    """Count, mean and sum of squared deviations, merged slab by slab (Chan et al.)."""

    n: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, v: np.ndarray) -> None:
        if not v.size:
            return
        n, mean = float(v.size), float(v.mean())
        m2 = float(((v - mean) ** 2).sum())
        tot = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / tot
        self.m2 += m2 + delta**2 * self.n * n / tot
        self.n = tot

    def moments(self) -> tuple[float, float]:
        return (self.mean, (self.m2 / self.n) ** 0.5) if self.n else (0.0, 0.0)


def frame_facts(path: Path, raw: np.ndarray, slope: float, inter: float, ornt: np.ndarray, frame: int | None = None
                ) -> tuple[tuple[tuple[int, int, int], tuple[int, int, int]], Moments]:
    """The foreground box (oriented indices) and moments of one stored 3-D frame of ``raw``, in one
    pass over slabs of SLAB planes (a few slabs in memory, whatever the volume's size)."""
    where = f" (frame {frame})" if frame is not None else ""
    vol = raw if frame is None else raw[..., frame]
    shape = vol.shape[:3]
    corners = np.array([vol[x, y, z] for x in (0, shape[0] - 1) for y in (0, shape[1] - 1)
                        for z in (0, shape[2] - 1)], dtype=np.float64) * slope + inter
    values, counts = np.unique(corners, return_counts=True)
    background = values[counts.argmax()]  # the commonest corner value (0, air, a z-scored floor)
    planes = [np.zeros(n, dtype=bool) for n in shape]
    every, nonzero = _Running(), _Running()
    lo_v, hi_v, bad = np.inf, -np.inf, 0
    for z0 in range(0, shape[2], SLAB):
        v = np.asarray(vol[:, :, z0 : z0 + SLAB], dtype=np.float64) * slope + inter
        finite = np.isfinite(v)
        bad += int(v.size - finite.sum())
        if bad:
            continue
        lo_v, hi_v = min(lo_v, float(v.min())), max(hi_v, float(v.max()))
        fg = v != background
        planes[0] |= fg.any((1, 2))
        planes[1] |= fg.any((0, 2))
        planes[2][z0 : z0 + v.shape[2]] = fg.any((0, 1))
        every.add(v)
        nonzero.add(v[v != 0])
    if bad:
        raise DataError(path, f"{bad} NaN/Inf voxels{where}: the plan cannot normalise them; fill them (e.g. with "
                              "the background value) or leave the file out")
    if hi_v - lo_v <= 1e-12 * max(abs(hi_v), 1.0):
        raise DataError(path, f"a constant volume{where} (every voxel {lo_v:g}): nothing to learn from; leave it out")
    idx = [np.flatnonzero(p) for p in planes]
    lo, hi = [0, 0, 0], [0, 0, 0]
    for a, (axis, flip) in enumerate(ornt):
        k, n, first, last = int(axis), shape[a], int(idx[a][0]), int(idx[a][-1]) + 1
        lo[k], hi[k] = (first, last) if flip > 0 else (n - last, n - first)
    moments = Moments(nonzero=(nonzero.moments(),), all=(every.moments(),))
    return ((lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])), moments


def probe_volume(path: str | Path, orientation: str = "RAS") -> VolumeInfo:
    """Header checks, then one pass over the voxels (frame by frame, slab by slab): NaN/Inf and
    constant frames are DataErrors naming the file; the foreground box and moments of every frame
    are kept. Memory: the slabs, plus for a ``.nii.gz`` one decompressed copy in the stored dtype."""
    path = Path(path)
    img = load_image(path)
    shape, affine = check_header(path, img)
    ornt = ras_orientation(affine, orientation == "RAS")
    frames = shape[3] if len(shape) == 4 else 1
    raw, slope, inter = stored_voxels(path, img)  # a memory map, or one decompressed copy in the stored dtype
    boxes, moments = [], []
    for f in range(frames):
        box, mom = frame_facts(path, raw, slope, inter, ornt, f if len(shape) == 4 else None)
        boxes.append(box)
        moments.append(mom)
    del raw
    spacing = ras_spacing(affine, ornt)
    return VolumeInfo(path=path, shape=shape, affine=affine, ornt=ornt, oriented_shape=ras_shape(shape, ornt),
                      spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])), frames=frames,
                      boxes=tuple(boxes), moments=tuple(moments))


def read_box(info: VolumeInfo, lo: Sequence[int], hi: Sequence[int], frame: int | None = None) -> Tensor:
    """Oriented voxels ``[lo, hi)`` of all channels, or of one ``frame`` of a 4-D file → ``[C, x, y, z]``
    float32 (C = 1 for a 3-D file or a frame)."""
    from mpt_medical.geometry import orient

    img = load_image(info.path)
    index: tuple[slice | int, ...] = stored_slices(lo, hi, info.shape, info.ornt)
    if len(info.shape) == 4:
        index = (*index, slice(None) if frame is None else int(frame))
    x = torch.from_numpy(read_stored(info.path, img, index))  # Fortran order is fine: one copy below
    x = x.unsqueeze(0) if x.ndim == 3 else x.permute(3, 0, 1, 2)
    return orient(x, info.ornt).contiguous()


def read_raw(path: str | Path, layout_4d: str = "channels") -> tuple[Tensor, np.ndarray]:
    """A whole file as stored: ``[C, X, Y, Z]`` float32 (4-D ``channels``) or ``[V, 1, X, Y, Z]``
    (``volumes``), and its affine. What :func:`mpt_medical.plan.raw_batch` hands a loaded encoder."""
    path = Path(path)
    img = load_image(path)
    shape, affine = check_header(path, img)
    data = torch.from_numpy(read_stored(path, img))
    if len(shape) == 3:
        data = data.unsqueeze(0)
    else:
        data = data.permute(3, 0, 1, 2)
        if layout_4d == "volumes":
            data = data.unsqueeze(1)
    bad = ~torch.isfinite(data)
    if bool(bad.any()):
        raise DataError(path, f"{int(bad.sum())} NaN/Inf voxels: fill them or leave the file out")
    return data.contiguous(), affine


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``data`` (3-D or 4-D) as NIfTI-1 (tests, demo data, benchmarks)."""
    nib = nibabel()
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64))
    nib.save(img, str(path))
    return Path(path)
