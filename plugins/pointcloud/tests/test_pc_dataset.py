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
from mpt.config import parse_config
from mpt.contract import Batch, Mask
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


def test_items_are_raw_subsets_the_tokenizer_normalises(folder: Path) -> None:
    ds = PointCloudDataset(folder, "val", cfg(repeats=2), progress=False)
    assert len(ds) == 8 and ds.skipped == [] and ds.counts == [256] * 4
    assert [len(ds.clouds[i]) for i in range(4)] == [256] * 4
    assert ds[1].source == str(folder / "c1.npy") and ds[5].source == ds[1].source
    tok = PointCloud().tokenizer(PointCloudTokenizerConfig(num_groups=4, group_size=8), 16)
    for i in range(len(ds)):
        item = ds[i]
        x = item.input
        assert x.shape == (128, 3) and x.dtype == torch.float32 and item.meta == {}  # not train: no augmentation
        assert len(torch.unique(x, dim=0)) == 128  # without replacement
        cloud = torch.from_numpy(ds.clouds[i % 4])
        assert (x[:, None] == cloud[None]).all(-1).any(1).all()  # the file's own points, not normalised
        y = tok.normalize(Batch.of(x[None])).tensor[0]  # the one normalisation: the tokenizer's
        assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-5)
        assert y.norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-5)
    assert ds[2].input.mean(0).abs().max() > 1  # c2.npy is centred at (2, 2, 2): left as it is


def test_files_are_read_on_access_not_at_construction(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mpt_pointcloud.dataset as module

    reads: list[str] = []
    real = module.read_points

    def counting(path, n=8192):  # noqa: ANN001, ANN202
        reads.append(Path(path).name)
        return real(path, n=n)

    monkeypatch.setattr(module, "read_points", counting)
    ds = PointCloudDataset(folder, "train", cfg(repeats=3), progress=False)
    assert sorted(reads) == ["c0.npy", "c1.npy", "c2.npy", "t.off"]  # each file checked once
    assert len(ds.clouds._cache) == 0  # and nothing kept
    assert ds.counts == [256] * 4 and ds.width == 3
    reads.clear()
    first = ds[1].input
    assert reads == ["c1.npy"] and len(ds.clouds._cache) == 1
    assert torch.equal(ds[1].input, first) and ds[5].source == ds[1].source
    assert reads == ["c1.npy"]  # the cached file: not read again
    for i in range(len(ds)):
        ds[i]
    assert sorted(reads) == ["c0.npy", "c1.npy", "c2.npy", "t.off"]
    # the file is read when an item needs it: one changed after construction is seen (not cached yet)
    fresh = PointCloudDataset(folder, "probe", cfg(augment=False), progress=False)
    np.save(folder / "c0.npy", np.full((300, 3), 5.0))
    assert torch.equal(fresh[0].input, torch.full((128, 3), 5.0))


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


def test_augmentation_is_the_modality_s_and_follows_the_data_config(folder: Path) -> None:
    """Point-MAE's scale-and-translate: PointCloud.augment draws [B, 3] scales then [B, 3] shifts
    from the step's generator within data.scale / data.translate and applies them to the xyz."""
    m = PointCloud()
    conf = cfg(scale=(0.5, 2.0), translate=0.3)
    train = PointCloudDataset(folder, "train", conf, progress=False)
    batch = m.collate([train[i] for i in range(4)])
    assert batch.meta == {}  # samples carry no augmentation settings: the config does
    x = batch.tensor
    out = m.augment(batch, conf, torch.Generator().manual_seed(9))
    y = out.tensor
    assert y.shape == x.shape and not torch.allclose(y, x) and torch.equal(batch.tensor, x)
    assert out.sources == batch.sources and out.meta.keys() == batch.meta.keys()
    g = torch.Generator().manual_seed(9)
    scale = torch.rand(4, 3, generator=g) * 1.5 + 0.5
    shift = (torch.rand(4, 3, generator=g) * 2 - 1) * 0.3
    torch.testing.assert_close(y, x * scale[:, None] + shift[:, None])
    assert ((scale >= 0.5) & (scale <= 2.0)).all() and (shift.abs() <= 0.3).all()
    assert torch.equal(m.augment(batch, conf, torch.Generator().manual_seed(9)).tensor, y)  # a function of the gen.
    assert not torch.equal(m.augment(batch, conf, torch.Generator().manual_seed(10)).tensor, y)
    # features are not augmented
    wide = Batch(input=torch.rand(2, 50, 5))
    assert torch.equal(m.augment(wide, conf, torch.Generator().manual_seed(0)).tensor[..., 3:], wide.tensor[..., 3:])
    # augment: false leaves the batch as it is
    assert m.augment(batch, cfg(augment=False), torch.Generator().manual_seed(9)) is batch


def test_training_normalises_once_and_augments_by_the_data_config(folder: Path) -> None:
    """Backbone.tokens (the input path of training, feature extraction and load_encoder) normalises
    exactly once: a cloud ×1000 and shifted gives the tokens of the original. The training step
    (trainer.prepare_batch) adds the modality's augmentation, drawn from the step's seed."""
    from mpt.backbone import build_backbone
    from mpt.config import ModelConfig
    from mpt.trainer import prepare_batch

    m = PointCloud()
    backbone = build_backbone(m, PointCloudTokenizerConfig(num_groups=8, group_size=16, hidden=16),
                              ModelConfig(dim=16, depth=1, heads=2)).eval()
    ds = PointCloudDataset(folder, "train", cfg(), progress=False)
    batch = m.collate([ds[i] for i in range(4)])
    moved = batch.replace(input=batch.tensor * 1000 + torch.tensor([3e4, -2e3, 7.0]))
    tokens, far = backbone.tokens(batch), backbone.tokens(moved)
    torch.testing.assert_close(far.coords, tokens.coords, atol=1e-4, rtol=0)
    torch.testing.assert_close(far.patches, tokens.patches, atol=1e-4, rtol=0)
    assert tokens.coords.norm(dim=-1).max() <= 1 + 1e-5  # in the unit sphere: normalised once
    twice = backbone.tokens(backbone.tokenizer.normalize(batch))  # normalising is idempotent anyway
    torch.testing.assert_close(twice.patches, tokens.patches, atol=1e-5, rtol=0)

    def masker(t, g):  # noqa: ANN001, ANN202 - the first 3 groups visible
        return Mask(keep=torch.arange(3).repeat(t.batch_size, 1), pred=torch.arange(3, 8).repeat(t.batch_size, 1))

    conf = cfg()
    trained, masks = prepare_batch(backbone, m, conf, masker, batch, seed=5)
    assert len(masks) == 1 and not torch.allclose(trained.coords, tokens.coords, atol=1e-3)  # augmented
    again, _ = prepare_batch(backbone, m, conf, masker, moved, seed=5)  # same step seed: same draws, same frame
    torch.testing.assert_close(again.coords, trained.coords, atol=1e-4, rtol=0)
    from mpt.trainer import AUGMENT_SEED

    gen = torch.Generator().manual_seed(5 ^ AUGMENT_SEED)
    expected = backbone.tokenizer.tokenize(m.augment(backbone.tokenizer.normalize(batch), conf, gen))
    torch.testing.assert_close(trained.coords, expected.coords)
    plain, _ = prepare_batch(backbone, m, cfg(augment=False), masker, batch, seed=5)  # augment: false
    torch.testing.assert_close(plain.coords, tokens.coords)


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
    batch = PointCloud().collate([ds[0], ds[1]])
    assert isinstance(batch, Batch) and batch.tensor.shape == (2, 128, 5) and batch.labels is None
    assert batch.sources == [str(tmp_path / "f.npy")] * 2
    tok = PointCloud().tokenizer(PointCloudTokenizerConfig(num_groups=4, group_size=8, features=2), 16)
    assert tok.tokenize(tok.normalize(batch)).patches.shape == (2, 4, 8, 5) and tok.card()["in_channels"] == 5
    assert tok.patch_shape == (8, 5)


def test_files_with_other_feature_counts_keep_the_shared_columns(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(300, 5)))
    np.save(tmp_path / "b.npy", np.random.default_rng(1).normal(size=(300, 4)))
    with pytest.warns(UserWarning, match=r"\[1, 2\] feature columns; keeping the 1 they all share"):
        ds = PointCloudDataset(tmp_path, "train", cfg(), progress=False)
    assert ds.width == 4 and ds[0].input.shape == ds[1].input.shape == (128, 4)


def test_demo_data_loads_every_shipped_file() -> None:
    ds = PointCloud().dataset(None, "train", PointCloudDataConfig())
    shipped = sorted(p.name for p in (Path(mpt_pointcloud_dir()) / "data").iterdir() if p.suffix != ".md")
    assert ds.skipped == [] and sorted(Path(s).name for s in ds.sources) == shipped and len(shipped) == 7
    assert ds.counts == [8192] * 7 and ds.width == 3
    assert all(ds.clouds[i].shape == (8192, 3) for i in range(7))
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
        conf = parse_config({**raw, "modality": "pointcloud"}, PointCloud())
        assert isinstance(conf.data, PointCloudDataConfig) and isinstance(conf.tokenizer, PointCloudTokenizerConfig)
        assert r.description and not r.description.startswith("#")
        mae = conf.objectives["mae"]
        assert mae.target.name == "chamfer" and mae.target.name in PointCloud().targets()
        assert mae.target.params is None and "norm_target" not in raw["mae"]  # chamfer takes no parameters
        assert conf.objectives["jepa"].mask.name == "point_block"
    with pytest.raises(mpt.ConfigError, match="takes no parameters"):
        parse_config({"modality": "pointcloud", "mae": {"target": {"name": "chamfer", "normalize": True}}},
                     PointCloud())
    demo = yaml.safe_load(recipes["demo"].path.read_text())
    assert 250 <= 7 * demo["data"]["repeats"] <= 350  # one demo epoch ≈ 300 samples


def test_downstream_data_reads_each_file_once() -> None:
    """Feature extraction (probe, embed, finetune) uses PointCloud.downstream_data: repeats=1, the rest kept."""
    demo = mpt.config.build_config(PointCloud(), "demo")
    assert demo.data.repeats == 43
    down = PointCloud().downstream_data(demo.data)
    assert down.repeats == 1 and demo.data.repeats == 43  # a copy
    assert {k: v for k, v in vars(down).items() if k != "repeats"} == \
        {k: v for k, v in vars(demo.data).items() if k != "repeats"}
    assert len(PointCloud().dataset(None, "probe", down)) == 7


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
