"""mpt.evaluation, mpt.baselines and mpt.curve: the raw baselines against direct numpy, the split
grouped by source, the goal rule, the curve's snapshots, and `mpt evaluate` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mpt
from _mpt_helpers import invoke
from mpt.baselines import nearest_neighbour, raw_baselines, raw_features, token_vectors
from mpt.config import build_config
from mpt.contract import TokenSet
from mpt.curve import run_curve, snapshots
from mpt.evaluation import goal, make_split, run_evaluation, table
from mpt.features import open_dataset
from mpt.pretrained import read_card
from mpt.trainer import pretrain
from test_embed import TINY_TS_ENCODER, make_encoder
from test_probe import write_ts


def read_ts(path: Path) -> tuple[np.ndarray, list[str]]:
    """The series ``[N, T]`` and labels of a univariate .ts file written by :func:`write_ts`."""
    rows = [line for line in path.read_text().splitlines() if line and not line.startswith("@")]
    x = np.asarray([[float(v) for v in r.split(":")[0].split(",")] for r in rows])
    return x, [r.split(":")[1] for r in rows]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluation")
    write_ts(root / "ucr" / "Toy_TRAIN.ts", 8, seed=0)
    write_ts(root / "ucr" / "Toy_TEST.ts", 5, seed=1)
    write_ts(root / "long" / "Long_TRAIN.ts", 6, seed=2, length=80)  # two 40-step windows per series
    return {"ucr": root / "ucr", "long": root / "long", "encoder": make_encoder(root / "enc")}


def test_raw_flat_1nn_is_the_z_normalised_series_1nn(toy) -> None:  # noqa: ANN001
    card = read_card(toy["encoder"])
    encoder = mpt.load_encoder(toy["encoder"])
    train_set, modality = open_dataset(card, toy["ucr"], "probe")
    test_set, _ = open_dataset(card, toy["ucr"], "test")
    train = raw_features(encoder, train_set, collate=modality.collate, progress=False, batch_size=7)
    test = raw_features(encoder, test_set, collate=modality.collate, progress=False)
    rows = {(r["encoder"], r["method"]): r["accuracy"] for r in raw_baselines(train, test)}

    def znorm(x: np.ndarray) -> np.ndarray:  # RevIN: population std with eps 1e-5
        return (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)

    (xtr, ytr), (xte, yte) = read_ts(toy["ucr"] / "Toy_TRAIN.ts"), read_ts(toy["ucr"] / "Toy_TEST.ts")
    dist = ((znorm(xte)[:, None, :] - znorm(xtr)[None]) ** 2).sum(-1)
    expected = np.mean(np.asarray(ytr)[dist.argmin(1)] == np.asarray(yte))
    assert rows[("raw flat", "1-nn")] == pytest.approx(expected)
    # the flat vector is the z-normalised series itself, token by token (8 steps + the patch's index)
    assert train["flat"].x.shape == (24, 5 * (8 + 1))
    tokens = train["flat"].x[0].reshape(5, 9)
    np.testing.assert_allclose(tokens[:, :8].ravel(), znorm(xtr)[0], atol=1e-4)
    assert tokens[:, 8].tolist() == [0, 1, 2, 3, 4]
    assert set(rows) == {(f"raw {k}", m) for k in ("flat", "pooled") for m in ("1-nn", "linear")}


def test_token_vectors_skip_padding_and_missing_values() -> None:
    patches = torch.tensor([[[1.0, 2.0], [3.0, float("nan")], [9.0, 9.0]]])  # one sample, 3 tokens of 2 values
    coords = torch.tensor([[[0.0], [1.0], [2.0]]])
    valid = torch.tensor([[True, True, False]])  # the last token is padding
    flat, pooled = token_vectors(TokenSet(patches=patches, coords=coords, valid=valid))
    assert flat.tolist() == [[1.0, 2.0, 0.0, 3.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    # per column mean/std over the values present: (1, 3), (2), (0, 1)
    np.testing.assert_allclose(pooled.numpy()[0], [2.0, 2.0, 0.5, 1.0, 0.0, 0.5])


def test_nearest_neighbour_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    x, xe = rng.normal(size=(30, 6)), rng.normal(size=(11, 6))
    y = rng.integers(0, 3, 30)
    expected = y[((xe[:, None] - x[None]) ** 2).sum(-1).argmin(1)]
    assert (nearest_neighbour(x, y, xe, chunk=4) == expected).all()


def test_goal_rule() -> None:
    rows = [{"encoder": "pretrained", "method": "linear", "accuracy": 0.70},
            {"encoder": "pretrained", "method": "finetune", "accuracy": 0.78},
            {"encoder": "pretrained", "method": "knn", "accuracy": 0.99},  # k-NN does not count
            {"encoder": "random-init", "method": "linear", "accuracy": 0.62},
            {"encoder": "random-init", "method": "finetune", "accuracy": 0.60},
            {"encoder": "raw flat", "method": "1-nn", "accuracy": 0.80},
            {"encoder": "raw pooled", "method": "1-nn", "accuracy": 0.50}]
    g = goal(rows)
    assert (g["pretrained"], g["twin"], g["raw_1nn"], g["target"]) == (0.78, 0.62, 0.80, 0.80)
    assert not g["met"] and g["margin"] == pytest.approx(-0.02)
    rows[5]["accuracy"] = 0.5  # now the twin's headroom rule decides: 0.96 twin → + min(0.10, 0.02)
    rows[3]["accuracy"] = 0.96
    assert goal(rows)["target"] == pytest.approx(0.98) and not goal(rows)["met"]
    rows[1]["accuracy"] = 0.985
    assert goal(rows)["met"]


def test_the_holdout_is_grouped_by_source(toy) -> None:  # noqa: ANN001
    card = read_card(toy["encoder"])
    split = make_split(card, toy["long"], None, None, (), seed=0, eval_fraction=0.3)
    train_sources = {split.train[i].source for i in range(len(split.train))}
    eval_sources = {split.eval[i].source for i in range(len(split.eval))}
    assert len(split.train) + len(split.eval) == 36  # 18 series, 2 windows each
    assert not train_sources & eval_sources and len(eval_sources) >= 3
    assert len(split.train) == 2 * len(train_sources)  # both windows of a series on the same side
    assert split.holdout["train_groups"] == len(train_sources) and split.classes == ["a", "b", "c"]
    again = make_split(card, toy["long"], None, None, (), seed=0, eval_fraction=0.3)
    assert (again.eval_index == split.eval_index).all()


def test_evaluation_rows_share_one_split(toy) -> None:  # noqa: ANN001
    report = run_evaluation(toy["encoder"], toy["ucr"], eval_data=toy["ucr"], finetune_steps=6, progress=False)
    keys = {(r["encoder"], r["method"]) for r in report["rows"]}
    assert keys == {(e, m) for e in ("pretrained", "random-init") for m in ("linear", "knn", "finetune")} | {
        (f"raw {k}", m) for k in ("flat", "pooled") for m in ("1-nn", "linear")}
    assert all(r.get("n_eval", 15) == 15 for r in report["rows"]) and (report["n_train"], report["n_eval"]) == (24, 15)
    ft = next(r for r in report["rows"] if r["method"] == "finetune")
    assert ft["steps"] >= 6 and ft["batch_size"] == 12  # half the 24 training series
    lines = table(report)
    assert any(line.startswith("pretrained") for line in lines) and "goal:" in lines[-2]


def test_curve_probes_every_snapshot_and_the_twin_at_step_0(toy, tmp_path: Path) -> None:  # noqa: ANN001
    modality = mpt.get_modality("timeseries")
    cfg = build_config(modality, "demo", sets=[*TINY_TS_ENCODER, "train.max_steps=9", "train.export_every=4",
                                                "train.batch_size=8", "train.figure_every=100", "optim.warmup_steps=2"])
    run = pretrain(cfg, modality, tmp_path / "run", data=toy["ucr"], progress=False)
    assert [s for s, _ in snapshots(run.out)] == [4, 8, 9]
    assert sorted(p.name for p in (run.out / "encoders").iterdir()) == ["step-4", "step-8"]
    assert read_card(run.out / "encoders" / "step-4")["trained_on"]["steps"] == 4
    points = run_curve(run.out, toy["ucr"], eval_data=toy["ucr"], progress=False)
    assert [p["step"] for p in points] == [0, 4, 8, 9]
    report = run_evaluation(run.out, toy["ucr"], eval_data=toy["ucr"], finetune_steps=0, progress=False)
    acc = {(r["encoder"], r["method"]): r["accuracy"] for r in report["rows"]}
    assert points[-1]["linear"] == acc[("pretrained", "linear")]  # the final encoder, the same split
    assert points[0]["linear"] == acc[("random-init", "linear")]  # step 0 is the twin


def test_cli_evaluate_writes_json_png_and_fails_cleanly(toy, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "ev"
    result = invoke("evaluate", toy["encoder"], "--data", toy["ucr"], "--eval-data", toy["ucr"], "--out", out,
                    "--finetune-steps", "0")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation.json").read_text())
    assert (out / "evaluation.png").stat().st_size > 5000 and "goal" in report
    assert "raw flat" in result.stdout and "1-NN" in result.stdout
    for args, message in [((), "give an ENCODER"), (("--budget", "1"), "--budget needs --modality"),
                          ((toy["encoder"], "--set", "optim.lr=1"), "--eval-set")]:
        bad = invoke("evaluate", *args, "--data", toy["ucr"], "--out", tmp_path / "x")
        assert bad.exit_code == 2 and message in bad.output, bad.output
    unlabelled = tmp_path / "plain"
    unlabelled.mkdir()
    np.save(unlabelled / "a.npy", np.zeros((1, 40), np.float32))
    bad = invoke("evaluate", toy["encoder"], "--data", unlabelled, "--out", tmp_path / "y")
    assert bad.exit_code == 2 and "no class labels" in bad.output and "Traceback" not in bad.output
