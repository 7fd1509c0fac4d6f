"""`mpt.load_encoder`: the exported encoder is the trained one, and loading is strict and safe."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import mpt
from _mpt_helpers import TINY_SETS
from mpt.backbone import build_backbone
from mpt.checkpoint import load_checkpoint
from mpt.config import ModelConfig, build_config, parse, parse_config, without_record
from mpt.errors import CheckpointError, MptError
from mpt.optim import create_optimizer
from mpt.trainer import build_model, pretrain

STEPS = 3


def train(out: Path, objective: str) -> dict:
    modality = mpt.get_modality("pointcloud")
    cfg = build_config(modality, sets=TINY_SETS, flags={
        "objective": objective, "train": {"max_steps": STEPS, "batch_size": 8, "log_every": 1}})
    result = pretrain(cfg, modality, out, progress=False)
    return {"steps": result.steps}


@pytest.fixture(scope="session", params=["mae", "jepa"])
def run(request: pytest.FixtureRequest, shared_dir) -> Path:  # noqa: ANN001
    out, info = shared_dir(f"pretrained-{request.param}", lambda out: train(out, request.param))
    assert info["steps"] == STEPS
    return out


@pytest.fixture
def encoder_copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run / "encoder", tmp_path / "encoder"))


def rebuild(out: Path):  # noqa: ANN201
    """The run's objective, restored from its last checkpoint."""
    modality = mpt.get_modality("pointcloud")
    raw = without_record(yaml.safe_load((out / "config.yaml").read_text()))
    cfg = parse_config(raw, modality)  # objective sections (mae:, jepa:) sit at the top level
    objective, _ = build_model(cfg, modality)  # sized from the config alone (Contract 2): no batch
    optimizer = create_optimizer(objective, cfg.optim)
    state = load_checkpoint(out / "checkpoints" / f"step-{STEPS}", objective, optimizer)
    assert state["step"] == STEPS
    return cfg, objective


def test_loaded_encoder_equals_the_trained_one(run: Path) -> None:
    cfg, objective = rebuild(run)
    trained = objective.export().eval()
    encoder = mpt.load_encoder(run / "encoder")
    assert not encoder.training
    assert cfg.data.num_points != 300
    batch = torch.randn(4, 300, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = encoder(batch), trained(batch)
    g, d = cfg.tokenizer.num_groups, cfg.model.dim
    assert got.tokens.shape == (4, g, d) and got.pooled.shape == (4, d)
    torch.testing.assert_close(got.tokens, want.tokens, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.pooled, want.pooled, atol=1e-6, rtol=0)
    assert got.tokens.std() > 0  # not a degenerate output that would match anything
    with torch.no_grad():  # a Batch and a plain tensor are the same input
        torch.testing.assert_close(encoder(mpt.Batch(input=batch)).tokens, got.tokens, atol=0, rtol=0)


def test_exported_weights_are_the_objective_export(run: Path) -> None:
    cfg, objective = rebuild(run)
    weights = load_file(str(run / "encoder" / "model.safetensors"))
    exported = objective.export().state_dict()
    assert weights.keys() == exported.keys()
    for k, v in exported.items():
        assert torch.equal(weights[k], v), k
    if cfg.objective == "jepa":  # I-JEPA publishes the EMA teacher, not the context encoder
        student = objective.backbone.state_dict()
        assert any(not torch.equal(weights[k], student[k]) for k in weights)


def test_card_describes_the_encoder(run: Path) -> None:
    card = json.loads((run / "encoder" / "config.json").read_text())
    encoder = mpt.load_encoder(run / "encoder")
    assert card["modality"] == "pointcloud" and card["plugin_api"] == mpt.PLUGIN_API
    assert card["encoder"]["dim"] == 32 and card["encoder"]["depth"] == 1
    assert card["tokenizer"]["config"]["num_groups"] == 16
    assert card["num_params"] == sum(p.numel() for p in encoder.parameters())
    assert card["trained_on"]["steps"] == STEPS
    # card format 2: the objective's own section, and for JEPA which encoder was exported
    assert card["format_version"] == 2
    objective = card["objective"]
    assert objective in ("mae", "jepa")
    assert card["objective_config"]["mask"]["name"] == {"mae": "random", "jepa": "point_block"}[objective]
    if objective == "jepa":
        assert card["exported_encoder"] == "target (EMA teacher)"
        assert "predictor_dim" in card["objective_config"]
    else:
        assert "exported_encoder" not in card
        assert card["objective_config"]["target"]["name"] == "chamfer"
    assert "mpt.load_encoder(" in (run / "encoder" / "README.md").read_text()


def test_card_with_other_width_names_the_tensor(encoder_copy: Path) -> None:
    card = json.loads((encoder_copy / "config.json").read_text())
    card["encoder"]["dim"] = 64
    (encoder_copy / "config.json").write_text(json.dumps(card))
    weights = load_file(str(encoder_copy / "model.safetensors"))
    modality = mpt.get_modality("pointcloud")
    tok = parse(modality.tokenizer_config, card["tokenizer"]["config"])
    wide = build_backbone(modality, tok, parse(ModelConfig, card["encoder"])).state_dict()
    mismatched = [k for k, v in wide.items() if v.shape != weights[k].shape]
    assert mismatched
    with pytest.raises(CheckpointError) as info:
        mpt.load_encoder(encoder_copy)
    assert mismatched[0] in str(info.value) and "shape" in str(info.value)


@pytest.mark.parametrize("change", ["extra", "missing"])
def test_weights_with_other_keys_are_listed(encoder_copy: Path, change: str) -> None:
    path = encoder_copy / "model.safetensors"
    weights = load_file(str(path))
    if change == "extra":
        key = "encoder.extra_head.weight"
        weights[key] = torch.zeros(2, 2)
    else:
        key = sorted(weights)[-1]
        del weights[key]
    save_file(weights, str(path))
    with pytest.raises(CheckpointError) as info:
        mpt.load_encoder(encoder_copy)
    msg = str(info.value)
    assert key in msg
    assert ("unexpected ['" if change == "extra" else "missing ['") in msg


def test_truncated_weights_are_a_checkpoint_error(encoder_copy: Path) -> None:
    path = encoder_copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        mpt.load_encoder(encoder_copy)


def test_missing_card_is_a_checkpoint_error(run: Path, encoder_copy: Path) -> None:
    (encoder_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing") as info:
        mpt.load_encoder(encoder_copy)
    assert "encoder/ subfolder" not in str(info.value)
    with pytest.raises(CheckpointError, match=r"run folder: use its encoder/ subfolder"):
        mpt.load_encoder(run)


def test_newer_card_format_and_unknown_modality(encoder_copy: Path) -> None:
    path = encoder_copy / "config.json"
    card = json.loads(path.read_text())
    path.write_text(json.dumps({**card, "format_version": card["format_version"] + 1}))
    with pytest.raises(CheckpointError, match="upgrade mpt-core"):
        mpt.load_encoder(encoder_copy)
    path.write_text(json.dumps({**card, "modality": "no_such_modality"}))
    with pytest.raises(MptError, match="no_such_modality"):
        mpt.load_encoder(encoder_copy)


def safetensors_header(path: Path) -> dict:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data)
    return json.loads(data[8 : 8 + n])


def test_files_need_no_pickle(run: Path) -> None:
    for path in (run / "encoder" / "model.safetensors",
                 run / "checkpoints" / f"step-{STEPS}" / "model.safetensors"):
        assert path.read_bytes()[:1] != b"\x80" and path.read_bytes()[:2] != b"PK"  # not pickle / zip
        header = safetensors_header(path)
        assert set(load_file(str(path))) == set(header) - {"__metadata__"}
    metadata = safetensors_header(run / "encoder" / "model.safetensors")["__metadata__"]
    assert metadata["format"] == "mpt-encoder"
    opt = torch.load(run / "checkpoints" / f"step-{STEPS}" / "optimizer.pt", weights_only=True)
    assert {"state", "param_groups"} <= set(opt)
    assert [g["weight_decay"] for g in opt["param_groups"]] == [0.05, 0.0]
    assert all(s["step"] == STEPS for s in opt["state"].values())


def test_loaded_encoder_normalises_raw_clouds_and_rejects_non_finite(tmp_path) -> None:  # noqa: ANN001
    """A scan in metres far from the origin gives the features of the same scan normalised."""
    from mpt.testing import Kit

    kit = Kit("pointcloud", ("tokenizer.num_groups=8", "tokenizer.group_size=8", "tokenizer.hidden=16",
                             "data.num_points=128", "data.cache_points=256"))
    kit.check_round_trip(tmp_path)
    encoder = mpt.load_encoder(tmp_path / "encoder")
    clouds = torch.rand(2, 200, 3)
    raw = clouds * 40.0 + torch.tensor([500.0, -80.0, 12.0])
    assert torch.allclose(encoder(raw).tokens, encoder(clouds).tokens, atol=1e-4)
    clouds[1, 7, 2] = float("nan")
    with pytest.raises(mpt.DataError, match="1 NaN/Inf"):
        encoder(clouds)


def test_format_1_card_keeps_the_layer_norm_eps_it_was_trained_with(encoder_copy: Path) -> None:
    """Card format 2 records ``encoder.norm_eps`` (default 1e-6 since Contract 2); a format-1 card has no
    such key and was trained with LayerNorm's 1e-5, which loading must restore."""
    path = encoder_copy / "config.json"
    card = json.loads(path.read_text())
    assert card["encoder"]["norm_eps"] == 1e-6
    current = mpt.load_encoder(encoder_copy)
    assert {m.eps for m in current.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6}
    old = {**card, "format_version": 1, "encoder": {k: v for k, v in card["encoder"].items() if k != "norm_eps"}}
    path.write_text(json.dumps(old))
    legacy = mpt.load_encoder(encoder_copy)
    assert {m.eps for m in legacy.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}
    batch = torch.rand(2, 200, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.equal(legacy(batch).tokens, current(batch).tokens)  # the eps is really used


def test_jepa_export_context_publishes_the_student(tmp_path: Path) -> None:
    """``jepa.export=context``: encoder/ holds the context encoder (the student), and the card says so."""
    modality = mpt.get_modality("pointcloud")
    cfg = build_config(modality, sets=[*TINY_SETS, "jepa.export=context"], flags={
        "objective": "jepa", "train": {"max_steps": 2, "batch_size": 8, "log_every": 1}})
    out = tmp_path / "run"
    pretrain(cfg, modality, out, progress=False)
    card = json.loads((out / "encoder" / "config.json").read_text())
    assert card["exported_encoder"] == "context (student)" and card["objective_config"]["export"] == "context"
    raw = without_record(yaml.safe_load((out / "config.yaml").read_text()))
    saved = parse_config(raw, modality)
    objective, _ = build_model(saved, modality)
    load_checkpoint(out / "checkpoints" / "step-2", objective, create_optimizer(objective, saved.optim))
    weights = load_file(str(out / "encoder" / "model.safetensors"))
    student, teacher = objective.backbone.state_dict(), objective.teacher.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in student.items())
    assert any(not torch.equal(weights[k], teacher[k]) for k in weights)
