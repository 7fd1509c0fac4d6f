"""Medical dataset: NIfTI volumes probed once, crops read slab by slab (steps 1–3 of the plan)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.errors import ConfigError
from mpt.files import LazyFiles, folder_labels, item_rng
from mpt_medical.config import MedicalDataConfig
from mpt_medical.geometry import resample_box, resampled_size, source_range
from mpt_medical.io import VolumeInfo, find_volumes, probe_volume, read_box
from mpt_medical.plan import centre_start, triple


def target_spacing(config: MedicalDataConfig, infos: list[VolumeInfo]) -> tuple[float, float, float] | None:
    """The plan's spacing (mm) under ``data.spacing`` for these volumes (None: each keeps its own)."""
    s = config.spacing
    if s == "none":
        return None
    if s == "onemmiso":
        return (1.0, 1.0, 1.0)
    if s == "median":
        med = np.median(np.array([i.spacing for i in infos]), axis=0)
        return (float(med[0]), float(med[1]), float(med[2]))
    return triple(s, "data.spacing", float)  # type: ignore[arg-type]


class MedicalDataset(Dataset):
    """Every NIfTI volume under ``path`` (a file or a folder, ``root/<class>/…`` for labels).

    Item ``i`` is crop ``i % crops`` of sample ``i // crops`` (a file, or a frame of a 4-D file with
    ``layout_4d: volumes``): ``Sample(input=float32 [C, cx, cy, cz]`` raw intensities in RAS at the
    plan's spacing, NaN where the crop extends past the volume, ``meta={"spacing": mm [3],
    "moments_nonzero": [C, 2], "moments_all": [C, 2]}`` (each volume's whole-volume statistics), ``source``
    = the file (``FILE#frame`` for a frame). The train split places crops at random (centred on a random
    foreground voxel with probability ``foreground_crops``, uniformly otherwise), seeded by (seed, i)
    (:meth:`reseed`); other splits take the centre crop.
    """

    def __init__(self, path: str | Path, split: str, config: MedicalDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
        self.split, self.config, self.seed = split, config, 0
        self.crop = triple(config.crop, "data.crop")
        self.volumes: LazyFiles[VolumeInfo] = LazyFiles(
            path, find_volumes(path), lambda p: p, check=lambda p: probe_volume(p, config.orientation),  # type: ignore[arg-type, return-value]
            skip_bad_files=skip_bad_files, kind="NIfTI", cache=0, progress=progress)
        self.skipped = self.volumes.skipped
        self.info: list[VolumeInfo] = list(self.volumes.info)
        per_file = [[None] if config.layout_4d == "channels" else list(range(i.frames)) for i in self.info]
        self.samples: list[tuple[int, int | None]] = [(k, f) for k, frames in enumerate(per_file) for f in frames]
        channels = {i.frames if config.layout_4d == "channels" else 1 for i in self.info}
        if len(channels) > 1:
            raise ConfigError("data.layout_4d", f"the volumes have different channel counts {sorted(channels)} "
                                                f"under layout_4d=channels; use layout_4d=volumes or one sequence set")
        self.channels = channels.pop()
        if config.channels is not None and config.channels != self.channels:
            raise ConfigError("data.channels", f"{config.channels}, but the volumes have {self.channels}")
        self.spacing = target_spacing(config, self.info)
        self.reference = self.spacing or tuple(float(v) for v in np.median([i.spacing for i in self.info], axis=0))
        self.sources = [str(i.path) for i in self.info]
        self.classes, self.labels = folder_labels(path, [i.path for i in self.info])

    def reseed(self, seed: int) -> None:
        """Seed of all per-item randomness (the trainer calls this every epoch)."""
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.samples) * (self.config.crops if self.split == "train" else 1)

    def grid_size(self, info: VolumeInfo) -> tuple[int, int, int]:
        """Voxels of ``info``'s volume on the plan's grid (oriented, resampled)."""
        s = self.spacing
        n = [resampled_size(info.oriented_shape[k], info.spacing[k], None if s is None else s[k]) for k in range(3)]
        return n[0], n[1], n[2]

    def _start(self, index: int, info: VolumeInfo, frame: int | None, sizes: tuple[int, int, int]) -> list[int]:
        """First output voxel of the crop on each axis."""
        centre = [centre_start(m, c) for m, c in zip(sizes, self.crop, strict=True)]
        if self.split != "train":
            return centre
        rng = item_rng(self.seed, index)
        start = []
        if rng.random() < self.config.foreground_crops:
            boxes = info.boxes if frame is None else [info.boxes[frame]]
            lo = np.min([b[0] for b in boxes], axis=0)
            hi = np.max([b[1] for b in boxes], axis=0)
            for k in range(3):  # a random voxel of the foreground box, on the plan's grid
                ratio = 1.0 if self.spacing is None else info.spacing[k] / self.spacing[k]
                v = rng.uniform(lo[k] * ratio, max(hi[k] - 1, lo[k]) * ratio)
                s = int(round(v)) - self.crop[k] // 2
                start.append(int(np.clip(s, 0, sizes[k] - self.crop[k])) if sizes[k] >= self.crop[k] else centre[k])
            return start
        for k in range(3):
            free = sizes[k] - self.crop[k]
            start.append(int(rng.integers(0, free + 1)) if free >= 0 else centre[k])
        return start

    def __getitem__(self, index: int) -> Sample:
        k, frame = self.samples[index // (self.config.crops if self.split == "train" else 1)]
        info = self.info[k]
        sizes = self.grid_size(info)
        start = self._start(index, info, frame, sizes)
        spacing = self.spacing
        ranges = [source_range(start[a], self.crop[a], info.oriented_shape[a], info.spacing[a],
                               None if spacing is None else spacing[a]) for a in range(3)]
        lo, hi = [r[0] for r in ranges], [r[1] for r in ranges]
        slab = read_box(info, lo, hi, frame)
        x = resample_box(slab, lo, info.oriented_shape, info.spacing, spacing, start, self.crop)
        if self.split == "train" and self.config.flip:
            rng = item_rng(self.seed, index, stream=1)
            dims = [1 + a for a in range(3) if rng.random() < 0.5]
            x = x.flip(dims) if dims else x
        moments = info.moments if frame is None else [info.moments[frame]]
        meta = {"spacing": torch.tensor(spacing if spacing is not None else info.spacing, dtype=torch.float32),
                "moments_nonzero": torch.cat([m.of("nonzero") for m in moments]),
                "moments_all": torch.cat([m.of("all") for m in moments])}
        source = self.sources[k] if frame is None else f"{self.sources[k]}#{frame}"
        return Sample(input=x.contiguous(), source=source, label=self.labels[k], meta=meta)
