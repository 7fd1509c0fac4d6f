"""CPU threads: the default leaves out cores other processes keep busy; --threads overrides it;
config.yaml records the runtime and can be passed back as --config."""

from __future__ import annotations

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
    monkeypatch.delenv("MPT_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda: busy)
    n, reason = threads.choose_threads(None, processes)
    assert n == want and str(n) in reason
    assert threads.choose_threads(3, processes)[0] == 3  # an explicit count is taken as is
    monkeypatch.setenv("MPT_THREADS", "5")
    assert threads.choose_threads(None, processes) == (5, "5 threads (MPT_THREADS)")
    assert threads.choose_threads(3, processes)[0] == 3  # train.threads before the environment


def test_busy_cores_is_the_busy_share_of_all_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """(busy, total) jiffies over the window: 150 of 400 jiffies busy on 4 CPUs → 1.5 cores busy."""
    samples = iter([(1000.0, 10000.0), (1150.0, 10400.0)])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cores(0.0) == pytest.approx(1.5)
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)  # no /proc/stat: nothing known busy
    assert threads.busy_cores(0.0) == 0.0
    monkeypatch.undo()
    assert 0.0 <= threads.busy_cores(0.05) <= (threads.os.cpu_count() or 1) + 1e-6  # the real /proc/stat


def test_threads_flag_is_applied_and_recorded(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        result = invoke("pretrain", "--modality", "pointcloud", "--max-steps", "2", "--threads", "1",
                        "--out", tmp_path / "run", *tiny_args())
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        record = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
        assert record["train"]["threads"] == 1
        assert record["runtime"] == {"processes": 1, "batch_per_process": 8, "global_batch": 8, "threads": 1,
                                     "threads_reason": "1 thread (train.threads)"}
        again = invoke("pretrain", "--modality", "pointcloud", "--config", tmp_path / "run" / "config.yaml",
                       "--max-steps", "1", "--out", tmp_path / "again")
        assert again.exit_code == 0, again.output  # versions and runtime are records, not settings
    finally:
        torch.set_num_threads(before)


def test_resume_keeps_the_thread_count_of_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Float results depend on the thread count: --resume takes the count the run started with,
    whatever the machine's load says now (exact resume)."""
    from mpt.checkpoint import read_state

    before = torch.get_num_threads()
    try:
        first = invoke("pretrain", "--modality", "pointcloud", "--max-steps", "2", "--threads", "2",
                       "--out", tmp_path / "run", *tiny_args())
        assert first.exit_code == 0, first.output
        assert read_state(tmp_path / "run" / "checkpoints" / "step-2")["threads"] == 2
        again = invoke("pretrain", "--modality", "pointcloud", "--max-steps", "3", "--resume",
                       "--out", tmp_path / "run", *tiny_args())  # MPT_THREADS=1 (conftest) would say 1
        assert again.exit_code == 0, again.output
        runtime = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["runtime"]
        assert runtime["threads"] == 2 and "resumed" in runtime["threads_reason"]
    finally:
        torch.set_num_threads(before)
