"""Point-cloud dataset: files checked at construction, read on access (LRU cache), one random
subset of points per item. Normalisation is the tokenizer's (``PointTokenizer.normalize``) and the
scale-and-translate augmentation the modality's (``PointCloud.augment``): items are raw points."""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.files import LazyFiles, find_files, folder_labels
from mpt_pointcloud.config import PointCloudDataConfig
from mpt_pointcloud.io import SUPPORTED, read_points


class PointCloudDataset(Dataset):
    """Every supported file under ``path``, each read as at most ``cache_points`` points.

    At construction each file is read once (one at a time) to check it and to learn its point count
    and feature width; nothing is kept. An item reads its file again (``clouds``, a
    :class:`mpt.files.LazyFiles` keeping the last files read) and takes ``num_points`` of its
    ``cache_points`` points at random.

    Item ``i`` is file ``i % num_files`` (so each file appears ``repeats`` times per epoch):
    ``Sample(input=float32 [num_points, 3+F], source=path, label=class index or None)`` where F is
    the number of feature columns all files share; classes are the first-level folder names when
    every file sits in ``path/<class>/``. Points are as in the file (not normalised, not augmented:
    ``PointCloud.augment`` does that on training batches). Randomness (the subset) depends only on (seed, i):
    call :meth:`reseed` to change the seed.
    """

    def __init__(self, path: str | Path, split: str, config: PointCloudDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
        self.split, self.config, self.seed = split, config, 0
        files = find_files(path, SUPPORTED, kind="point-cloud")
        self.clouds: LazyFiles[np.ndarray] = LazyFiles(path, files, self._read, check=self._check,
                                                       skip_bad_files=skip_bad_files, kind="point-cloud",
                                                       progress=progress)
        self.skipped = self.clouds.skipped
        self.sources = [str(f) for f in self.clouds.files]
        self.classes, self.labels = folder_labels(path, self.clouds.files)
        self.counts = [int(n) for n, _ in self.clouds.info]
        widths = {int(w) for _, w in self.clouds.info}
        self.width = min(widths)
        if len(widths) > 1:
            warnings.warn(f"{path}: files have {sorted(w - 3 for w in widths)} feature columns; "
                          f"keeping the {self.width - 3} they all share", stacklevel=2)

    def _read(self, f: Path) -> np.ndarray:
        """One file, kept as at most ``cache_points`` points (a fixed subset, seeded by the file name)."""
        cfg = self.config
        pts = read_points(f, n=cfg.cache_points)
        if len(pts) > cfg.cache_points:
            rng = np.random.default_rng(zlib.crc32(str(f.name).encode()))
            pts = pts[np.sort(rng.choice(len(pts), cfg.cache_points, replace=False))]
        return pts

    def _check(self, f: Path) -> tuple[int, int]:
        """Read ``f`` once (a DataError for a bad file) → its point count and width; nothing is kept."""
        pts = self._read(f)
        if len(pts) < self.config.num_points:
            warnings.warn(f"{f}: only {len(pts)} points, fewer than data.num_points={self.config.num_points}; "
                          "sampling it with replacement", stacklevel=4)
        return len(pts), pts.shape[1]

    def reseed(self, seed: int) -> None:
        """Seed of all per-item randomness (the trainer calls this every epoch)."""
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.clouds) * self.config.repeats

    def __getitem__(self, index: int) -> Sample:
        cfg = self.config
        i = index % len(self.clouds)
        state = np.random.SeedSequence([self.seed % (1 << 64), index]).generate_state(2, np.uint64)
        g = torch.Generator().manual_seed(int(state[0]) >> 1)
        pts = torch.from_numpy(self.clouds[i][:, : self.width])
        n = len(pts)
        pick = torch.randperm(n, generator=g)[: cfg.num_points] if n >= cfg.num_points else \
            torch.randint(n, (cfg.num_points,), generator=g)
        return Sample(input=pts[pick].clone(), source=self.sources[i], label=self.labels[i])
