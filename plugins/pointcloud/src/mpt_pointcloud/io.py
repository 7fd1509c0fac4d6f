"""Readers: point clouds and meshes → ``float32 [P, 3+F]`` arrays (xyz, then feature columns).

open3d parses .ply/.pcd/.xyz/.pts and the meshes; it is imported lazily. Headers of PLY and OFF
files are checked here first, against the file size, because open3d silently returns fewer
points for a truncated file and tries to allocate whatever an OFF header claims.
Every failure is a :class:`mpt.errors.DataError` naming the file.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mpt.errors import DataError, PluginError

POINT_EXTS = (".ply", ".pcd", ".xyz", ".pts")
NUMPY_EXTS = (".npy", ".npz")
MESH_EXTS = (".off", ".obj", ".stl")
SUPPORTED = POINT_EXTS + NUMPY_EXTS + MESH_EXTS

_PLY_SIZES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2,
              "uint16": 2, "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4,
              "double": 8, "float64": 8}
_PLY_STRUCT = {1: "B", 2: "H", 4: "I", 8: "Q"}


def supported_text() -> str:
    return ", ".join(SUPPORTED)


def read_points(path: str | Path, n: int = 8192) -> np.ndarray:
    """Points of one file: ``float32 [P, 3+F]``. Meshes are sampled uniformly on the surface to
    ``n`` points (deterministic per file content); point clouds are returned whole."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise DataError(path, f"unsupported extension '{path.suffix}'; supported: {supported_text()}")
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes, no points)")
    if ext in NUMPY_EXTS:
        pts = _read_numpy(path)
    elif ext == ".ply":
        pts = _read_mesh(path, n) if _check_ply(path) else _read_cloud(path)
    elif ext == ".off":
        vertices = _check_off(path)  # the vertices when the file has no faces
        pts = _read_mesh(path, n) if vertices is None else vertices
    elif ext in MESH_EXTS:
        pts = _read_mesh(path, n)
    elif ext == ".pcd":
        _check_pcd(path)
        pts = _read_cloud(path)
    else:
        pts = _read_cloud(path)
    return _validate(path, pts)


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on a triangle mesh (area-weighted face choice, uniform barycentrics).

    vertices ``[V, 3]``, triangles ``[T, 3]`` int → ``[n, 3]``.
    """
    tri = vertices[triangles].astype(np.float64)  # [T, 3, 3]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not area.sum() > 0:  # degenerate mesh: fall back to its vertices
        return vertices[rng.integers(len(vertices), size=n)].astype(np.float32)
    face = rng.choice(len(tri), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)  # barycentric weights, uniform on the face
    return np.einsum("nk,nkd->nd", w, tri[face]).astype(np.float32)


def _validate(path: Path, pts: np.ndarray) -> np.ndarray:
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise DataError(path, f"expected an array [N, 3+F] of points, got shape {tuple(pts.shape)}")
    if len(pts) == 0:
        raise DataError(path, "no points in this file")
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become Inf/NaN, reported below
        pts = np.ascontiguousarray(pts, dtype=np.float32)
    nan, inf = int(np.isnan(pts).any(1).sum()), int(np.isinf(pts).any(1).sum())
    if nan or inf:
        raise DataError(path, f"{nan} of {len(pts)} points have NaN and {inf} have Inf coordinates "
                              "or values; clean the file first")
    return pts


def _open3d() -> Any:
    try:
        import open3d
    except ImportError as exc:
        if "libusb" in str(exc):
            raise PluginError("open3d needs the system library libusb-1.0: run "
                              "`apt-get install -y libusb-1.0-0` (as root)") from exc
        raise PluginError(f"the pointcloud modality needs open3d ({exc}): pip install open3d") from exc
    open3d.utility.set_verbosity_level(open3d.utility.VerbosityLevel.Error)
    return open3d


def _read_numpy(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if not data.files:
                    raise DataError(path, "empty .npz archive (no arrays)")
                data = data["points" if "points" in data.files else data.files[0]]
    except DataError:
        raise
    except Exception as exc:  # bad zip, pickled objects, truncated .npy …
        raise DataError(path, f"cannot read as NumPy data: {exc}") from None
    if not np.issubdtype(data.dtype, np.number):
        raise DataError(path, f"expected a numeric array, got dtype {data.dtype}")
    return data


def _parse(path: Path, read: Callable[[], Any]) -> Any:
    """Run an open3d reader; whatever it raises on this file (e.g. ``std::bad_alloc`` for a corrupt
    compressed PCD header) becomes a DataError naming the file."""
    try:
        return read()
    except Exception as exc:  # the file is what is wrong: open3d's parser gave up on it
        raise DataError(path, f"open3d could not parse it ({type(exc).__name__}: {exc})") from None


def _read_cloud(path: Path) -> np.ndarray:
    o3d = _open3d()
    pc = _parse(path, lambda: o3d.io.read_point_cloud(str(path)))
    cols = [np.asarray(pc.points)]
    if len(cols[0]) == 0:
        raise DataError(path, "open3d read no points from this file (unreadable or empty)")
    if pc.has_normals():
        cols.append(np.asarray(pc.normals))
    if pc.has_colors():
        cols.append(np.asarray(pc.colors))
    return np.concatenate(cols, axis=1)


def _read_mesh(path: Path, n: int) -> np.ndarray:
    o3d = _open3d()
    mesh = _parse(path, lambda: o3d.io.read_triangle_mesh(str(path)))
    vertices, triangles = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    if len(vertices) == 0 and path.suffix.lower() == ".obj":  # open3d skips face-less OBJ files
        vertices = _obj_vertices(path)
    if len(vertices) == 0:
        raise DataError(path, "open3d read no vertices from this mesh (unreadable or empty)")
    if len(triangles) == 0:
        return vertices  # vertices without faces: a point cloud
    if triangles.min() < 0 or triangles.max() >= len(vertices):
        raise DataError(path, f"a face refers to vertex {int(triangles.max())} but the mesh has only "
                              f"{len(vertices)} vertices (corrupt file)")
    if not np.isfinite(vertices).all():
        return _validate(path, vertices)  # reports the NaN/Inf count
    rng = np.random.default_rng(zlib.crc32(path.read_bytes()))
    return sample_surface(vertices, triangles, n, rng)


def _obj_vertices(path: Path) -> np.ndarray:
    """The ``v x y z`` lines of an OBJ file → ``[V, 3]``; a malformed one is a DataError."""
    rows = []
    for i, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        if line.startswith("v "):
            try:
                x, y, z = (float(v) for v in line.split()[1:4])
            except ValueError:
                raise DataError(path, f"line {i}: malformed vertex '{line.strip()[:60]}'") from None
            rows.append((x, y, z))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _check_pcd(path: Path) -> None:
    """Check a PCD header (fields, sizes, point count) against the file size before open3d reads
    it: open3d crashes on some inconsistent headers instead of reporting them."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    header: dict[str, list[str]] = {}
    offset = 0
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        words = raw.decode("latin-1").split()
        if words and not words[0].startswith("#"):
            header[words[0].upper()] = words[1:]
            if words[0].upper() == "DATA":
                break
    else:
        raise DataError(path, "not a PCD file: no DATA line in the header")
    missing = [k for k in ("FIELDS", "SIZE", "TYPE", "COUNT", "POINTS") if k not in header]
    if missing:
        raise DataError(path, f"PCD header lacks {', '.join(missing)}")
    fields = set(header["FIELDS"])
    normals = fields & {"normal_x", "normal_y", "normal_z"}
    if not {"x", "y", "z"} <= fields or len(normals) not in (0, 3):  # open3d segfaults on partial normals
        raise DataError(path, f"PCD header: FIELDS {header['FIELDS']} need x, y, z and all or none of "
                              "normal_x, normal_y, normal_z")
    n = len(header["FIELDS"])
    if not len(header["SIZE"]) == len(header["TYPE"]) == len(header["COUNT"]) == n:
        raise DataError(path, f"PCD header: FIELDS ({n}), SIZE, TYPE and COUNT have different lengths")
    try:
        sizes, counts = [int(v) for v in header["SIZE"]], [int(v) for v in header["COUNT"]]
        points = int(header["POINTS"][0])
    except (ValueError, IndexError):
        raise DataError(path, "PCD header: SIZE, COUNT and POINTS must be integers") from None
    point_bytes, body = sum(a * b for a, b in zip(sizes, counts, strict=True)), path.stat().st_size - offset
    mode = header["DATA"][0] if header["DATA"] else ""
    if mode == "ascii":
        lines = sum(1 for ln in path.read_bytes()[offset:].splitlines() if ln.strip())
        if lines < points:
            raise DataError(path, f"truncated PCD: the header declares {points} points, the file has {lines} lines")
    if mode == "binary" and body < points * point_bytes:
        raise DataError(path, f"truncated PCD: {points} points need {points * point_bytes} bytes, "
                              f"the file has {body}")
    if mode == "binary_compressed":
        if body < 8:
            raise DataError(path, "truncated PCD: no compressed data")
        with path.open("rb") as f:
            f.seek(offset)
            packed, unpacked = struct.unpack("<II", f.read(8))
        if unpacked != points * point_bytes or packed > body - 8:
            raise DataError(path, f"corrupt compressed PCD: sizes {packed}/{unpacked} do not fit "
                                  f"{points} points of {point_bytes} bytes in a {body}-byte body")
    elif mode not in ("ascii", "binary"):
        raise DataError(path, f"PCD header has an unknown DATA kind '{mode}'")


def _check_ply(path: Path) -> bool:
    """Parse a PLY header, check the body fits the file; True if it has faces (a mesh)."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    if not head.startswith(b"ply"):
        raise DataError(path, "not a PLY file (missing the 'ply' magic line)")
    end = re.search(rb"end_header\r?\n", head)
    if end is None:
        raise DataError(path, "PLY header has no 'end_header' line (truncated or corrupt)")
    fmt = ""
    elements: list[list[Any]] = []  # [name, count, [property sizes]]
    for i, line in enumerate(head[: end.start()].decode("latin-1").splitlines()[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append([words[1], int(words[2]), []])
        elif words[0] == "property" and elements and len(words) >= 3:
            sizes = [_PLY_SIZES.get(w) for w in words[1:-1] if w != "list"]
            if None in sizes or (words[1] == "list") != (len(sizes) == 2):
                raise DataError(path, f"PLY header line {i}: bad property '{line.strip()}'")
            elements[-1][2].append(sizes)
        else:
            raise DataError(path, f"PLY header line {i}: unexpected line '{line.strip()[:60]}'")
    body = path.stat().st_size - end.end()
    if fmt == "ascii":
        lines = sum(1 for ln in path.read_bytes()[end.end():].splitlines() if ln.strip())
        need = sum(e[1] for e in elements)
        if lines < need:
            raise DataError(path, f"truncated ASCII PLY: the header declares {need} data lines, "
                                  f"the file has {lines}")
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        _check_ply_binary(path, fmt, elements, end.end(), body)
    else:
        raise DataError(path, f"PLY header has an unknown format '{fmt}'")
    return any(e[0] == "face" and e[1] > 0 for e in elements)


def _check_ply_binary(path: Path, fmt: str, elements: list, start: int, body: int) -> None:
    data: bytes | None = None
    pos = 0
    order = "<" if fmt == "binary_little_endian" else ">"
    for name, count, props in elements:
        if all(len(p) == 1 for p in props):  # fixed-size rows
            size = count * sum(p[0] for p in props)
            if pos + size > body:
                row = sum(p[0] for p in props)
                raise DataError(path, f"truncated binary PLY: the header declares {count} '{name}' "
                                      f"entries × {row} bytes, only {max(body - pos, 0)} bytes remain "
                                      f"({(body - pos) // max(row, 1)} whole entries)")
            pos += size
            continue
        data = data if data is not None else path.read_bytes()[start:]
        if len(props) == 1 and count and pos + props[0][0] <= body:  # fast path: equal-length lists
            cs, item = props[0]
            k = struct.unpack_from(order + _PLY_STRUCT[cs], data, pos)[0]
            row = cs + k * item
            if pos + count * row <= body:
                ks = np.ndarray((count,), np.dtype(f"{order}u{cs}"), data, pos, (row,))
                if (ks == k).all():
                    pos += count * row
                    continue
        for j in range(count):  # rows with lists: walk the list counts
            for p in props:
                if len(p) == 1:
                    pos += p[0]
                    continue
                if pos + p[0] > body:
                    raise DataError(path, f"truncated binary PLY: '{name}' entry {j} of {count} "
                                          "runs past the end of the file")
                k = struct.unpack_from(order + _PLY_STRUCT[p[0]], data, pos)[0]
                pos += p[0] + k * p[1]
        if pos > body:
            raise DataError(path, f"truncated binary PLY: the '{name}' entries run past the end of the file")


def _check_off(path: Path) -> np.ndarray | None:
    """Validate an ASCII OFF file (counts against the file size first, then every line);
    return its vertices ``[V, 3]`` if it has no faces (open3d would read nothing), else None."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4096).decode("latin-1")
    lines = [ln.split("#")[0].split() for ln in head.splitlines()[:50]]
    lines = [w for w in lines if w]
    if not lines or not lines[0][0].endswith("OFF"):
        raise DataError(path, "not an OFF file (first line must be 'OFF')")
    if "BINARY" in lines[0]:
        raise DataError(path, "binary OFF is not supported; convert it to ASCII OFF, PLY or OBJ")
    counts = lines[0][1:] or (lines[1] if len(lines) > 1 else [])
    if len(counts) < 2 or not all(c.isdigit() for c in counts[:2]):
        raise DataError(path, "invalid OFF: no 'vertices faces [edges]' counts line")
    nv, nf = int(counts[0]), int(counts[1])
    if nv * 6 + nf * 2 > size:  # a vertex line takes ≥ 6 bytes ("0 0 0\n"), a face ≥ 2
        raise DataError(path, f"OFF header claims {nv} vertices and {nf} faces but the file has only "
                              f"{size} bytes (corrupt or truncated)")
    rows = [ln.split("#")[0].split() for ln in path.read_text(encoding="latin-1").splitlines()]
    rows = [r for r in rows if r][1 if lines[0][1:] else 2:]
    if len(rows) < nv + nf:
        raise DataError(path, f"invalid OFF: header declares {nv} vertices and {nf} faces, "
                              f"the file has {len(rows)} data lines")
    if any(len(r) < 3 for r in rows[:nv]):
        raise DataError(path, "invalid OFF: a vertex line has fewer than 3 coordinates")
    if nf == 0:
        try:
            return np.array([r[:3] for r in rows[:nv]], dtype=np.float64)
        except ValueError as exc:
            raise DataError(path, f"invalid OFF: {exc}") from None
    for j, r in enumerate(rows[nv : nv + nf]):
        k = int(r[0]) if r[0].isdigit() else -1
        if k < 3 or len(r) < k + 1 or any(not v.isdigit() or int(v) >= nv for v in r[1 : k + 1]):
            raise DataError(path, f"invalid OFF: face {j} is '{' '.join(r)[:40]}'; a face must be "
                                  f"'n i1 … in' with n ≥ 3 vertex indices below {nv}")
    return None
