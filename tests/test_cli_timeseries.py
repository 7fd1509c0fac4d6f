"""`mpt pretrain --modality timeseries` on user files: bad inputs are clean errors naming the file and
the column or line; --skip-bad-files skips and lists; `mpt list` shows the plugin."""

from __future__ import annotations

import numpy as np

from _mpt_helpers import invoke
from test_cli_pretrain import assert_clean_error

TINY_TS = ["--set", "model.dim=32", "--set", "model.depth=1", "--set", "model.heads=2", "--set", "data.context=40",
           "--set", "tokenizer.patch=8", "--set", "tokenizer.stride=8", "--set", "data.min_length=8",
           "--batch-size", "2", "--max-steps", "2"]


def ts_args(out, data, *extra: str) -> list[str]:  # noqa: ANN001
    return ["pretrain", "--modality", "timeseries", "--data", str(data), "--out", str(out), *TINY_TS, *extra]


def write_csv(path, header: str, rows: list[str]):  # noqa: ANN001, ANN201
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def numeric_rows(n: int, c: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [",".join(f"{v:.4f}" for v in rng.normal(size=c)) for _ in range(n)]


def test_non_numeric_column_names_the_file_column_and_row(tmp_path) -> None:  # noqa: ANN001
    rows = numeric_rows(60, 2)
    rows[7] = rows[7].split(",")[0] + ",high"
    bad = write_csv(tmp_path / "sensors.csv", "a,b", rows)
    err = assert_clean_error(invoke(*ts_args(tmp_path / "run", bad)), "sensors.csv", "'b'", "high")
    assert "data.columns" in err


def test_all_missing_channel_and_malformed_ts_header(tmp_path) -> None:  # noqa: ANN001
    rows = [r + "," for r in numeric_rows(60, 2)]
    bad = write_csv(tmp_path / "gap.csv", "a,b,c", rows)
    assert_clean_error(invoke(*ts_args(tmp_path / "r1", bad)), "gap.csv", "'c'", "all values missing")
    ts = tmp_path / "broken.ts"
    ts.write_text("@problemName X\n@univariate maybe\n@data\n1,2,3\n")
    assert_clean_error(invoke(*ts_args(tmp_path / "r2", ts)), "broken.ts", "line 2")


def test_inconsistent_channel_counts_stop_or_are_skipped(tmp_path) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        write_csv(data / f"ok{i}.csv", "time,a,b", [f"{k}," + r for k, r in enumerate(numeric_rows(80, 2, i))])
    write_csv(data / "wide.csv", "time,a,b,c", [f"{k}," + r for k, r in enumerate(numeric_rows(80, 3))])
    err = assert_clean_error(invoke(*ts_args(tmp_path / "r1", data)), "wide.csv", "3 channels", "--skip-bad-files")
    assert "ok0.csv has 2" in err
    out = tmp_path / "r2"
    result = invoke(*ts_args(out, data, "--skip-bad-files"))
    assert result.exit_code == 0, result.output
    listed = (out / "skipped.txt").read_text()
    assert "wide.csv" in listed and "3 channels" in listed


def test_list_shows_timeseries_recipes() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("timeseries"))
    assert "ok" in line
    assert "recipe demo (default)" in result.stdout and "recipe patchtst" in result.stdout


def test_constant_channel_trains(tmp_path) -> None:  # noqa: ANN001
    rows = [f"{r},5.0" for r in numeric_rows(80, 1)]
    data = write_csv(tmp_path / "flat.csv", "a,flat", rows)
    out = tmp_path / "run"
    result = invoke(*ts_args(out, data, "--log-every", "1"))
    assert result.exit_code == 0, result.output
    assert "nan" not in (out / "metrics.jsonl").read_text().lower()
