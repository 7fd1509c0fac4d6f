"""Video dataset: videos probed at construction, one clip decoded per item by seeking to its window."""

from __future__ import annotations

import warnings
from pathlib import Path

from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.errors import ConfigError
from mpt.files import LazyFiles, folder_labels, item_rng
from mpt_video.config import VideoDataConfig
from mpt_video.io import VideoInfo, find_videos, probe, read_clip, resized
from mpt_video.transforms import center_box, crop_resize, multiscale_box, resized_box


def short_side(config: VideoDataConfig) -> int:
    """The decode-time shorter side: ``data.short_side``, or ``round(size / 0.875)`` (256 for 224)."""
    return config.short_side if config.short_side is not None else round(config.size / 0.875)


class VideoDataset(Dataset):
    """Every video file and frame folder under ``path``; ``clips`` clips of each per epoch.

    At construction each video is probed (its packets demuxed, one frame decoded; nothing kept but
    the frame timestamps). Item ``i`` is video ``i % num_videos``, clip ``i // num_videos``:
    ``Sample(input=float32 [C, frames, size, size] in [0, 1], source=the file, label=class index or
    None)`` — every clip of a video has the video's source, so grouped splits keep them together;
    :meth:`window` says which frames an item holds. Classes are the first-level folder names when
    every video sits in ``path/<class>/``. The clip is ``frames`` frames ``rate`` apart, decoded at
    the shorter side :func:`short_side`. The train split draws its start uniformly (``jitter``) and
    its crop box and flip (``augment``, ``crop``, ``flip``); other splits take ``clips`` evenly
    spaced starts and the centre crop. Randomness depends only on (seed, i): :meth:`reseed` changes
    the seed. Videos shorter than a clip are looped or padded (``short``), with one warning each at
    construction. A file that fails to decode later raises a DataError naming it (the core's loader
    turns it into a skip with ``--skip-bad-files``).
    """

    def __init__(self, path: str | Path, split: str, config: VideoDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
        self.split, self.config, self.seed = split, config, 0
        self.short_side = short_side(config)
        if self.short_side < config.size:
            raise ConfigError("data.short_side", f"{self.short_side} is smaller than data.size={config.size}; "
                                                 "frames would be cropped beyond their edges")
        self.videos: LazyFiles[Path] = LazyFiles(path, find_videos(path), Path, check=probe,
                                                 skip_bad_files=skip_bad_files, kind="video", cache=0,
                                                 progress=progress)
        self.skipped = self.videos.skipped
        self.info: list[VideoInfo] = self.videos.info
        self.sources = [str(f) for f in self.videos.files]
        self.classes, self.labels = folder_labels(path, self.videos.files)
        self.span = (config.frames - 1) * config.rate + 1
        short = [(s, v.frames) for s, v in zip(self.sources, self.info, strict=True) if v.frames < self.span]
        for source, n in short:
            how = "looped" if config.short == "loop" else "padded with its last frame"
            warnings.warn(f"{source}: {n} frames, shorter than a clip of data.frames={config.frames} × "
                          f"data.rate={config.rate} ({self.span} frames); {how} (data.short)", stacklevel=2)

    def reseed(self, seed: int) -> None:
        """Seed of all per-item randomness (the trainer calls this every epoch)."""
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.videos) * self.config.clips

    def window(self, index: int) -> tuple[int, list[int]]:
        """Item ``index`` → (video, its frames): a random start (train, ``jitter``) or the ``clip``-th
        of ``clips`` evenly spaced starts (clip ``index // num_videos``); looped or padded where the
        video is short."""
        cfg = self.config
        i, clip = index % len(self.videos), index // len(self.videos)
        n = self.info[i].frames
        room = max(n - self.span, 0)
        if self.split == "train" and cfg.jitter:
            start = int(item_rng(self.seed, index, 0).integers(room + 1))
        else:
            start = round(clip * room / (cfg.clips - 1)) if cfg.clips > 1 else room // 2
        steps = [start + j * cfg.rate for j in range(cfg.frames)]
        return i, [s % n for s in steps] if cfg.short == "loop" else [min(s, n - 1) for s in steps]

    def __getitem__(self, index: int) -> Sample:
        cfg = self.config
        i, indices = self.window(index)
        frames = read_clip(self.videos.files[i], self.info[i], indices, self.short_side, cfg.channels, cfg.threads)
        height, width = resized(self.info[i].height, self.info[i].width, self.short_side)
        flip = False
        if self.split == "train" and cfg.augment:
            rng = item_rng(self.seed, index, 1)
            box = multiscale_box(height, width, cfg.scales, rng) if cfg.crop == "multiscale" else \
                resized_box(height, width, cfg.area, cfg.ratio, rng)
            flip = cfg.flip and bool(rng.random() < 0.5)
        else:
            box = center_box(height, width, cfg.size)
        return Sample(input=crop_resize(frames, box, cfg.size, flip), source=self.sources[i], label=self.labels[i])
