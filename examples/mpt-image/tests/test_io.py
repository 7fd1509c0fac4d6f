"""The reader: Pillow modes → channel counts and [0, 1] values, formats, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpt.errors import DataError
from mpt_image.io import EXTENSIONS, check_image, convert_channels, load_pixels, read_image


def _palette(transparent: bool) -> Image.Image:
    im = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 4, mode="L").convert("P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    if transparent:
        im.info["transparency"] = 0
    return im


@pytest.mark.parametrize(("make", "channels", "top_left"), [
    (lambda: Image.new("L", (8, 8), 255), 1, [1.0]),
    (lambda: Image.new("1", (8, 8), 1), 1, [1.0]),
    (lambda: Image.new("LA", (8, 8), (51, 102)), 2, [0.2, 0.4]),
    (lambda: Image.new("RGB", (8, 8), (255, 0, 51)), 3, [1.0, 0.0, 0.2]),
    (lambda: Image.new("RGBA", (8, 8), (0, 255, 0, 0)), 4, [0.0, 1.0, 0.0, 0.0]),
    (lambda: _palette(False), 3, [1.0, 0.0, 0.0]),
    (lambda: _palette(True), 4, [1.0, 0.0, 0.0, 0.0]),
    (lambda: Image.fromarray(np.full((8, 8), 65535, np.uint16)), 1, [1.0]),
    (lambda: Image.fromarray(np.full((8, 8), 0.25, np.float32)), 1, [0.25]),
])
def test_modes_give_their_channel_count_and_unit_values(tmp_path: Path, save, make, channels, top_left) -> None:
    im = make()
    ext = ".tif" if im.mode in ("F",) else ".png"
    x = read_image(save(tmp_path / f"x{ext}", im))
    assert x.dtype == np.float32 and x.shape == (channels, 8, 8)
    assert np.allclose(x[:, 0, 0], top_left, atol=1e-6), (im.mode, x[:, 0, 0])
    assert check_image(tmp_path / f"x{ext}") == (channels, 8, 8)  # the header check agrees with the decoder
    assert check_image(tmp_path / f"x{ext}", 3) == (3, 8, 8)  # data.channels: the count after conversion


def test_16_bit_keeps_its_precision(tmp_path: Path, save) -> None:
    ramp = np.arange(0, 65536, 257 * 4, dtype=np.uint16)[:64].reshape(8, 8)
    ramp[0, 1] = 1  # a step 256 times finer than 8 bits
    x = read_image(save(tmp_path / "ramp16.png", Image.fromarray(ramp)))
    assert np.allclose(x[0], ramp / 65535.0, atol=1e-7)
    assert load_pixels(tmp_path / "ramp16.png").dtype == np.float32  # not squeezed into uint8


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_every_extension_reads(tmp_path: Path, save, rgb, ext: str) -> None:
    pixels = rgb(24, 40)
    jpeg = ext in (".jpg", ".jpeg")
    options = {"lossless": True} if ext == ".webp" else {"quality": 95, "subsampling": 0} if jpeg else {}
    x = read_image(save(tmp_path / f"a{ext}", pixels, **options))
    assert x.shape == (3, 24, 40)
    err = np.abs(x - pixels.transpose(2, 0, 1) / 255.0)
    assert err.mean() < 0.01 and err.max() < 0.06 if jpeg else err.max() < 1e-6


def test_exif_orientation_is_applied(tmp_path: Path, save, rgb) -> None:
    im = Image.fromarray(rgb(20, 30))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    x = read_image(save(tmp_path / "phone.jpg", im, exif=exif))
    assert x.shape == (3, 30, 20)


def test_multipage_tiff_gives_its_first_page(tmp_path: Path) -> None:
    pages = [Image.new("L", (8, 8), v) for v in (10, 200)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    assert np.allclose(read_image(tmp_path / "stack.tif"), 10 / 255)


def test_large_images_are_downscaled_to_max_side(tmp_path: Path, save, rgb) -> None:
    path = save(tmp_path / "big.png", rgb(300, 400))
    assert load_pixels(path, max_side=64).shape == (3, 64, 85)
    jpg = save(tmp_path / "big.jpg", rgb(600, 400))  # libjpeg draft decode, then the exact resize
    assert load_pixels(jpg, max_side=64).shape == (3, 96, 64)
    assert load_pixels(path, max_side=500).shape == (3, 300, 400)  # never upscaled


def test_channel_conversion_follows_pillow(tmp_path: Path) -> None:
    rgb = np.array([[[200]], [[100]], [[50]]], dtype=np.uint8)  # [3, 1, 1]
    grey = convert_channels(rgb, 1)
    assert grey.dtype == np.uint8 and grey[0, 0, 0] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    pil = np.asarray(Image.fromarray(rgb.transpose(1, 2, 0)).convert("L"))
    assert abs(int(grey[0, 0, 0]) - int(pil[0, 0])) <= 1
    assert convert_channels(grey, 3).tolist() == [grey[0].tolist()] * 3
    assert convert_channels(rgb, 4)[3, 0, 0] == 255  # opaque alpha added
    la = convert_channels(np.ones((4, 2, 2), np.float32) * 0.5, 2)
    assert la.shape == (2, 2, 2) and np.allclose(la, 0.5)


# ------------------------------------------------------------------------------------------- errors


def _raises(path: Path, match: str, header: bool = True, **kwargs: object) -> None:
    """``load_pixels`` and (when ``header``: the header tells) ``check_image`` raise a DataError naming ``path``."""
    readers = (load_pixels, check_image) if header else (load_pixels,)
    for read in readers:
        with pytest.raises(DataError, match=match) as info:
            read(path, **kwargs)
        assert info.value.path == str(path) and path.name in str(info.value)


def test_truncated_png(tmp_path: Path, save, rgb) -> None:
    path = save(tmp_path / "cut.png", rgb(64, 64, seed=1))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _raises(path, "cannot decode it as an image")


def test_corrupt_jpeg(tmp_path: Path, save, rgb) -> None:
    path = save(tmp_path / "noise.jpg", rgb(64, 64, seed=2))
    data = bytearray(path.read_bytes())
    data[300:700] = bytes(400)  # zero the entropy-coded data after the header
    path.write_bytes(bytes(data))
    _raises(path, "cannot decode it as an image", header=False)  # only decoding the pixels finds it
    assert check_image(path) == (3, 64, 64)


def test_empty_and_not_an_image(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _raises(empty, "empty file")
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels\n" * 20)
    _raises(text, "cannot decode")


def test_image_smaller_than_the_crop(tmp_path: Path, save, rgb) -> None:
    _raises(save(tmp_path / "thumb.png", rgb(40, 32)), r"32×40 pixels: smaller than the 64-pixel crop", min_side=64)


def test_float_and_int_images_outside_their_range(tmp_path: Path, save) -> None:
    hdr = save(tmp_path / "hdr.tif", Image.fromarray(np.full((8, 8), 3.5, np.float32)))
    _raises(hdr, r"must lie in \[0, 1\]", header=False)
    nan = np.zeros((8, 8), np.float32)
    nan[2, 2] = np.nan
    _raises(save(tmp_path / "nan.tif", Image.fromarray(nan)), "NaN", header=False)
    _raises(save(tmp_path / "i32.tif", Image.fromarray(np.full((8, 8), 1 << 20, np.int32))), "16-bit range",
            header=False)
