"""Point-cloud dataset: files loaded upfront, one normalised (and augmented) subset per item."""

from __future__ import annotations

import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.errors import DataError
from mpt_pointcloud.config import PointCloudDataConfig
from mpt_pointcloud.io import find_files, read_points
from mpt_pointcloud.ops import normalize_clouds


class PointCloudDataset(Dataset):
    """Every supported file under ``path``, each kept as at most ``cache_points`` points.

    Item ``i`` is file ``i % num_files`` (so each file appears ``repeats`` times per epoch):
    ``Sample(input=float32 [num_points, 3+F], source=path)`` where F is the number of feature
    columns all files share. Randomness (subset, augmentation) depends only on (seed, i):
    call :meth:`reseed` to change the seed.
    """

    def __init__(self, path: str | Path, split: str, config: PointCloudDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
        from tqdm import tqdm

        self.split, self.config, self.seed = split, config, 0
        self.clouds: list[np.ndarray] = []
        self.sources: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        files = find_files(path)
        for f in tqdm(files, desc=f"reading {Path(path).name or path}", unit="file", file=sys.stderr,
                      disable=not progress, leave=False):
            try:
                pts = read_points(f, n=config.cache_points)
            except DataError as exc:
                if not skip_bad_files:
                    raise
                self.skipped.append((str(f), exc.reason))
                continue
            if len(pts) > config.cache_points:  # fixed per file: a seeded subset
                rng = np.random.default_rng(zlib.crc32(str(f.name).encode()))
                pts = pts[np.sort(rng.choice(len(pts), config.cache_points, replace=False))]
            if len(pts) < config.num_points:
                warnings.warn(f"{f}: only {len(pts)} points, fewer than data.num_points="
                              f"{config.num_points}; sampling it with replacement", stacklevel=2)
            self.clouds.append(pts)
            self.sources.append(str(f))
        if not self.clouds:
            raise DataError(path, f"no usable point-cloud file ({len(self.skipped)} skipped: "
                                  + "; ".join(f"{p}: {r}" for p, r in self.skipped[:3]) + ")")
        widths = {c.shape[1] for c in self.clouds}
        if len(widths) > 1:
            warnings.warn(f"{path}: files have {sorted(w - 3 for w in widths)} feature columns; "
                          f"keeping the {min(widths) - 3} they all share", stacklevel=2)
            self.clouds = [c[:, : min(widths)] for c in self.clouds]

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
        return Sample(input=x, source=self.sources[i])
