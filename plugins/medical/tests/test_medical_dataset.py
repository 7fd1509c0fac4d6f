"""Crops, padding with validity, 4-D layouts and the intensity policies (steps 1-4 of the plan)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from medical_helpers import head, write

import mpt
from mpt.config import build_config
from mpt.contract import Batch
from mpt.errors import ConfigError, DataError
from mpt.targets import PatchTarget
from mpt_medical.config import MedicalDataConfig, MedicalTokenizerConfig
from mpt_medical.dataset import MedicalDataset
from mpt_medical.plan import intensity
from mpt_medical.tokenizer import MedicalTokenizer


def tokenizer(**kw: object) -> MedicalTokenizer:
    return MedicalTokenizer(MedicalTokenizerConfig(**{"patch": 8, "spacing": None, **kw}), dim=16)  # type: ignore[arg-type]


def test_small_volume_is_padded_with_nan_and_padding_never_scores(tmp_path: Path) -> None:
    vol = head((20, 6, 18))
    path = write(tmp_path / "small.nii.gz", vol)
    ds = MedicalDataset(path, "probe", MedicalDataConfig(spacing="none", crop=[24, 24, 24]), progress=False)
    x = ds[0].input
    assert x.shape == (1, 24, 24, 24)
    # centred: (24 - 20) // 2 = 2 before on x, 9 on y, 3 on z
    np.testing.assert_array_equal(x[0, 2:22, 9:15, 3:21].numpy(), vol)
    assert bool(x[0, :2].isnan().all()) and bool(x[0, :, :9].isnan().all()) and int(x.isnan().sum()) == 24**3 - vol.size
    tok = tokenizer(crop=24)
    batch = tok.normalize(mpt.get_modality("medical").collate([ds[0]]))
    tokens = tok.tokenize(batch)
    assert tokens.grid == (3, 3, 3) and tokens.valid is not None
    assert not bool(tokens.valid.all())  # patches wholly in the padding are padding tokens
    # the MAE target scores observed voxels only: changing the prediction on NaN voxels changes nothing
    target = PatchTarget(normalize=True)
    idx = torch.arange(27)[None]
    patches = tokens.patches[:, idx[0]]
    pred = torch.randn(1, 27, 512)
    base = target.loss(pred, patches, tokens.loss_weight(idx))
    nan = patches.flatten(2).isnan()
    pred2 = pred.clone()
    pred2[nan] += 100.0
    assert torch.isclose(target.loss(pred2, patches, tokens.loss_weight(idx)), base)
    assert torch.isfinite(base)


def test_train_crops_are_seeded_and_inside_the_volume(tmp_path: Path) -> None:
    path = write(tmp_path / "v.nii.gz", head((40, 36, 30)))
    cfg = MedicalDataConfig(spacing="none", crop=16, crops=4)
    ds = MedicalDataset(path, "train", cfg, progress=False)
    assert len(ds) == 4
    ds.reseed(3)
    a = [ds[i].input for i in range(4)]
    ds.reseed(3)
    b = [ds[i].input for i in range(4)]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert len({u.sum().item() for u in a}) == 4  # four different places
    assert not any(bool(u.isnan().any()) for u in a)  # a volume larger than the crop needs no padding


def test_4d_as_channels_or_as_volumes(tmp_path: Path) -> None:
    path = write(tmp_path / "multi.nii.gz", head((20, 20, 20, 3)))
    as_channels = MedicalDataset(path, "probe", MedicalDataConfig(spacing="none", crop=16), progress=False)
    assert len(as_channels) == 1 and as_channels[0].input.shape == (3, 16, 16, 16)
    assert as_channels[0].meta["moments_nonzero"].shape == (3, 2)
    as_volumes = MedicalDataset(path, "probe", MedicalDataConfig(spacing="none", crop=16, layout_4d="volumes"),
                                progress=False)
    assert len(as_volumes) == 3 and as_volumes[2].input.shape == (1, 16, 16, 16)
    assert as_volumes[2].source.endswith("#2")
    torch.testing.assert_close(as_volumes[1].input[0], as_channels[0].input[1])


def test_mri_zscore_uses_the_whole_volume_foreground_not_the_crop(tmp_path: Path) -> None:
    vol = head((40, 40, 40))
    vol[:12] = np.where(vol[:12] != 0, vol[:12] + 200, 0)  # a bright region away from the centre crop
    path = write(tmp_path / "v.nii.gz", vol)
    ds = MedicalDataset(path, "probe", MedicalDataConfig(spacing="none", crop=16), progress=False)
    sample = ds[0]
    fg = vol[vol != 0].astype(np.float64)
    tok = tokenizer(crop=16)
    out = tok.normalize(mpt.get_modality("medical").collate([sample])).tensor[0, 0]
    raw = sample.input[0].numpy()
    want = np.where(raw != 0, (raw - fg.mean()) / fg.std(), 0.0)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
    crop_fg = raw[raw != 0]
    assert abs(crop_fg.mean() - fg.mean()) > 20  # the crop's own statistics would differ


def test_ct_window_then_scale_and_constant_volumes_never_divide_by_zero() -> None:
    x = torch.tensor([-3000.0, -1000.0, 0.0, 40.0, 400.0, 3000.0]).reshape(1, 1, 1, 1, 6)
    out, fg = intensity(x, {}, policy="ct", foreground="above", threshold=-500, window=[-1000.0, 1000.0],
                        mean=0.0, std=500.0)
    np.testing.assert_allclose(out.flatten().numpy(), [-2.0, -2.0, 0.0, 0.08, 0.8, 2.0])
    assert fg.flatten().tolist() == [False, False, True, True, True, True]
    constant = torch.full((1, 1, 4, 4, 4), 7.0)
    mom = torch.tensor([[[7.0, 0.0]]], dtype=torch.float64)
    out, _ = intensity(constant, {"moments_nonzero": mom}, policy="mri", foreground="nonzero", threshold=0,
                       window=None, mean=None, std=None)
    assert bool(torch.isfinite(out).all()) and float(out.abs().max()) == 0.0
    out, _ = intensity(constant, {}, policy="ct", foreground="all", threshold=0, window=[0.0, 10.0], mean=7.0, std=0.0)
    assert bool(torch.isfinite(out).all())


def test_ct_statistics_are_fitted_from_the_training_crops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ct = np.full((40, 40, 40), -1000.0, np.float32)  # air
    ct[8:32, 8:32, 8:32] = rng.normal(40, 20, (24, 24, 24))  # soft tissue
    ct[14:22, 14:22, 14:22] = 1500  # bone
    write(tmp_path / "ct.nii.gz", ct)
    modality = mpt.get_modality("medical")
    cfg = build_config(modality, "demo", None, ["data.spacing=none", "data.crop=32", "tokenizer.intensity=ct",
                                                 "tokenizer.foreground=above", "tokenizer.patch=8"], {})
    ds = modality.dataset(tmp_path / "ct.nii.gz", "train", cfg.data)
    fitted = modality.fit(ds, cfg.tokenizer, progress=False)
    assert fitted.window is not None and -20 < fitted.window[0] < 20 and fitted.window[1] == pytest.approx(1500, abs=1)
    assert fitted.mean is not None and 30 < fitted.mean < 120 and fitted.std is not None and fitted.std > 10
    assert fitted.crop == [32, 32, 32] and fitted.spacing is None and fitted.reference_spacing == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match="tokenizer.foreground"):
        tokenizer(intensity="mri", foreground="above")


def test_foreground_weight_is_the_foreground_share_of_each_patch(tmp_path: Path) -> None:
    vol = np.zeros((16, 16, 16), np.float32)
    vol[:8, :8, :8] = 5.0 + np.arange(512).reshape(8, 8, 8) % 7  # one patch of tissue
    vol[8:, 8:, 8:4 + 8] = 3.0 + np.arange(256).reshape(8, 8, 4) % 5  # half a patch
    path = write(tmp_path / "v.nii.gz", vol)
    ds = MedicalDataset(path, "probe", MedicalDataConfig(spacing="none", crop=16), progress=False)
    tok = tokenizer(crop=16, foreground_weight=True)
    tokens = tok.tokenize(tok.normalize(mpt.get_modality("medical").collate([ds[0]])))
    assert tokens.weight is not None
    assert sorted(tokens.weight[0].tolist()) == [0.0] * 6 + [0.5, 1.0]


def test_tokenizer_refuses_what_it_cannot_cut() -> None:
    tok = tokenizer()
    with pytest.raises(DataError, match="not a multiple of the patch"):
        tok.tokenize(Batch(input=torch.zeros(1, 1, 12, 16, 16)))
    with pytest.raises(DataError, match="channels"):
        tok.tokenize(Batch(input=torch.zeros(1, 2, 16, 16, 16)))
    with pytest.raises(DataError, match=r"\[B, C, X, Y, Z\]"):
        tok.tokenize(Batch(input=torch.zeros(1, 16, 16, 16)))
    with pytest.raises(DataError, match="moments"):
        tok.normalize(Batch(input=torch.ones(1, 1, 16, 16, 16)))


def test_kept_anisotropic_spacing_enters_positions_in_millimetres(tmp_path: Path) -> None:
    """data.spacing none: each volume keeps its voxels, the plan records the median spacing as the
    reference, and positions are patch indices × spacing / reference (the same mm, the same position)."""
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "a.nii.gz", head((32, 32, 32)), spacing=(1.0, 1.0, 4.0))
    write(tmp_path / "d" / "b.nii.gz", head((32, 32, 32)), spacing=(1.0, 1.0, 2.0))
    write(tmp_path / "d" / "c.nii.gz", head((32, 32, 32)), spacing=(1.0, 1.0, 2.0))
    modality = mpt.get_modality("medical")
    cfg = build_config(modality, "demo", None, ["data.spacing=none", "data.crop=16", "tokenizer.patch=8"], {})
    ds = modality.dataset(tmp_path / "d", "probe", cfg.data)
    fitted = modality.fit(ds, cfg.tokenizer, progress=False)
    assert fitted.spacing is None and fitted.reference_spacing == [1.0, 1.0, 2.0]
    notes = modality.adapt(ds, cfg)
    assert not notes  # median 1 × 1 × 2 mm: not anisotropic enough for guidance
    tok = modality.tokenizer(fitted, 16)
    tokens = tok.tokenize(tok.normalize(modality.collate([ds[0], ds[1]])))
    assert tokens.coords[0, 1].tolist() == [0.0, 0.0, 2.0]  # a: second patch along z is 8 voxels × 4 mm = 32 mm
    assert tokens.coords[1, 1].tolist() == [0.0, 0.0, 1.0]  # b: 8 voxels × 2 mm = 16 mm = one reference patch


def test_spacing_that_does_not_fit_the_data_gets_guidance(tmp_path: Path) -> None:
    write(tmp_path / "thick.nii.gz", head((32, 32, 12)), spacing=(0.5, 0.5, 5.0))
    modality = mpt.get_modality("medical")
    cfg = build_config(modality, "demo", None, ["data.spacing=onemmiso", "data.crop=16", "tokenizer.patch=8"], {})
    notes = modality.adapt(modality.dataset(tmp_path / "thick.nii.gz", "train", cfg.data), cfg)
    assert len(notes) == 1 and notes[0].key == "data.spacing" and notes[0].value is None
    assert "median" in notes[0].reason and "[0.5, 0.5, 5.0]" in notes[0].reason


@pytest.mark.parametrize("mask", [{"name": "random", "ratio": 0.75}, {"name": "block", "ratio": 0.75},
                                  {"name": "multiblock", "boxes": True}])
def test_3d_maskers_on_volume_tokens(mask: dict) -> None:
    from mpt.config import make_choice
    from mpt.contract import as_masks
    from mpt.masking import create_masker

    modality = mpt.get_modality("medical")
    cfg = build_config(modality, "demo", None, ["data.crop=32"], {})
    ds = modality.dataset(None, "train", cfg.data)
    tok = modality.tokenizer(modality.fit(ds, cfg.tokenizer, progress=False), 16)
    tokens = tok.tokenize(tok.normalize(modality.collate([ds[i] for i in range(2)])))
    params = {k: v for k, v in mask.items() if k != "name"}
    m = as_masks(create_masker(make_choice("maskers", mask["name"], params, "mae.mask"))(tokens, torch.Generator()))[0]
    assert tokens.grid == (4, 4, 4)
    hidden = torch.zeros(2, 64, dtype=torch.bool).scatter_(1, m.pred, True)
    if mask["name"] == "block":  # 48 patches forming one face-connected region of the 3-D grid
        cells = {tuple(c) for c in hidden[0].view(4, 4, 4).nonzero().tolist()}
        assert len(cells) == 48
        seen, todo = set(), [next(iter(cells))]
        while todo:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            todo += [n for d in range(3) for s in (-1, 1)
                     if (n := tuple(v + s * (i == d) for i, v in enumerate(c))) in cells]
        assert seen == cells
    elif mask["name"] == "random":
        assert m.pred.shape[1] == 48
    else:
        assert not bool(hidden.all(1).any()) and m.keep.shape[1] >= 1


def test_a_tokenizer_geometry_that_contradicts_the_data_is_refused() -> None:
    modality = mpt.get_modality("medical")
    cfg = build_config(modality, "demo", None, ["data.crop=64", "tokenizer.crop=[32,32,32]"], {})
    with pytest.raises(ConfigError, match=r"tokenizer.crop.*set data.crop, and leave tokenizer.crop out"):
        modality.fit(modality.dataset(None, "train", cfg.data), cfg.tokenizer, progress=False)
    cfg = build_config(modality, "demo", None, ["data.crop=64", "tokenizer.crop=64"], {})
    assert modality.fit(modality.dataset(None, "train", cfg.data), cfg.tokenizer, progress=False).crop == [64] * 3
