"""Readers: time-series files → :class:`SeriesFile`, a list of ``float32 [C, T]`` series (channels first).

Formats and their rules (every failure is a :class:`mpt.errors.DataError` naming the file and the
column, line, key or series at fault):

- ``.csv``: one series per file, read with the stdlib ``csv`` module. A header row is required; a
  column per channel, a row per time step. Empty cells and NaN/NA/N/A/null/? (any case) are missing
  values (NaN). The time column — ``time_column``, else the first column named time, timestamp,
  date, datetime or ds (any case) — is not a channel and is not parsed: rows stay in file order.
- ``.parquet``: the same, through pyarrow (imported when needed); nulls are missing values, and a
  channel column must hold numbers (integer, float, decimal or bool).
- ``.npy``: ``[T]`` (one channel), ``[C, T]`` (one series, channels first as in aeon/sktime) or
  ``[N, C, T]`` (N series) of integers, floats or bools; never unpickled. Channels ch0, ch1, ….
- ``.npz``: a single array, or ``X`` (or ``x``, ``data``) plus optional class labels ``y`` (or
  ``labels``), one per series; ``X`` as for ``.npy``.
- ``.ts``: the UCR/UEA (sktime) text format: ``#`` comments, @-tags, ``@data``, then one series a
  line: channels separated by ``:``, values by ``,``, ``?`` for a missing value, the class label last
  when ``@classLabel true`` (a ``@targetLabel true`` target is dropped). Series may differ in length,
  the channels of one series may not. Channels dim0, dim1, …. ``@timeStamps true`` is not supported.

``columns`` picks and orders the channels by name (the generated names for the array formats);
``time_column`` applies to CSV and Parquet only. In every format a channel whose values are all
missing (in one series) or that holds Inf is an error; a constant channel is fine.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpt.errors import DataError

SUPPORTED: tuple[str, ...] = (".csv", ".parquet", ".npy", ".npz", ".ts")
TIME_NAMES = ("time", "timestamp", "date", "datetime", "ds")  # auto-detected time column names (any case)
MISSING = ("", "nan", "na", "n/a", "null", "?")  # CSV cells read as missing values (lower-cased)
_HINT = "choose the channels with data.columns or name the time column with data.time_column"
_TS_BOOLS = ("@timestamps", "@missing", "@univariate", "@equallength", "@classlabel", "@targetlabel")
_TS_INTS = ("@dimensions", "@dimension", "@serieslength")


@dataclass
class SeriesFile:
    """What one file holds."""

    series: list[np.ndarray]  # each float32 [C, T_i], channels first; NaN = missing value
    channels: list[str]  # the C channel names
    labels: list[str] | None  # one class label per series (.ts with @classLabel true, .npz with y), else None


def read_series(path: str | Path, columns: Sequence[str] | None = None,
                time_column: str | None = None) -> SeriesFile:
    """The series of one file, each ``float32 [C, T_i]``. ``columns`` (None or empty: all) picks and
    orders the channels by name; ``time_column`` names the CSV/Parquet time column (else detected)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise DataError(path, f"unsupported extension '{path.suffix}'; supported: {', '.join(SUPPORTED)}")
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes, no series)")
    if ext == ".csv":
        return _read_csv(path, columns, time_column)
    if ext == ".parquet":
        return _read_parquet(path, columns, time_column)
    if ext == ".ts":
        return _read_ts(path, columns)
    return _read_numpy(path, columns)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:30])
    return shown + (f" … ({len(names)} in all)" if len(names) > 30 else "")


def _select(path: Path, header: list[str], columns: Sequence[str] | None, time_column: str | None) -> list[int]:
    """Indices into ``header`` of the channels, in output order."""
    dup = next((h for h, k in Counter(header).items() if k > 1), None)
    if dup is not None:
        raise DataError(path, f"column '{dup}' appears twice in the header; give every column its own name")
    if time_column is not None and time_column not in header:
        raise DataError(path, f"no time column '{time_column}' (data.time_column); columns: {_names(header)}")
    if columns:
        unknown = [c for c in columns if c not in header]
        if unknown:
            raise DataError(path, f"no column {_names(unknown)} (data.columns); available: {_names(header)}")
        if time_column is not None and time_column in columns:
            raise DataError(path, f"column '{time_column}' is both data.time_column and in data.columns")
        return [header.index(c) for c in columns]
    time = time_column or next((h for h in header if h.lower() in TIME_NAMES), None)
    picked = [j for j, h in enumerate(header) if h != time]
    if not picked:
        raise DataError(path, f"no channel columns besides the time column '{time}'")
    return picked


def _check(path: Path, x: np.ndarray, channels: list[str], first: int = 0, multi: bool = False) -> None:
    """Raise for an empty series, an all-missing channel or Inf values in ``x`` ``float32 [N, C, T]``
    (series ``first`` … ``first + N - 1`` of the file; named only when the file has ``multi``-ple)."""
    if x.shape[0] == 0:
        raise DataError(path, "no series in this file")
    if x.shape[1] == 0:
        raise DataError(path, "no channels in this file")
    if x.shape[2] == 0:
        raise DataError(path, f"zero-length series (shape {tuple(x.shape[1:])})")
    for bad in (np.isnan(x).all(axis=2), np.isinf(x).sum(axis=2)):  # [N, C]
        if bad.any():
            n, c = (int(i) for i in np.argwhere(bad)[0])
            where = f" of series {first + n}" if multi else ""
            what = ("all values missing" if bad.dtype == bool else
                    f"{int(bad[n, c])} Inf values (numbers too large for float32 become Inf); fix or drop them")
            raise DataError(path, f"channel '{channels[c]}'{where}: {what}")


def _float32(values: object) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become Inf, reported by _check
        return np.ascontiguousarray(values, dtype=np.float32)


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (undecodable byte at offset {exc.start}); save it as UTF-8") from None


def _read_csv(path: Path, columns: Sequence[str] | None, time_column: str | None) -> SeriesFile:
    reader = csv.reader(io.StringIO(_text(path), newline=""), strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []  # the file line each row ends on
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError(path, "empty CSV: line 1 must be a header row naming the columns")
        header = [h.strip() or f"column{j + 1}" for j, h in enumerate(header)]
        if all(_is_number(h) for h in header):
            raise DataError(path, "line 1 holds numbers, not column names; add a header row")
        for row in reader:
            if not row:
                continue  # blank line
            if len(row) != len(header):
                raise DataError(path, f"line {reader.line_num}: {len(row)} fields, but the header has "
                                      f"{len(header)}; every row needs one value per column")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(path, f"line {reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(path, "the CSV has a header but no data rows")
    picked = _select(path, header, columns, time_column)
    data = np.empty((len(picked), len(rows)), dtype=np.float64)
    for k, j in enumerate(picked):
        for r, row in enumerate(rows):
            cell = row[j].strip()
            try:
                data[k, r] = math.nan if cell.lower() in MISSING else float(cell)
            except ValueError:
                raise DataError(path, f"column '{header[j]}', row {r + 1} (line {lines[r]}): '{cell[:40]}' is "
                                      f"not a number; {_HINT}") from None
    channels = [header[j] for j in picked]
    x = _float32(data)
    _check(path, x[None], channels)
    return SeriesFile([x], channels, None)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_parquet(path: Path, columns: Sequence[str] | None, time_column: str | None) -> SeriesFile:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(path, f"reading .parquet needs pyarrow ({exc}): pip install pyarrow") from None
    try:
        header = [h for h in pq.read_schema(path).names if not h.startswith("__index_level_")]  # pandas' index
        picked = [header[j] for j in _select(path, header, columns, time_column)]
        table = pq.read_table(path, columns=picked)
        data = []
        for name in picked:
            col = table.column(name)
            kind = col.type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                    or pa.types.is_decimal(kind)):
                raise DataError(path, f"column '{name}' holds {kind}, not numbers; {_HINT}")
            data.append(col.cast(pa.float64()).fill_null(math.nan).to_numpy())
    except DataError:
        raise
    except Exception as exc:  # corrupt or truncated file, a failed cast …
        raise DataError(path, f"cannot read as Parquet ({type(exc).__name__}: {exc})") from None
    if table.num_rows == 0:
        raise DataError(path, "the Parquet file has no rows")
    x = _float32(np.stack(data))
    _check(path, x[None], picked)
    return SeriesFile([x], picked, None)


def _read_numpy(path: Path, columns: Sequence[str] | None) -> SeriesFile:
    labels: list[str] | None = None
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.files)
                if not keys:
                    raise DataError(path, "empty .npz archive (no arrays)")
                key = next((k for k in ("X", "x", "data") if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(path, f"{len(keys)} arrays ({_names(keys)}); name the series 'X' "
                                          "(and the labels, if any, 'y')")
                ykey = next((k for k in ("y", "labels") if k in keys and k != key), None)
                x = loaded[key]
                y = loaded[ykey] if ykey is not None else None
        else:
            key, x, y = "", loaded, None
    except DataError:
        raise
    except Exception as exc:  # truncated or corrupt file, pickled objects, a bad zip …
        raise DataError(path, f"cannot read as NumPy data ({type(exc).__name__}: {exc})") from None
    what = f"array '{key}'" if key else "the array"
    if x.dtype.kind not in "biuf":
        raise DataError(path, f"{what} has dtype {x.dtype}; expected integers, floats or bools")
    if x.ndim not in (1, 2, 3):
        raise DataError(path, f"{what} has shape {x.shape}; expected [T], [C, T] or [N, C, T] (channels first)")
    x = x.reshape((1,) * (3 - x.ndim) + x.shape)
    if y is not None:
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(path, f"labels '{ykey}' have shape {y.shape}; expected one per series, ({len(x)},)")
        labels = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in y.tolist()]
    names = [f"ch{c}" for c in range(x.shape[1])]
    picked = _select(path, names, columns, None)
    x = _float32(x[:, picked, :])
    channels = [names[c] for c in picked]
    _check(path, x, channels, multi=len(x) > 1)
    return SeriesFile(list(x), channels, labels)


def _read_ts(path: Path, columns: Sequence[str] | None) -> SeriesFile:
    lines = _text(path).splitlines()
    tags: dict[str, list[str]] = {}
    start = None
    for n, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        tag = words[0].lower()
        if tag == "@data":
            start = n
            break
        bad = ("unknown tag" if tag not in _TS_BOOLS + _TS_INTS + ("@problemname",) else
               "missing its value" if len(words) < 2 else
               "expects true or false" if tag in _TS_BOOLS and words[1].lower() not in ("true", "false") else
               "expects a positive whole number" if tag in _TS_INTS and not (words[1].isdigit() and int(words[1]))
               else "")
        if not bad and tag == "@classlabel" and (words[1].lower() == "true") != (len(words) > 2):
            bad = "lists class labels after 'true', and only then"
        if bad:
            raise DataError(path, f"line {n}: malformed .ts header: '{line.strip()[:60]}' ({words[0]} {bad})")
        tags[tag] = words[1:]
    if start is None:
        raise DataError(path, f"malformed .ts header: no @data line (read all {len(lines)} lines)")
    if tags.get("@timestamps", ["false"])[0].lower() == "true":
        raise DataError(path, "timestamped .ts files (@timeStamps true) are not supported; write the values "
                              "without timestamps")
    declared = tags.get("@classlabel", ["false"])
    has_label = declared[0].lower() == "true"
    has_target = tags.get("@targetlabel", ["false"])[0].lower() == "true"
    dims = tags.get("@dimensions", tags.get("@dimension"))
    n_dims = int(dims[0]) if dims else None
    series: list[np.ndarray] = []
    labels: list[str] = []
    for n, line in enumerate(lines[start:], start + 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.strip().split(":")
        if has_label:
            label = fields.pop().strip()
            if label not in declared[1:]:
                raise DataError(path, f"line {n}: class label '{label[:40]}' is not declared in @classLabel "
                                      f"({' '.join(declared[1:])[:200]})")
            labels.append(label)
        if has_target:
            fields = fields[:-1]
        if not fields:
            raise DataError(path, f"line {n}: no values, only '{line.strip()[:40]}'")
        n_dims = n_dims or len(fields)
        if len(fields) != n_dims:
            raise DataError(path, f"line {n}: {len(fields)} channels, expected {n_dims} (from "
                                  f"{'@dimensions' if dims else 'the first series'})")
        values = []
        for c, field in enumerate(fields):
            try:
                values.append([math.nan if v.strip() == "?" else float(v) for v in field.split(",")])
            except ValueError:
                bad = next(v for v in field.split(",") if v.strip() != "?" and not _is_number(v))
                raise DataError(path, f"line {n}, channel dim{c}: '{bad.strip()[:40]}' is not a number "
                                      "(missing values are '?')") from None
        if len({len(v) for v in values}) > 1:
            raise DataError(path, f"line {n}: the channels of this series have different lengths "
                                  f"({', '.join(str(len(v)) for v in values[:12])}); they must be equal")
        series.append(_float32(values))
    if not series:
        raise DataError(path, "no series after @data")
    names = [f"dim{c}" for c in range(len(series[0]))]
    picked = _select(path, names, columns, None)
    channels = [names[c] for c in picked]
    series = [x[picked] for x in series]
    for i, x in enumerate(series):
        _check(path, x[None], channels, i, multi=len(series) > 1)
    return SeriesFile(series, channels, labels if has_label else None)
