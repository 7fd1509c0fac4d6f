"""Readers: every format on files written here, and every bad input (DataError naming the file)."""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

import numpy as np
import pytest
from pc_helpers import (
    TETRA_F,
    TETRA_V,
    on_tetra_surface,
    require_shared,
    write_obj,
    write_off,
    write_ply,
    write_stl,
)

from mpt.errors import DataError, PluginError
from mpt.files import find_files
from mpt_pointcloud.io import SUPPORTED, read_points

CLOUD = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)


def expect_error(path: Path, *words: str) -> DataError:
    with pytest.raises(DataError) as info:
        read_points(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    for w in words:
        assert w in info.value.reason
    return info.value


# ---- good files -------------------------------------------------------------------------------

def test_npy_and_npz(tmp_path: Path) -> None:
    wide = np.random.default_rng(1).normal(size=(20, 5))
    np.save(tmp_path / "a.npy", wide)
    got = read_points(tmp_path / "a.npy")
    assert got.dtype == np.float32 and got.shape == (20, 5) and np.allclose(got, wide)
    np.savez(tmp_path / "b.npz", other=np.zeros((4, 3)), points=CLOUD)
    assert np.array_equal(read_points(tmp_path / "b.npz"), CLOUD)  # key 'points' wins
    np.savez(tmp_path / "c.npz", first=CLOUD, second=np.zeros((4, 3)))
    assert np.array_equal(read_points(tmp_path / "c.npz"), CLOUD)  # else the first array


@pytest.mark.parametrize("binary", [False, True])
def test_ply_point_cloud(tmp_path: Path, binary: bool) -> None:
    got = read_points(write_ply(tmp_path / "c.ply", CLOUD, binary=binary))
    assert got.shape == (50, 3) and np.allclose(got, CLOUD, atol=1e-6)


def test_xyz_and_pcd(tmp_path: Path) -> None:
    (tmp_path / "c.xyz").write_text("\n".join(" ".join(map(str, p)) for p in CLOUD.tolist()) + "\n")
    assert np.allclose(read_points(tmp_path / "c.xyz"), CLOUD, atol=1e-6)
    head = ["VERSION 0.7", "FIELDS x y z", "SIZE 4 4 4", "TYPE F F F", "COUNT 1 1 1", "WIDTH 50",
            "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", "POINTS 50", "DATA ascii"]
    (tmp_path / "c.pcd").write_text("\n".join(head + [" ".join(map(str, p)) for p in CLOUD.tolist()]) + "\n")
    assert np.allclose(read_points(tmp_path / "c.pcd"), CLOUD, atol=1e-6)


@pytest.mark.parametrize("kind", ["ply", "plyascii", "off", "obj", "stl"])
def test_meshes_are_sampled_on_the_surface(tmp_path: Path, kind: str) -> None:
    path = {"ply": lambda: write_ply(tmp_path / "t.ply", TETRA_V, TETRA_F),
            "plyascii": lambda: write_ply(tmp_path / "t.ply", TETRA_V, TETRA_F, binary=False),
            "off": lambda: write_off(tmp_path / "t.off", TETRA_V, TETRA_F),
            "obj": lambda: write_obj(tmp_path / "t.obj", TETRA_V, TETRA_F),
            "stl": lambda: write_stl(tmp_path / "t.stl", TETRA_V, TETRA_F)}[kind]()
    got = read_points(path, n=3000)
    assert got.shape == (3000, 3) and on_tetra_surface(got).all()
    assert np.array_equal(read_points(path, n=3000), got)  # deterministic per file
    # uniform by area: the slanted face has √3 times the area of each right-angle face
    slanted = np.abs(got.sum(1) - 1) < 1e-5
    assert slanted.mean() == pytest.approx(np.sqrt(3) / (3 + np.sqrt(3)), abs=0.04)


@pytest.mark.parametrize("writer", [write_obj, write_off, write_ply])
def test_mesh_without_faces_gives_its_vertices(tmp_path: Path, writer) -> None:  # noqa: ANN001
    path = writer(tmp_path / f"v.{writer.__name__[6:]}", TETRA_V, np.zeros((0, 3), int))
    got = read_points(path)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, TETRA_V.tolist()))


def test_find_files_recursive_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    np.save(tmp_path / "b" / "deep" / "z.npy", CLOUD)
    write_ply(tmp_path / "a.ply", CLOUD)
    (tmp_path / "notes.txt").write_text("x")
    assert find_files(tmp_path, SUPPORTED) == [tmp_path / "a.ply", tmp_path / "b" / "deep" / "z.npy"]
    assert find_files(tmp_path / "a.ply", SUPPORTED) == [tmp_path / "a.ply"]


# ---- bad files --------------------------------------------------------------------------------

def test_truncated_binary_ply(tmp_path: Path) -> None:
    path = write_ply(tmp_path / "cut.ply", CLOUD)
    path.write_bytes(path.read_bytes()[:-5])
    expect_error(path, "truncated binary PLY", "50 'vertex'", "49 whole entries")
    mesh = write_ply(tmp_path / "cutmesh.ply", TETRA_V, TETRA_F)
    mesh.write_bytes(mesh.read_bytes()[:-3])
    expect_error(mesh, "truncated binary PLY", "face")


def test_truncated_ascii_ply_and_bad_header(tmp_path: Path) -> None:
    path = write_ply(tmp_path / "cut.ply", CLOUD, binary=False)
    path.write_text("\n".join(path.read_text().splitlines()[:-10]) + "\n")
    expect_error(path, "truncated ASCII PLY", "50")
    (tmp_path / "junk.ply").write_text("hello\n")
    expect_error(tmp_path / "junk.ply", "not a PLY file")
    (tmp_path / "noend.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\n")
    expect_error(tmp_path / "noend.ply", "end_header")


def test_nan_and_inf(tmp_path: Path) -> None:
    bad = CLOUD.copy()
    bad[[3, 7], 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    expect_error(tmp_path / "nan.npy", "2 of 50 points have NaN", "0 have Inf")
    bad = CLOUD.copy()
    bad[5, 0] = np.inf
    expect_error(write_ply(tmp_path / "inf.ply", bad), "0 of 50 points have NaN", "1 have Inf")


def test_unsupported_missing_empty(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("1 2 3\n")
    err = expect_error(tmp_path / "c.txt", "unsupported extension '.txt'", ".ply", ".npz", ".stl")
    assert ".off" in err.reason
    expect_error(tmp_path / "missing.ply", "no such file")
    (tmp_path / "e.npy").write_bytes(b"")
    expect_error(tmp_path / "e.npy", "empty file")
    np.save(tmp_path / "flat.npy", np.zeros(9))
    expect_error(tmp_path / "flat.npy", "[N, 3+F]", "(9,)")
    np.save(tmp_path / "none.npy", np.zeros((0, 3)))
    expect_error(tmp_path / "none.npy", "no points")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    expect_error(tmp_path / "obj.npy", "cannot read as NumPy data")
    np.savez(tmp_path / "empty.npz")
    expect_error(tmp_path / "empty.npz", "empty .npz")


def test_off_with_impossible_counts_is_rejected_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.off"
    path.write_text("OFF\n999999999999 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    expect_error(path, "999999999999 vertices", "bytes")
    bad_face = write_off(tmp_path / "badface.off", TETRA_V, np.array([[0, 1, 9]] * 4))
    expect_error(bad_face, "invalid OFF", "face 0")


def test_empty_folder_and_folder_without_supported_files(tmp_path: Path) -> None:
    for make in (lambda: None, lambda: (tmp_path / "readme.md").write_text("x")):
        make()
        with pytest.raises(DataError) as info:
            find_files(tmp_path, SUPPORTED)
        assert info.value.path == str(tmp_path)
        assert "supported" in info.value.reason and ".ply" in info.value.reason
    with pytest.raises(DataError, match="no such file or folder"):
        find_files(tmp_path / "nope", SUPPORTED)


def test_missing_open3d_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_ply(tmp_path / "c.ply", CLOUD)
    real_import = builtins.__import__
    for message, hint in [("No module named 'open3d'", "pip install open3d"),
                          ("libusb-1.0.so.0: cannot open shared object file",
                           "apt-get install -y libusb-1.0-0")]:
        def fake(name, *args, _m=message, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if name == "open3d":
                raise ImportError(_m)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", fake)
        with pytest.raises(PluginError, match=hint.replace(".", r"\.")):
            read_points(path)
        monkeypatch.setattr(builtins, "__import__", real_import)


# ---- real malformed files (shared sample data) ------------------------------------------------

@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "words"), [
    ("invalid/invalid_empty.ply", ["empty file"]),
    ("invalid/invalid_empty.off", ["empty file"]),
    ("invalid/invalid_OutOfMemory.off", ["353535235358 vertices", "309 bytes"]),
    ("invalid/OFF_invalid.off", ["invalid OFF", "face 0"]),
    ("assimp/PLY_pond.0.ply", ["truncated binary PLY", "70051 'vertex'", "70048 whole entries"]),
    ("assimp/PLY_Wuson.ply", ["PLY header line 3", "Created by Blender"]),
])
def test_real_malformed_files(name: str, words: list[str]) -> None:
    expect_error(require_shared() / name, *words)


@pytest.mark.shared_data
def test_real_valid_files(tmp_path: Path) -> None:
    root = require_shared()
    for name in ["pyvista/airplane.ply", "assimp/OFF_Cube.off", "assimp/PLY_cube_binary.ply",
                 "assimp/STL_Wuson.stl", "assimp/OBJ_spider.obj"]:
        assert read_points(root / name, n=500).shape == (500, 3), name
    pts = read_points(root / "assimp/PLY_points.ply")  # 4 points with colours and normals
    assert pts.shape == (4, 9)
    shutil.copy(root / "assimp/OFF_Cube.off", tmp_path / "cube.off")
    cube = read_points(tmp_path / "cube.off", n=2000)
    assert np.allclose(np.abs(cube).max(1), 0.5, atol=1e-5)  # on the surface of the unit cube


def test_corrupted_files_raise_data_error_and_nothing_else(tmp_path: Path) -> None:
    """Seeded fuzzing: truncated, bit-flipped and garbage versions of the shipped meshes, under
    every supported extension, either read as finite points or fail with a DataError naming the
    file — never an IndexError/ValueError from inside numpy or open3d."""
    import random

    import open3d as o3d

    from mpt_pointcloud.modality import DEMO_DATA

    pts = np.random.default_rng(0).random((300, 3))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    cloud.normals = o3d.utility.Vector3dVector(pts)
    for name, kwargs in (("b.pcd", {}), ("c.pcd", {"compressed": True}), ("a.pcd", {"write_ascii": True}),
                         ("b.ply", {}), ("a.xyz", {})):
        o3d.io.write_point_cloud(str(tmp_path / name), cloud, **kwargs)
    np.save(tmp_path / "a.npy", pts.astype(np.float32))
    sources = sorted(p for p in DEMO_DATA.iterdir() if p.suffix != ".md") + sorted(tmp_path.iterdir())
    rng = random.Random(0)
    errors = 0
    for trial in range(200):
        data = bytearray(rng.choice(sources).read_bytes())
        kind = trial % 3
        if kind == 0:
            data = data[: rng.randrange(len(data))]
        elif kind == 1:
            for _ in range(rng.randrange(1, 50)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            data = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
        path = tmp_path / f"t{trial}{rng.choice(SUPPORTED)}"
        path.write_bytes(bytes(data))
        try:
            pts = read_points(path, n=256)
        except DataError as exc:
            assert str(path) in str(exc)
            errors += 1
            continue
        assert pts.ndim == 2 and pts.shape[1] >= 3 and len(pts) > 0 and np.isfinite(pts).all()
    assert errors > 60  # most corruptions are caught, not read as something else


def test_mesh_faces_pointing_past_the_vertices(tmp_path: Path) -> None:
    path = tmp_path / "m.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                    "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                    "0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    with pytest.raises(DataError, match="vertex 7 but the mesh has only 3"):
        read_points(path)
    obj = tmp_path / "v.obj"
    obj.write_text("v 0 0 0\nv 1 0 x\n")
    with pytest.raises(DataError, match="line 2: malformed vertex"):
        read_points(obj)


def test_pcd_headers_are_checked_before_open3d(tmp_path: Path) -> None:
    """open3d segfaults on a PCD whose normal fields are incomplete, and reads truncated bodies."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.random.default_rng(1).random((50, 3))))
    cloud.normals = o3d.utility.Vector3dVector(np.ones((50, 3)))
    good = tmp_path / "good.pcd"
    o3d.io.write_point_cloud(str(good), cloud)
    assert read_points(good).shape == (50, 6)
    cases = {
        "partial.pcd": (good.read_bytes().replace(b"normal_y", b"normbl_y", 1), "all or none of normal"),
        "short.pcd": (good.read_bytes()[:-40], "truncated PCD"),
        "kind.pcd": (good.read_bytes().replace(b"DATA binary", b"DATA binarx", 1), "unknown DATA kind"),
    }
    for name, (data, words) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=words):
            read_points(tmp_path / name)
