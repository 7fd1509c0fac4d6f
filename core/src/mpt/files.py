"""Data files: finding them under a path, checking them, and opening them when an item is read.

Every modality reads files the same way — a file or a folder searched recursively, one reader
per file, a :class:`~mpt.errors.DataError` naming the file for anything unusable — so that logic
lives here and a plugin supplies only its extensions, a cheap check and its reader.

:class:`LazyFiles` is how a dataset holds its files: the list of paths, each file checked once at
construction by the plugin's ``check`` (a header read, or a streaming read that keeps nothing, so at
most one file is in memory) and opened by ``read`` when an item needs it, with a small LRU cache.
A folder of thousands of large volumes is thus never read into RAM at construction.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from tqdm.auto import tqdm

from mpt.errors import DataError

T = TypeVar("T")


def find_files(path: str | Path, extensions: Sequence[str], kind: str = "data") -> list[Path]:
    """``path`` itself if it is a file, else every file below it whose (lower-cased) suffix is in
    ``extensions``, recursively and sorted. An unsupported file, a missing path or a folder
    without any such file is a DataError that lists the supported extensions."""
    path = Path(path)
    supported = ", ".join(extensions)
    if path.is_file():
        if path.suffix.lower() not in extensions:
            raise DataError(path, f"unsupported extension '{path.suffix}'; supported: {supported}")
        return [path]
    if not path.is_dir():
        raise DataError(path, "no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise DataError(path, f"no {kind} files in this folder (supported: {supported})")
    return files


class LazyFiles(Generic[T]):
    """The usable files of a dataset, opened on access.

    ``check(file)`` (optional) runs once per file at construction and raises DataError for an unusable
    one: it stops everything or, with ``skip_bad_files``, the file is recorded in ``skipped`` as
    ``(file, reason)``; whatever it returns is kept in ``info`` (a length, a shape: what indexing
    needs, never the data). ``lazy[i]`` is ``read(files[i])``, the last ``cache`` results kept (LRU);
    a DataError there names the file. No usable file at all is a DataError on ``path``.
    """

    def __init__(self, path: str | Path, files: Sequence[Path], read: Callable[[Path], T], *,
                 check: Callable[[Path], object] | None = None, skip_bad_files: bool = False,
                 kind: str = "data", cache: int = 64, progress: bool = True) -> None:
        self.read, self.cache_size = read, cache
        self.files: list[Path] = []
        self.info: list[Any] = []
        self.skipped: list[tuple[str, str]] = []
        self._cache: OrderedDict[int, T] = OrderedDict()
        for f in tqdm(files, desc=f"checking {Path(path).name or path}", unit="file", file=sys.stderr,
                      disable=not progress or check is None or len(files) < 2, leave=False):
            try:
                self.info.append(check(f) if check is not None else None)
            except DataError as exc:
                if not skip_bad_files:
                    raise
                self.skipped.append((str(f), exc.reason))
                continue
            self.files.append(f)
        if not self.files:
            raise DataError(path, f"no usable {kind} file ({len(self.skipped)} skipped: "
                                  + "; ".join(f"{p}: {r}" for p, r in self.skipped[:3]) + ")")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> T:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        item = self.read(self.files[index])
        if self.cache_size > 0:
            self._cache[index] = item
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return item

    def __getstate__(self) -> dict[str, object]:  # DataLoader workers start with an empty cache
        return {**self.__dict__, "_cache": OrderedDict()}


def label_key(label: str) -> tuple[int, float | str]:
    """Sort key of class labels: numeric labels in numeric order ("2" before "10"), then the others."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def folder_labels(root: str | Path, files: Sequence[Path]) -> tuple[list[str], list[int | None]]:
    """ImageFolder layout: when every file lies in a subfolder of ``root`` (``root/<class>/…``), the
    first-level folder names (sorted by :func:`label_key`) and each file's class index; otherwise no
    classes."""
    root = Path(root)
    if not root.is_dir():
        return [], [None] * len(files)
    parts = [Path(f).relative_to(root).parts for f in files]
    if any(len(p) < 2 for p in parts):
        return [], [None] * len(files)
    classes = sorted({p[0] for p in parts}, key=label_key)
    return classes, [classes.index(p[0]) for p in parts]


def item_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The random generator of dataset item ``index`` under ``seed`` (a dataset's ``reseed``), one
    independent ``stream`` per kind of draw (e.g. 0: where a window starts, 1: its crop), so an item's
    randomness depends only on (seed, index, stream): any order, any worker, exact resume."""
    state = np.random.SeedSequence([seed % (1 << 64), index, stream]).generate_state(2, np.uint64)
    return np.random.default_rng(state)


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of windows of ``size`` over ``length`` positions: every ``stride``, plus one that ends at
    the end if the stride misses it; a single window at 0 when ``length <= size`` (time-series
    windows, raster chips)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts
