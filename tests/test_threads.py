"""CPU threads: the default leaves out cores other processes keep busy; --threads overrides it;
config.yaml records the runtime and can be passed back as --config."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch
import yaml

import mpt.threads as threads
from _mpt_helpers import invoke, tiny_args


@pytest.mark.parametrize(("cores", "busy", "processes", "want"),
                         [(2, 0.1, 1, 2), (2, 0.9, 1, 1), (2, 1.6, 1, 1), (2, 5.0, 1, 1), (16, 3.4, 1, 13),
                          (16, 0.0, 4, 4), (2, 0.0, 2, 1)])
def test_default_threads_leave_busy_cores_alone(monkeypatch: pytest.MonkeyPatch, cores: int, busy: float,
                                                processes: int, want: int) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda: busy)
    n, reason = threads.choose_threads(None, processes)
    assert n == want and str(n) in reason
    assert threads.choose_threads(3, processes)[0] == 3  # an explicit count is taken as is


def _spin(stop: float) -> None:
    while time.time() < stop:
        pass


def test_busy_cores_sees_a_competing_process() -> None:
    quiet = threads.busy_cores(0.3)
    proc = mp.get_context("spawn").Process(target=_spin, args=(time.time() + 5,))
    proc.start()
    try:
        time.sleep(1.0)  # the child has started spinning
        loaded = threads.busy_cores(0.5)
    finally:
        proc.terminate()
        proc.join()
    assert loaded > quiet + 0.5, (quiet, loaded)


def test_threads_flag_is_applied_and_recorded(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        result = invoke("pretrain", "--modality", "pointcloud", "--max-steps", "2", "--threads", "1",
                        "--out", tmp_path / "run", *tiny_args())
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        record = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
        assert record["train"]["threads"] == 1
        assert record["runtime"] == {"processes": 1, "threads": 1, "threads_reason": "1 thread (train.threads)"}
        again = invoke("pretrain", "--modality", "pointcloud", "--config", tmp_path / "run" / "config.yaml",
                       "--max-steps", "1", "--out", tmp_path / "again")
        assert again.exit_code == 0, again.output  # versions and runtime are records, not settings
    finally:
        torch.set_num_threads(before)
