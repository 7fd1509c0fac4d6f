"""CPU thread policy under a competing process: wall time of a small ``mpt pretrain`` run with torch's
default thread count, with mpt's default policy (:mod:`mpt.threads`) and with one thread, on a quiet
machine and with ``--competitors`` busy processes (one pure-Python spin loop each). One JSON line
per run on stdout (``--repeats`` runs per setting, the policies' order alternating), then one summary
line with the medians and their ratios.

    .venv/bin/python benchmarks/threads.py --modality timeseries --steps 300
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = "threads"
POLICIES = {"torch-default": ["--threads", str(len(os.sched_getaffinity(0)))], "mpt-default": [],
            "one-thread": ["--threads", "1"]}


def spin(stop: float) -> None:
    """A competing process: one core busy until ``stop``."""
    while time.time() < stop:
        pass


def run_once(args: argparse.Namespace, extra: list[str], out: Path) -> float:
    """Wall seconds of one ``mpt pretrain`` subprocess (a fresh process: torch picks its threads anew)."""
    cmd = [sys.executable, "-m", "mpt_cli", "pretrain", "--modality", args.modality, "--max-steps", str(args.steps),
           "--out", str(out), "--set", f"train.figure_every={args.steps}", *args.set_args, *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def threads_used(out: Path) -> int | None:
    import yaml

    runtime = yaml.safe_load((out / "config.yaml").read_text()).get("runtime", {})
    return runtime.get("threads")


def start_competitors(n: int) -> list:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=spin, args=(time.time() + 3600,)) for _ in range(n)]
    for proc in procs:
        proc.start()
    time.sleep(1.0)
    return procs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modality", default="timeseries")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--competitors", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="runs per (load, policy), policies alternating")
    p.add_argument("--set", dest="set_args", action="append", default=[], type=lambda s: f"--set={s}")
    args = p.parse_args()
    walls: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for load in ("quiet", "busy"):
            procs = start_competitors(args.competitors) if load == "busy" else []
            try:
                for rep in range(args.repeats):
                    order = list(POLICIES.items()) if rep % 2 == 0 else list(POLICIES.items())[::-1]
                    for name, extra in order:
                        out = Path(tmp) / f"{load}-{name}-{rep}"
                        wall = run_once(args, extra, out)
                        walls.setdefault(f"{load}/{name}", []).append(wall)
                        print(json.dumps({"bench": BENCH, "modality": args.modality, "steps": args.steps,
                                          "load": load, "competitors": args.competitors if load == "busy" else 0,
                                          "policy": name, "repeat": rep, "threads": threads_used(out),
                                          "wall_s": round(wall, 2), "cores": len(os.sched_getaffinity(0))}),
                              flush=True)
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.join()
    median = {k: statistics.median(v) for k, v in walls.items()}
    print(json.dumps({"bench": BENCH, "summary": True, "median_wall_s": {k: round(v, 2) for k, v in median.items()},
                      "busy_torch_default_over_mpt_default": round(median["busy/torch-default"]
                                                                   / median["busy/mpt-default"], 2),
                      "quiet_mpt_default_over_torch_default": round(median["quiet/mpt-default"]
                                                                    / median["quiet/torch-default"], 2)}))


if __name__ == "__main__":
    main()
