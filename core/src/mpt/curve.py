"""Accuracy against pretraining steps, and pretraining for a wall-clock budget (``mpt evaluate --budget``).

:func:`pretrain_for_budget` times a few steps of the recipe (:func:`calibrate`), sets
``train.max_steps`` so the whole cosine schedule fits the budget, and pretrains with encoder
snapshots every ``max_steps / points`` steps (``train.export_every``: ``OUT/encoders/step-N``).
:func:`run_curve` probes every snapshot of a run — and the random-init twin as step 0, the weights
pretraining started from — on one split: is the encoder still improving, or memorising a small set?
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from mpt.contract import Modality
from mpt.errors import ConfigError, MptError

SNAPSHOT = re.compile(r"^step-(\d+)$")


@dataclass
class BudgetRun:
    """What :func:`pretrain_for_budget` did: the run folder, its steps and timing."""

    out: Path
    steps: int
    s_per_step: float  # calibrated
    wall_s: float
    first_loss: float
    last_loss: float
    sets: list[str]  # the config overrides the run used, budget ones included


def snapshots(run: str | PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, encoder folder)`` of a run, oldest first: ``OUT/encoders/step-N`` and ``OUT/encoder``."""
    from mpt.pretrained import read_card

    run = Path(run)
    found = [(int(m.group(1)), p) for p in (run / "encoders").glob("step-*")
             if (m := SNAPSHOT.match(p.name)) and (p / "config.json").is_file()]
    if (run / "encoder" / "config.json").is_file():
        found.append((int(read_card(run / "encoder")["trained_on"]["steps"]), run / "encoder"))
    if not found:
        raise MptError(f"{run}: no encoder and no encoders/step-N snapshots (pretrain with "
                       "--set train.export_every=N, or mpt evaluate --budget)")
    return sorted(found)


def run_curve(run: str | PathLike[str], data: str | PathLike[str] | None, *,
              eval_data: str | PathLike[str] | None = None, labels: str | PathLike[str] | None = None,
              pool: str | None = None, data_sets: Sequence[str] = (),
              seed: int = 0, k: int = 20, eval_fraction: float = 0.2, batch_size: int = 64,
              progress: bool = True) -> list[dict[str, Any]]:
    """Linear and k-NN accuracy of every snapshot of ``run`` (step 0: the random-init twin) on one split
    (the split of :func:`mpt.evaluation.make_split`). Returns ``[{"step", "linear", "knn",
    "linear_balanced", "knn_balanced", "encoder"}]`` sorted by step. ``pool`` None: the modality's."""
    from mpt.evaluation import frozen_rows, make_split
    from mpt.features import open_dataset, resolve_pool
    from mpt.pretrained import load_encoder, read_card
    from mpt.probe import random_twin, recalibrate_batch_norms

    points = snapshots(run)
    card = read_card(points[-1][1])
    pool = resolve_pool(card, pool)
    _, modality = open_dataset(card, data, "probe", data_sets)
    split = make_split(card, data, eval_data, labels, data_sets, seed, eval_fraction)
    twin = random_twin(points[-1][1], seed)
    recalibrate_batch_norms(twin, split.train, modality.collate, batch_size)
    out = []
    for step, path in [(0, None), *points]:
        encoder = twin if path is None else load_encoder(path)
        rows = {r["method"]: r for r in frozen_rows(encoder, "pretrained", split, pool=pool, collate=modality.collate,
                                                    batch_size=batch_size, seed=seed, k=k, progress=progress)}
        out.append({"step": step, "encoder": "random-init twin" if path is None else str(path),
                    **{m: rows[m]["accuracy"] for m in ("linear", "knn")},
                    **{f"{m}_balanced": rows[m]["balanced_accuracy"] for m in ("linear", "knn")}})
    return out


def curve_figure(points: Sequence[dict[str, Any]], path: str | PathLike[str], *, raw_1nn: float | None = None,
                 title: str = "") -> Path:
    """Linear and k-NN accuracy against pretraining steps (PNG at ``path``), the raw 1-NN as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mpt.evaluation import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    steps = [p["step"] for p in points]
    for method, label in (("linear", "linear probe"), ("knn", "k-NN")):
        ax.plot(steps, [100 * p[method] for p in points], marker="o", ms=3, label=label)
    if raw_1nn is not None:
        ax.axhline(100 * raw_1nn, color="tab:orange", ls="--", lw=1, label="raw 1-NN")
    ax.set_xlabel("pretraining steps (0 = random init)")
    ax.set_ylabel("eval accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def calibrate(modality: Modality, recipe: str | None, sets: Sequence[str], data: Path | None, work: Path,
              steps: int = 15) -> float:
    """Median seconds per optimiser step of the recipe on ``data`` (``steps`` steps, the first two
    left out: warm-up of the allocator and the kernels), run in ``work``."""
    from mpt.config import build_config
    from mpt.trainer import pretrain

    if steps < 3:
        raise ConfigError("calibration_steps", f"must be >= 3, got {steps}")
    cfg = build_config(modality, recipe, sets=[*sets, f"train.max_steps={steps}", "train.log_every=1",
                                                "train.figure_every=1000000000"])
    with warnings.catch_warnings():  # a calibration run shorter than the warm-up is expected
        warnings.filterwarnings("ignore", message="the warm-up")
        run = pretrain(cfg, modality, work, data=data, progress=False)
    per_step = [r["s_per_step"] for r in map(json.loads, (run.out / "metrics.jsonl").read_text().splitlines())]
    return statistics.median(per_step[2:])


def pretrain_for_budget(modality: Modality, data: Path | None, out: Path, minutes: float, *,
                        recipe: str | None = None, sets: Sequence[str] = (), points: int = 8,
                        calibration_steps: int = 15, progress: bool = True) -> BudgetRun:
    """Pretrain ``recipe`` (+ ``sets``) on ``data`` for about ``minutes`` of wall clock into ``out``
    (calibration in ``out/calibration``), with ``points`` encoder snapshots along the way.

    The recipe's warm-up is shortened to a fifth of the run only when it would not end before the run."""
    from mpt.config import build_config
    from mpt.trainer import pretrain

    if minutes <= 0 or points < 1:
        raise ConfigError("--budget", f"must be > 0 minutes with >= 1 points, got {minutes} and {points}")
    out = Path(out)
    s_per_step = calibrate(modality, recipe, sets, data, out / "calibration", calibration_steps)
    shutil.rmtree(out / "calibration", ignore_errors=True)
    steps = max(points, int(minutes * 60 / s_per_step))
    extra = [f"train.max_steps={steps}", f"train.log_every={max(1, steps // 50)}",
             f"train.export_every={max(1, -(-steps // points))}", f"train.figure_every={steps}"]
    cfg = build_config(modality, recipe, sets=[*sets, *extra])
    if cfg.optim.warmup_steps is not None and cfg.optim.warmup_steps >= steps:
        extra.append(f"optim.warmup_steps={steps // 5}")
        cfg = build_config(modality, recipe, sets=[*sets, *extra])
    t0 = time.perf_counter()
    run = pretrain(cfg, modality, out / "run", data=data, progress=progress)
    return BudgetRun(out=run.out, steps=run.steps, s_per_step=s_per_step, wall_s=time.perf_counter() - t0,
                     first_loss=run.first_loss, last_loss=run.last_loss, sets=[*sets, *extra])
