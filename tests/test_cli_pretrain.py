"""`mpt pretrain | list | info` end to end on the point-cloud plugin, with tiny models.

The 30-step MAE run is made once per session (shared by the xdist workers) and read by several tests.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import mpt
import mpt.trainer
from _mpt_helpers import TINY_SETS, interrupt_after_checkpoint, invoke, read_metrics, tiny_args
from mpt.checkpoint import list_checkpoints, load_checkpoint
from mpt.config import build_config, parse_config, without_record
from mpt.optim import create_optimizer
from mpt.trainer import build_model

MPT_EXE = Path(sys.executable).with_name("mpt")


def pretrain_args(out: Path, *extra: str, objective: str = "mae", steps: int = 30) -> list[str]:
    return ["pretrain", "--modality", "pointcloud", "--objective", objective, "--max-steps", str(steps),
            "--out", str(out), *extra]


def run_record(result) -> dict:  # noqa: ANN001 - click Result
    return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
            "exception": repr(result.exception)}


def assert_clean_error(result, *fragments: str) -> str:  # noqa: ANN001
    """Exit code 2, an ``error:`` line on stderr holding every fragment, and no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught Python error
    err = result.stderr
    assert "error:" in err
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


def loss_ratio(out: Path) -> tuple[float, float, float]:
    losses = [m["loss"] for m in read_metrics(out)]
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    return first, last, last / first


@pytest.fixture(scope="session")
def mae_run(shared_dir) -> tuple[Path, dict]:  # noqa: ANN001
    """30 tiny MAE steps logged every step, a figure every 10 steps."""
    def build(out: Path) -> dict:
        return run_record(invoke(*pretrain_args(out, "--log-every", "1", *tiny_args("train.figure_every=10"))))

    out, rec = shared_dir("mae30", build)
    assert rec["exit_code"] == 0, rec
    return out, rec


# ----------------------------------------------------------------------------------------------
# the loss falls


def test_mae_pretrain_lowers_the_loss(mae_run) -> None:  # noqa: ANN001
    out, _ = mae_run
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == list(range(1, 31))
    for m in metrics:
        assert {"step", "loss", "lr", "samples_per_s"} <= set(m), m
        assert m["samples_per_s"] > 0 and m["lr"] > 0
    first, last, ratio = loss_ratio(out)
    assert ratio < 0.8, f"MAE loss {first:.4f} → {last:.4f} (×{ratio:.2f}) in 30 steps"


def test_jepa_pretrain_lowers_the_loss(tmp_path: Path) -> None:
    # The demo recipe's own optimiser (lr 1e-3, 20 warm-up steps) and EMA (0.996 → 1): nothing tuned.
    out = tmp_path / "run"
    result = invoke(*pretrain_args(out, "--log-every", "1", *tiny_args(), objective="jepa"))
    assert result.exit_code == 0, result.output
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == list(range(1, 31))
    for m in metrics:
        assert {"step", "loss", "lr", "samples_per_s"} <= set(m), m
    first, last, ratio = loss_ratio(out)
    assert ratio < 0.8, f"JEPA loss {first:.4f} → {last:.4f} (×{ratio:.2f}) in 30 steps"
    card = json.loads((out / "encoder" / "config.json").read_text())
    assert card["objective"] == "jepa" and card["exported_encoder"] == "target (EMA teacher)"
    info = invoke("info", str(out))
    assert info.exit_code == 0, info.output
    assert "objective    jepa (recipe demo, exported: target (EMA teacher))" in info.stdout


# ----------------------------------------------------------------------------------------------
# what a run leaves behind


def test_run_folder_layout(mae_run) -> None:  # noqa: ANN001
    out, rec = mae_run
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert "versions" in saved and saved["runtime"]["processes"] == 1 and saved["runtime"]["global_batch"] == 8
    saved = without_record(saved)
    modality = mpt.get_modality("pointcloud")
    flags = {"objective": "mae", "train": {"max_steps": 30, "batch_size": 8, "log_every": 1}}
    expected = build_config(modality, sets=[*TINY_SETS, "train.figure_every=10"], flags=flags)
    # resolved: every key (recipe values, defaults, the --set values); it parses back to the same config
    assert saved == expected.to_dict()
    assert saved["model"]["dim"] == 32 and saved["tokenizer"]["num_groups"] == 16
    assert saved["data"]["num_points"] == 256 and saved["train"]["batch_size"] == 8
    # objective sections sit at the top level (mae:, jepa:), as in a recipe; the chosen one is there
    assert saved["objective"] == "mae" and saved["mae"]["target"] == {"name": "chamfer"}
    assert saved["mae"]["mask"]["name"] == "random" and "norm_target" not in saved["mae"]
    reparsed = parse_config(saved, modality)
    assert reparsed == expected

    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-30"]
    ckpt = out / "checkpoints" / "step-30"
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "optimizer.pt", "state.json"}
    assert json.loads((ckpt / "state.json").read_text())["step"] == 30
    assert {p.name for p in (out / "encoder").iterdir()} == {"model.safetensors", "config.json", "README.md"}
    assert not [p for p in out.rglob(".tmp-*")] and not [p for p in out.rglob(".old-*")]

    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    # train.figure_every=10: every 10 steps and the last step
    assert figures == ["step-000010.png", "step-000020.png", "step-000030.png"]
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    stdout = rec["stdout"]
    assert str(out / "encoder") in stdout
    assert "mpt.load_encoder(" in stdout
    assert f'mpt.load_encoder("{out / "encoder"}")' in stdout


# ----------------------------------------------------------------------------------------------
# resumption


def test_resume_continues_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # warm-up ends at step 3, so the resumed steps run on the cosine part of the schedule
    common = ["--checkpoint-every", "5", "--log-every", "1", "--seed", "3",
              *tiny_args("optim.warmup_steps=3", "train.figure_every=100")]
    a, b = tmp_path / "a", tmp_path / "b"
    assert invoke(*pretrain_args(a, *common, steps=20)).exit_code == 0

    # run B is the same command, interrupted right after its step-10 checkpoint
    interrupt_after_checkpoint(monkeypatch, 10)
    interrupted = invoke(*pretrain_args(b, *common, steps=20))
    assert interrupted.exit_code == 130, interrupted.output
    assert "--resume" in interrupted.stderr
    monkeypatch.undo()
    assert list_checkpoints(b / "checkpoints")[-1].name == "step-10"
    result = invoke(*pretrain_args(b, "--resume", *common, steps=20))
    assert result.exit_code == 0, result.output

    loss_a = {m["step"]: m["loss"] for m in read_metrics(a)}
    steps_b = [m["step"] for m in read_metrics(b)]
    assert steps_b == list(range(1, 21)), "resumed metrics.jsonl must hold every step once"
    loss_b = {m["step"]: m["loss"] for m in read_metrics(b)}
    for step in range(11, 21):
        assert loss_b[step] == pytest.approx(loss_a[step], abs=1e-6, rel=0), step
    # the weights end up the same too
    wa = load_file(str(a / "checkpoints" / "step-20" / "model.safetensors"))
    wb = load_file(str(b / "checkpoints" / "step-20" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa) <= 1e-5


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_second_run_into_existing_out_needs_resume(mae_run, tmp_path: Path) -> None:  # noqa: ANN001
    out = copy_run(mae_run[0], tmp_path / "run")
    before = (out / "metrics.jsonl").read_text()
    result = invoke(*pretrain_args(out, *tiny_args(), steps=5))
    err = assert_clean_error(result, "already holds a run", "--resume")
    assert "step-30" in err
    assert (out / "metrics.jsonl").read_text() == before


def test_resume_with_changed_model_fails_naming_the_key(mae_run, tmp_path: Path) -> None:  # noqa: ANN001
    out = copy_run(mae_run[0], tmp_path / "run")
    before = (out / "metrics.jsonl").read_text()
    result = invoke(*pretrain_args(out, "--resume", "--log-every", "1", *tiny_args("model.dim=64"), steps=40))
    assert_clean_error(result, "model.dim", "32", "64")
    assert (out / "metrics.jsonl").read_text() == before
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-30"]


def test_resume_of_a_finished_run_has_nothing_to_do(mae_run, tmp_path: Path) -> None:  # noqa: ANN001
    """``--resume`` on a run that reached its last step: exit 0, the finished message with the run's real
    last loss (from its last checkpoint, not ``nan``), and nothing trained or rewritten."""
    out = copy_run(mae_run[0], tmp_path / "run")
    metrics = (out / "metrics.jsonl").read_text()
    weights = load_file(str(out / "checkpoints" / "step-30" / "model.safetensors"))
    result = invoke(*pretrain_args(out, "--resume", "--log-every", "1", *tiny_args("train.figure_every=10")))
    assert result.exit_code == 0, (result.output, result.exception)
    last = read_metrics(out)[-1]
    assert last["step"] == 30
    m = re.search(r"nothing to do: the run in (\S+) already finished its (\d+) steps \(last loss (\S+)\)",
                  result.stdout)
    assert m, result.stdout
    assert (m.group(1), int(m.group(2))) == (str(out), 30)
    assert m.group(3) != "nan" and float(m.group(3)) == pytest.approx(last["loss"], abs=1e-4)
    assert m.group(3) == f"{last['loss']:.4f}"
    assert "done:" not in result.stdout
    assert (out / "metrics.jsonl").read_text() == metrics
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-30"]
    after = load_file(str(out / "checkpoints" / "step-30" / "model.safetensors"))
    assert after.keys() == weights.keys() and all(torch.equal(after[k], weights[k]) for k in weights)


def test_resume_without_checkpoint_fails(tmp_path: Path) -> None:
    result = invoke(*pretrain_args(tmp_path / "empty", "--resume", *tiny_args(), steps=5))
    assert_clean_error(result, "--resume", "no checkpoint")


# ----------------------------------------------------------------------------------------------
# a loss that stops being finite


def tiny_objective(out: Path):  # noqa: ANN201
    """The objective and optimizer a run folder's config.yaml describes (random weights)."""
    modality = mpt.get_modality("pointcloud")
    raw = without_record(yaml.safe_load((out / "config.yaml").read_text()))
    cfg = parse_config(raw, modality)
    objective, _ = build_model(cfg, modality)  # sized from the config alone: no batch is read
    return objective, create_optimizer(objective, cfg.optim)


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpt.objectives import MAE

    original, calls = MAE.forward, {"n": 0}

    def forward(self, tokens, masks):  # noqa: ANN001, ANN202 - the masks of one step, a list
        out = original(self, tokens, masks)
        calls["n"] += 1
        if calls["n"] == 5:  # the loss of step 5
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(MAE, "forward", forward)
    out = tmp_path / "run"
    result = invoke(*pretrain_args(out, "--checkpoint-every", "2", "--log-every", "1", *tiny_args(), steps=8))
    good = out / "checkpoints" / "step-4"
    assert_clean_error(result, "loss became nan", "step 5", str(good))
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-2", "step-4"]
    assert not list((out / "checkpoints").glob(".tmp-*"))
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3, 4]

    objective, optimizer = tiny_objective(out)
    state = load_checkpoint(good, objective, optimizer)
    assert state["step"] == 4
    weights = load_file(str(good / "model.safetensors"))
    for k, v in objective.state_dict().items():
        assert v.isfinite().all(), k
        assert (v == weights[k]).all(), k


def test_exploding_lr_in_a_real_process(tmp_path: Path) -> None:
    """The console script itself: a diverging run exits non-zero with a readable message."""
    out = tmp_path / "run"
    args = [str(MPT_EXE), *pretrain_args(out, "--checkpoint-every", "1", *tiny_args(
        "optim.lr=1e30", "optim.warmup_steps=0", "train.figure_every=1000"), steps=6)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "loss became" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    m = re.search(r"at step (\d+); stopped\. Last good checkpoint: (\S*?step-\d+)", proc.stderr)
    assert m, proc.stderr
    failed, ckpt = int(m.group(1)), Path(m.group(2))
    assert ckpt.name == f"step-{failed - 1}"
    assert list_checkpoints(out / "checkpoints")[-1] == ckpt
    objective, optimizer = tiny_objective(out)
    assert load_checkpoint(ckpt, objective, optimizer)["step"] == failed - 1


# ----------------------------------------------------------------------------------------------
# configs and options the user got wrong


@pytest.mark.parametrize(("args", "fragments"), [
    (["--set", "model.dimm=3"], ["model.dimm", "unknown key", "allowed keys", "dim", "depth", "heads"]),
    (["--set", "optim.lr=abc"], ["optim.lr", "expected a number", "abc"]),
    (["--set", "mae.mask.ratio=1.5"], ["mae.mask.ratio", "must be < 1", "1.5"]),
    (["--set", "mae.mask.name=foo"], ["mae.mask.name", "unknown masker 'foo'", "random", "block", "tube",
                                      "multiblock", "point_block"]),
    # only the chosen masker's own keys (random has no num_targets)
    (["--set", "mae.mask.num_targets=3"], ["mae.mask.num_targets", "unknown key", "ratio"]),
    # norm_target is gone (Contract 2): mae.target={name: patch, normalize: ...}
    (["--set", "mae.norm_target=false"], ["mae.norm_target", "unknown key", "target"]),
    (["--set", "mae.target.normalize=false"], ["mae.target.normalize", "target 'chamfer' takes no parameters"]),
    (["--set", "mae.target.name=nope"], ["mae.target.name", "unknown target 'nope'", "chamfer", "patch"]),
    (["--set", "train.batch_size=true"], ["train.batch_size", "expected an integer"]),
    (["--set", "model.dim"], ["key.sub=value"]),
    (["--recipe", "nope"], ["unknown recipe 'nope'", "demo", "point-mae"]),
], ids=["unknown-key", "wrong-type", "out-of-range", "bad-choice", "other-maskers-key", "norm-target-gone",
        "chamfer-takes-no-params", "unknown-target", "bool-for-int", "no-equals", "unknown-recipe"])
def test_broken_config_is_a_clean_error(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    out = tmp_path / "run"
    result = invoke(*pretrain_args(out, *args, steps=2))
    assert_clean_error(result, *fragments)
    assert not out.exists()


@pytest.mark.parametrize(("content", "fragments"), [
    ("model: [1, 2\n", ["not valid YAML"]),
    ("- 1\n- 2\n", ["must hold a mapping", "list"]),
    (None, ["config file not found"]),
], ids=["not-yaml", "not-a-mapping", "missing"])
def test_broken_config_file_is_a_clean_error(tmp_path: Path, content: str | None,
                                             fragments: list[str]) -> None:
    path = tmp_path / "user.yaml"
    if content is not None:
        path.write_text(content)
    result = invoke(*pretrain_args(tmp_path / "run", "--config", str(path), steps=2))
    assert_clean_error(result, str(path), *fragments)


def test_unknown_objective_lists_the_registered_ones(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(*pretrain_args(out, objective="nope", steps=2))
    assert_clean_error(result, "objective", "unknown objective 'nope'", "jepa", "mae")
    assert not out.exists()


def test_grid_masker_on_a_token_set_fails_before_training(tmp_path: Path) -> None:
    """Point-cloud tokens are an unordered set: a grid masker (I-JEPA's multiblock) is refused with a
    message naming the key, before any step is trained."""
    out = tmp_path / "run"
    result = invoke(*pretrain_args(out, "--set", "jepa.mask.name=multiblock", *tiny_args(), objective="jepa",
                                   steps=2))
    err = assert_clean_error(result, "jepa.mask.name", "'multiblock'", "unordered set", "point_block")
    assert "pointcloud tokenizer" in err
    assert not (out / "checkpoints").exists() or not list_checkpoints(out / "checkpoints")
    assert not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip()
    assert not (out / "encoder").exists()


def test_patch_target_without_normalisation(tmp_path: Path) -> None:
    """``norm_target: false`` became ``mae.target={name: patch, normalize: false}``; the run and its card
    record it."""
    out = tmp_path / "run"
    result = invoke(*pretrain_args(out, "--set", "mae.target={name: patch, normalize: false}",
                                   *tiny_args("train.figure_every=100"), steps=2))
    assert result.exit_code == 0, (result.output, result.exception)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["mae"]["target"] == {"name": "patch", "normalize": False, "per_channel": False}
    card = json.loads((out / "encoder" / "config.json").read_text())
    assert card["objective_config"]["target"] == {"name": "patch", "normalize": False, "per_channel": False}
    cfg = build_config(mpt.get_modality("pointcloud"), sets=["mae.target.name=patch", "mae.target.normalize=false"])
    assert cfg.objective_config.target.name == "patch" and cfg.objective_config.target.normalize is False
    assert cfg.objectives["mae"] is cfg.objective_config


def test_a_warning_prints_as_one_line_without_its_source(tmp_path: Path) -> None:
    """In a real process (pytest would record warnings in-process): a user warning reaches stderr as
    ``warning: …`` only, without the ``file.py:LINE: UserWarning:`` prefix and the source line."""
    out = tmp_path / "run"
    # the demo recipe warms up for 20 steps: longer than a 2-step run, which warns
    args = [str(MPT_EXE), *pretrain_args(out, *tiny_args("train.figure_every=100"), steps=2)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if "warm-up" in ln]
    assert lines == ["warning: the warm-up (20 steps) is longer than the run (2 steps): the learning rate never "
                     "reaches optim.lr; lower optim.warmup_steps / optim.warmup_epochs"], proc.stderr
    assert ".py:" not in proc.stderr and "UserWarning" not in proc.stderr, proc.stderr
    assert "warnings.warn(" not in proc.stderr


def test_unknown_modality_lists_installed(tmp_path: Path) -> None:
    result = invoke("pretrain", "--modality", "nope", "--out", str(tmp_path / "run"))
    assert_clean_error(result, "unknown modality 'nope'", "pointcloud")


def test_log_with_tensorboard_missing_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a))
    result = invoke(*pretrain_args(tmp_path / "run", "--log-with", "tensorboard", *tiny_args(), steps=2))
    assert_clean_error(result, "tensorboard", "mpt-core[tensorboard]")


def test_log_with_tensorboard_writes_the_metrics(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = invoke(*pretrain_args(out, "--log-with", "tensorboard", "--log-every", "1",
                                   *tiny_args("train.figure_every=100"), steps=3))
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(out / "mpt"))  # Accelerate: project_dir/<project name>
    events.Reload()
    logged = [e.value for e in events.Scalars("loss")]
    assert logged == pytest.approx([m["loss"] for m in read_metrics(out)])


@pytest.mark.shared_data
def test_invalid_data_files_are_named(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "pointcloud" / "invalid"
    result = invoke(*pretrain_args(tmp_path / "a", "--data", str(folder), *tiny_args(), steps=2))
    err = assert_clean_error(result, str(folder))
    assert re.search(r"invalid/\S+\.(off|ply): ", err), err
    result = invoke(*pretrain_args(tmp_path / "b", "--data", str(folder), "--skip-bad-files", *tiny_args(),
                                   steps=2))
    assert_clean_error(result, "no usable point-cloud file", f"{len(list(folder.iterdir()))} skipped")


# ----------------------------------------------------------------------------------------------
# list / info / python -m


def test_list_shows_pointcloud_and_its_recipes() -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("pointcloud"))
    assert " ok " in lines[head] and "BROKEN" not in lines[head]
    recipes = []
    for ln in lines[head + 1:]:
        if not ln.startswith("    recipe "):
            break
        recipes.append(ln.split()[1].rstrip(":"))
    assert {"demo", "point-mae"} <= set(recipes)
    assert re.search(r"recipe demo \(default\):", result.stdout)
    # the registries: every masker, objective and target a config may name
    sections: dict[str, list[str]] = {}
    current = None
    for ln in lines:
        if ln in ("maskers:", "objectives:", "targets:"):
            current = sections.setdefault(ln.rstrip(":"), [])
        elif current is not None and ln.startswith("    "):
            current.append(ln.split()[0])
        else:
            current = None
    assert {"random", "block", "tube", "multiblock", "point_block", "dual"} <= set(sections["maskers"])
    assert {"mae", "jepa"} <= set(sections["objectives"])
    assert "patch" in sections["targets"]


def test_config_lists_every_key() -> None:
    result = invoke("config", "--modality", "pointcloud")
    assert result.exit_code == 0, result.output
    keys = {ln.split()[0] for ln in result.stdout.splitlines() if ln.startswith("    ")}
    assert {"model.norm_eps", "train.max_steps", "mae.mask.name", "mae.target.name", "mae.target.normalize",
            "jepa.export", "data.num_points", "tokenizer.num_groups", "<objective>.mask.ratio"} <= keys
    assert not any("norm_target" in k for k in keys)
    assert re.search(r"^target chamfer:", result.stdout, re.M)  # the modality's own target
    bad = invoke("config", "--modality", "nope")
    assert_clean_error(bad, "unknown modality 'nope'")


def test_info_prints_the_architecture(mae_run) -> None:  # noqa: ANN001
    out, _ = mae_run
    encoder = mpt.load_encoder(out / "encoder")
    n_params = sum(p.numel() for p in encoder.parameters())
    for target in (out / "encoder", out):  # a run folder is redirected to its encoder/
        result = invoke("info", str(target))
        assert result.exit_code == 0, result.output
        assert f"encoder      {out / 'encoder'}" in result.stdout
        assert "architecture ViT depth 1, width 32, 2 heads" in result.stdout
        assert f"{n_params:,} parameters" in result.stdout
        assert "modality     pointcloud" in result.stdout
        assert "objective    mae" in result.stdout


def test_info_without_card_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an encoder")
    result = invoke("info", str(tmp_path))
    assert_clean_error(result, "config.json is missing", str(tmp_path))


def test_python_m_mpt_cli_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "mpt_cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in ("pretrain", "list", "info"):
        assert re.search(rf"^\W*{command}\b", proc.stdout, re.M), proc.stdout


def test_a_bad_file_in_a_folder_stops_the_run_or_is_skipped_and_listed(tmp_path: Path) -> None:
    import numpy as np

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for i in range(3):
        np.save(data / f"good{i}.npy", np.random.default_rng(i).random((400, 3), dtype=np.float32))
    bad = np.random.default_rng(9).random((400, 3), dtype=np.float32)
    bad[5, 1] = np.nan
    np.save(data / "sub" / "nan.npy", bad)
    (data / "truncated.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 100\n"
                                         b"property float x\nproperty float y\nproperty float z\nend_header\n"
                                         + b"\0" * 40)
    result = invoke(*pretrain_args(tmp_path / "a", "--data", str(data), *tiny_args(batch_size=2), steps=2))
    err = assert_clean_error(result, "--skip-bad-files")
    assert "nan.npy" in err or "truncated.ply" in err
    out = tmp_path / "b"
    result = invoke(*pretrain_args(out, "--data", str(data), "--skip-bad-files", *tiny_args(batch_size=2), steps=2))
    assert result.exit_code == 0, result.output
    assert "skipped 2 bad file(s)" in result.stdout
    listed = dict(line.split("\t") for line in (out / "skipped.txt").read_text().splitlines())
    assert set(listed) == {str(data / "sub" / "nan.npy"), str(data / "truncated.ply")}
    assert "NaN" in listed[str(data / "sub" / "nan.npy")] and "truncated" in listed[str(data / "truncated.ply")]
    card = json.loads((out / "encoder" / "config.json").read_text())
    assert card["trained_on"]["skipped_files"] == 2
    assert card["trained_on"]["samples"] == 3 * card["data"]["repeats"]  # 3 usable files per epoch


@pytest.mark.parametrize("workers", [0, 1])
def test_a_file_that_fails_mid_run_stops_it_or_is_skipped_and_counted(tmp_path: Path, monkeypatch, workers) -> None:  # noqa: ANN001
    """A file that passes the construction check but fails when read during training (a decode
    error in a DataLoader worker or in the main process): a clean DataError naming it, or with
    --skip-bad-files its items are left out of their batches, it is listed once and counted."""
    import numpy as np

    import mpt_pointcloud.dataset as pc_dataset
    from mpt.errors import DataError

    data = tmp_path / "data"
    data.mkdir()
    for i, name in enumerate(("a", "b", "c", "flaky")):
        np.save(data / f"{name}.npy", np.random.default_rng(i).random((400, 3), dtype=np.float32))
    real, checked = pc_dataset.read_points, set()

    def read_points(f, **kw):  # noqa: ANN001, ANN003, ANN202 - the check passes, every later read fails
        if Path(f).name == "flaky.npy" and f in checked:
            raise DataError(f, "decode error at byte 128")
        checked.add(f)
        return real(f, **kw)

    monkeypatch.setattr(pc_dataset, "read_points", read_points)
    sets = (*tiny_args(batch_size=2), "--set", f"train.num_workers={workers}", "--set", "data.repeats=2")
    result = invoke(*pretrain_args(tmp_path / "a", "--data", str(data), *sets, steps=6))
    assert_clean_error(result, "flaky.npy", "decode error at byte 128", "--skip-bad-files")
    out = tmp_path / "b"
    result = invoke(*pretrain_args(out, "--data", str(data), "--skip-bad-files", *sets, steps=6))
    assert result.exit_code == 0, result.output
    assert "skipped 1 bad file(s)" in result.stdout
    assert (out / "skipped.txt").read_text() == f"{data / 'flaky.npy'}\tdecode error at byte 128\n"
    assert len(read_metrics(out)) > 0 and read_metrics(out)[-1]["step"] == 6
    assert json.loads((out / "encoder" / "config.json").read_text())["trained_on"]["skipped_files"] == 1
