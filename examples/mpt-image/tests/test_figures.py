"""Figures: the masked panel hides exactly the hidden patches, the reconstruction is de-normalised;
``Figure.batch`` holds raw pixels and ``Figure.reconstruction`` one row per token of ``mask.targets()``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mpt.config import parse
from mpt.contract import Batch, Figure, Mask, gather_tokens
from mpt_image.config import ImageTokenizerConfig
from mpt_image.figures import GREY, channel_note, panels, visualize
from mpt_image.tokenizer import ImageTokenizer


def make_figure(channels: int, jepa: bool = False, decode: list[int] | None = None) -> Figure:
    """A 16×24 image (patch 8: grid 2×3) with patches 0 and 4 visible, 1 and 5 predicted (JEPA) or 1, 2,
    3, 5 hidden (MAE; ``decode``: the decoder's tokens); as the core builds it: the raw batch, tokens of
    the normalised one, and MAE's reconstruction of ``mask.targets()`` equal to the true (normalised)
    patch content, so it must reproduce the image."""
    tok = ImageTokenizer(parse(ImageTokenizerConfig, {"patch": 8, "channels": channels}, "tokenizer"), 16)
    batch = Batch(torch.rand(2, channels, 16, 24))
    tokens = tok.tokenize(tok.normalize(batch))
    keep, pred = torch.tensor([[0, 4]] * 2), torch.tensor([[1, 5]] * 2) if jepa else torch.tensor([[1, 2, 3, 5]] * 2)
    mask = Mask(keep=keep, pred=pred, decode=None if decode is None else torch.tensor([decode] * 2))
    recon = None if jepa else gather_tokens(tokens.patches, mask.targets())
    return Figure(batch=batch, tokens=tokens, mask=mask, reconstruction=recon, title="test", tokenizer=tok)


def cell(image: np.ndarray, k: int) -> np.ndarray:
    r, c = divmod(k, 3)
    return image[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8]


def test_mae_panels() -> None:
    fig = make_figure(3)
    (_, original), (_, masked), (title, recon) = panels(fig)
    rgb = fig.batch.tensor[0].permute(1, 2, 0).numpy()
    assert np.allclose(original, rgb)
    for k in range(6):
        assert np.allclose(cell(masked, k), cell(rgb, k) if k in (0, 4) else GREY)
    assert np.allclose(recon, rgb, atol=1e-5)  # de-normalised back to the [0, 1] input
    assert "reconstruction of 4 hidden" in title


def test_mae_panel_with_decoder_masking_fills_only_the_decoded_tokens() -> None:
    """VideoMAE V2's decoder masking: the reconstruction's rows are pred ∩ decode = tokens 1 and 3."""
    fig = make_figure(3, decode=[0, 1, 3, 4])
    assert fig.mask.targets()[0].tolist() == [1, 3] and fig.reconstruction.shape[1] == 2
    (_, original), _, (title, recon) = panels(fig)
    for k in range(6):
        assert np.allclose(cell(recon, k), cell(original, k) if k in (0, 1, 3, 4) else GREY, atol=1e-5)
    assert "reconstruction of 2 of 4 hidden" in title


def test_jepa_panel_marks_context_targets_and_the_rest() -> None:
    fig = make_figure(3, jepa=True)
    (_, original), _, (title, layout) = panels(fig)
    assert "context 2 + targets 2" in title
    assert np.allclose(cell(layout, 0), cell(original, 0))  # context: as is
    assert not np.allclose(cell(layout, 1), cell(original, 1))  # target: tinted
    assert np.allclose(cell(layout, 2), 0.35 * cell(original, 2) + 0.65 * GREY, atol=1e-6)  # neither: dimmed


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_any_channel_count_is_drawn(tmp_path: Path, channels: int) -> None:
    fig = make_figure(channels)
    original = panels(fig)[0][1]
    assert original.shape == (16, 24, 3)
    first = fig.batch.tensor[0, 0].numpy()
    assert np.allclose(original[..., 0], first)
    if channels < 3:
        assert np.allclose(original[..., 1], first) and np.allclose(original[..., 2], first)
    else:
        assert np.allclose(original[..., 2], fig.batch.tensor[0, 2].numpy())
    assert ("of" in channel_note(channels)) == (channels != 1)
    path = tmp_path / "fig.png"
    visualize(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_figure_needs_the_image_tokenizer() -> None:
    fig = make_figure(3)
    fig.tokenizer = None
    with pytest.raises(ValueError, match="ImageTokenizer"):
        panels(fig)
