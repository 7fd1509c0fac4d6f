"""Data files: finding them under a path and reading them all, skipping bad ones on request.

Every modality reads files the same way — a file or a folder searched recursively, one reader
per file, a :class:`~mpt.errors.DataError` naming the file for anything unusable — so that logic
lives here and a plugin supplies only its extensions and its reader.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

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


def read_all(path: str | Path, files: Sequence[Path], read: Callable[[Path], T], *, skip_bad_files: bool,
             kind: str = "data", progress: bool = True) -> tuple[list[T], list[Path], list[tuple[str, str]]]:
    """``read`` every file (progress bar on stderr) → ``(items, their files, skipped)``.

    A file whose ``read`` raises DataError stops everything, or with ``skip_bad_files`` is
    recorded in ``skipped`` as ``(file, reason)``. No usable file at all is always an error.
    """
    items: list[T] = []
    used: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for f in tqdm(files, desc=f"reading {Path(path).name or path}", unit="file", file=sys.stderr,
                  disable=not progress, leave=False):
        try:
            items.append(read(f))
        except DataError as exc:
            if not skip_bad_files:
                raise
            skipped.append((str(f), exc.reason))
            continue
        used.append(f)
    if not items:
        raise DataError(path, f"no usable {kind} file ({len(skipped)} skipped: "
                              + "; ".join(f"{p}: {r}" for p, r in skipped[:3]) + ")")
    return items, used, skipped


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
