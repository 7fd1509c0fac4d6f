"""Helpers of the pointcloud plugin tests: hand-written files, the shared-data location."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]  # the monorepo; shared data sits next to it
SHARED = Path(os.environ.get("MPT_SHARED_DATA", ROOT.parent / "shared" / "data"))
POINTCLOUD_DATA = SHARED / "pointcloud"

TETRA_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def on_tetra_surface(p: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """True where a point lies on a face of the unit tetrahedron TETRA_V."""
    inside = (p >= -tol).all(1) & (p.sum(1) <= 1 + tol)
    on_face = (np.abs(p) < tol).any(1) | (np.abs(p.sum(1) - 1) < tol)
    return inside & on_face


def write_ply(path: Path, v: np.ndarray, faces: np.ndarray | None = None, binary: bool = True) -> Path:
    faces = np.zeros((0, 3), int) if faces is None else faces
    head = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", "comment test",
            f"element vertex {len(v)}", "property float x", "property float y", "property float z"]
    if len(faces):
        head += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    text = "\n".join(head + ["end_header"]) + "\n"
    if binary:
        body = np.asarray(v, "<f4").tobytes()
        body += b"".join(struct.pack("<B3i", 3, *map(int, f)) for f in faces)
        path.write_bytes(text.encode() + body)
    else:
        rows = [" ".join(repr(float(x)) for x in p) for p in v] + [f"3 {a} {b} {c}" for a, b, c in faces]
        path.write_text(text + "\n".join(rows) + "\n")
    return path


def write_off(path: Path, v: np.ndarray, faces: np.ndarray) -> Path:
    rows = ["OFF", f"{len(v)} {len(faces)} 0"] + [" ".join(map(str, p)) for p in v]
    path.write_text("\n".join(rows + [f"3 {a} {b} {c}" for a, b, c in faces]) + "\n")
    return path


def write_obj(path: Path, v: np.ndarray, faces: np.ndarray) -> Path:
    rows = [f"v {x} {y} {z}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_stl(path: Path, v: np.ndarray, faces: np.ndarray) -> Path:
    rows = ["solid t"]
    for f in faces:
        rows += ["facet normal 0 0 0", "outer loop"] + [f"vertex {x} {y} {z}" for x, y, z in v[f]]
        rows += ["endloop", "endfacet"]
    path.write_text("\n".join(rows + ["endsolid t"]) + "\n")
    return path


def require_shared() -> Path:
    """The shared sample point clouds, or skip the test with the reason."""
    if not POINTCLOUD_DATA.is_dir():
        pytest.skip(f"shared sample data not found at {POINTCLOUD_DATA} (set MPT_SHARED_DATA)")
    return POINTCLOUD_DATA
