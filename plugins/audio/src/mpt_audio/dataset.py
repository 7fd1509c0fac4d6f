"""Audio dataset: files probed at construction, one waveform segment read (and resampled) per item."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.errors import DataError
from mpt.files import LazyFiles, folder_labels, item_rng
from mpt_audio.config import AudioDataConfig
from mpt_audio.io import AudioInfo, find_audio, probe, read_audio


class AudioDataset(Dataset):
    """Every audio file under ``path``, cut into segments of ``data.seconds`` (``hop`` apart).

    At construction each file is probed (its header; nothing is decoded but what the reader needs to
    check it) and its segments are counted. Item ``i`` is segment ``i % num_segments`` (``repeats``
    passes per epoch): ``Sample(input=float32 [samples] mono at data.rate, source=the file,
    label=class index or None, meta={"rate": data.rate})``; a file shorter than ``seconds`` is one
    shorter sample (the collate pads it and records ``meta["length"]``). Classes are the first-level
    folder names when every file sits in ``path/<class>/``. The train split shifts each segment
    within its hop (``jitter``) and applies ``roll_mag``; randomness depends only on (seed, i)
    (:meth:`reseed`). Files shorter than ``min_seconds`` are a DataError (skipped with
    ``skip_bad_files``); a file that fails later, when a segment is read, raises a DataError naming it.
    """

    def __init__(self, path: str | Path, split: str, config: AudioDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
        self.split, self.config, self.seed = split, config, 0
        self.files: LazyFiles[Path] = LazyFiles(path, find_audio(path), Path, check=self._check,
                                                skip_bad_files=skip_bad_files, kind="audio", cache=0,
                                                progress=progress)
        self.skipped = self.files.skipped
        self.info: list[AudioInfo] = self.files.info
        self.sources = [str(f) for f in self.files.files]
        self.classes, self.labels = folder_labels(path, self.files.files)
        self.segments = [(i, k) for i, info in enumerate(self.info) for k in range(self.count(info))]

    def _check(self, path: Path) -> AudioInfo:
        info = probe(path)
        seconds = info.frames / info.rate
        if seconds < self.config.min_seconds:
            raise DataError(path, f"{seconds * 1000:.0f} ms of audio, shorter than data.min_seconds="
                                  f"{self.config.min_seconds} (one patch of frames): too short to make a token")
        return info

    @property
    def hop(self) -> float:
        return self.config.hop if self.config.hop is not None else self.config.seconds

    def count(self, info: AudioInfo) -> int:
        """Segments of a file: 1 when it is no longer than a segment, else enough to reach its end."""
        seconds = info.frames / info.rate
        return 1 if seconds <= self.config.seconds else math.ceil((seconds - self.config.seconds) / self.hop) + 1

    def reseed(self, seed: int) -> None:
        """Seed of all per-item randomness (the trainer calls this every epoch)."""
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.segments) * self.config.repeats

    def window(self, index: int) -> tuple[int, int, int]:
        """Item ``index`` → (file, first frame, frames) in the file's own sample rate."""
        cfg = self.config
        i, k = self.segments[index % len(self.segments)]
        info = self.info[i]
        length = min(info.frames, round(cfg.seconds * info.rate))
        last, hop = info.frames - length, round(self.hop * info.rate)  # the latest start; the hop in frames
        start = min(k * hop, last)
        if self.split == "train" and cfg.jitter and k < self.count(info) - 1:
            start = min(start + int(item_rng(self.seed, index).integers(hop)), last)
        return i, start, length

    def __getitem__(self, index: int) -> Sample:
        cfg = self.config
        i, start, length = self.window(index)
        wave = read_audio(self.files.files[i], self.info[i], start=start, frames=length, rate=cfg.rate)
        if self.split == "train" and cfg.roll_mag:
            rng = item_rng(self.seed, index, 1)
            wave = torch.roll(wave, int(rng.integers(len(wave)))) * float(rng.beta(10, 10) + 0.5)
        return Sample(input=wave, source=self.sources[i], label=self.labels[i], meta={"rate": cfg.rate})
