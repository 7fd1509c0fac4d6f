"""Cost against input size: s/step and peak RSS of one modality's demo recipe over a range of input
sizes (frames, seconds of audio, points, chip size, volume size, context length), and the fitted
exponent of s/step against the visible tokens per step (MAE's encoder cost should grow about
linearly in them; attention adds a quadratic term that small inputs hide).

Every size runs in a fresh subprocess (peak RSS is per process) with the trainer's own step
(``pretrain_throughput.train_step``: normalise → tokenize → mask → forward → backward → AdamW).
One JSON line per size, then one ``"fit"`` line per modality (least squares of log s/step on log
visible tokens per step, and on all tokens per step: MAE's decoder and the tokenizer see them all);
``--plot`` writes the curves as a PNG. Small sizes are dominated by fixed per-step costs (optimizer,
Python), which flattens the fitted exponent.

    .venv/bin/python benchmarks/scaling.py --modality medical timeseries --plot runs/scaling.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = "scaling"
# modality → (the config key that sets the input size, its values, fixed --set values)
SIZES: dict[str, tuple[str, list[Any], list[str]]] = {
    "timeseries": ("data.context", [128, 256, 512, 1024, 2048], ["tokenizer.patch=16", "data.stride=64"]),
    "pointcloud": ("tokenizer.num_groups", [32, 64, 128, 256], ["data.num_points=2048"]),
    "video": ("data.frames", [4, 8, 16, 32], ["data.size=64", "data.rate=1"]),
    "audio": ("data.seconds", [1.28, 2.56, 5.12, 10.24], []),
    "satellite": ("data.size", [32, 64, 96, 128], ["data.stride=32"]),
    "medical": ("data.crop", [32, 48, 64, 96], ["tokenizer.patch=16"]),
}


def long_series(root: Path, channels: int = 4, steps: int = 20000) -> Path:
    """A CSV of ``channels`` random walks of ``steps`` time steps (the time-series demo data is 100
    steps long: longer contexts would only add padding)."""
    import numpy as np

    path = root / "walks.csv"
    walks = np.random.default_rng(0).normal(size=(steps, channels)).cumsum(0)
    header = ",".join(f"c{i}" for i in range(channels))
    np.savetxt(path, walks, delimiter=",", header=header, comments="", fmt="%.5f")
    return path


DATA = {"timeseries": long_series}  # modalities whose demo data is too small for the sizes above


def child(modality_name: str, sets: list[str], steps: int, warmup: int, data: Path | None) -> dict[str, Any]:
    """Time ``steps`` training steps of the demo recipe with ``sets`` on ``data`` (in this process)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import mpt
    from pretrain_throughput import build_batch, build_run, load_config, open_data, train_step

    modality = mpt.get_modality(modality_name)
    args = argparse.Namespace(recipe=None, set=sets, objective=None, batch=None, precision="no", data=None)
    cfg = load_config(modality, args)
    cfg, dataset = open_data(modality, cfg, data)
    batch = build_batch(modality, cfg, dataset)
    device = torch.device("cpu")
    run = build_run(modality, cfg, batch, device, "no")
    from mpt.trainer import prepare_batch

    tokens, masks = prepare_batch(run.objective.backbone, modality, cfg.data, run.masker, run.batch, 0)
    for i in range(warmup):
        train_step(run, i, "no", device)
    times = [train_step(run, warmup + i, "no", device)[1] for i in range(steps)]
    return {"tokens": tokens.num_tokens, "visible": int(masks[0].keep.shape[1]), "rows": tokens.batch_size,
            "batch": batch.batch_size, "s_per_step": statistics.median(times), "s_per_step_min": min(times),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def measure(modality: str, key: str, value: Any, fixed: list[str], args: argparse.Namespace,
            data: Path | None) -> dict[str, Any]:
    sets = [*fixed, f"{key}={value}", *args.set]
    cmd = [sys.executable, __file__, "--child", modality, "--steps", str(args.steps), "--warmup", str(args.warmup),
           *[a for s in sets for a in ("--set", s)], *(["--data", str(data)] if data else [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def fit_exponent(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log y on log x (None with fewer than two points)."""
    if len(points) < 2:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


def plot(curves: dict[str, list[tuple[float, float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, pts in curves.items():
        xs, ys, rss = zip(*pts, strict=True)
        ax1.loglog(xs, ys, "o-", label=name)
        ax2.semilogx(xs, rss, "o-", label=name)
    ax1.set_xlabel("visible tokens per step (batch × kept)")
    ax1.set_ylabel("s / step (median)")
    ax2.set_xlabel("visible tokens per step")
    ax2.set_ylabel("peak RSS (MiB)")
    ax1.legend(fontsize=8)
    ax1.grid(True, which="both", alpha=0.3)
    ax2.grid(True, alpha=0.3)
    fig.suptitle("mpt demo recipes: cost against input size (CPU)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modality", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--set", action="append", default=[], help="extra --set for every run")
    p.add_argument("--plot", type=Path, default=None, help="write the curves as a PNG here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.set, args.steps, args.warmup, args.data)))
        return
    curves: dict[str, list[tuple[float, float, float]]] = {}
    every: dict[str, list[tuple[float, float]]] = {}
    tmp = tempfile.TemporaryDirectory()
    for modality in args.modality:
        key, values, fixed = SIZES[modality]
        data = DATA[modality](Path(tmp.name)) if modality in DATA else None
        for value in values:
            print(f"{modality}: {key}={value}", file=sys.stderr, flush=True)
            rec = measure(modality, key, value, fixed, args, data)
            line = {"bench": BENCH, "modality": modality, "key": key, "value": value, **rec,
                    "cpu_count": os.cpu_count()}
            print(json.dumps(line), flush=True)
            if "error" not in rec:
                curves.setdefault(modality, []).append((rec["visible"] * rec["rows"], rec["s_per_step"],
                                                        rec["peak_rss_mib"]))
                every.setdefault(modality, []).append((rec["tokens"] * rec["rows"], rec["s_per_step"]))
        pts = [(x, y) for x, y, _ in curves.get(modality, [])]
        k, k_all = fit_exponent(pts), fit_exponent(every.get(modality, []))
        print(json.dumps({"bench": BENCH, "modality": modality, "fit": "s_per_step ~ tokens^k",
                          "exponent_visible": None if k is None else round(k, 3),
                          "exponent_all_tokens": None if k_all is None else round(k_all, 3),
                          "points": len(pts)}), flush=True)
    tmp.cleanup()
    if args.plot and curves:
        plot(curves, args.plot)


if __name__ == "__main__":
    main()
