"""Satellite dataset: scenes probed at construction, cut into chips read window by window."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.errors import ConfigError
from mpt.files import LazyFiles, folder_labels, item_rng
from mpt_satellite.config import SatelliteDataConfig
from mpt_satellite.io import SceneInfo, chip_grid, find_rasters, nodata_share, probe_scene, read_window


class SatelliteDataset(Dataset):
    """Every scene under ``path`` (a multi-band GeoTIFF or a folder of band files), cut into
    ``size`` × ``size`` chips ``stride`` apart (the last flush with the edge).

    At construction each scene is probed (headers: bands, CRS, transform, dates; band files must
    agree) and its chips' validity is read window by window, one chip in memory at a time: chips
    whose nodata share exceeds ``max_nodata`` are left out and counted (``skipped_chips``, one
    warning per scene). Item ``i`` is chip ``i % num_chips`` (``repeats`` passes per epoch):
    ``Sample(input=float32 [C, size, size] physical values, NaN where missing, source=the scene,
    label=class index or None, meta={"gsd": metres, "wavelengths": nm [C], "bands": names,
    "date": days since 1970 or NaN})``; with ``stack``, ``[T, C, size, size]`` of a stack's scenes
    by date and ``meta["dates"]`` ``[T]`` (a chip is kept when it is kept in every date).
    Missing pixels (nodata, NaN, outside the scene) stay NaN:
    the tokenizer never embeds them as values and the MAE target never scores them. The train split
    flips chips (``flip``: horizontal and vertical, seeded by (seed, i), :meth:`reseed`).
    """

    def __init__(self, path: str | Path, split: str, config: SatelliteDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
        self.split, self.config, self.seed = split, config, 0
        self.scenes: LazyFiles[Path] = LazyFiles(path, find_rasters(path), Path, check=self._check,
                                                 skip_bad_files=skip_bad_files, kind="raster", cache=0,
                                                 progress=progress)
        self.skipped = self.scenes.skipped
        self.info: list[SceneInfo] = [info for info, _, _ in self.scenes.info]
        self.stacks = self._stacks(path) if config.stack else [[i] for i in range(len(self.info))]
        kept = [set(k) for _, k, _ in self.scenes.info]
        self.chips = [(s, r, c) for s, members in enumerate(self.stacks) for r, c in self.scenes.info[members[0]][1]
                      if all((r, c) in kept[m] for m in members)]
        self.skipped_chips = sum(dropped for _, _, dropped in self.scenes.info)
        self.sources = [str(f) for f in self.scenes.files]
        self.classes, self.labels = folder_labels(path, self.scenes.files)
        names = {info.names for info in self.info}
        if len(names) > 1:
            raise ConfigError("data.bands", f"the scenes have different bands {sorted(names)}; select the same "
                                            "bands in the same order with data.bands=[...]")
        self.bands = self.info[0].bands
        if not self.chips:
            raise ConfigError("data.max_nodata", f"every chip of {path} has more than {config.max_nodata:.0%} "
                                                 "missing pixels; raise data.max_nodata or check the nodata value")

    def _stacks(self, path: str | Path) -> list[list[int]]:
        """Scenes grouped by grid (CRS, transform, shape), each group ordered by acquisition date."""
        groups: dict[tuple, list[int]] = {}
        for i, info in enumerate(self.info):
            if info.date is None:
                raise ConfigError("data.stack", f"{info.path} has no acquisition date (tags or a YYYYMMDD / "
                                                "YYYY-MM-DD name): multi-date stacks need one per scene")
            groups.setdefault((info.crs, tuple(info.transform), info.height, info.width), []).append(i)
        stacks = [sorted(g, key=lambda i: self.info[i].date or dt.date.min) for g in groups.values()]
        if len({len(g) for g in stacks}) > 1:
            raise ConfigError("data.stack", f"the grids of {path} hold different numbers of dates "
                                            f"({sorted({len(g) for g in stacks})}): every stack needs the same count")
        return stacks

    def _check(self, path: Path) -> tuple[SceneInfo, list[tuple[int, int]], int]:
        """Probe a scene and read its chips' validity → (info, kept chip corners, chips left out)."""
        cfg = self.config
        info = probe_scene(path, cfg.bands, cfg.sensor)
        grid = chip_grid(info, cfg.size, cfg.stride)
        kept = [(r, c) for r, c in grid if nodata_share(read_window(info, r, c, cfg.size)[1], pixels=True)
                <= cfg.max_nodata]
        if len(grid) > len(kept):
            warnings.warn(f"{path}: {len(grid) - len(kept)} of {len(grid)} chips have more than {cfg.max_nodata:.0%} "
                          "missing pixels and are left out (data.max_nodata)", stacklevel=4)
        return info, kept, len(grid) - len(kept)

    def reseed(self, seed: int) -> None:
        """Seed of all per-item randomness (the trainer calls this every epoch)."""
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.chips) * self.config.repeats

    def __getitem__(self, index: int) -> Sample:
        cfg = self.config
        k, r, c = self.chips[index % len(self.chips)]
        members = self.stacks[k]
        dates = []
        layers = []
        for m in members:
            values, valid = read_window(self.info[m], r, c, cfg.size)
            layers.append(np.where(valid, values, np.nan).astype(np.float32))
            date = self.info[m].date
            dates.append(float((date - dt.date(1970, 1, 1)).days) if date is not None else float("nan"))
        x = torch.from_numpy(np.stack(layers) if cfg.stack else layers[0])
        if self.split == "train" and cfg.flip:
            rng = item_rng(self.seed, index)
            if rng.random() < 0.5:
                x = x.flip(-1)
            if rng.random() < 0.5:
                x = x.flip(-2)
        info = self.info[members[0]]
        gsd = cfg.gsd if cfg.gsd is not None else info.gsd_m
        wavelengths = [float("nan") if b.wavelength_nm is None else b.wavelength_nm for b in info.bands]
        meta = {"gsd": float("nan") if gsd is None else float(gsd), "wavelengths": torch.tensor(wavelengths),
                "bands": list(info.names)}
        meta.update({"dates": torch.tensor(dates)} if cfg.stack else {"date": dates[0]})
        return Sample(input=x, source=self.sources[members[0]], label=self.labels[members[0]], meta=meta)
