"""Real pretraining runs: MAE and JEPA lower the loss on the MNI152 volume; the encoder card holds
the preprocessing plan and a loaded encoder replays it on raw files, giving the training path's
features; `mpt info` shows the plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from medical_helpers import shared_medical, write
from typer.testing import CliRunner

import mpt
from mpt.config import build_config, parse
from mpt.trainer import pretrain
from mpt_medical import MedicalDataConfig
from mpt_medical.dataset import MedicalDataset
from mpt_medical.modality import DEMO_DATA
from mpt_medical.plan import raw_batch

MNI = shared_medical() / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
SMALL = ("model.dim=64", "model.depth=2", "model.heads=4", "mae.decoder_dim=64", "mae.decoder_depth=1",
         "jepa.predictor_dim=64", "jepa.predictor_depth=1", "train.batch_size=4", "data.crop=32")


def run(out: Path, *sets: str, data: Path | None, steps: int = 60, objective: str = "mae") -> list[float]:
    modality = mpt.get_modality("medical")
    cfg = build_config(modality, "demo", None, (*SMALL, *sets),
                       {"objective": objective, "train": {"max_steps": steps, "log_every": 1, "figure_every": steps}})
    pretrain(cfg, modality, out, data=data, progress=False)
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def replayed_and_trained(encoder_dir: Path, file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``file`` through the dataset (training path, probe split) and through the loaded
    encoder on the raw file (the plan replayed)."""
    encoder = mpt.load_encoder(encoder_dir)
    card = json.loads((encoder_dir / "config.json").read_text())
    dataset = MedicalDataset(file, "probe", parse(MedicalDataConfig, card["data"], "data"), progress=False)
    with torch.no_grad():
        trained = encoder(mpt.get_modality("medical").collate([dataset[0]])).tokens
        replayed = encoder(raw_batch(file)).tokens
    return trained, replayed


@pytest.mark.skipif(not MNI.is_file(), reason=f"needs the shared MNI152 T1 at {MNI}")
@pytest.mark.parametrize("objective", ["mae", "jepa"])
def test_mae_and_jepa_lower_the_loss_on_the_mni_volume(tmp_path: Path, objective: str) -> None:
    """The 1 mm template resampled to 2 mm slab by slab, random 32³ crops."""
    losses = run(tmp_path / "run", "data.spacing=[2.0,2.0,2.0]", data=MNI, objective=objective)
    assert all(v == v for v in losses)
    assert mean(losses[-10:]) < (0.85 if objective == "mae" else 0.7) * mean(losses[:5]), losses
    trained, replayed = replayed_and_trained(tmp_path / "run" / "encoder", MNI)
    torch.testing.assert_close(replayed, trained, rtol=1e-5, atol=1e-5)


def test_demo_card_holds_the_plan_and_load_encoder_replays_it(tmp_path: Path) -> None:
    losses = run(tmp_path / "run", data=None, steps=30)
    assert mean(losses[-5:]) < 0.9 * mean(losses[:5]), losses
    assert (tmp_path / "run" / "figures" / "step-000030.png").is_file()
    card = json.loads((tmp_path / "run" / "encoder" / "config.json").read_text())
    plan = card["tokenizer"]["config"]
    assert plan["spacing"] == [2.0, 2.0, 2.0] and plan["crop"] == [32, 32, 32] and plan["orientation"] == "RAS"
    assert plan["intensity"] == "mri" and plan["foreground"] == "nonzero"
    assert "whole volume" in card["tokenizer"]["settings"]["plan"]["intensity"]
    demo = next(DEMO_DATA.glob("*.nii.gz"))
    trained, replayed = replayed_and_trained(tmp_path / "run" / "encoder", demo)
    torch.testing.assert_close(replayed, trained, rtol=1e-5, atol=1e-5)
    # the same volume stored LPS with permuted axes and at 1 mm: the plan brings it to the same voxels
    import nibabel as nib

    img = nib.load(str(demo))
    data = np.asarray(img.dataobj, dtype=np.float32)
    stored = np.ascontiguousarray(data[::-1, :, ::-1].transpose(1, 0, 2))
    n0, _, n2 = data.shape
    flip = np.array([[0, -1, 0, n0 - 1], [1, 0, 0, 0], [0, 0, -1, n2 - 1], [0, 0, 0, 1]], dtype=float)
    lps = write(tmp_path / "lps.nii.gz", stored, affine=img.affine @ flip)
    _, other = replayed_and_trained(tmp_path / "run" / "encoder", lps)
    torch.testing.assert_close(other, replayed, rtol=1e-5, atol=1e-5)

    from mpt_cli.app import app

    result = CliRunner().invoke(app, ["info", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "preprocessing plan" in result.output and "[2.0, 2.0, 2.0]" in result.output and "RAS" in result.output


def test_ct_plan_with_fitted_window_is_replayed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ct = np.full((48, 48, 40), -1000.0, np.float32)
    ct[6:42, 8:40, 4:36] = rng.normal(40, 30, (36, 32, 32))
    ct[18:30, 18:30, 14:26] = 1200
    affine = np.diag([-0.8, -0.8, 1.5, 1.0])  # LPS storage, anisotropic voxels
    (tmp_path / "ct").mkdir()
    path = write(tmp_path / "ct" / "scan.nii.gz", ct, affine=affine)
    run(tmp_path / "run", "tokenizer.intensity=ct", "tokenizer.foreground=above", "data.spacing=onemmiso",
        data=tmp_path / "ct", steps=2)
    plan = json.loads((tmp_path / "run" / "encoder" / "config.json").read_text())["tokenizer"]["config"]
    assert plan["intensity"] == "ct" and plan["window"][1] == pytest.approx(1200, abs=1) and plan["std"] > 0
    trained, replayed = replayed_and_trained(tmp_path / "run" / "encoder", path)
    torch.testing.assert_close(replayed, trained, rtol=1e-5, atol=1e-5)
