"""Reader: one image file (PNG, JPEG, BMP, TIFF, WebP) → ``[C, H, W]`` pixels in [0, 1], via Pillow.

Channel count by Pillow mode: ``1``/``L`` → 1, ``LA`` → 2, ``RGB`` → 3, ``RGBA`` → 4; palette
images (``P``/``PA``) become RGBA when they carry transparency and RGB otherwise; ``CMYK`` and
``YCbCr`` become RGB. High bit depths are one channel scaled by their range: ``I;16`` by 65535,
``I`` (32-bit integers; Pillow's container for 16-bit data) by 65535 when every value lies in
[0, 65535], ``F`` (32-bit float) taken as is and required to lie in [0, 1]. The EXIF orientation
of photos is applied. A multi-page TIFF contributes its first page only, and TIFFs with more than
four bands (which Pillow cannot open) are rejected: convert such data to one image per band set.

:func:`check_image` reads only the header (channel count, size) and walks the file's structure
(``verify``): what the dataset runs on every file at construction; :func:`load_pixels` decodes.
Every problem is a :class:`mpt.errors.DataError` naming the file. Pillow is imported lazily so
that ``import mpt_image`` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mpt.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # data.channels → the mode it converts to
_8BIT = {"L": "L", "1": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBX": "RGB", "RGBA": "RGBA",
         "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "PA": "RGBA"}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's RGB → L


def check_image(path: str | Path, channels: int | None = None, *, min_side: int = 1) -> tuple[int, int, int]:
    """``(channels, height, width)`` of one image from its header, without decoding the pixels: what a
    dataset checks at construction (:class:`mpt.files.LazyFiles`).

    The same errors as :func:`load_pixels` where the header tells (a missing or 0-byte file, not an
    image, an unsupported mode, smaller than ``min_side``), and Pillow's ``verify`` on top: the file's
    structure is read through without decoding it (a truncated PNG fails here; corrupt compressed JPEG
    data only when the pixels are decoded). ``channels`` (1-4) is the count after conversion; None
    gives the file's own (:func:`header_channels`). Sizes are those of the stored image (the EXIF
    orientation swaps height and width, not the shorter side)."""
    from PIL import Image

    path = _check_file(path)
    try:
        with Image.open(path) as im:
            (w, h), mode, info, palette = im.size, im.mode, dict(im.info), getattr(im.palette, "mode", "")
            im.verify()  # reads the file's structure (chunks, CRCs) without decoding the pixels
    except Exception as exc:  # UnidentifiedImageError, truncated data, decompression bombs …
        raise DataError(path, f"cannot decode it as an image ({type(exc).__name__}: {exc})") from None
    own = header_channels(path, mode, info, palette)
    if min(w, h) < min_side:
        raise DataError(path, f"{w}×{h} pixels: smaller than the {min_side}-pixel crop (data.size); "
                              "lower data.size or leave this image out")
    return (own if channels is None else channels), h, w


def header_channels(path: Path, mode: str, info: Mapping[Any, Any], palette_mode: str = "") -> int:
    """The channel count :func:`load_pixels` gives an image of Pillow ``mode`` (read from its header)."""
    if mode == "P":
        return 4 if "transparency" in info or palette_mode == "RGBA" else 3
    if mode in _8BIT:
        return {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[_8BIT[mode]]
    if mode.startswith("I;16") or mode in ("I", "F"):
        return 1
    raise DataError(path, f"unsupported image mode '{mode}'; save it as L, LA, RGB, RGBA, "
                          "16-bit grey or float grey")


def read_image(path: str | Path, channels: int | None = None, *, min_side: int = 1,
               max_side: int | None = None) -> np.ndarray:
    """Pixels of one image: float32 ``[C, H, W]`` in [0, 1] (see :func:`load_pixels`)."""
    return to_unit(load_pixels(path, channels, min_side=min_side, max_side=max_side))


def load_pixels(path: str | Path, channels: int | None = None, *, min_side: int = 1,
                max_side: int | None = None) -> np.ndarray:
    """Pixels of one image, ``[C, H, W]``: uint8 for 8-bit images (a quarter of the memory),
    float32 in [0, 1] for 16-bit, 32-bit and float ones.

    ``channels`` (1-4) converts to L, LA, RGB or RGBA (alpha dropped or set opaque, luma by
    ITU-R 601-2); None keeps the file's count. An image whose shorter side is below ``min_side``
    is an error; one whose shorter side exceeds ``max_side`` is downscaled (bicubic) to it.
    """
    path = _check_file(path)
    im, short = _decode(path, max_side)
    if short < min_side:
        w, h = im.size
        raise DataError(path, f"{w}×{h} pixels: smaller than the {min_side}-pixel crop (data.size); "
                              "lower data.size or leave this image out")
    pixels = _to_array(path, im, max_side)
    if channels is not None:
        pixels = convert_channels(pixels, channels)
    return np.ascontiguousarray(pixels)


def _check_file(path: str | Path) -> Path:
    """``path`` as a Path; a DataError for an unsupported extension, a missing or an empty file."""
    path = Path(path)
    if path.suffix.lower() not in EXTENSIONS:
        raise DataError(path, f"unsupported extension '{path.suffix}'; supported: {', '.join(EXTENSIONS)}")
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes)")
    return path


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 or float32 ``[C, H, W]`` → float32 in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    return pixels.astype(np.float32, copy=False)


def convert_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """``[C, H, W]`` → ``[channels, H, W]`` as Pillow converts L / LA / RGB / RGBA: grey is repeated
    into colour, colour becomes luma (0.299 R + 0.587 G + 0.114 B), alpha is dropped or added opaque."""
    c = pixels.shape[0]
    if c == channels:
        return pixels
    if channels not in CHANNEL_MODES or c not in CHANNEL_MODES:
        raise ValueError(f"cannot convert {c} channels to {channels}: only 1-4 (L, LA, RGB, RGBA)")
    opaque = 255 if pixels.dtype == np.uint8 else 1.0
    colour, alpha = pixels[: 3 if c >= 3 else 1], pixels[c - 1 :] if c in (2, 4) else None
    if channels in (1, 2) and colour.shape[0] == 3:
        luma = np.tensordot(_LUMA, colour.astype(np.float32), axes=1)[None]
        colour = np.round(luma).astype(np.uint8) if pixels.dtype == np.uint8 else luma.astype(pixels.dtype)
    elif channels in (3, 4) and colour.shape[0] == 1:
        colour = np.repeat(colour, 3, axis=0)
    if channels in (1, 3):
        return colour
    alpha = alpha if alpha is not None else np.full_like(colour[:1], opaque)
    return np.concatenate([colour, alpha], axis=0)


def _decode(path: Path, max_side: int | None) -> tuple[Any, int]:
    """Open and fully decode ``path`` → (PIL image, the shorter side of the stored image)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as src:
            short = min(src.size)
            if max_side is not None and src.format == "JPEG" and short >= 2 * max_side:
                scale = max_side / short  # libjpeg decodes at a reduced scale (still >= the target size)
                src.draft(src.mode, (max(1, round(src.size[0] * scale)), max(1, round(src.size[1] * scale))))
            src.load()
            im = ImageOps.exif_transpose(src)  # a decoded copy, independent of the file
    except Exception as exc:  # UnidentifiedImageError, truncated data, decompression bombs …
        raise DataError(path, f"cannot decode it as an image ({type(exc).__name__}: {exc})") from None
    return im, short


def _to_array(path: Path, im: Any, max_side: int | None) -> np.ndarray:
    """A decoded PIL image → ``[C, H, W]`` (uint8, or float32 in [0, 1] for high bit depths),
    downscaled so that its shorter side is at most ``max_side``."""
    from PIL import Image

    mode = im.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in im.info or getattr(im.palette, "mode", "") == "RGBA" else "RGB"
        im = im.convert(mode)
    if mode in _8BIT:
        if _8BIT[mode] != mode:
            im = im.convert(_8BIT[mode])
        im = _shrink(im, max_side)
        arr = np.asarray(im, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if mode.startswith("I;16"):
        x = np.asarray(im).astype(np.float32) / 65535.0
    elif mode == "I":
        raw = np.asarray(im)
        if raw.size and (raw.min() < 0 or raw.max() > 65535):
            raise DataError(path, f"32-bit integer pixels in [{raw.min()}, {raw.max()}], outside the 16-bit "
                                  "range [0, 65535]; save it as 16-bit, or as float in [0, 1]")
        x = raw.astype(np.float32) / 65535.0
    elif mode == "F":
        x = np.asarray(im, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DataError(path, f"{int((~np.isfinite(x)).sum())} NaN/Inf pixels in a float image")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise DataError(path, f"float pixels in [{x.min():.4g}, {x.max():.4g}]; float images must "
                                  "lie in [0, 1]: rescale it first")
    else:
        raise DataError(path, f"unsupported image mode '{mode}'; save it as L, LA, RGB, RGBA, "
                              "16-bit grey or float grey")
    shrunk = _shrink(Image.fromarray(x), max_side)
    return np.clip(np.asarray(shrunk, dtype=np.float32), 0.0, 1.0)[None]


def _shrink(im: Any, max_side: int | None) -> Any:
    """Downscale (bicubic, aspect kept) so that the shorter side is ``max_side``, if it is longer."""
    from PIL import Image

    w, h = im.size
    if max_side is None or min(w, h) <= max_side:
        return im
    size = (max_side, round(h * max_side / w)) if w <= h else (round(w * max_side / h), max_side)
    return im.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
