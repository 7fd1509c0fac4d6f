"""Image dataset: every image under a path, checked at construction, decoded when an item is read.

Construction reads each file's header only (channel count, size) and walks its structure (Pillow's
``verify``), so a folder of any size opens in seconds and holds no pixels: a 0-byte, corrupt or
truncated file, an image smaller than the crop or one with another channel count is a DataError
naming it right away (or skipped with ``skip_bad_files``). Items decode their image on access
(:class:`mpt.files.LazyFiles`), downscaled so that the shorter side is at most ``2 × data.size``;
the last ``cache`` decoded images are kept (8-bit images as uint8 ``[C, H, W]``, 16-bit and float
ones as float32: about 0.6 MB per square RGB photo at ``size`` 224), so the demo's three images are
decoded once and a large folder costs one decode per item, as torchvision's ``ImageFolder``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.errors import ConfigError, DataError
from mpt.files import LazyFiles, find_files, folder_labels
from mpt_image.config import ImageDataConfig
from mpt_image.io import EXTENSIONS, check_image, load_pixels
from mpt_image.transforms import center_box, crop_resize, random_resized_box


class ImageDataset(Dataset):
    """Items ``Sample(input=float32 [C, size, size] in [0, 1], source=file, label=class or None)``.

    Item ``i`` is image ``i % num_images`` (each image ``repeats`` times per epoch). The train
    split draws a RandomResizedCrop (``augment``) and a horizontal flip (``flip``) from a generator
    seeded by ``(seed, i)`` (:meth:`reseed`); other splits take the central crop, unflipped. Pixels are
    not normalised here: the core applies the tokenizer's ``normalize`` (``tokenizer.mean``/``std``)
    to every batch, so the dataset, the figures and :func:`mpt.load_encoder` users all handle raw
    ``[0, 1]`` images.

    ``images`` is the :class:`mpt.files.LazyFiles` of the usable files (``images[i]``: the decoded,
    downscaled pixels of image ``i``); ``skipped`` lists ``(file, reason)`` of the files left out.
    """

    def __init__(self, path: str | Path, split: str, config: ImageDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True, cache: int = 64) -> None:
        for key, (lo, hi) in (("scale", config.scale), ("ratio", config.ratio)):
            if not 0 < lo <= hi:
                raise ConfigError(f"data.{key}", f"expected 0 < low <= high, got ({lo}, {hi})")
        if config.scale[1] > 1:
            raise ConfigError("data.scale", f"the crop area is a share of the image: at most 1, got {config.scale[1]}")
        self.split, self.config, self.seed = split, config, 0
        self.channels: int | None = config.channels
        self._first: Path | None = None
        path = Path(path)
        files = find_files(path, EXTENSIONS, kind="image")
        self.images: LazyFiles[np.ndarray] = LazyFiles(path, files, self._read, check=self._check,
                                                       skip_bad_files=skip_bad_files, kind="image",
                                                       cache=cache, progress=progress)
        self.skipped = self.images.skipped
        self.sources = [str(f) for f in self.images.files]
        self.classes, self.labels = folder_labels(path, self.images.files)

    def _check(self, f: Path) -> tuple[int, int, int]:
        """Header check of one file: readable, large enough, the first file's channel count (or data.channels)."""
        channels, h, w = check_image(f, self.config.channels, min_side=self.config.size)
        if self.channels is None:
            self.channels, self._first = channels, f
        elif channels != self.channels:
            raise DataError(f, f"{channels} channels, but {self._first} has {self.channels}; every image "
                               "must have the same channel count: set data.channels (1 = L, 2 = LA, 3 = RGB, "
                               "4 = RGBA) to convert them all")
        return channels, h, w

    def _read(self, f: Path) -> np.ndarray:
        """One image's pixels ``[C, H, W]`` (uint8, or float32 in [0, 1]), shorter side at most 2 × size."""
        size = self.config.size
        pixels = load_pixels(f, self.config.channels, min_side=size, max_side=2 * size)
        if pixels.shape[0] != self.channels:  # the header said otherwise (a file changed since)
            raise DataError(f, f"{pixels.shape[0]} channels when decoded, but the dataset holds {self.channels}-"
                               "channel images; set data.channels to convert them all")
        return pixels

    def reseed(self, seed: int) -> None:
        """Seed of all per-item randomness (the trainer calls this every epoch)."""
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.images) * self.config.repeats

    def __getitem__(self, index: int) -> Sample:
        cfg = self.config
        i = index % len(self.images)
        pixels = self.images[i]
        h, w = pixels.shape[1:]
        box, flip = center_box(h, w, cfg.crop_pct), False
        if self.split == "train":
            state = np.random.SeedSequence([self.seed % (1 << 64), index]).generate_state(1, np.uint64)
            g = torch.Generator().manual_seed(int(state[0]) >> 1)
            if cfg.augment:
                box = random_resized_box(h, w, cfg.scale, cfg.ratio, g)
            flip = cfg.flip and bool(torch.rand(1, generator=g) < 0.5)
        x = crop_resize(pixels, box, cfg.size)
        return Sample(input=x.flip(-1) if flip else x, source=self.sources[i], label=self.labels[i])


def downstream_data(config: ImageDataConfig) -> ImageDataConfig:
    """The data config of feature extraction (probe, embed, finetune): every image once (``repeats`` 1)."""
    return dataclasses.replace(config, repeats=1)
