"""Readers: every format on files written here and on the shared UCR/UEA samples, every bad input
(a DataError naming the file and what is wrong), and seeded fuzzing of all formats."""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from mpt.errors import DataError
from mpt_timeseries.io import SUPPORTED, TIME_NAMES, SeriesFile, read_series

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "timeseries"


def shared(name: str) -> Path:
    if not (SHARED / name).is_file():
        pytest.skip(f"needs the shared sample data {SHARED / name} (absent)")
    return SHARED / name


def expect_error(path: Path, *words: str, **kwargs: object) -> DataError:
    with pytest.raises(DataError) as info:
        read_series(path, **kwargs)  # type: ignore[arg-type]
    assert info.value.path == str(path) and str(path) in str(info.value)
    for w in words:
        assert w in info.value.reason, (w, info.value.reason)
    return info.value


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def ts(tmp_path: Path, header: str, *data: str, name: str = "a.ts") -> Path:
    return write(tmp_path / name, header.strip() + "\n@data\n" + "".join(d + "\n" for d in data))


def test_public_api() -> None:
    assert SUPPORTED == (".csv", ".parquet", ".npy", ".npz", ".ts")
    assert TIME_NAMES == ("time", "timestamp", "date", "datetime", "ds")
    assert [f.name for f in dataclasses.fields(SeriesFile)] == ["series", "channels", "labels"]


# ---- shared UCR/UEA and Daphnet files ---------------------------------------------------------

@pytest.mark.shared_data
def test_basic_motions() -> None:
    got = read_series(shared("BasicMotions/BasicMotions_TRAIN.ts"))
    assert len(got.series) == 40 and all(x.shape == (6, 100) and x.dtype == np.float32 for x in got.series)
    assert got.channels == [f"dim{c}" for c in range(6)]
    assert got.labels is not None and sorted(set(got.labels)) == ["Badminton", "Running", "Standing", "Walking"]
    assert all(got.labels.count(lb) == 10 for lb in set(got.labels))
    first = got.series[0]
    assert got.labels[0] == "Standing"
    assert first[0, :4].tolist() == np.array([0.079106, 0.079106, -0.903497, 1.116125], np.float32).tolist()
    assert first[1, :3].tolist() == np.array([0.394032, 0.394032, -3.666397], np.float32).tolist()
    assert first[5, :2].tolist() == np.array([0.633883, 0.633883], np.float32).tolist()
    picked = read_series(shared("BasicMotions/BasicMotions_TRAIN.ts"), columns=["dim5", "dim0"])
    assert picked.channels == ["dim5", "dim0"] and np.array_equal(picked.series[0], first[[5, 0]])


@pytest.mark.shared_data
def test_japanese_vowels_variable_length() -> None:
    got = read_series(shared("JapaneseVowels/JapaneseVowels_TRAIN.ts"))
    lengths = [x.shape[1] for x in got.series]
    assert len(got.series) == 270 and all(x.shape[0] == 12 for x in got.series)
    assert min(lengths) == 7 and max(lengths) == 26 and len(set(lengths)) == 19
    assert got.labels is not None and len(set(got.labels)) == 9 and len(got.labels) == 270
    test = read_series(shared("JapaneseVowels/JapaneseVowels_TEST.ts"))
    assert len(test.series) == 370 and {x.shape[1] for x in test.series} >= {7, 29}
    assert max(x.shape[1] for x in test.series) == 29


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "n", "shape", "n_labels"), [
    ("ArrowHead/ArrowHead_TRAIN.ts", 36, (1, 251), 3),
    ("ItalyPowerDemand/ItalyPowerDemand_TRAIN.ts", 67, (1, 24), 2),
])
def test_univariate_ts(name: str, n: int, shape: tuple[int, int], n_labels: int) -> None:
    got = read_series(shared(name))
    assert len(got.series) == n and all(x.shape == shape for x in got.series)
    assert got.labels is not None and len(set(got.labels)) == n_labels and got.channels == ["dim0"]


@pytest.mark.shared_data
def test_daphnet_csv() -> None:
    path = shared("Daphnet_S06R02E0.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    got = read_series(path)  # "timestamp" is the time column, found by name
    assert len(got.series) == 1 and got.series[0].shape == (10, 7040) and got.labels is None
    assert "timestamp" not in got.channels and got.channels[-1] == "is_anomaly" and len(got.channels) == 10
    picked = read_series(path, columns=["ankle_vert", "trunk_vert"])
    assert picked.channels == ["ankle_vert", "trunk_vert"] and picked.series[0].shape == (2, 7040)
    want = np.array([[float(r["ankle_vert"]) for r in rows], [float(r["trunk_vert"]) for r in rows]], np.float32)
    assert np.array_equal(picked.series[0], want)
    assert np.array_equal(got.series[0][[1, 7]], want)


# ---- CSV --------------------------------------------------------------------------------------

def test_csv_missing_cells_are_nan(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "Date,a,b\nmon,1,\ntue,NA,2.5\nwed, n/a ,null\nthu,?,NaN\nfri,-3e2,N/A\n\n")
    got = read_series(path)
    x = got.series[0]
    assert got.channels == ["a", "b"] and x.shape == (2, 5) and x.dtype == np.float32 and got.labels is None
    assert np.isnan(x).tolist() == [[False, True, True, True, False], [True, False, True, True, True]]
    assert x[0, 0] == 1 and x[0, 4] == -300 and x[1, 1] == 2.5


def test_csv_text_column_names_column_and_row(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a,when,b\n1,2,2\n3,4,5\n6,monday,7\n")
    expect_error(path, "'when'", "row 3", "line 4", "'monday'", "data.columns", "data.time_column")
    got = read_series(path, time_column="when")  # naming it as the time column fixes it
    assert got.channels == ["a", "b"] and got.series[0].tolist() == [[1, 3, 6], [2, 5, 7]]
    assert read_series(path, columns=["b"]).series[0].tolist() == [[2, 5, 7]]


def test_csv_all_missing_and_inf_and_constant(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "a.csv", "a,gone\n1,\n2,NA\n"), "'gone'", "all values missing")
    expect_error(write(tmp_path / "b.csv", "a,b\n1,inf\n2,-inf\n3,1e39\n"), "'b'", "3 Inf")
    got = read_series(write(tmp_path / "c.csv", "a,flat\n1,5\n2,5\n3,5\n"))
    assert got.series[0][1].tolist() == [5, 5, 5]


def test_csv_wrong_field_count_gives_line(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "a.csv", "a,b\n1,2\n3,4\n5\n"), "line 4", "1 fields", "has 2")
    expect_error(write(tmp_path / "b.csv", "a,b\n1,2\n3,4,5\n"), "line 3")


def test_csv_time_column(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "t,TimeStamp,v\n9,x,1\n8,y,2\n")
    got = read_series(path)  # 'TimeStamp' found regardless of case; 't' is data
    assert got.channels == ["t", "v"] and got.series[0].tolist() == [[9, 8], [1, 2]]
    got = read_series(write(tmp_path / "b.csv", "t,v\n2024-01-02,1\n2024-01-01,2\n"), time_column="t")
    assert got.channels == ["v"] and got.series[0].tolist() == [[1, 2]]  # file order, time not parsed
    expect_error(path, "'clock'", "'t', 'TimeStamp', 'v'", time_column="clock")
    expect_error(path, "both", time_column="t", columns=["t", "v"])
    expect_error(write(tmp_path / "c.csv", "time\n1\n2\n"), "no channel columns")


def test_csv_columns_order_and_unknown(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a,b,c\n1,2,3\n4,5,6\n")
    got = read_series(path, columns=["c", "a"])
    assert got.channels == ["c", "a"] and got.series[0].tolist() == [[3, 6], [1, 4]]
    expect_error(path, "'z'", "available: 'a', 'b', 'c'", columns=["a", "z"])


def test_csv_structure_errors(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "a.csv", "a,b\n"), "no data rows")
    expect_error(write(tmp_path / "b.csv", "\n\n"), "header")
    expect_error(write(tmp_path / "c.csv", "1,2\n3,4\n"), "add a header row")
    expect_error(write(tmp_path / "d.csv", "a,a\n1,2\n"), "'a' appears twice")
    expect_error(write(tmp_path / "e.csv", 'a,b\n1,"2\n'), "line")  # unterminated quote
    (tmp_path / "f.csv").write_bytes(b"a,b\n1,\xff\n")
    expect_error(tmp_path / "f.csv", "UTF-8")
    (tmp_path / "g.csv").write_bytes("\ufeffa,b\r\n1,2\r\n".encode())  # Excel's BOM and CRLF
    assert read_series(tmp_path / "g.csv").channels == ["a", "b"]


# ---- Parquet ----------------------------------------------------------------------------------

def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"timestamp": pa.array([1, 2, 3], pa.timestamp("s")), "a": pa.array([1, None, 3], pa.int64()),
                      "b": pa.array([0.5, 1.5, None]), "flag": pa.array([True, False, True])})
    pq.write_table(table, tmp_path / "a.parquet")
    got = read_series(tmp_path / "a.parquet")
    x = got.series[0]
    assert got.channels == ["a", "b", "flag"] and x.dtype == np.float32 and x.shape == (3, 3)
    assert np.isnan(x).tolist() == [[False, True, False], [False, False, True], [False, False, False]]
    assert x[0, 2] == 3 and x[1, 1] == 1.5 and x[2].tolist() == [1, 0, 1]
    assert read_series(tmp_path / "a.parquet", columns=["b", "a"]).channels == ["b", "a"]
    expect_error(tmp_path / "a.parquet", "'zz'", "'a', 'b', 'flag'", columns=["zz"])

    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), tmp_path / "s.parquet")
    expect_error(tmp_path / "s.parquet", "'name'", "string", "data.columns")
    assert read_series(tmp_path / "s.parquet", columns=["a"]).series[0].tolist() == [[1, 2]]
    pq.write_table(pa.table({"a": pa.array([None, None], pa.float64()), "b": [1, 2]}), tmp_path / "n.parquet")
    expect_error(tmp_path / "n.parquet", "'a'", "all values missing")
    pq.write_table(pa.table({"a": pa.array([], pa.float64())}), tmp_path / "e.parquet")
    expect_error(tmp_path / "e.parquet", "no rows")

    data = (tmp_path / "a.parquet").read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 10):
        (tmp_path / "t.parquet").write_bytes(data[:cut])
        expect_error(tmp_path / "t.parquet", "Parquet")


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    expect_error(write(tmp_path / "a.parquet", "PAR1"), "pip install pyarrow")


# ---- NumPy ------------------------------------------------------------------------------------

def test_npy_shapes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, arr, shapes in (("one", rng.normal(size=7), [(1, 7)]), ("two", rng.normal(size=(3, 9)), [(3, 9)]),
                              ("three", rng.integers(0, 9, size=(4, 2, 5)), [(2, 5)] * 4)):
        np.save(tmp_path / f"{name}.npy", arr)
        got = read_series(tmp_path / f"{name}.npy")
        assert [x.shape for x in got.series] == shapes and all(x.dtype == np.float32 for x in got.series)
        assert np.allclose(np.stack(got.series).reshape(arr.shape), arr) and got.labels is None
        assert got.channels == [f"ch{c}" for c in range(shapes[0][0])]
    got = read_series(tmp_path / "three.npy", columns=["ch1"])
    assert got.channels == ["ch1"] and got.series[2].shape == (1, 5)
    expect_error(tmp_path / "three.npy", "'ch2'", "'ch0', 'ch1'", columns=["ch2"])
    np.save(tmp_path / "four.npy", np.zeros((1, 2, 3, 4)))
    expect_error(tmp_path / "four.npy", "(1, 2, 3, 4)", "[N, C, T]")
    np.save(tmp_path / "empty.npy", np.zeros((2, 0)))
    expect_error(tmp_path / "empty.npy", "zero-length")


def test_npy_bad_values_name_series_and_channel(tmp_path: Path) -> None:
    x = np.ones((3, 2, 4))
    x[2, 1] = np.nan
    np.save(tmp_path / "a.npy", x)
    expect_error(tmp_path / "a.npy", "'ch1'", "series 2", "all values missing")
    x[2, 1] = [1, np.inf, -np.inf, 2]
    np.save(tmp_path / "b.npy", x)
    expect_error(tmp_path / "b.npy", "'ch1'", "series 2", "2 Inf")
    np.save(tmp_path / "c.npy", np.array([[1.0, np.nan, 3.0]]))  # some missing values are fine
    assert np.isnan(read_series(tmp_path / "c.npy").series[0]).sum() == 1


def test_npy_object_array_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self) -> tuple:
            return (pathlib.Path.touch, (marker,))

    np.save(tmp_path / "a.npy", np.array([Trap(), Trap()], dtype=object), allow_pickle=True)
    expect_error(tmp_path / "a.npy", "allow_pickle")
    np.savez(tmp_path / "b.npz", X=np.array([Trap()], dtype=object))
    expect_error(tmp_path / "b.npz")
    assert not marker.exists()
    np.save(tmp_path / "c.npy", np.array([1 + 2j, 3j]))
    expect_error(tmp_path / "c.npy", "complex")
    np.save(tmp_path / "d.npy", np.array(["1", "2"]))
    expect_error(tmp_path / "d.npy", "dtype")


def test_npy_truncated(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((4, 100)))
    data = (tmp_path / "a.npy").read_bytes()
    for cut in (5, 60, 200, len(data) - 1):
        (tmp_path / "t.npy").write_bytes(data[:cut])
        expect_error(tmp_path / "t.npy", "cannot read as NumPy data")


def test_npz_labels(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.float64).reshape(3, 2, 4)
    np.savez(tmp_path / "a.npz", X=x, y=np.array([1, 2, 1]), other=np.zeros(2))
    got = read_series(tmp_path / "a.npz")
    assert got.labels == ["1", "2", "1"] and len(got.series) == 3 and np.array_equal(got.series[1], x[1])
    np.savez(tmp_path / "b.npz", data=x, labels=np.array(["cat", "dog", "cat"]))
    assert read_series(tmp_path / "b.npz").labels == ["cat", "dog", "cat"]
    np.savez(tmp_path / "c.npz", anything=x[0])  # a single array, whatever its name
    got = read_series(tmp_path / "c.npz")
    assert got.labels is None and [s.shape for s in got.series] == [(2, 4)]
    np.savez(tmp_path / "d.npz", X=x, y=np.array([1, 2]))
    expect_error(tmp_path / "d.npz", "'y'", "(2,)", "(3,)")
    np.savez(tmp_path / "e.npz", X=x, y=np.zeros((3, 1)))
    expect_error(tmp_path / "e.npz", "'y'", "one per series")
    np.savez(tmp_path / "f.npz", a=x, b=x)
    expect_error(tmp_path / "f.npz", "2 arrays", "'a', 'b'", "'X'")
    np.savez(tmp_path / "g.npz")
    expect_error(tmp_path / "g.npz", "empty .npz")


# ---- .ts --------------------------------------------------------------------------------------

HEAD = "# a comment\n@problemName Toy\n@timeStamps false\n@missing true\n@univariate false\n@dimensions 2\n" \
       "@equalLength false\n@classLabel true a b"


def test_ts_good(tmp_path: Path) -> None:
    path = ts(tmp_path, HEAD, "1,2,3:4,?,6:a", "", "# between", "7,8:9,10:b", name="good.ts")
    got = read_series(path)
    assert got.labels == ["a", "b"] and got.channels == ["dim0", "dim1"]
    assert [x.shape for x in got.series] == [(2, 3), (2, 2)] and all(x.dtype == np.float32 for x in got.series)
    assert np.isnan(got.series[0]).tolist() == [[False] * 3, [False, True, False]]
    assert got.series[0][1, 2] == 6 and got.series[1].tolist() == [[7, 8], [9, 10]]
    got = read_series(ts(tmp_path, "@problemName x\n@classLabel false", "1,2:3,4:5,6", "7:8:9"))
    assert got.labels is None and [x.shape for x in got.series] == [(3, 2), (3, 1)]  # 3 channels from line 1
    assert read_series(path, columns=["dim1"]).series[1].tolist() == [[9, 10]]
    expect_error(path, "'dim7'", "'dim0', 'dim1'", columns=["dim7"])
    got = read_series(ts(tmp_path, "@targetLabel true", "1,2:0.5", "3,4:1.5"))  # regression target dropped
    assert got.labels is None and got.series[1].tolist() == [[3, 4]]


@pytest.mark.parametrize(("header", "words"), [
    ("@problemName x\n@classLabel false\n", ["no @data line"]),
    ("@problemName x\n@colour red", ["line 2", "malformed .ts header", "unknown tag"]),
    ("@problemName x\n@missing perhaps", ["line 2", "malformed .ts header", "true or false"]),
    ("@univariate", ["line 1", "missing its value"]),
    ("@dimensions two", ["line 1", "whole number"]),
    ("@classLabel true", ["line 1", "class labels"]),
])
def test_ts_malformed_header(tmp_path: Path, header: str, words: list[str]) -> None:
    text = header if "no @data" in words[0] else header + "\n@data\n1,2\n"
    expect_error(write(tmp_path / "a.ts", text), *words)


def test_ts_data_errors(tmp_path: Path) -> None:
    expect_error(ts(tmp_path, HEAD, "1,2:3,4:a", "1,2:a"), "line 11", "1 channels, expected 2")
    expect_error(ts(tmp_path, "@classLabel false", "1,2:3,4", "1:2:3"), "line 4", "3 channels, expected 2")
    expect_error(ts(tmp_path, HEAD, "1,2:3,4:c"), "line 10", "'c'", "not declared")
    expect_error(ts(tmp_path, HEAD, "1,2:3,x:a"), "line 10", "dim1", "'x'")
    expect_error(ts(tmp_path, HEAD, "1,2:3,4:a", "1,2,3:4,5:b"), "line 11", "different lengths", "3, 2")
    expect_error(ts(tmp_path, "@timeStamps true", "(0,1),(1,2)"), "timestamped")
    expect_error(ts(tmp_path, HEAD), "no series")
    expect_error(ts(tmp_path, HEAD, "1,2:3,4:a", "?,?:5,6:b"), "'dim0'", "series 1", "all values missing")
    expect_error(ts(tmp_path, HEAD, "1,inf:3,4:a"), "'dim0'", "1 Inf")


def test_common_errors(tmp_path: Path) -> None:
    for ext in SUPPORTED:
        expect_error(write(tmp_path / f"empty{ext}", ""), "empty file")
        expect_error(tmp_path / f"missing{ext}", "no such file")
    expect_error(write(tmp_path / "a.txt", "1,2"), "unsupported extension", ".csv")


# ---- fuzzing ----------------------------------------------------------------------------------

def _valid_files(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    files = [write(tmp_path / "v.csv", "time,a,b\n" + "".join(f"{i},{i * 0.5},{-i}\n" for i in range(30))),
             ts(tmp_path, HEAD, *(f"{i},2,3,{i}:4,?,6,1:{'ab'[i % 2]}" for i in range(20)))]
    np.save(tmp_path / "v.npy", rng.normal(size=(3, 2, 20)))
    np.savez(tmp_path / "v.npz", X=rng.normal(size=(3, 2, 20)), y=np.array(["a", "b", "a"]))
    files += [tmp_path / "v.npy", tmp_path / "v.npz"]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return files
    pq.write_table(pa.table({"a": rng.normal(size=40), "b": pa.array(list(range(39)) + [None])}),
                   tmp_path / "v.parquet")
    return files + [tmp_path / "v.parquet"]


def test_fuzzed_files_read_or_raise_data_error(tmp_path: Path) -> None:
    """Truncated and byte-flipped versions of a valid file of each format either read as float32
    series or fail with a DataError naming the file — never a numpy/pyarrow/ValueError traceback."""
    rng = random.Random(0)
    for source in _valid_files(tmp_path):
        assert isinstance(read_series(source), SeriesFile)  # the unbroken file reads
        clean = source.read_bytes()
        read = errors = 0
        for trial in range(50):
            data = bytearray(clean)
            if trial % 3 != 1:
                del data[rng.randrange(len(data)):]
            if trial % 3 != 0:
                for _ in range(rng.randint(1, 8)):
                    if data:
                        data[rng.randrange(len(data))] = rng.randrange(256)
            path = tmp_path / f"fuzz{source.suffix}"
            path.write_bytes(bytes(data))
            try:
                got = read_series(path)
            except DataError as exc:
                assert exc.path == str(path)
                errors += 1
                continue
            assert isinstance(got, SeriesFile) and got.series and len(got.channels) == got.series[0].shape[0]
            assert all(x.dtype == np.float32 and x.ndim == 2 for x in got.series)
            assert not any(math.isinf(v) for x in got.series for v in x.ravel()[:50].tolist())
            read += 1
        assert errors > 0, source  # the damage is noticed in some trials
