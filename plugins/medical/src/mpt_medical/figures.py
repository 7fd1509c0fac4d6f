"""Volume figure of sample 0: three orthogonal slices through the crop centre (sagittal, coronal,
axial; RAS, so anterior and superior point up) in rows original | encoder input (hidden patches blue)
| visible + reconstruction (MAE) — JEPA draws the first two rows.

Values are the normalised intensities the encoder sees, shown from the 1st to the 99th percentile
of the original crop; voxels outside the volume (crop padding) are white.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mpt.contract import Figure
from mpt_medical.tokenizer import MedicalTokenizer

VIEWS = ("sagittal (x)", "coronal (y)", "axial (z)")


def slices(volume: Tensor) -> list[np.ndarray]:
    """``[X, Y, Z]`` → the three centre slices, each oriented for display (rows top to bottom)."""
    x, y, z = (s // 2 for s in volume.shape)
    v = volume.numpy()
    return [np.flipud(v[x].T), np.flipud(v[:, y].T), np.flipud(v[:, :, z].T)]


def panels(figure: Figure) -> tuple[list[str], list[list[tuple[np.ndarray, np.ndarray]]], tuple[float, float]]:
    """(row titles, per row the three slices of the value volume and of the hidden flags, display range)."""
    tok = figure.tokenizer
    if not isinstance(tok, MedicalTokenizer):
        raise ValueError("a medical figure needs the MedicalTokenizer that made its tokens (Figure.tokenizer)")
    grid = figure.tokens.grid
    assert grid is not None
    patches = figure.tokens.patches[:1].detach().float().cpu()
    n = patches.shape[1]
    seen = torch.zeros(n, dtype=torch.bool)
    seen[figure.mask.keep[0].cpu()] = True
    shape = (1, n) + (1,) * (patches.ndim - 2)
    hidden = (~seen).float().view(shape).expand_as(patches)
    rows: dict[str, tuple[Tensor, Tensor]] = {"original": (patches, torch.zeros_like(patches)),
                                              f"encoder input: {int(seen.sum())} of {n} patches": (patches, hidden)}
    if figure.reconstruction is not None:
        targets = figure.mask.targets()[0].cpu()
        filled = patches.clone()
        rec = figure.reconstruction[:1].detach().float().cpu().reshape(1, -1, *patches.shape[2:])
        filled[0, targets] = torch.where(patches[0, targets].isnan(), patches[0, targets], rec[0])
        decoded = torch.zeros(n, dtype=torch.bool)
        decoded[targets] = True
        rows["visible + reconstruction"] = (filled, (~seen & ~decoded).float().view(shape).expand_as(patches))
    images = []
    for values, flags in rows.values():
        vol = tok.untokenize(values, grid)[0, 0]
        hid = tok.untokenize(flags, grid)[0, 0]
        images.append(list(zip(slices(vol), slices(hid), strict=True)))
    original = patches[~patches.isnan()]
    lo, hi = (np.percentile(original.numpy(), [1, 99]) if original.numel() else (0.0, 1.0))
    return list(rows), images, (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


def visualize(figure: Figure, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, images, (lo, hi) = panels(figure)
    fig, axes = plt.subplots(len(rows), 3, figsize=(8.4, 2.8 * len(rows)), squeeze=False)
    for r, title in enumerate(rows):
        for c, (values, hidden) in enumerate(images[r]):
            img = np.clip((values - lo) / (hi - lo), 0, 1)
            rgb = np.repeat(np.where(np.isnan(img), 1.0, img)[..., None], 3, axis=-1)
            rgb[hidden > 0.5] = (0.2, 0.3, 0.55)  # hidden patches: blue, apart from any grey value
            ax = axes[r, c]
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(VIEWS[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
    fig.suptitle(figure.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
