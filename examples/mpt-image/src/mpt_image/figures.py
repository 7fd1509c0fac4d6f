"""Figure of sample 0: original | masked input | reconstruction (MAE) or context/target layout (JEPA).

Pixels are shown as the dataset gives them, in [0, 1]: ``Figure.batch`` is the raw collated batch
(``figure.batch.tensor``), before the tokenizer's ``normalize``. The MAE reconstruction
(``figure.reconstruction``, one row per token of ``figure.mask.targets()``: the hidden tokens, or those
the decoder keeps under decoder masking) is in the normalised space the tokens were cut from and is
mapped back through the tokenizer's mean/std (with ``mae.target: {name: patch, normalize: true}`` the
core's patch target also restores each hidden patch's own mean and std, as MAE's visualisations of
``norm_pix_loss`` models must).
One channel is drawn in grey, three as RGB; of any other count the first three (or the first one
of two) are drawn, and the title says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mpt.contract import Figure
from mpt_image.tokenizer import ImageTokenizer, patchify, unpatchify

GREY = 0.5
TARGET_TINT = np.array([1.0, 0.55, 0.0], dtype=np.float32)  # orange


def panels(figure: Figure) -> list[tuple[str, np.ndarray]]:
    """The three panels of sample 0 as ``(title, float32 [H, W, 3] in [0, 1])``."""
    tok = figure.tokenizer
    if not isinstance(tok, ImageTokenizer):
        raise ValueError("an image figure needs the ImageTokenizer that made its tokens (Figure.tokenizer)")
    raw = figure.batch.tensor[:1].detach().float().cpu()  # [1, C, H, W] raw pixels in [0, 1]
    grid = figure.tokens.grid
    assert grid is not None and len(grid) == 2
    n = grid[0] * grid[1]
    keep, pred = figure.mask.keep[0].cpu(), figure.mask.pred[0].cpu()
    targets = figure.mask.targets()[0].cpu()  # the rows of figure.reconstruction (pred without decoder masking)
    patches = patchify(raw, tok.patch)  # [1, N, C, p, p]
    seen = torch.zeros(n, dtype=torch.bool)
    seen[keep] = True
    masked = torch.where(seen.view(1, n, 1, 1, 1), patches, torch.full_like(patches, GREY))
    out = [("original", _display(raw)),
           (f"encoder input: {len(keep)} of {n} patches", _display(unpatchify(masked, grid)))]
    if figure.reconstruction is not None:
        rec = figure.reconstruction[:1].detach().float().cpu()  # [1, Nt, C, p, p], normalised
        rec = tok.unstandardize(rec.flatten(0, 1)).view_as(rec)  # mean/std broadcast per channel
        filled = masked.clone()  # hidden patches the decoder does not rebuild (decoder masking) stay grey
        filled[0, targets] = rec[0].clamp(0.0, 1.0)
        what = f"{len(pred)} hidden" if len(targets) == len(pred) else f"{len(targets)} of {len(pred)} hidden"
        out.append((f"visible + reconstruction of {what}", _display(unpatchify(filled, grid))))
    else:
        target = torch.zeros(n, dtype=torch.bool)
        target[pred] = True
        rgb = _display(raw)
        p = tok.patch
        cell = np.kron(seen.view(grid).numpy(), np.ones((p, p), dtype=bool))
        tint = np.kron(target.view(grid).numpy(), np.ones((p, p), dtype=bool))
        shown = np.where(cell[..., None], rgb, 0.35 * rgb + 0.65 * GREY)
        shown = np.where(tint[..., None], 0.5 * rgb + 0.5 * TARGET_TINT, shown)
        out.append((f"context {len(keep)} + targets {len(pred)} (orange)", shown.astype(np.float32)))
    return out


def channel_note(channels: int) -> str:
    """What the panels show of ``channels`` channels ("" for grey or RGB)."""
    if channels in (1, 3):
        return ""
    return "channel 0 of 2 shown" if channels == 2 else f"channels 0-2 of {channels} shown as RGB"


def visualize(figure: Figure, path: str | Path) -> None:
    """Write one PNG (three panels of sample 0, see :func:`panels`) to ``path``."""
    from matplotlib.figure import Figure as MplFigure  # Agg canvas, no pyplot state

    shown = panels(figure)
    h, w = shown[0][1].shape[:2]
    fig = MplFigure(figsize=(3 * 3.2, 3.2 * h / w + 0.7), dpi=100)
    axes = fig.subplots(1, 3)
    for ax, (title, image) in zip(axes, shown, strict=True):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    note = channel_note(int(figure.batch.tensor.shape[1]))
    title = "; ".join(t for t in (figure.title, note) if t)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def _display(images: Tensor) -> np.ndarray:
    """``[1, C, H, W]`` in [0, 1] → ``[H, W, 3]``: grey repeated, RGB as is, else the first 3 channels
    (the first of 2)."""
    x = images[0].clamp(0.0, 1.0)
    c = x.shape[0]
    x = x[:1] if c in (1, 2) else x[:3]
    return x.expand(3, -1, -1).permute(1, 2, 0).numpy().astype(np.float32)
