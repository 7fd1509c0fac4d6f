"""Figures for univariate and multivariate batches, independent and mixed channels, MAE and JEPA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mpt.config import build_config
from mpt.registry import get_modality
from mpt.trainer import build_model

TINY = ["model.dim=16", "model.depth=1", "model.heads=2", "mae.decoder_dim=16", "mae.decoder_depth=1",
        "mae.decoder_heads=2", "jepa.predictor_dim=16", "jepa.predictor_depth=1", "jepa.predictor_heads=2"]


@pytest.mark.parametrize("objective", ["mae", "jepa"])
@pytest.mark.parametrize(("channels", "mode"), [(1, "independent"), (3, "independent"), (1, "mixed"), (3, "mixed")])
def test_figure_for_any_channel_count(tmp_path: Path, objective: str, channels: int, mode: str) -> None:
    modality = get_modality("timeseries")
    sets = [*TINY, f"tokenizer.channels={mode}", f"tokenizer.num_channels={channels}"]
    cfg = build_config(modality, "demo", None, sets, {"objective": objective})
    batch = torch.randn(2, channels, 100).cumsum(-1)
    batch[1, 0, 80:] = float("nan")  # a padded end
    torch.manual_seed(0)
    model, masker = build_model(cfg, modality, batch)
    tokens = model.backbone.tokenizer.tokenize(batch)
    mask = masker(tokens, torch.Generator().manual_seed(0))
    with torch.no_grad():
        figure = model.figure(batch, tokens, mask, model(tokens, mask))
    path = tmp_path / "fig.png"
    modality.visualize(figure, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
