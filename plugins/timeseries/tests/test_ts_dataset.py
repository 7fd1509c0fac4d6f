"""Windows over series, padding of short series, channel checks, splits and labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mpt.contract import Batch, Modality
from mpt.errors import DataError
from mpt.files import window_starts
from mpt_timeseries.config import TimeSeriesDataConfig
from mpt_timeseries.dataset import TimeSeriesDataset, split_files
from mpt_timeseries.modality import TimeSeries


def cfg(**kw) -> TimeSeriesDataConfig:  # noqa: ANN003
    return TimeSeriesDataConfig(**{"context": 100, "min_length": 8, **kw})


def write_csv(path: Path, data: np.ndarray, names: list[str] | None = None) -> Path:
    names = names or [f"c{i}" for i in range(data.shape[0])]
    rows = [",".join(names)] + [",".join("" if np.isnan(v) else repr(float(v)) for v in col) for col in data.T]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_window_starts_cover_the_series_end() -> None:
    assert window_starts(250, 100, 50) == [0, 50, 100, 150]
    assert window_starts(260, 100, 100) == [0, 100, 160]  # a last window ending at the series' end
    assert window_starts(100, 100, 100) == [0]
    assert window_starts(30, 100, 100) == [0]


def test_long_series_become_windows_with_the_right_values(tmp_path: Path) -> None:
    data = np.arange(3 * 260, dtype=np.float32).reshape(3, 260)
    np.save(tmp_path / "a.npy", data)
    ds = TimeSeriesDataset(tmp_path, "train", cfg(stride=100), progress=False)
    assert len(ds) == 3
    starts = [0, 100, 160]
    for i, start in enumerate(starts):
        item = ds[i]
        assert item.input.dtype == torch.float32 and item.input.shape == (3, 100)
        assert torch.equal(item.input, torch.from_numpy(data[:, start : start + 100]))
        assert item.source.endswith("a.npy") and item.label is None


def test_short_series_are_padded_with_missing_values_and_tiny_ones_skipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "short.npy", rng.normal(size=(2, 60)).astype(np.float32))
    np.save(tmp_path / "tiny.npy", rng.normal(size=(2, 5)).astype(np.float32))
    with pytest.warns(UserWarning, match="skipped 1 series shorter than data.min_length=8"):
        ds = TimeSeriesDataset(tmp_path, "train", cfg(), progress=False)
    assert len(ds) == 1 and ds.short and "tiny.npy" in ds.short[0]
    x = ds[0].input
    assert torch.isfinite(x[:, :60]).all() and x[:, 60:].isnan().all()
    np.save(tmp_path / "short.npy", rng.normal(size=(2, 4)).astype(np.float32))
    with pytest.raises(DataError, match="every series is shorter than data.min_length=8"), pytest.warns(UserWarning):
        TimeSeriesDataset(tmp_path, "train", cfg(), progress=False)


def test_inconsistent_channel_counts_name_both_files_or_are_skipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_csv(tmp_path / "a.csv", rng.normal(size=(3, 120)))
    write_csv(tmp_path / "b.csv", rng.normal(size=(2, 120)))
    with pytest.raises(DataError, match=r"b\.csv.*2 channels.*a\.csv has 3") as info:
        TimeSeriesDataset(tmp_path, "train", cfg(), progress=False)
    assert "data.columns" in str(info.value)
    ds = TimeSeriesDataset(tmp_path, "train", cfg(), skip_bad_files=True, progress=False)
    assert len(ds) == 2 and len(ds.skipped) == 1 and ds.skipped[0][0].endswith("b.csv")
    # choosing shared columns by name makes both usable
    ds = TimeSeriesDataset(tmp_path, "train", cfg(columns=["c0", "c1"]), progress=False)
    assert len(ds) == 4 and ds[0].input.shape == (2, 100)


def test_ucr_splits_and_labels(tmp_path: Path) -> None:
    header = "@problemName Toy\n@timeStamps false\n@univariate true\n@classLabel true 10 2 a\n@data\n"
    rows = {"TRAIN": ["1,2,3,4,5,6,7,8,9,10:10", "2,3,4,5,6,7,8,9,10,11:2", "0,0,1,1,0,0,1,1,0,0:a"],
            "TEST": ["5,4,3,2,1,0,1,2,3,4:2"]}
    for split, lines in rows.items():
        (tmp_path / f"Toy_{split}.ts").write_text(header + "\n".join(lines) + "\n")
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in split_files(files, "train")] == ["Toy_TRAIN.ts"]
    assert [f.name for f in split_files(files, "test")] == ["Toy_TEST.ts"]
    train = TimeSeriesDataset(tmp_path, "train", cfg(context=10), progress=False)
    assert train.classes == ["2", "10", "a"]  # numeric labels in numeric order
    assert [train[i].label for i in range(3)] == [1, 0, 2]
    test = TimeSeriesDataset(tmp_path, "test", cfg(context=10), progress=False)
    assert len(test) == 1 and test[0].input.shape == (1, 10)


def test_demo_data_is_basicmotions_train() -> None:
    ds = TimeSeries().dataset(None, "train", cfg())
    assert len(ds) == 40 and ds[0].input.shape == (6, 100) and len(ds.classes) == 4
    assert all(s.endswith(".ts") or ".ts#" in s for s in ds.sources)
    held_out = TimeSeries().dataset(None, "test", cfg())
    assert len(held_out) == 40 and not set(held_out.sources) & set(ds.sources)


def test_files_are_checked_at_construction_and_read_on_access(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import mpt_timeseries.dataset as module

    rng = np.random.default_rng(0)
    write_csv(tmp_path / "a.csv", rng.normal(size=(2, 250)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.normal(size=(3, 2, 120)).astype(np.float32))  # 3 series
    reads: list[str] = []
    real = module.read_series

    def counting(path, *args):  # noqa: ANN001, ANN002, ANN202
        reads.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(module, "read_series", counting)
    ds = TimeSeriesDataset(tmp_path, "train", cfg(), progress=False)
    assert reads == ["a.csv", "b.npy"]  # each file read once to check it
    assert len(ds.files._cache) == 0  # and no values kept
    assert [info.lengths for info in ds.files.info] == [[250], [120, 120, 120]]
    assert ds.channels == ["c0", "c1"] and len(ds) == 3 + 3 * 2  # windows from the lengths alone
    assert ds.sources == [str(tmp_path / "a.csv")] + [f"{tmp_path / 'b.npy'}#{i}" for i in range(3)]
    reads.clear()
    assert torch.equal(ds[1].input, torch.from_numpy(real(tmp_path / "a.csv").series[0][:, 100:200]))
    ds[2]
    assert reads == ["a.csv"] and len(ds.files._cache) == 1  # read on access, then cached
    item = ds[3]
    item.input[:] = 0  # a sample is a copy: the cached file is not changed
    assert not torch.equal(ds[3].input, item.input)
    assert reads == ["a.csv", "b.npy"]
    # a file changed after construction is named, not indexed past its end
    fresh = TimeSeriesDataset(tmp_path, "train", cfg(), progress=False)
    np.save(tmp_path / "b.npy", rng.normal(size=(1, 2, 120)).astype(np.float32))
    with pytest.raises(DataError, match="changed since the dataset was opened") as info:
        fresh[len(fresh) - 1]
    assert info.value.path == str(tmp_path / "b.npy")


def test_a_bad_file_is_an_error_at_construction_naming_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_csv(tmp_path / "a.csv", rng.normal(size=(2, 120)))
    (tmp_path / "b.csv").write_text("c0,c1\n1,x\n")
    with pytest.raises(DataError) as info:
        TimeSeries().dataset(tmp_path, "train", cfg())
    assert info.value.path == str(tmp_path / "b.csv")
    ds = TimeSeries().dataset(tmp_path, "train", cfg(), skip_bad_files=True)
    assert [p for p, _ in ds.skipped] == [str(tmp_path / "b.csv")] and len(ds) == 2


def test_collate_is_the_core_default_and_no_repeats_key() -> None:
    m = TimeSeries()
    ds = m.dataset(None, "train", cfg())
    batch = m.collate([ds[0], ds[1]])
    assert isinstance(batch, Batch) and batch.tensor.shape == (2, 6, 100) and batch.labels is not None
    assert batch.sources == ds.sources[:2] and "length" not in batch.meta  # windows are padded with NaN
    assert type(m).collate is Modality.collate
    assert "repeats" not in {f.name for f in dataclasses.fields(TimeSeriesDataConfig)}
    assert m.downstream_data(cfg()) == cfg()  # nothing to change for feature extraction
