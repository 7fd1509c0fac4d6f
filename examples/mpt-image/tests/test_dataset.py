"""The dataset: folder labels, channel rules, crops that depend only on (seed, index), bad files named at
construction (a header check per file), pixels decoded only when an item is read."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mpt_image.dataset
from mpt.config import parse
from mpt.errors import ConfigError, DataError
from mpt_image.config import ImageDataConfig
from mpt_image.dataset import ImageDataset
from mpt_image.modality import Image as ImageModality
from mpt_image.transforms import random_resized_box


def config(**values: object) -> ImageDataConfig:
    return parse(ImageDataConfig, {"size": 32, **values}, "data")


def dataset(path: Path, split: str = "train", **values: object) -> ImageDataset:
    return ImageDataset(path, split, config(**values), progress=False)


def test_labels_come_from_the_first_folder_level(tmp_path: Path, save, rgb) -> None:
    for name, seed in (("dog/a.png", 0), ("cat/b.png", 1), ("cat/c.jpg", 2), ("dog/puppies/d.png", 3)):
        save(tmp_path / name, rgb(40, 40, seed))
    ds = dataset(tmp_path, "test")
    assert ds.classes == ["cat", "dog"]
    by_source = {Path(ds[i].source).name: ds[i].label for i in range(len(ds))}
    assert by_source == {"b.png": 0, "c.jpg": 0, "a.png": 1, "d.png": 1}


def test_no_labels_when_an_image_sits_at_the_top(tmp_path: Path, save, rgb) -> None:
    save(tmp_path / "cat" / "a.png", rgb(40, 40))
    save(tmp_path / "loose.png", rgb(40, 40, 1))
    ds = dataset(tmp_path)
    assert ds.classes == [] and {ds[i].label for i in range(len(ds))} == {None}


def test_mixed_channel_counts_name_both_files(tmp_path: Path, save, rgb) -> None:
    save(tmp_path / "a_colour.png", rgb(40, 40))
    grey = save(tmp_path / "b_grey.png", rgb(40, 40)[..., 0])
    with pytest.raises(DataError, match="1 channels, but .*a_colour.png has 3") as info:
        dataset(tmp_path)
    assert info.value.path == str(grey)
    skipping = ImageDataset(tmp_path, "train", config(), skip_bad_files=True, progress=False)
    assert len(skipping) == 1 and skipping.skipped[0][0] == str(grey)


def test_data_channels_converts_every_image(tmp_path: Path, save, rgb) -> None:
    save(tmp_path / "a.png", rgb(40, 40)[..., 0])  # L
    save(tmp_path / "b.png", Image.fromarray(rgb(40, 40, 1)).convert("RGBA"))
    save(tmp_path / "c.png", rgb(40, 40, 2))
    ds = dataset(tmp_path, "test", channels=3)
    assert [tuple(ds[i].input.shape) for i in range(3)] == [(3, 32, 32)] * 3
    grey = ds[0].input
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert dataset(tmp_path, "test", channels=1)[2].input.shape == (1, 32, 32)


def test_items_depend_only_on_seed_and_index(tmp_path: Path, save, rgb) -> None:
    save(tmp_path / "a.png", rgb(80, 120))
    ds = dataset(tmp_path, repeats=4)
    ds.reseed(7)
    first = [ds[i].input for i in range(4)]
    _ = ds[3], ds[0]  # reading other items in between changes nothing
    assert all(torch.equal(ds[i].input, first[i]) for i in range(4))
    assert not torch.equal(first[0], first[1])  # repeats of one image get their own crops
    ds.reseed(8)
    assert not torch.equal(ds[0].input, first[0])
    ds.reseed(7)
    assert torch.equal(ds[0].input, first[0])
    assert all(float(x.min()) >= 0.0 and float(x.max()) <= 1.0 for x in first)


def test_flip_only_on_the_train_split_and_when_asked(tmp_path: Path, save, rgb) -> None:
    pixels = rgb(32, 32)
    save(tmp_path / "a.png", pixels)
    whole = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255  # crop = the whole image, no resize
    ds = dataset(tmp_path, repeats=40, scale=[1.0, 1.0], ratio=[1.0, 1.0])
    seen = {("flipped" if torch.allclose(ds[i].input, whole.flip(-1), atol=1e-6) else
             "plain" if torch.allclose(ds[i].input, whole, atol=1e-6) else "other") for i in range(40)}
    assert seen == {"flipped", "plain"}
    no_flip = dataset(tmp_path, repeats=10, scale=[1.0, 1.0], ratio=[1.0, 1.0], flip=False)
    assert all(torch.allclose(no_flip[i].input, whole, atol=1e-6) for i in range(10))
    test = dataset(tmp_path, "test", repeats=10, crop_pct=1.0)
    assert all(torch.allclose(test[i].input, whole, atol=1e-6) for i in range(10))


def test_eval_crop_is_the_centre(tmp_path: Path, save, rgb) -> None:
    pixels = rgb(40, 60)
    save(tmp_path / "a.png", pixels)
    ds = dataset(tmp_path, "val", size=35, crop_pct=0.875)  # side 0.875 × 40 = 35: no resampling
    centre = torch.from_numpy(pixels[2:37, 12:47]).permute(2, 0, 1).float() / 255
    assert torch.allclose(ds[0].input, centre, atol=1e-6)


def test_random_resized_box_stays_in_range() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = random_resized_box(90, 160, (0.2, 1.0), (3 / 4, 4 / 3), g)
        assert top >= 0 and top + h <= 90 and left >= 0 and left + w <= 160
        assert 0.19 <= h * w / (90 * 160) <= 1.0
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    top, left, h, w = random_resized_box(10, 200, (0.9, 1.0), (3 / 4, 4 / 3), g)  # no box fits: centre
    assert (top, h) == (0, 10) and w == round(10 * 4 / 3) and left == (200 - w) // 2
    assert math.isclose(w / h, 4 / 3, rel_tol=0.1)


def test_bad_crop_settings_are_config_errors(tmp_path: Path, save, rgb) -> None:
    save(tmp_path / "a.png", rgb(40, 40))
    with pytest.raises(ConfigError, match="data.scale"):
        dataset(tmp_path, scale=[0.8, 0.2])
    with pytest.raises(ConfigError, match="data.ratio"):
        dataset(tmp_path, ratio=[0.0, 1.0])


def test_a_folder_with_only_bad_files(tmp_path: Path, save, rgb) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    save(tmp_path / "b.png", rgb(20, 20))  # smaller than the crop
    with pytest.raises(DataError, match="a.png"):
        dataset(tmp_path)
    with pytest.raises(DataError, match="no usable image file"):
        ImageDataset(tmp_path, "train", config(), skip_bad_files=True, progress=False)


def test_decoded_pixels_are_uint8_and_downscaled(tmp_path: Path, save, rgb) -> None:
    save(tmp_path / "a.png", rgb(200, 300))
    ds = dataset(tmp_path)
    assert ds.images[0].dtype == np.uint8 and ds.images[0].shape == (3, 64, 96)


def test_construction_decodes_nothing_and_items_decode_once(tmp_path: Path, save, rgb,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for k in range(3):
        save(tmp_path / f"{k}.png", rgb(40, 48, k))
    calls: list[str] = []
    real = mpt_image.dataset.load_pixels

    def counting(path, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mpt_image.dataset, "load_pixels", counting)
    ds = dataset(tmp_path, repeats=4)
    assert calls == [] and len(ds) == 12 and ds.channels == 3  # headers only
    _ = [ds[i] for i in range(len(ds))]
    assert sorted(calls) == ["0.png", "1.png", "2.png"]  # each image decoded once (LRU cache), not per repeat
    small = ImageDataset(tmp_path, "train", config(repeats=2), progress=False, cache=0)
    _ = small[0], small[3]
    assert calls[3:] == ["0.png", "0.png"]  # without a cache, every item decodes its image


def test_bad_files_are_named_at_construction_or_skipped(tmp_path: Path, save, rgb) -> None:
    save(tmp_path / "a_good.png", rgb(40, 40))
    cut = save(tmp_path / "b_cut.png", rgb(64, 64, seed=1))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # truncated: found by Pillow's verify
    (tmp_path / "c_empty.jpg").write_bytes(b"")
    (tmp_path / "d_text.webp").write_text("these are not pixels\n" * 20)
    save(tmp_path / "e_cmyk.jpg", Image.fromarray(rgb(40, 40, 3)).convert("CMYK"))  # converted to RGB: fine
    bad_files = (("b_cut.png", "cannot decode"), ("c_empty.jpg", "empty file"), ("d_text.webp", "cannot decode"))
    for bad, reason in bad_files:
        with pytest.raises(DataError, match=reason) as info:
            dataset(tmp_path)
        assert info.value.path == str(tmp_path / bad)
        (tmp_path / bad).rename(tmp_path / f"{bad}.off")
    for off in tmp_path.glob("*.off"):
        off.rename(off.with_suffix(""))
    ds = ImageDataset(tmp_path, "train", config(), skip_bad_files=True, progress=False)
    assert [Path(s).name for s in ds.sources] == ["a_good.png", "e_cmyk.jpg"]
    assert [Path(f).name for f, _ in ds.skipped] == ["b_cut.png", "c_empty.jpg", "d_text.webp"]
    assert ds[1].input.shape == (3, 32, 32)


def test_corrupt_pixel_data_is_named_when_the_item_is_read(tmp_path: Path, save, rgb) -> None:
    """JPEG's entropy-coded data is only checked by decoding it: the header check passes."""
    path = save(tmp_path / "noise.jpg", rgb(64, 64, seed=2))
    data = bytearray(path.read_bytes())
    data[300:700] = bytes(400)
    path.write_bytes(bytes(data))
    ds = dataset(tmp_path)
    with pytest.raises(DataError, match="cannot decode it as an image") as info:
        ds[0]
    assert info.value.path == str(path)


def test_feature_extraction_reads_every_image_once() -> None:
    cfg = config(repeats=100)
    assert ImageModality().downstream_data(cfg) == config(repeats=1) and cfg.repeats == 100
