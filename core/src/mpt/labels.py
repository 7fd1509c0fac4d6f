"""Class labels from a ``path,label`` CSV manifest instead of the data's own labels (``--labels``).

:func:`read_manifest` parses the file; :func:`apply_manifest` gives :class:`~mpt.features.Features`
the manifest's labels, matching each sample's ``source`` by path, by path relative to the data
folder, or by file name (a ``FILE#PART`` source also matches its ``FILE``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from os import PathLike
from pathlib import Path

import numpy as np

from mpt.errors import DataError
from mpt.features import Features
from mpt.files import label_key

INDEX_SUFFIX = re.compile(r"#[^#/\\]+$")  # "FILE#PART": a part of a file (Sample.source)
_HEADER_PATH = ("path", "file", "filename", "source")
_HEADER_LABEL = ("label", "class", "target", "y")


def read_manifest(path: str | PathLike[str]) -> dict[str, str]:
    """``path,label`` rows of a CSV file (a ``path,label`` header row is optional; blank lines and
    lines starting with ``#`` are skipped) → ``{path: label}``. A malformed row or a path listed
    twice with different labels is a DataError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "labels file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the labels file ({exc})") from None
    out: dict[str, str] = {}
    first = True
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if first and len(cells) >= 2 and cells[0].lower() in _HEADER_PATH and cells[1].lower() in _HEADER_LABEL:
            first = False
            continue
        first = False
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise DataError(path, f"line {line_no}: expected two columns 'path,label', got {row!r}")
        key, label = cells
        if out.get(key, label) != label:
            raise DataError(path, f"line {line_no}: {key} is listed twice, as '{out[key]}' and '{label}'")
        out[key] = label
    if not out:
        raise DataError(path, "no 'path,label' rows in the labels file")
    return out


class _Manifest:
    """Lookup of a source in a manifest: exact path, path relative to the data root, resolved path,
    then file name (a source's ``#index`` suffix may be dropped at each step)."""

    def __init__(self, entries: dict[str, str], path: Path) -> None:
        self.path = path
        self.exact: dict[str, str] = {}
        self.resolved: dict[str, str] = {}
        self.names: dict[str, set[str]] = {}
        for key, label in entries.items():
            norm = os.path.normpath(key)
            self.exact[norm] = label
            self.resolved[_resolve(norm)] = label
            self.names.setdefault(Path(norm).name, set()).add(label)

    def label(self, source: str, root: Path | None) -> str:
        candidates = [source]
        base = INDEX_SUFFIX.sub("", source)
        if base != source:
            candidates.append(base)
        for c in candidates:
            norm = os.path.normpath(c)
            if norm in self.exact:
                return self.exact[norm]
            if root is not None:
                try:
                    rel = os.path.normpath(Path(c).resolve().relative_to(root))
                except ValueError:
                    rel = ""
                if rel in self.exact:
                    return self.exact[rel]
            resolved = _resolve(norm)
            if resolved in self.resolved:
                return self.resolved[resolved]
        for c in candidates:
            found = self.names.get(Path(c).name)
            if found is None:
                continue
            if len(found) > 1:
                raise DataError(self.path, f"{source} matches the file name {Path(c).name}, listed with several "
                                           f"labels ({', '.join(sorted(found))}); list it by its path")
            return next(iter(found))
        raise DataError(self.path, f"no label for {source} (listed neither by its path, its path relative to the "
                                   "data folder, nor its file name)")


def _resolve(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return path


def apply_manifest(features: Features, manifest: str | PathLike[str],
                   data_root: str | PathLike[str] | None = None) -> Features:
    """``features`` with labels from the CSV ``manifest`` (see :func:`read_manifest`) instead of the data's.

    Each sample's source is matched by exact path, by path relative to ``data_root`` (a file's
    parent folder when ``data_root`` is a file), or by file name, ignoring a ``#index`` suffix when
    the full source is not listed. Classes are all the manifest's labels, sorted (numbers in
    numeric order), so the same manifest gives the same class indices on every dataset. A source
    missing from the manifest is a DataError naming it and the manifest.
    """
    manifest = Path(manifest)
    entries = read_manifest(manifest)
    lookup = _Manifest(entries, manifest)
    root = None
    if data_root is not None:
        root = Path(data_root).resolve()
        if root.is_file():
            root = root.parent
    classes = sorted(set(entries.values()), key=label_key)
    index = {c: i for i, c in enumerate(classes)}
    cache: dict[str, int] = {}
    labels = []
    for s in features.sources:
        if s not in cache:
            cache[s] = index[lookup.label(s, root)]
        labels.append(cache[s])
    return dataclasses.replace(features, labels=np.asarray(labels, dtype=np.int64), classes=classes,
                               unlabelled=0)


