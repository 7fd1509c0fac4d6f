"""CPU threads for training: a default that does not collapse when the CPU is shared.

PyTorch starts one intra-op thread per core. When other processes keep some of those cores busy,
its threads wait on each other at every operation and a small model can run many times slower than
with fewer threads (issue 15: 300 tabular steps took 98 s with the default against 4 s with one
thread, on 2 shared cores). :func:`choose_threads` takes the cores this process may use
(``os.sched_getaffinity``), measures how many of them other processes keep busy over a short window
(``/proc/stat``), and uses the rest — at least one. ``train.threads`` (``mpt pretrain --threads N``)
overrides it, then the environment variable ``MPT_THREADS``.

CPU results depend on the thread count (reductions are split differently), so a run resumed with
``--resume`` keeps the count it was started with (exact resume), and two runs compare bit for bit
only with the same count: set it for reproducible CPU runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

WINDOW_S = 0.3  # how long the CPU's busy share is sampled at start


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), or os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where it does not exist."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [float(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_cores(window_s: float = WINDOW_S) -> float:
    """How many cores other processes keep busy, measured over ``window_s`` (0 when unknown).
    This process is idle meanwhile, so what is busy is someone else's."""
    first = _cpu_times()
    if first is None:
        return 0.0
    time.sleep(window_s)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return 0.0
    share = (second[0] - first[0]) / (second[1] - first[1])
    return share * (os.cpu_count() or 1)


def plural(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def choose_threads(requested: int | None = None, processes: int = 1) -> tuple[int, str]:
    """Intra-op threads per process and why: ``requested`` if given, else the usable cores minus the
    ones other processes keep busy (rounded), shared by this run's ``processes``, at least 1."""
    if requested is not None:
        return requested, f"{plural(requested)} (train.threads)"
    env = os.environ.get("MPT_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), f"{plural(int(env))} (MPT_THREADS)"
    cores = usable_cores()
    busy = busy_cores() if processes == 1 else 0.0  # sibling ranks start together: their load is ours
    free = max(1, min(cores, cores - round(busy)))
    n = max(1, free // processes)
    reason = f"{plural(n)}: {free} of {cores} cores free"
    reason += f", {busy:.1f} busy with other processes" if busy >= 0.5 else ""
    reason += f", {processes} processes" if processes > 1 else ""
    return n, reason


def apply_threads(requested: int | None = None, processes: int = 1) -> tuple[int, str]:
    """Set torch's intra-op thread count by :func:`choose_threads`; returns (threads, reason)."""
    n, reason = choose_threads(requested, processes)
    torch.set_num_threads(n)
    return n, reason
