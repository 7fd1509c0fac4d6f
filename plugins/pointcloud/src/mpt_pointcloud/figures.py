"""Reconstruction figure: input, visible groups, reconstruction (MAE) or targets (JEPA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpt.contract import Batch, Figure


def visualize(figure: Figure, path: str | Path) -> None:
    """Write one PNG (three 3-D panels) for sample 0 of ``figure`` to ``path``."""
    from matplotlib.figure import Figure as MplFigure  # Agg canvas, no pyplot state

    batch = Batch.of(figure.batch)[:1]  # raw, as collated
    if figure.tokenizer is not None:  # in the tokens' frame: normalised as the core does before tokenize
        batch = figure.tokenizer.normalize(batch)
    pts = batch.tensor[0, :, :3].detach().float().cpu().numpy()
    patches = figure.tokens.patches[0, ..., :3].detach().float().cpu().numpy()  # [G, K, 3]
    centres = figure.tokens.coords[0].detach().float().cpu().numpy()  # [G, 3]
    keep = figure.mask.keep[0].cpu().numpy()
    pred = figure.mask.pred[0].cpu().numpy()
    visible = (patches[keep] + centres[keep, None]).reshape(-1, 3)
    if figure.reconstruction is not None:  # MAE: the groups of mask.targets() (pred, or pred ∩ decode)
        rec = figure.reconstruction[0, ..., :3].detach().float().cpu().numpy()
        rebuilt = figure.mask.targets()[0].cpu().numpy()
        other, label, shown = (rec + centres[rebuilt, None]).reshape(-1, 3), "reconstruction", len(rebuilt)
    else:
        other, label, shown = (patches[pred] + centres[pred, None]).reshape(-1, 3), "targets", len(pred)
    both = np.concatenate([pts, other])
    lo, hi = both.min(0), both.max(0)
    mid, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6)

    fig = MplFigure(figsize=(12, 4.2), dpi=90)
    panels = [("input (normalised, not augmented)", [(pts, "tab:gray", 2)]),
              (f"visible ({len(keep)} groups) + masked centres",
               [(visible, "tab:blue", 2), (centres[pred], "tab:red", 12)]),
              (f"visible + {label} ({shown} groups)",
               [(visible, "tab:blue", 2), (other, "tab:red", 2)])]
    for j, (name, layers) in enumerate(panels):
        ax = fig.add_subplot(1, 3, j + 1, projection="3d")
        for xyz, colour, size in layers:
            ax.scatter(xyz[:, 0], xyz[:, 2], xyz[:, 1], s=size, c=colour, depthshade=False, linewidths=0)
        ax.set_xlim(mid[0] - half, mid[0] + half)
        ax.set_ylim(mid[2] - half, mid[2] + half)
        ax.set_zlim(mid[1] - half, mid[1] + half)
        ax.set_title(name, fontsize=9)
        ax.set_box_aspect((1, 1, 1), zoom=1.35)
        ax.set_axis_off()
    if figure.title:
        fig.suptitle(figure.title, fontsize=11)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.88, wspace=0)
    fig.savefig(path)
