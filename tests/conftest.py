"""Shared fixtures of the cross-package tests: one thread per worker, tiny configs, shared runs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from _mpt_helpers import SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Two xdist workers share two cores: one intra-op thread each (also for runs, which would otherwise
    measure the other worker's load and vary their thread count, and so their float results)."""
    torch.set_num_threads(1)
    os.environ["MPT_THREADS"] = "1"


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Path, dict]]:
    """``shared_dir(name, build)`` → ``(folder, info)``: ``build(folder)`` runs once per test session,
    even across xdist workers (file lock); ``info`` is the JSON-able dict it returned."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the session's shared folder

    def get(name: str, build: Callable[[Path], dict]) -> tuple[Path, dict]:
        folder = root / f"shared-{name}"
        done = root / f"shared-{name}.json"
        with FileLock(str(root / f"shared-{name}.lock")):
            if not done.exists():
                info = build(folder)
                done.write_text(json.dumps(info))
        return folder, json.loads(done.read_text())

    return get


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared sample data at {SHARED_DATA} (absent)")
    return SHARED_DATA
