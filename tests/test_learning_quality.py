"""benchmarks/learning_quality.py: a tiny budget on generated labelled series prints one well-formed JSON line.

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

import learning_quality as bench  # noqa: E402

KEYS = {  # the fields the benchmark promises (benchmarks/README.md, DESIGN.md §7)
    "bench": str, "modality": str, "dataset": str, "split": str, "pretrain_data": str, "rows": list, "goal": dict,
    "n_train": int, "n_eval": int, "num_classes": int, "classes": list, "chance": dict, "pool": str,
    "twin_batch_norm_recalibrated": bool, "pretraining": dict, "curve": list, "figures": dict,
    "budget_minutes": float, "steps": int, "s_per_step": float, "pretrain_wall_s": float,
    "evaluation_wall_s": float, "first_loss": float, "last_loss": float, "sets": list, "eval_sets": list,
    "adapted": list, "recipe": str, "objective": str, "cpu_load": float, "cpu_load_end": float, "cpu_count": int,
    "threads": int, "cpu_capability": str, "torch": str, "seed": int, "date": str,
}
TINY = ["--set", "model.dim=16", "--set", "model.depth=1", "--set", "model.heads=2", "--set", "mae.decoder_dim=16",
        "--set", "mae.decoder_depth=1", "--set", "mae.decoder_heads=2", "--set", "train.batch_size=4",
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
    from mpt.curve import snapshots

    write_ts(tmp_path / "Toy_TRAIN.ts", 16, seed=0)
    write_ts(tmp_path / "Toy_TEST.ts", 12, seed=1)
    work, figures = tmp_path / "work", tmp_path / "figures"
    record = bench.main(["--modality", "timeseries", "--data", str(tmp_path), "--eval-data", str(tmp_path),
                         "--budget-minutes", "0.05", "--calibration-steps", "4", "--finetune-steps", "4",
                         "--points", "2", "--threads", "1", "--workdir", str(work), "--out", str(figures), *TINY])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines  # stdout holds the JSON line and nothing else
    out = json.loads(lines[0])
    assert out == record
    for key, kind in KEYS.items():
        assert isinstance(out[key], kind) or (kind is float and isinstance(out[key], int)), (key, out[key])
    assert out["bench"] == "learning_quality" and out["modality"] == "timeseries" and out["pool"] == "flat"
    assert out["steps"] >= 2 and out["s_per_step"] > 0 and math.isfinite(out["last_loss"])
    assert (out["n_train"], out["n_eval"], out["num_classes"]) == (16, 12, 2) and out["classes"] == ["a", "b"]
    assert out["chance"]["uniform"] == 0.5 and out["holdout"] is None
    assert out["split"].startswith("official") and "training split" in out["pretrain_data"]
    assert "train.seed=0" in out["sets"] and f"train.max_steps={out['steps']}" in out["sets"]
    assert out["pretraining"]["steps"] == out["steps"]

    # the rows: every encoder × method, accuracies in [0, 1]; the goal from them
    cells = {(r["encoder"], r["method"]): r["accuracy"] for r in out["rows"]}
    for enc in ("pretrained", "random-init"):
        assert {(enc, m) for m in ("linear", "knn", "finetune")} <= set(cells)
    assert any(m == "1-nn" for _, m in cells) and all(0 <= a <= 1 for a in cells.values())
    goal = out["goal"]
    twin = max(cells[("random-init", "linear")], cells[("random-init", "finetune")])
    raw = max(a for (_, m), a in cells.items() if m == "1-nn")
    assert goal["pretrained"] == pytest.approx(max(cells[("pretrained", "linear")], cells[("pretrained", "finetune")]))
    assert goal["twin"] == pytest.approx(twin) and goal["raw_1nn"] == pytest.approx(raw)
    assert goal["target"] == pytest.approx(max(raw, twin + min(0.1, (1 - twin) / 2)))
    assert goal["met"] == (goal["pretrained"] >= goal["target"] - 1e-9)
    assert goal["margin"] == pytest.approx(goal["pretrained"] - goal["target"])

    # the curve: the twin at step 0, then every snapshot of the run
    run = work / "pretrain" / "run"
    assert [p["step"] for p in out["curve"]] == [0, *(s for s, _ in snapshots(run))]
    assert len(out["curve"]) >= 3 and out["curve"][-1]["step"] == out["steps"]
    assert all(0 <= p[m] <= 1 for p in out["curve"] for m in ("linear", "knn"))

    assert out["figures"] == {"evaluation": str(figures / "evaluation.png"), "curve": str(figures / "curve.png")}
    assert all(Path(p).stat().st_size > 0 for p in out["figures"].values())
    assert (run / "figures").is_dir() and any((run / "figures").glob("*.png"))  # the univariate figure is drawn


def test_holdout_pretrains_on_the_training_side_only(tmp_path: Path) -> None:
    """Without --eval-data, pretraining reads links to exactly the files the evaluation's hold-out trains on."""
    from mpt.config import build_config
    from mpt.evaluation import make_split
    from mpt.registry import get_modality

    data = tmp_path / "clouds"
    rng = np.random.default_rng(0)
    for label in ("box", "ball"):
        (data / label).mkdir(parents=True)
        for i in range(6):
            np.save(data / label / f"{i}.npy", rng.normal(size=(64, 3)).astype(np.float32))
    modality = get_modality("pointcloud")
    cfg = build_config(modality, sets=["data.num_points=32", "data.repeats=3"])
    linked = bench.holdout_train_folder(modality, cfg, data, tmp_path / "links", seed=3)
    assert linked is not None
    pretrain_files = {str(p.relative_to(linked)) for p in linked.rglob("*.npy")}
    split = make_split({"modality": "pointcloud", "data": {"num_points": 32}}, data, None, None, [], 3, 0.2)
    rel = {str(Path(split.train[i].source).relative_to(data)) for i in range(len(split.train))}
    held = {str(Path(split.eval[i].source).relative_to(data)) for i in range(len(split.eval))}
    assert pretrain_files == rel and not pretrain_files & held
    assert len(held) == 2  # one file of each class held out


def test_pool_choices_are_the_libraries() -> None:
    """`--pool` offers exactly mpt.features' pools (`groups`, formerly `channels`; `flat`)."""
    from mpt.features import POOLS

    assert bench.POOLS == POOLS
    args = bench.make_parser().parse_args(["--modality", "timeseries", "--budget-minutes", "1", "--pool", "groups"])
    assert (args.pool, args.k, args.finetune_steps, args.points, args.calibration_steps) == ("groups", 20, 300, 8, 15)
    with pytest.raises(SystemExit):
        bench.make_parser().parse_args(["--modality", "timeseries", "--budget-minutes", "1", "--pool", "channels"])


def test_non_finite_floats_become_null() -> None:
    line = bench._json_line({"a": float("nan"), "goal": {"raw_1nn": float("inf")}, "rows": [{"x": float("nan")}]})
    assert json.loads(line) == {"a": None, "goal": {"raw_1nn": None}, "rows": [{"x": None}]}
