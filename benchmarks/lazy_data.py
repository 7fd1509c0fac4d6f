"""Peak RSS of opening a large folder as a training dataset (issue 9, item 6: lazy data).

Generates ``--size-gb`` of data under ``--dir`` (kept between runs unless ``--delete``), then in a
fresh subprocess opens it with the modality's ``dataset()`` and reads ``--items`` items, and prints
one JSON line: the peak RSS before, after construction, after the first item and after all items,
and the time each took.

* ``--modality timeseries`` (default): ``[channels, steps]`` float32 ``.npy`` series of ``--file-mb``
  (16), one item.
* ``--modality medical``: NIfTI volumes of about ``--file-mb`` (150) each, head-like smooth random
  data (an ellipsoid of textured "tissue" in a brighter shell, zero background), cycling through
  float32 at 0.8 mm isotropic in RAS and int16 at 0.45 × 0.45 × 1.1 mm stored LPS (uncompressed
  ``.nii``), plus ``--gz`` smaller float32 1 mm ``.nii.gz`` files; opened with the ``demo`` recipe at
  ``data.spacing=onemmiso data.crop=64`` (every crop resampled), 16 items spread over the files.

Peak RSS is the child's ``VmHWM`` (Linux; ``ru_maxrss`` elsewhere): ``ru_maxrss`` of a process started by
fork + exec begins at its parent's peak, which generating the data raises. ``--cold`` evicts the files
from the page cache before the child opens them (``posix_fadvise`` DONTNEED after ``fsync``; no root
needed), so reading hits the disk. Run it with another checkout on
``PYTHONPATH`` to compare versions of the same code on the same folder::

    .venv/bin/python benchmarks/lazy_data.py --dir /tmp/mpt-lazy --size-gb 2
    .venv/bin/python benchmarks/lazy_data.py --modality medical --dir /tmp/mpt-lazy-med --size-gb 2 --cold
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHILD = """
import json, pathlib, resource, sys, time
import mpt
from mpt.config import build_config

def status(key):
    try:
        with open("/proc/self/status") as f:
            return next((int(l.split()[1]) / 1024 for l in f if l.startswith(key + ":")), None)
    except OSError:
        return None

def peak():  # VmHWM: this process's own high-water mark (ru_maxrss may carry the parent's after fork + exec)
    return status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

name, folder, recipe = sys.argv[1], sys.argv[2], sys.argv[3] or None
sets, n_items = json.loads(sys.argv[4]), int(sys.argv[5])
modality = mpt.get_modality(name)
cfg = build_config(modality, recipe, None, sets)
rss0 = peak()
t1 = time.perf_counter()
ds = modality.dataset(pathlib.Path(folder), "train", cfg.data)
t2 = time.perf_counter()
rss1 = peak()
n = len(ds)
picks = sorted({(2 * j + 1) * n // (2 * n_items) for j in range(n_items)})
times, sources = [], []
for i in picks:
    t = time.perf_counter()
    x = ds[i]
    times.append(time.perf_counter() - t)
    sources.append(pathlib.Path(str(x.source)).name)
    if len(times) == 1:
        item, rss2 = x, peak()
print(json.dumps({"dataset_len": n, "items": len(picks), "rss_base_mib": rss0, "rss_after_open_mib": rss1,
                  "rss_after_item_mib": rss2, "rss_after_items_mib": peak(), "vm_rss_end_mib": status("VmRSS"),
                  "rss_anon_end_mib": status("RssAnon"), "rss_file_end_mib": status("RssFile"),
                  "open_s": t2 - t1, "first_item_s": times[0], "item_s_mean": sum(times) / len(times),
                  "item_s": [[s, t] for s, t in zip(sources, times)], "item_shape": list(item.input.shape)}))
"""


@dataclass(frozen=True)
class Setup:
    """How one modality's folder is generated and opened: ``generate(folder, args)`` → the data files
    (written or kept); the child builds ``build_config(modality, recipe, None, sets)`` and reads ``items``."""

    generate: Callable[[Path, argparse.Namespace], list[Path]]
    recipe: str | None
    sets: tuple[str, ...]
    file_mb: float
    items: int


# --------------------------------------------------------------------------- time series


def generate_series(folder: Path, args: argparse.Namespace) -> list[Path]:
    """``[channels, steps]`` float32 ``.npy`` files of ``--file-mb`` until ``--size-gb``; returns the
    folder's ``.npy`` files."""
    steps = int(args.file_mb * 2**20 / 4 / args.channels)
    n = max(1, round(args.size_gb * 1024 / args.file_mb))
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"series{i:05d}.npy"
        if not path.exists() or path.stat().st_size < steps * args.channels * 4:
            np.save(path, rng.standard_normal((args.channels, steps), dtype=np.float32))
    return sorted(folder.glob("*.npy"))


# --------------------------------------------------------------------------- medical volumes


@dataclass(frozen=True)
class VolumeSpec:
    """One kind of generated volume: stored dtype, voxel size (mm), axis ratios, LPS or RAS, gzip."""

    name: str
    dtype: type
    zooms: tuple[float, float, float]
    ratios: tuple[float, float, float]  # relative axis lengths (the volume's aspect in voxels)
    lps: bool  # stored with x and y flipped (DICOM-like LPS), so loading must reorient
    gz: bool
    scale: float = 1.0  # file size relative to --file-mb


ISO = VolumeSpec("f32-iso0.8-ras", np.float32, (0.8, 0.8, 0.8), (1.0, 1.0, 1.0), lps=False, gz=False)
ANISO = VolumeSpec("i16-aniso-lps", np.int16, (0.45, 0.45, 1.1), (1.0, 1.0, 0.4), lps=True, gz=False)
GZ = VolumeSpec("f32-iso1-ras", np.float32, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), lps=False, gz=True, scale=0.25)


def volume_shape(spec: VolumeSpec, file_mb: float) -> tuple[int, int, int]:
    """Voxel counts of ``spec`` holding about ``file_mb · spec.scale`` MiB."""
    voxels = file_mb * spec.scale * 2**20 / np.dtype(spec.dtype).itemsize
    side = (voxels / float(np.prod(spec.ratios))) ** (1 / 3)
    a, b, c = (max(8, round(side * r)) for r in spec.ratios)
    return a, b, c


def smooth_field(shape: tuple[int, int, int], rng: np.random.Generator, terms: int = 6) -> np.ndarray:
    """A smooth random field in about [-1, 1]: a sum of separable products of low-frequency cosines
    (1–12 half-cycles across an axis), cheap at any size."""
    field = np.zeros(shape, np.float32)
    for _ in range(terms):
        f = [np.cos(rng.uniform(1, 12) * np.pi * np.linspace(0, 1, n, dtype=np.float32)
                    + rng.uniform(0, 2 * np.pi)).astype(np.float32) for n in shape]
        field += np.float32(rng.uniform(0.3, 1.0)) * f[0][:, None, None] * f[1][None, :, None] * f[2][None, None, :]
    field /= np.float32(terms / 2)
    return field


def head_volume(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Head-like float32 volume: textured tissue (≈ 600 ± 250) inside an ellipsoid, a brighter shell
    (900) near its surface, light noise, zero background (so ``foreground: nonzero`` means the head)."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) / np.float32(s) for n, s in zip(shape, (0.9, 0.95, 0.85),
                                                                                       strict=True)]
    r2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    vol = smooth_field(shape, rng)
    vol *= np.float32(250)
    vol += np.float32(600)
    vol += rng.standard_normal(shape, dtype=np.float32) * np.float32(15)
    vol[r2 > 0.8] = 900
    vol[r2 > 1] = 0
    return vol


def volume_affine(spec: VolumeSpec, shape: tuple[int, int, int]) -> np.ndarray:
    """Diagonal affine of ``spec``'s voxel size, centred on the origin, x and y negated for LPS."""
    signs = np.array([-1.0, -1.0, 1.0]) if spec.lps else np.ones(3)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(signs * np.asarray(spec.zooms))
    affine[:3, 3] = -signs * np.asarray(spec.zooms) * (np.asarray(shape) - 1) / 2
    return affine


def write_volume(path: Path, spec: VolumeSpec, file_mb: float, rng: np.random.Generator) -> None:
    """Generate one volume of ``spec`` and write it with ``mpt_medical.io.write_nifti`` (atomically)."""
    from mpt_medical.io import write_nifti

    shape = volume_shape(spec, file_mb)
    data = head_volume(shape, rng)
    if spec.dtype is np.int16:
        data = np.round(data).astype(np.int16)
    tmp = path.with_name(".tmp-" + path.name)
    try:
        write_nifti(tmp, data, volume_affine(spec, shape))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def generate_volumes(folder: Path, args: argparse.Namespace) -> list[Path]:
    """``--gz`` gzipped volumes, then uncompressed ones alternating float32 / int16, until the folder
    holds ``--size-gb`` on disk; files already there are kept. Returns the volumes."""
    files = sorted(folder.glob("vol*.nii*"))
    i = len(files)
    while i < args.gz or sum(f.stat().st_size for f in files) < args.size_gb * 2**30:
        spec = GZ if i < args.gz else (ISO, ANISO)[(i - args.gz) % 2]
        path = folder / f"vol{i:03d}-{spec.name}.nii{'.gz' if spec.gz else ''}"
        t0 = time.perf_counter()
        write_volume(path, spec, args.file_mb, np.random.default_rng(i))
        print(f"[lazy_data] {path.name}: {path.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
        files.append(path)
        i += 1
    return files


SETUPS = {
    "timeseries": Setup(generate_series, None, ("data.context=512",), 16.0, 1),
    "medical": Setup(generate_volumes, "demo", ("data.spacing=onemmiso", "data.crop=64"), 150.0, 16),
}


# --------------------------------------------------------------------------- measurement


def evict(files: list[Path]) -> None:
    """Drop ``files`` from the page cache (fsync, then POSIX_FADV_DONTNEED), so the next read hits the disk."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure(modality: str, folder: Path, setup: Setup, sets: list[str], items: int) -> dict:
    """Run :data:`CHILD` in a fresh interpreter (one OpenMP thread) and return its record."""
    argv = [sys.executable, "-c", CHILD, modality, str(folder), setup.recipe or "", json.dumps(sets), str(items)]
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        sys.stderr.write(out.stderr)
        raise SystemExit(out.returncode)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modality", choices=sorted(SETUPS), default="timeseries")
    ap.add_argument("--dir", type=Path, default=None, help="data folder (default /tmp/mpt-lazy-data[-medical])")
    ap.add_argument("--size-gb", type=float, default=2.0, help="data to generate (GiB on disk)")
    ap.add_argument("--file-mb", type=float, default=None, help="MiB per file (default 16 series / 150 volumes)")
    ap.add_argument("--channels", type=int, default=8, help="time series channels")
    ap.add_argument("--gz", type=int, default=2, help="medical: gzipped volumes among the files")
    ap.add_argument("--items", type=int, default=None,
                    help="items read, spread over the dataset (default 1 series / 16 volumes)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override after the modality's defaults (repeatable)")
    ap.add_argument("--cold", action="store_true", help="evict the files from the page cache first")
    ap.add_argument("--delete", action="store_true", help="delete the generated folder afterwards")
    return ap


def main() -> None:
    args = make_parser().parse_args()
    setup = SETUPS[args.modality]
    args.file_mb = args.file_mb or setup.file_mb
    folder = args.dir or Path("/tmp/mpt-lazy-data" + ("" if args.modality == "timeseries" else f"-{args.modality}"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = setup.generate(folder, args)
    sizes = [p.stat().st_size for p in paths]
    if args.cold:
        evict(paths)
    sets = [*setup.sets, *args.set]
    t0 = time.perf_counter()
    record = measure(args.modality, folder, setup, sets, args.items or setup.items)
    import mpt

    out = {"bench": "lazy_data", "modality": args.modality, "files": len(paths),
           "data_gib": round(sum(sizes) / 2**30, 3),
           "largest_file_mib": round(max(sizes) / 2**20, 1), "sets": sets, "cold": args.cold,
           "mpt_core": getattr(mpt, "__file__", "?"), "wall_s": time.perf_counter() - t0, **record}
    if args.modality == "timeseries":
        out["windows"] = out["dataset_len"]  # the field's name in earlier results
    out["rss_open_increase_mib"] = out["rss_after_open_mib"] - out["rss_base_mib"]
    out["rss_items_increase_mib"] = out["rss_after_items_mib"] - out["rss_after_open_mib"]
    print(json.dumps(out))
    if args.delete:
        for p in paths:
            p.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


if __name__ == "__main__":
    main()
