"""benchmarks/probe_quality.py: a tiny budget on generated labelled series prints one well-formed JSON line.

Nothing here asserts quality: only the shape of the output and its arithmetic.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import probe_quality as bench  # noqa: E402

KEYS = {  # the fields the benchmark promises (README.md, DESIGN.md §7)
    "bench": str, "modality": str, "dataset": str, "method": str, "accuracy": float, "balanced_accuracy": float,
    "baseline_accuracy": float, "baseline_balanced_accuracy": float, "gap": float, "budget_minutes": float,
    "steps": int, "s_per_step": float, "pretrain_wall_s": float, "n_train": int, "n_eval": int, "num_classes": int,
    "chance": dict, "recipe": str, "objective": str, "cpu_load": float, "cpu_load_end": float, "torch": str,
    "seed": int, "pretrain_data": str, "split": str,
}
TINY = ["--set", "model.dim=16", "--set", "model.depth=1", "--set", "model.heads=2", "--set", "train.batch_size=4",
        "--set", "data.context=32", "--set", "tokenizer.patch=8", "--set", "tokenizer.stride=8"]


def write_ts(path: Path, n: int, seed: int) -> None:
    """``n`` univariate series of 32 steps, two classes (a slow and a fast sine, noisy), in .ts format."""
    rng = np.random.default_rng(seed)
    t = np.arange(32)
    rows = []
    for i in range(n):
        label = i % 2
        x = np.sin(t / (6 if label else 2) + rng.uniform(0, 6)) + rng.normal(scale=0.2, size=32)
        rows.append(",".join(f"{v:.4f}" for v in x) + f":{'ab'[label]}")
    path.write_text("@problemName Toy\n@timeStamps false\n@univariate true\n@classLabel true a b\n@data\n"
                    + "\n".join(rows) + "\n")


def test_tiny_budget_prints_one_json_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_ts(tmp_path / "Toy_TRAIN.ts", 16, seed=0)
    write_ts(tmp_path / "Toy_TEST.ts", 12, seed=1)
    record = bench.main(["--modality", "timeseries", "--data", str(tmp_path), "--eval-data", str(tmp_path),
                         "--budget-minutes", "0.05", "--calibration-steps", "4", "--threads", "1",
                         "--workdir", str(tmp_path / "work"), *TINY])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines  # stdout holds the JSON line and nothing else
    out = json.loads(lines[0])
    assert out == json.loads(json.dumps(record))
    for key, kind in KEYS.items():
        assert isinstance(out[key], kind) or (kind is float and isinstance(out[key], int)), (key, out[key])
    assert out["bench"] == "probe_quality" and out["modality"] == "timeseries" and out["method"] == "linear"
    assert out["steps"] >= 1 and out["s_per_step"] > 0
    assert out["gap"] == pytest.approx(out["accuracy"] - out["baseline_accuracy"])
    assert (out["n_train"], out["n_eval"], out["num_classes"]) == (16, 12, 2)
    assert all(0 <= out[k] <= 1 for k in ("accuracy", "baseline_accuracy", "balanced_accuracy"))
    assert out["chance"]["uniform"] == 0.5 and math.isfinite(out["last_loss"])
    assert out["split"].startswith("official") and "training split" in out["pretrain_data"]


def test_holdout_pretrains_on_the_training_side_only(tmp_path: Path) -> None:
    """Without --eval-data, pretraining reads links to exactly the files the probe's hold-out trains on."""
    from mpt.config import build_config
    from mpt.features import open_dataset
    from mpt.probe import stratified_split
    from mpt.registry import get_modality

    data = tmp_path / "clouds"
    rng = np.random.default_rng(0)
    for label in ("box", "ball"):
        (data / label).mkdir(parents=True)
        for i in range(6):
            np.save(data / label / f"{i}.npy", rng.normal(size=(64, 3)).astype(np.float32))
    modality = get_modality("pointcloud")
    cfg = build_config(modality, sets=["data.num_points=32", "data.repeats=3"])
    linked = bench.holdout_train_folder(modality, cfg, data, tmp_path / "links", seed=3, probe_sets=[])
    assert linked is not None
    pretrain_files = {str(p.relative_to(linked)) for p in linked.rglob("*.npy")}
    ds, _ = open_dataset({"modality": "pointcloud", "data": {"num_points": 32}}, data, "probe")
    samples = [ds[i] for i in range(len(ds))]
    train, held = stratified_split(np.asarray([s.label for s in samples]), [s.source for s in samples], 0.2, 3)
    rel = [str(Path(s.source).relative_to(data)) for s in samples]
    assert pretrain_files == {rel[i] for i in train} and not pretrain_files & {rel[i] for i in held}
    assert len(held) == 2  # one file of each class held out


def test_pool_choices_are_the_libraries() -> None:
    """`--pool` offers exactly mpt.features' pools (`groups`, formerly `channels`)."""
    from mpt.features import POOLS

    assert bench.POOLS == POOLS
    assert bench.make_parser().parse_args(["--modality", "timeseries", "--budget-minutes", "1",
                                           "--pool", "groups"]).pool == "groups"
    with pytest.raises(SystemExit):
        bench.make_parser().parse_args(["--modality", "timeseries", "--budget-minutes", "1", "--pool", "channels"])
