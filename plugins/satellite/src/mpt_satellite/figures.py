"""Chip figure of sample 0: rows original | masked input | reconstruction (MAE) or context (JEPA);
columns an RGB composite (bands chosen by name or wavelength, :func:`mpt_satellite.bands.rgb_indices`;
the first three bands otherwise) and, for band groups, each group's mean band.

Values are shown normalised (the tokenizer's per-band mean/std), clipped to ±2.5 std. A grouped
token hides only its group's bands, so the masked composite is grey where any of its three bands is
hidden; missing pixels (nodata) are white. The first date of a multi-date stack is shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mpt.contract import Figure
from mpt_satellite.bands import Band, BandSet, rgb_indices
from mpt_satellite.tokenizer import SatelliteTokenizer

CLIP = 2.5  # std


def _image(x: Tensor, hidden: Tensor, bands: list[int]) -> np.ndarray:
    """``[C, H, W]`` normalised values (NaN = missing) and hidden flags → ``[H, W, 3]`` in [0, 1] of
    ``bands`` (three: a composite; else their mean as grey); missing white, hidden grey."""
    sel = x[bands] if len(bands) == 3 else x[bands].nanmean(0, keepdim=True).expand(3, -1, -1)
    img = ((sel.clamp(-CLIP, CLIP) + CLIP) / (2 * CLIP)).permute(1, 2, 0).numpy()
    img = np.where(np.isnan(img), 1.0, img)
    img[(hidden[bands] > 0.5).any(0).numpy()] = 0.5
    return img


def panels(figure: Figure) -> tuple[list[str], list[str], list[list[np.ndarray]]]:
    """(row titles, column titles, images[row][col]) of sample 0."""
    tok = figure.tokenizer
    if not isinstance(tok, SatelliteTokenizer):
        raise ValueError("a satellite figure needs the SatelliteTokenizer that made its tokens (Figure.tokenizer)")
    grid = figure.tokens.grid
    assert grid is not None
    patches = figure.tokens.patches[:1].detach().float().cpu()  # normalised, NaN = missing or group padding
    n = patches.shape[1]
    seen = torch.zeros(n, dtype=torch.bool)
    seen[figure.mask.keep[0].cpu()] = True
    shape = (1, n) + (1,) * (patches.ndim - 2)
    hidden = (~seen).float().view(shape).expand_as(patches)
    rows = {"original": (patches, torch.zeros_like(patches)), f"encoder input: {int(seen.sum())} of {n} tokens":
            (patches, hidden)}
    if figure.reconstruction is not None:
        targets = figure.mask.targets()[0].cpu()
        decoded = torch.zeros(n, dtype=torch.bool)
        decoded[targets] = True
        filled = patches.clone()
        rec = figure.reconstruction[:1].detach().float().cpu().reshape(1, -1, *patches.shape[2:])
        filled[0, targets] = torch.where(patches[0, targets].isnan(), patches[0, targets], rec[0])
        rows["visible + reconstruction"] = (filled, (~seen & ~decoded).float().view(shape).expand_as(patches))
    names = list(tok.config.bands)
    waves: list[float | None] = [*tok.config.wavelengths] if tok.config.wavelengths else [None] * len(names)
    rgb = rgb_indices(BandSet([Band(name, w) for name, w in zip(names, waves, strict=True)]))
    columns = [("RGB" if rgb else "bands " + ", ".join(names[:3]), list(rgb or range(min(3, len(names)))))]
    groups = list(getattr(tok, "group_index", []))
    if len(groups) > 1:
        columns += [("group " + "+".join(names[i] for i in g), list(g)) for g in groups]
    images = []
    for values, hidden in rows.values():
        chip, flags = tok.untokenize(values, grid)[0, 0], tok.untokenize(hidden, grid)[0, 0]  # [C, H, W], date 0
        images.append([_image(chip, flags.nan_to_num(0.0), cols) for _, cols in columns])
    return list(rows), [t for t, _ in columns], images


def visualize(figure: Figure, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols, images = panels(figure)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.6 * len(cols) + 0.4, 2.6 * len(rows)), squeeze=False)
    for r, title in enumerate(rows):
        for c, img in enumerate(images[r]):
            ax = axes[r, c]
            ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
    fig.suptitle(figure.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
