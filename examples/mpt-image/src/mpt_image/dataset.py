"""Image dataset: every image under a path, decoded once and kept in memory, one crop per item.

Memory: an 8-bit image is kept as uint8 ``[C, H, W]`` after downscaling its shorter side to at
most ``2 × data.size`` (16-bit and float images as float32, four times as much): about
``C × 2s × 2s × aspect`` bytes, e.g. 0.6 MB per square RGB photo at ``size`` 224 (0.8 MB at 4:3).
This suits folders of thousands of images, not ImageNet (stream those with your own dataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.errors import ConfigError, DataError
from mpt.files import find_files, folder_labels, read_all
from mpt_image.config import ImageDataConfig
from mpt_image.io import EXTENSIONS, load_pixels
from mpt_image.transforms import center_box, crop_resize, random_resized_box


class ImageDataset(Dataset):
    """Items ``Sample(input=float32 [C, size, size] in [0, 1], source=file, label=class or None)``.

    Item ``i`` is image ``i % num_images`` (each image ``repeats`` times per epoch). The train
    split draws a RandomResizedCrop (``augment``) and a horizontal flip (``flip``) from a generator
    seeded by ``(seed, i)`` (:meth:`reseed`); other splits take the central crop, unflipped. Pixels are not normalised
    here: the tokenizer applies ``tokenizer.mean``/``std``, so the dataset, the figures and
    :func:`mpt.load_encoder` users all handle raw ``[0, 1]`` images.
    """

    def __init__(self, path: str | Path, split: str, config: ImageDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
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
        self.images, used, self.skipped = read_all(path, files, self._read, skip_bad_files=skip_bad_files,
                                                   kind="image", progress=progress)
        self.sources = [str(f) for f in used]
        self.classes, self.labels = folder_labels(path, used)

    def _read(self, f: Path) -> np.ndarray:
        """One image's pixels; its channel count must match the first image's (or data.channels)."""
        size = self.config.size
        pixels = load_pixels(f, self.config.channels, min_side=size, max_side=2 * size)
        if self.channels is None:
            self.channels, self._first = pixels.shape[0], f
        elif pixels.shape[0] != self.channels:
            raise DataError(f, f"{pixels.shape[0]} channels, but {self._first} has {self.channels}; every image "
                               "must have the same channel count: set data.channels (1 = L, 2 = LA, 3 = RGB, "
                               "4 = RGBA) to convert them all")
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
