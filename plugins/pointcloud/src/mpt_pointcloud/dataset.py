"""Point-cloud dataset: files loaded upfront, one normalised (and augmented) subset per item."""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.files import find_files, folder_labels, read_all
from mpt_pointcloud.config import PointCloudDataConfig
from mpt_pointcloud.io import SUPPORTED, read_points
from mpt_pointcloud.ops import normalize_clouds


class PointCloudDataset(Dataset):
    """Every supported file under ``path``, each kept as at most ``cache_points`` points.

    Item ``i`` is file ``i % num_files`` (so each file appears ``repeats`` times per epoch):
    ``Sample(input=float32 [num_points, 3+F], source=path, label=class index or None)`` where F is
    the number of feature columns all files share; classes are the first-level folder names when
    every file sits in ``path/<class>/``. Randomness (subset, augmentation) depends only on (seed, i):
    call :meth:`reseed` to change the seed.
    """

    def __init__(self, path: str | Path, split: str, config: PointCloudDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
        self.split, self.config, self.seed = split, config, 0
        files = find_files(path, SUPPORTED, kind="point-cloud")
        self.clouds, used, self.skipped = read_all(path, files, self._read, skip_bad_files=skip_bad_files,
                                                   kind="point-cloud", progress=progress)
        self.sources = [str(f) for f in used]
        self.classes, self.labels = folder_labels(path, used)
        widths = {c.shape[1] for c in self.clouds}
        if len(widths) > 1:
            warnings.warn(f"{path}: files have {sorted(w - 3 for w in widths)} feature columns; "
                          f"keeping the {min(widths) - 3} they all share", stacklevel=2)
            self.clouds = [c[:, : min(widths)] for c in self.clouds]

    def _read(self, f: Path) -> np.ndarray:
        """One file, kept as at most ``cache_points`` points (a fixed, seeded subset)."""
        cfg = self.config
        pts = read_points(f, n=cfg.cache_points)
        if len(pts) > cfg.cache_points:
            rng = np.random.default_rng(zlib.crc32(str(f.name).encode()))
            pts = pts[np.sort(rng.choice(len(pts), cfg.cache_points, replace=False))]
        if len(pts) < cfg.num_points:
            warnings.warn(f"{f}: only {len(pts)} points, fewer than data.num_points={cfg.num_points}; "
                          "sampling it with replacement", stacklevel=3)
        return pts

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
        pts = torch.from_numpy(self.clouds[i])
        n = len(pts)
        pick = torch.randperm(n, generator=g)[: cfg.num_points] if n >= cfg.num_points else \
            torch.randint(n, (cfg.num_points,), generator=g)
        x = pts[pick].clone()
        x = normalize_clouds(x)
        xyz = x[:, :3]
        if cfg.augment and self.split == "train":  # Point-MAE PointcloudScaleAndTranslate
            lo, hi = cfg.scale
            scale = torch.rand(3, generator=g) * (hi - lo) + lo
            shift = (torch.rand(3, generator=g) * 2 - 1) * cfg.translate
            xyz = xyz * scale + shift
        x[:, :3] = xyz
        return Sample(input=x, source=self.sources[i], label=self.labels[i])
