"""Real pretraining runs (mpt.trainer.pretrain) on the shipped sonic-pi samples: AudioMAE, its window
decoder, band masking and JEPA lower the loss; the encoder takes raw waveforms of any length."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import mpt
from mpt.config import build_config
from mpt.trainer import pretrain

SMALL = ("data.seconds=1.0", "data.repeats=4", "tokenizer.mel=64", "model.dim=64", "model.depth=2",
         "mae.decoder_dim=64", "mae.decoder_depth=2", "jepa.predictor_dim=64", "jepa.predictor_depth=1",
         "train.batch_size=8", "tokenizer.fit_segments=16")


def run(out: Path, *sets: str, steps: int = 60, objective: str = "mae") -> list[float]:
    modality = mpt.get_modality("audio")
    cfg = build_config(modality, "demo", None, (*SMALL, *sets),
                       {"objective": objective, "train": {"max_steps": steps, "log_every": 1, "figure_every": steps}})
    pretrain(cfg, modality, out, progress=False)
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_audiomae_lowers_the_loss_and_the_encoder_takes_raw_waveforms(tmp_path: Path) -> None:
    losses = run(tmp_path / "run")
    assert mean(losses[-10:]) < 0.8 * mean(losses[:5]), losses
    assert (tmp_path / "run" / "figures" / "step-000060.png").is_file()
    card = json.loads((tmp_path / "run" / "encoder" / "config.json").read_text())
    tok = card["tokenizer"]["settings"]
    assert tok["stats_source"] == "fitted on the training data" and tok["rate"] == 16000
    encoder = mpt.load_encoder(tmp_path / "run" / "encoder")
    with torch.no_grad():
        out = encoder(0.1 * torch.randn(2, 24000))  # 1.5 s: 148 frames → 9 time patches × 4 mel patches
    assert out.tokens.shape == (2, 9 * 4, 64) and out.pooled.shape == (2, 64)


def test_window_decoder_and_band_masking_lower_the_loss(tmp_path: Path) -> None:
    window = run(tmp_path / "window", "mae.decoder_window=[2,2]", steps=40)
    assert mean(window[-8:]) < 0.85 * mean(window[:5]), window
    bands = run(tmp_path / "bands", "mae.mask={name: bands, time: 0.5, freq: 0.3}", steps=40)
    assert mean(bands[-8:]) < 0.85 * mean(bands[:5]), bands


def test_jepa_lowers_the_loss_on_the_spectrogram_grid(tmp_path: Path) -> None:
    losses = run(tmp_path / "jepa", objective="jepa")
    assert mean(losses[-10:]) < 0.7 * mean(losses[:5]), losses
