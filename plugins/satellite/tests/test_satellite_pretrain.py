"""Real pretraining runs on the shared Landsat-7 scene (band folder, nodata) and the demo chip:
MAE and JEPA lower the loss; the card holds the bands; a loaded encoder refuses other bands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import mpt
from mpt.config import build_config
from mpt.contract import Batch
from mpt.errors import DataError
from mpt.trainer import pretrain

ROOT = Path(__file__).resolve().parents[3]
LANDSAT = Path(os.environ.get("MPT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "satellite" / "landsat7"
SMALL = ("model.dim=64", "model.depth=2", "mae.decoder_dim=64", "mae.decoder_depth=1", "jepa.predictor_dim=64",
         "jepa.predictor_depth=1", "tokenizer.group_dim=16", "train.batch_size=8")
LANDSAT_SETS = ("data.sensor=landsat7", "data.size=32", "data.stride=32", "data.gsd=null", "data.repeats=2",
                "tokenizer.groups=[[B1,B2,B3],[B4,B5,B7]]")


def run(out: Path, *sets: str, data: Path | None, steps: int = 60, objective: str = "mae") -> list[float]:
    modality = mpt.get_modality("satellite")
    cfg = build_config(modality, "demo", None, (*SMALL, *sets),
                       {"objective": objective, "train": {"max_steps": steps, "log_every": 1, "figure_every": steps}})
    pretrain(cfg, modality, out, data=data, progress=False)
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.skipif(not LANDSAT.is_dir(), reason=f"needs the shared Landsat-7 scene at {LANDSAT}")
@pytest.mark.parametrize("objective", ["mae", "jepa"])
def test_mae_and_jepa_lower_the_loss_on_landsat(tmp_path: Path, objective: str) -> None:
    losses = run(tmp_path / "run", *LANDSAT_SETS, data=LANDSAT, objective=objective)
    assert all(v == v for v in losses)  # nodata never reaches the loss as NaN
    assert mean(losses[-10:]) < (0.85 if objective == "mae" else 0.7) * mean(losses[:5]), losses
    card = json.loads((tmp_path / "run" / "encoder" / "config.json").read_text())
    assert card["tokenizer"]["config"]["bands"] == ["B1", "B2", "B3", "B4", "B5", "B7"]


def test_demo_run_card_and_band_checks_of_a_loaded_encoder(tmp_path: Path) -> None:
    losses = run(tmp_path / "run", data=None, steps=40)
    assert mean(losses[-8:]) < 0.9 * mean(losses[:5]), losses
    assert (tmp_path / "run" / "figures" / "step-000040.png").is_file()
    encoder = mpt.load_encoder(tmp_path / "run" / "encoder")
    x = torch.rand(2, 4, 16, 16) * 3000
    with torch.no_grad():
        out = encoder(Batch(input=x, meta={"bands": [["B02", "B03", "B04", "B08"]] * 2, "gsd": torch.full((2,), 10.0)}))
    assert out.pooled.shape == (2, 64)
    with pytest.raises(DataError, match="B03.*B02|B02.*B03"):
        encoder(Batch(input=x, meta={"bands": [["B03", "B02", "B04", "B08"]] * 2}))
