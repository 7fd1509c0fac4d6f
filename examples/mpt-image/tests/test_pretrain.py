"""Real pretraining runs (mpt.trainer.pretrain) on the shipped images and on a folder of grey images."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import mpt
from mpt.config import build_config
from mpt.trainer import pretrain

SMALL = ("data.size=32", "model.dim=64", "model.depth=2", "mae.decoder_dim=64", "mae.decoder_depth=1",
         "jepa.predictor_dim=64", "jepa.predictor_depth=1")


def run(out: Path, *sets: str, steps: int, data: Path | None = None, objective: str = "mae") -> list[dict]:
    """The demo recipe, shrunk by ``SMALL`` and ``sets``, logged every step."""
    modality = mpt.get_modality("image")
    cfg = build_config(modality, "demo", None, (*SMALL, *sets),
                       {"objective": objective, "train": {"max_steps": steps, "log_every": 1, "figure_every": steps}})
    pretrain(cfg, modality, out, data=data, progress=False)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_mae_on_the_demo_images_lowers_the_loss(tmp_path: Path) -> None:
    """norm_pix: predicting each hidden patch's mean scores 1.0; the first steps score above it."""
    losses = [m["loss"] for m in run(tmp_path / "run", steps=150)]
    first, last = mean(losses[:5]), mean(losses[-20:])
    assert last < 0.75 * first and last < 0.85, (first, last)
    assert (tmp_path / "run" / "figures" / "step-000150.png").is_file()
    encoder = mpt.load_encoder(tmp_path / "run" / "encoder")
    card = json.loads((tmp_path / "run" / "encoder" / "config.json").read_text())
    assert card["tokenizer"]["settings"]["mean"] == [0.485, 0.456, 0.406]
    with torch.no_grad():
        out = encoder(torch.rand(2, 3, 48, 80))  # another size and shape than in training: sin-cos positions
    assert out.tokens.shape == (2, 60, 64) and out.pooled.shape == (2, 64)


def test_jepa_on_the_demo_images_lowers_the_loss_without_collapse(tmp_path: Path) -> None:
    metrics = run(tmp_path / "run", steps=150, objective="jepa")
    losses = [m["loss"] for m in metrics]
    assert mean(losses[-20:]) < 0.7 * mean(losses[:5])
    assert min(m["target_std"] for m in metrics[-20:]) > 0.3  # teacher features stay diverse across the batch


def test_a_folder_of_grey_images_trains_a_one_channel_encoder(tmp_path: Path, save, rgb) -> None:
    for k in range(6):
        save(tmp_path / "data" / ("a" if k % 2 else "b") / f"{k}.png", rgb(48, 64, k)[..., k % 3])
    metrics = run(tmp_path / "run", "data.channels=null", "tokenizer.channels=1", "train.batch_size=4",
                  "data.repeats=2", "optim.warmup_steps=2", steps=12, data=tmp_path / "data", objective="jepa")
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    encoder = mpt.load_encoder(tmp_path / "run" / "encoder")
    with torch.no_grad():
        assert encoder(torch.rand(1, 1, 32, 40)).tokens.shape == (1, 20, 64)
    dataset = mpt.get_modality("image").dataset(tmp_path / "data", "test",
                                               build_config(mpt.get_modality("image"), "demo",
                                                            sets=("data.channels=null", "data.size=32")).data)
    assert dataset.classes == ["a", "b"] and dataset[0].input.shape == (1, 32, 32)
