"""Time-series dataset: every series of every file, cut into windows of ``data.context`` steps.

Files are checked once at construction (each read, its series lengths, channels and labels kept,
the values dropped) and read again when a window needs them (:class:`mpt.files.LazyFiles`, an LRU
cache of the last files read)."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mpt.contract import Sample
from mpt.errors import DataError
from mpt.files import LazyFiles, find_files, label_key, window_starts
from mpt_timeseries.config import TimeSeriesDataConfig
from mpt_timeseries.io import SUPPORTED, SeriesFile, read_series

SPLIT_SUFFIX = re.compile(r"_(train|test)$", re.IGNORECASE)


@dataclass
class Window:
    """Series ``series`` (index into the dataset's series), time steps ``[start, start + context)``."""

    series: int
    start: int


@dataclass
class FileInfo:
    """What the construction-time check of a file keeps: no values, only what indexing needs."""

    lengths: list[int]  # time steps of each series of the file
    channels: list[str]
    labels: list[str] | None  # one class label per series, or None


def split_files(files: list[Path], split: str) -> list[Path]:
    """UCR/UEA layout: when names end in ``_TRAIN``/``_TEST``, the ``_TRAIN`` files for the "train"
    and "probe" splits and the ``_TEST`` files for "test"; otherwise every file."""
    tagged = [f for f in files if SPLIT_SUFFIX.search(f.stem)]
    if not tagged:
        return files
    want = "test" if split == "test" else "train"
    return [f for f in tagged if SPLIT_SUFFIX.search(f.stem).group(1).lower() == want]  # type: ignore[union-attr]


class TimeSeriesDataset(Dataset):
    """Windows ``Sample(input=float32 [C, context], source="file#series", label=class index or None)``.

    All series must share one channel count (the first usable file's). Series shorter than
    ``data.min_length`` are skipped and counted in ``short``. ``classes`` lists the class labels
    (sorted) when the files carry them (UCR/UEA ``.ts``, ``.npz`` with ``y``). ``files`` is the
    :class:`~mpt.files.LazyFiles` of the usable files: each was read once at construction for its
    series lengths (``files.info``), and is read again, on access, for the values.
    """

    def __init__(self, path: str | Path, split: str, config: TimeSeriesDataConfig, *,
                 skip_bad_files: bool = False, progress: bool = True) -> None:
        self.split, self.config = split, config
        files = find_files(path, SUPPORTED, kind="time-series")
        files = split_files(files, split) if Path(path).is_dir() else files  # a named file is used as is
        if not files:
            raise DataError(path, f"no time-series file of the '{split}' split (files ending in _TRAIN/_TEST)")
        self.channels: list[str] | None = None
        self.files: LazyFiles[SeriesFile] = LazyFiles(path, files, self._read, check=self._check,
                                                      skip_bad_files=skip_bad_files, kind="time-series",
                                                      progress=progress)
        self.skipped = self.files.skipped
        self.series: list[tuple[int, int, int]] = []  # (file index, series in the file, length)
        self.sources: list[str] = []
        raw_labels: list[str | None] = []
        self.short: list[str] = []
        for k, (f, info) in enumerate(zip(self.files.files, self.files.info, strict=True)):
            assert isinstance(info, FileInfo)
            for i, length in enumerate(info.lengths):
                name = f"{f}#{i}" if len(info.lengths) > 1 else str(f)
                if length < config.min_length:
                    self.short.append(f"{name} ({length} steps)")
                    continue
                self.series.append((k, i, length))
                self.sources.append(name)
                raw_labels.append(info.labels[i] if info.labels is not None else None)
        if self.short:
            warnings.warn(f"skipped {len(self.short)} series shorter than data.min_length={config.min_length} "
                          f"(e.g. {', '.join(self.short[:3])})", stacklevel=2)
        if not self.series:
            raise DataError(path, f"every series is shorter than data.min_length={config.min_length}")
        known = sorted({lb for lb in raw_labels if lb is not None}, key=label_key)
        self.classes: list[str] = known
        self.labels = [known.index(lb) if lb is not None else None for lb in raw_labels]
        stride = config.stride or config.context
        self.windows = [Window(i, s) for i, (_, _, length) in enumerate(self.series)
                        for s in window_starts(length, config.context, stride)]
        self._lengths = {f: info.lengths
                         for f, info in zip(self.files.files, self.files.info, strict=True)}

    def _check(self, f: Path) -> FileInfo:
        """Read ``f`` once: a DataError for a bad file or another channel count than the first usable
        file's; its series lengths, channels and labels (the values are not kept)."""
        table = read_series(f, self.config.columns, self.config.time_column)
        if self.channels is None:
            self.channels, self._first = table.channels, f
        elif len(table.channels) != len(self.channels):
            raise DataError(f, f"{len(table.channels)} channels ({', '.join(table.channels[:8])}), but "
                               f"{self._first} has {len(self.channels)} ({', '.join(self.channels[:8])}); "
                               "every file must have the same channels (choose them with data.columns)")
        return FileInfo([int(x.shape[1]) for x in table.series], table.channels, table.labels)

    def _read(self, f: Path) -> SeriesFile:
        """The series of ``f``, read when a window needs them; a DataError if the file changed since
        the dataset was opened (other series lengths)."""
        table = read_series(f, self.config.columns, self.config.time_column)
        lengths = [int(x.shape[1]) for x in table.series]
        if lengths != self._lengths[f]:
            raise DataError(f, f"the file changed since the dataset was opened: {len(lengths)} series of "
                               f"{lengths[:4]} steps, it had {len(self._lengths[f])} of {self._lengths[f][:4]}; "
                               "open the dataset again")
        return table

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> Sample:
        w = self.windows[index]
        context = self.config.context
        k, i, _ = self.series[w.series]
        x = self.files[k].series[i][:, w.start : w.start + context]
        if x.shape[1] < context:  # a short series: pad the end with missing values
            x = np.pad(x, ((0, 0), (0, context - x.shape[1])), constant_values=np.nan)
        return Sample(input=torch.from_numpy(np.array(x, dtype=np.float32)),  # a copy: never the cached file
                      source=self.sources[w.series], label=self.labels[w.series])
