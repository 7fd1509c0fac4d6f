"""Spectrogram figure of sample 0: log-mel, masked log-mel, reconstruction (MAE) or context/targets
(JEPA), with time (s) and mel-bin axes.

The log-mel is computed from the raw batch by the tokenizer (``Figure.batch`` is the raw batch) and
shown de-normalised, in the filterbank's own log units; the MAE reconstruction (one row per patch
of ``figure.mask.targets()``) is mapped back through the tokenizer's mean/std the same way (with
normalised targets the core's patch target first restores each patch's own statistics). Hidden
patches the decoder does not rebuild, and frames past the clip's end, stay blank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mpt.contract import Figure
from mpt_audio.tokenizer import AudioTokenizer, patchify, unpatchify


def rows(figure: Figure) -> tuple[list[tuple[str, np.ndarray]], float]:
    """The rows of sample 0 as ``(title, float [frames, mel] with NaN = blank)`` and the frame shift (s)."""
    tok = figure.tokenizer
    if not isinstance(tok, AudioTokenizer):
        raise ValueError("an audio figure needs the AudioTokenizer that made its tokens (Figure.tokenizer)")
    spec = tok.normalize(figure.batch[[0]]).tensor.detach().float().cpu()  # [1, T, mel], normalised
    grid = figure.tokens.grid
    assert grid is not None and len(grid) == 2
    n = grid[0] * grid[1]
    frames = grid[0] * tok.pt  # the batch's grid: sample 0 alone may have fewer frames (its padding)
    spec = torch.nn.functional.pad(spec[:, :frames], (0, 0, 0, max(frames - spec.shape[1], 0)))
    patches = patchify(spec, tok.pt, tok.pf)  # [1, N, pt, pf]
    keep, pred = figure.mask.keep[0].cpu(), figure.mask.pred[0].cpu()
    valid = figure.tokens.valid_or_ones()[0].cpu()
    seen = torch.zeros(n, dtype=torch.bool)
    seen[keep] = True
    blank = torch.full_like(patches, float("nan"))

    def image(x: Tensor) -> np.ndarray:
        x = torch.where(valid.view(1, n, 1, 1), x, blank)
        return tok.unstandardize(unpatchify(x, grid))[0].numpy()

    masked = torch.where(seen.view(1, n, 1, 1), patches, blank)
    out = [("log-mel", image(patches)), (f"encoder input: {int((seen & valid).sum())} of {int(valid.sum())} patches",
                                         image(masked))]
    if figure.reconstruction is not None:
        targets = figure.mask.targets()[0].cpu()
        filled = masked.clone()
        filled[0, targets] = figure.reconstruction[0].detach().float().cpu().reshape(-1, tok.pt, tok.pf)
        what = f"{len(pred)} hidden" if len(targets) == len(pred) else f"{len(targets)} of {len(pred)} hidden"
        out.append((f"visible + reconstruction of {what}", image(filled)))
    else:
        target = torch.zeros(n, dtype=torch.bool)
        target[pred] = True
        out.append((f"context {len(keep)} (targets {len(pred)} blank)",
                    image(torch.where((seen & ~target).view(1, n, 1, 1), patches, blank))))
    return out, tok.config.frame_shift_ms / 1000


def visualize(figure: Figure, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels, shift = rows(figure)
    first = panels[0][1]
    lo, hi = np.nanpercentile(first, 1), np.nanpercentile(first, 99.5)
    extent = (0.0, first.shape[0] * shift, 0, first.shape[1])
    cmap = plt.get_cmap("magma").with_extremes(bad="#d0d0d0")  # blank: hidden or past the clip's end
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, img) in zip(axes[:, 0], panels, strict=True):
        shown = ax.imshow(np.ma.masked_invalid(img.T), origin="lower", aspect="auto", extent=extent,
                          vmin=lo, vmax=hi, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(shown, ax=axes[:, 0].tolist(), label="log-mel (fbank units)", shrink=0.8)
    fig.suptitle(figure.title, fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
