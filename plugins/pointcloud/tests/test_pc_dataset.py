"""Dataset (loading, skipping, determinism, augmentation), demo data, recipes, modality."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pc_helpers import TETRA_F, TETRA_V, write_off, write_ply

import mpt
from mpt.config import Config, parse
from mpt.errors import DataError
from mpt_pointcloud import PointCloud, PointCloudDataConfig, PointCloudTokenizerConfig
from mpt_pointcloud.dataset import PointCloudDataset


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(tmp_path / f"c{i}.npy", rng.normal(size=(300, 3)) * (i + 1) + i)
    (tmp_path / "sub").mkdir()
    write_off(tmp_path / "sub" / "t.off", TETRA_V, TETRA_F)
    return tmp_path


def cfg(**kw) -> PointCloudDataConfig:  # noqa: ANN003
    return PointCloudDataConfig(**{"num_points": 128, "cache_points": 256, **kw})


def test_items_are_normalised_subsets(folder: Path) -> None:
    ds = PointCloudDataset(folder, "val", cfg(repeats=2), progress=False)
    assert len(ds) == 8 and ds.skipped == [] and [len(c) for c in ds.clouds] == [256] * 4
    assert ds[1].source == str(folder / "c1.npy") and ds[5].source == ds[1].source
    for i in range(len(ds)):
        x = ds[i].input
        assert x.shape == (128, 3) and x.dtype == torch.float32
        assert torch.allclose(x.mean(0), torch.zeros(3), atol=1e-5)  # pc_norm, no augmentation
        assert x.norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-5)
        assert len(torch.unique(x, dim=0)) == 128  # without replacement


def test_determinism_and_reseed(folder: Path) -> None:
    a = PointCloudDataset(folder, "train", cfg(repeats=2), progress=False)
    b = PointCloudDataset(folder, "train", cfg(repeats=2), progress=False)
    a.reseed(7)
    b.reseed(7)
    order = [5, 0, 7, 3]
    first = {i: a[i].input for i in order}
    for i in reversed(order):  # the access order does not matter
        assert torch.equal(b[i].input, first[i])
    assert not torch.equal(a[0].input, a[4].input)  # same file, other index: other subset
    b.reseed(8)
    assert not torch.equal(b[0].input, first[0])


def test_augmentation_only_for_train(folder: Path) -> None:
    train = PointCloudDataset(folder, "train", cfg(), progress=False)
    plain = PointCloudDataset(folder, "train", cfg(augment=False), progress=False)
    radii = [train[i].input.norm(dim=1).max().item() for i in range(4)]
    assert all(abs(r - 1) > 1e-3 for r in radii)  # scaled and shifted
    for i in range(4):
        x, y = train[i].input, plain[i].input
        scale = x.std(0) / y.std(0)  # same subset, per-axis scale in [2/3, 3/2]
        assert ((scale > 2 / 3 - 1e-4) & (scale < 1.5 + 1e-4)).all()
        assert torch.allclose(y * scale + (x - y * scale).mean(0), x, atol=1e-5)
        assert ((x - y * scale).mean(0).abs() <= 0.2 + 1e-5).all()


def test_few_points_resampled_with_one_warning(tmp_path: Path) -> None:
    np.save(tmp_path / "small.npy", np.random.default_rng(0).normal(size=(10, 3)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = PointCloudDataset(tmp_path, "train", cfg(repeats=3), progress=False)
        items = [ds[i].input for i in range(3)]
    mine = [w for w in caught if "small.npy" in str(w.message)]
    assert len(mine) == 1 and "10 points" in str(mine[0].message)
    assert all(x.shape == (128, 3) for x in items)
    assert len(torch.unique(items[0], dim=0)) <= 10


def test_bad_files_raise_or_are_skipped(folder: Path) -> None:
    cloud = np.random.default_rng(0).normal(size=(20, 3))
    cut = write_ply(folder / "cut.ply", cloud)
    cloud[2, 0] = np.nan
    np.save(folder / "nan.npy", cloud)
    cut.write_bytes(cut.read_bytes()[:-4])
    with pytest.raises(DataError) as info:
        PointCloudDataset(folder, "train", cfg(), progress=False)
    assert info.value.path == str(folder / "cut.ply")  # first bad file in sorted order
    ds = PointCloudDataset(folder, "train", cfg(), skip_bad_files=True, progress=False)
    assert dict(ds.skipped).keys() == {str(folder / "cut.ply"), str(folder / "nan.npy")}
    assert "truncated binary PLY" in dict(ds.skipped)[str(folder / "cut.ply")]
    assert "NaN" in dict(ds.skipped)[str(folder / "nan.npy")]
    assert len(ds) == 4 and ds[0].input.shape == (128, 3)


def test_nothing_usable_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "e.ply").write_bytes(b"")
    with pytest.raises(DataError) as info:
        PointCloudDataset(tmp_path, "train", cfg(), skip_bad_files=True, progress=False)
    assert info.value.path == str(tmp_path) and "e.ply" in info.value.reason


def test_feature_columns_reach_the_tokenizer(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.random.default_rng(0).normal(size=(300, 5)))
    ds = PointCloud().dataset(tmp_path, "train", cfg())
    x = PointCloud().collate([ds[0], ds[1]])
    assert x.shape == (2, 128, 5)
    tok = PointCloud().tokenizer(PointCloudTokenizerConfig(num_groups=4, group_size=8, features=2), 16)
    assert tok.tokenize(x).patches.shape == (2, 4, 8, 5) and tok.card()["in_channels"] == 5


def test_demo_data_loads_every_shipped_file() -> None:
    ds = PointCloud().dataset(None, "train", PointCloudDataConfig())
    shipped = sorted(p.name for p in (Path(mpt_pointcloud_dir()) / "data").iterdir() if p.suffix != ".md")
    assert ds.skipped == [] and sorted(Path(s).name for s in ds.sources) == shipped and len(shipped) == 7
    assert all(c.shape == (8192, 3) for c in ds.clouds)
    assert ds[0].input.shape == (1024, 3)
    size = sum(p.stat().st_size for p in (Path(mpt_pointcloud_dir()) / "data").iterdir())
    assert size < 1_000_000


def mpt_pointcloud_dir() -> Path:
    import mpt_pointcloud

    return Path(mpt_pointcloud.__file__).parent


def test_recipes_parse() -> None:
    recipes = PointCloud().recipes()
    assert {"demo", "point-mae"} <= set(recipes) and PointCloud.default_recipe in recipes
    for r in recipes.values():
        raw = yaml.safe_load(r.path.read_text())
        conf = parse(Config, {**raw, "modality": "pointcloud"},
                     overrides={"data": PointCloudDataConfig, "tokenizer": PointCloudTokenizerConfig})
        assert r.description and not r.description.startswith("#")
        assert conf.mae.target in PointCloud().targets()
    demo = yaml.safe_load(recipes["demo"].path.read_text())
    assert 250 <= 7 * demo["data"]["repeats"] <= 350  # one demo epoch ≈ 300 samples


def test_modality_attributes_and_light_import() -> None:
    m = PointCloud()
    assert m.name == "pointcloud" and m.plugin_api == mpt.PLUGIN_API
    assert m.data_config is PointCloudDataConfig and m.tokenizer_config is PointCloudTokenizerConfig
    code = "import sys, mpt_pointcloud; print(sorted({'open3d', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_folder_names_are_class_labels(tmp_path) -> None:  # noqa: ANN001
    import numpy as np

    from mpt_pointcloud.config import PointCloudDataConfig
    from mpt_pointcloud.dataset import PointCloudDataset

    for cls, n in (("chair", 2), ("airplane", 1)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            np.save(tmp_path / cls / f"{i}.npy", np.random.default_rng(i).random((64, 3), dtype=np.float32))
    ds = PointCloudDataset(tmp_path, "probe", PointCloudDataConfig(num_points=32, cache_points=64), progress=False)
    assert ds.classes == ["airplane", "chair"]
    assert [ds[i].label for i in range(len(ds))] == [0, 1, 1]
    flat = PointCloudDataset(tmp_path / "chair", "probe", PointCloudDataConfig(num_points=32, cache_points=64),
                             progress=False)
    assert flat.classes == [] and flat[0].label is None
