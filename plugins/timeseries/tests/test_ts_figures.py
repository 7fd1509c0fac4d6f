"""Figures for univariate and multivariate batches, independent and mixed channels, MAE and JEPA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mpt.config import build_config
from mpt.contract import Batch, Figure, Mask, as_masks
from mpt.registry import get_modality
from mpt.trainer import build_model
from mpt_timeseries.figures import _reconstruction

TINY = ["model.dim=16", "model.depth=1", "model.heads=2", "mae.decoder_dim=16", "mae.decoder_depth=1",
        "mae.decoder_heads=2", "jepa.predictor_dim=16", "jepa.predictor_depth=1", "jepa.predictor_heads=2"]


@pytest.mark.parametrize("objective", ["mae", "jepa"])
@pytest.mark.parametrize(("channels", "mode"), [(1, "independent"), (3, "independent"), (1, "mixed"), (3, "mixed")])
def test_figure_for_any_channel_count(tmp_path: Path, objective: str, channels: int, mode: str) -> None:
    modality = get_modality("timeseries")
    sets = [*TINY, f"tokenizer.channels={mode}", f"tokenizer.num_channels={channels}"]
    cfg = build_config(modality, "demo", None, sets, {"objective": objective})
    x = torch.randn(2, channels, 100).cumsum(-1)
    x[1, 0, 80:] = float("nan")  # a padded end
    batch = Batch(input=x, sources=["a", "b"])
    torch.manual_seed(0)
    model, masker = build_model(cfg, modality)
    tokens = model.backbone.tokens(batch)
    masks = as_masks(masker(tokens, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        figure = model.figure(batch, tokens, masks, model(tokens, masks))
    assert figure.batch is batch and (figure.reconstruction is not None) == (objective == "mae")
    path = tmp_path / "fig.png"
    modality.visualize(figure, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("mode", ["independent", "mixed"])
def test_reconstruction_is_drawn_at_mask_targets_in_the_input_units(tmp_path: Path, mode: str) -> None:
    """``Figure.reconstruction`` holds the patches of ``mask.targets()`` (pred ∩ decode under decoder
    masking): the figure puts each where it belongs and maps it back through the inverse RevIN."""
    modality = get_modality("timeseries")
    cfg = build_config(modality, "demo", None, [*TINY, f"tokenizer.channels={mode}", "tokenizer.num_channels=2"])
    model, _ = build_model(cfg, modality)
    tok = model.backbone.tokenizer
    x = torch.randn(1, 2, 100).cumsum(-1) * 3 + 50
    batch = Batch.of(x)
    tokens = model.backbone.tokens(batch)  # 10 patches of 10 steps
    rows = tokens.rows_per_sample
    mask = Mask(keep=torch.tensor([[0, 1, 2, 5, 6]] * rows), pred=torch.tensor([[3, 4, 7, 8, 9]] * rows),
                decode=torch.tensor([[0, 4, 8, 9]] * rows))
    assert mask.targets().tolist() == [[4, 8, 9]] * rows
    exact = tokens.patches[:, [4, 8, 9]]  # a perfect reconstruction of the targets (RevIN values)
    figure = Figure(batch=batch, tokens=tokens, mask=mask, reconstruction=exact, tokenizer=tok)
    drawn = _reconstruction(figure, tok, x)  # [C, T]
    steps = torch.zeros(100, dtype=torch.bool)
    for n in (4, 8, 9):
        steps[n * 10 : n * 10 + 10] = True
    assert drawn[:, ~steps].isnan().all()  # nothing where no reconstruction was made (3 and 7 included)
    torch.testing.assert_close(drawn[:, steps], x[0][:, steps], atol=1e-3, rtol=1e-5)  # in the input's units
    modality.visualize(figure, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
