"""Frame grid of sample 0: rows original | masked input | reconstruction (MAE) or context/targets (JEPA),
columns a few frames of the clip (evenly spaced).

Pixels are shown as the dataset gives them, in [0, 1] (``Figure.batch`` is the raw batch). The MAE
reconstruction (one row per tubelet of ``figure.mask.targets()``: the hidden tubelets, or those the
decoder keeps under VideoMAE V2's decoder masking) is in the normalised space the tokens were cut
from and is mapped back through the tokenizer's mean/std (with ``per_channel`` normalised targets the
core's patch target first restores each tubelet's own statistics). Hidden tubelets the decoder does
not rebuild stay grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mpt.contract import Figure
from mpt_video.tokenizer import VideoTokenizer, tubeletify, untubeletify

GREY = 0.5
TARGET_TINT = np.array([1.0, 0.55, 0.0], dtype=np.float32)  # orange
COLUMNS = 4  # frames shown


def rows(figure: Figure) -> list[tuple[str, Tensor]]:
    """The rows of sample 0 as ``(title, float [C, T, H, W] in [0, 1])``."""
    tok = figure.tokenizer
    if not isinstance(tok, VideoTokenizer):
        raise ValueError("a video figure needs the VideoTokenizer that made its tokens (Figure.tokenizer)")
    raw = figure.batch.tensor[:1].detach().float().cpu()  # [1, C, T, H, W]
    grid = figure.tokens.grid
    assert grid is not None and len(grid) == 3
    n = grid[0] * grid[1] * grid[2]
    keep, pred = figure.mask.keep[0].cpu(), figure.mask.pred[0].cpu()
    tubelets = tubeletify(raw, tok.tubelet, tok.patch)  # [1, N, C, t, p, p]
    seen = torch.zeros(n, dtype=torch.bool)
    seen[keep] = True
    shape = (1, n) + (1,) * (tubelets.ndim - 2)
    masked = torch.where(seen.view(shape), tubelets, torch.full_like(tubelets, GREY))
    out = [("original", raw[0]), (f"encoder input: {len(keep)} of {n} tubelets", untubeletify(masked, grid)[0])]
    if figure.reconstruction is not None:
        targets = figure.mask.targets()[0].cpu()
        rec = figure.reconstruction[:1].detach().float().cpu()  # [1, Nt, C, t, p, p], normalised
        rec = tok.unstandardize(rec[0]).clamp(0.0, 1.0)  # mean/std broadcast over the channel axis
        filled = masked.clone()
        filled[0, targets] = rec
        what = f"{len(pred)} hidden" if len(targets) == len(pred) else f"{len(targets)} of {len(pred)} hidden"
        out.append((f"visible + reconstruction of {what}", untubeletify(filled, grid)[0]))
    else:
        target = torch.zeros(n, dtype=torch.bool)
        target[pred] = True
        dim = 0.35 * tubelets + 0.65 * GREY
        tint = torch.from_numpy(TARGET_TINT[: tubelets.shape[2]]).view(1, 1, -1, 1, 1, 1)
        shown = torch.where(seen.view(shape), tubelets, dim)
        shown = torch.where(target.view(shape), 0.5 * tubelets + 0.5 * tint, shown)
        out.append((f"context {len(keep)} + targets {len(pred)} (orange)", untubeletify(shown, grid)[0]))
    return out


def frame_columns(frames: int, columns: int = COLUMNS) -> list[int]:
    """Up to ``columns`` frame indices evenly spaced over ``frames`` (first and last included)."""
    if frames <= columns:
        return list(range(frames))
    return [round(i * (frames - 1) / (columns - 1)) for i in range(columns)]


def visualize(figure: Figure, path: str | Path) -> None:
    """Write one PNG (the frame grid of sample 0, see :func:`rows`) to ``path``."""
    from matplotlib.figure import Figure as MplFigure  # Agg canvas, no pyplot state

    shown = rows(figure)
    clip = shown[0][1]
    cols = frame_columns(clip.shape[1])
    h, w = clip.shape[2:]
    fig = MplFigure(figsize=(2.2 * len(cols) + 0.4, len(shown) * 2.2 * h / w + 0.8), dpi=100)
    axes = np.asarray(fig.subplots(len(shown), len(cols), squeeze=False))
    for r, (title, video) in enumerate(shown):
        for c, f in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(_display(video[:, f]), interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(f"{title}\nframe {f}" if c == 0 else f"frame {f}", fontsize=8,
                         loc="left" if c == 0 else "center")
    if figure.title:
        fig.suptitle(figure.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def _display(frame: Tensor) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] → ``[H, W, 3]`` (grey repeated)."""
    x = frame.clamp(0.0, 1.0)
    return x.expand(3, -1, -1).permute(1, 2, 0).numpy().astype(np.float32)
