"""Masked-patch figure: each channel in its own units, hidden patches shaded, the reconstruction
(MAE, mapped back through the inverse RevIN) overlaid."""

from __future__ import annotations

from pathlib import Path

import torch

from mpt.contract import Batch, Figure
from mpt_timeseries.ops import unpatchify
from mpt_timeseries.tokenizer import SeriesTokenizer

MAX_CHANNELS = 8


def visualize(figure: Figure, path: str | Path) -> None:
    """Write one PNG for sample 0 of ``figure`` (at most ``MAX_CHANNELS`` channels) to ``path``."""
    from matplotlib.figure import Figure as MplFigure  # Agg canvas, no pyplot state

    tok = figure.tokenizer
    if not isinstance(tok, SeriesTokenizer):
        raise ValueError("a time-series figure needs the SeriesTokenizer that made its tokens (Figure.tokenizer)")
    cfg = tok.config
    raw = Batch.of(figure.batch)[:1].tensor.detach().float().cpu()  # [1, C, T], raw as collated
    c, t = raw.shape[1:]
    hidden = _hidden_patches(figure, c)  # [C, N] bool
    fig = MplFigure(figsize=(10, 1.6 * min(c, MAX_CHANNELS) + 0.8), dpi=90)
    axes = fig.subplots(min(c, MAX_CHANNELS), 1, sharex=True, squeeze=False)[:, 0]
    recon = _reconstruction(figure, tok, raw) if figure.reconstruction is not None else None
    steps = torch.arange(t)
    for ch, ax in enumerate(axes):
        ax.plot(steps, raw[0, ch], color="0.25", lw=1.0, label="input")
        for n in hidden[ch].nonzero()[:, 0].tolist():
            start = n * cfg.stride
            ax.axvspan(start - 0.5, min(start + cfg.patch, t) - 0.5, color="tab:orange", alpha=0.18, lw=0)
        if recon is not None:
            ax.plot(steps, recon[ch], color="tab:red", lw=1.2, label="reconstruction")
        ax.set_ylabel(f"ch {ch}", fontsize=8)
        ax.tick_params(labelsize=7)
    kind = "reconstruction of the shaded (hidden) patches" if recon is not None else "shaded: JEPA target patches"
    axes[0].set_title(f"{kind}; {int(hidden.sum())} of {hidden.numel()} patches hidden"
                      + (f"; first {MAX_CHANNELS} of {c} channels" if c > MAX_CHANNELS else ""), fontsize=9)
    if recon is not None:
        axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("time step", fontsize=8)
    if figure.title:
        fig.suptitle(figure.title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)


def _hidden_patches(figure: Figure, channels: int) -> torch.Tensor:
    """``[C, N]`` bool: which patches of sample 0's channels the objective predicted."""
    n = figure.tokens.num_tokens
    rows = figure.tokens.rows_per_sample  # C (independent channels) or 1 (mixed)
    hidden = torch.zeros(rows, n, dtype=torch.bool)
    hidden.scatter_(1, figure.mask.pred[:rows].cpu(), True)
    return hidden.expand(channels, n) if rows == 1 else hidden


def _reconstruction(figure: Figure, tok: SeriesTokenizer, raw: torch.Tensor) -> torch.Tensor:
    """``[C, T]``: predicted values of the reconstructed patches (``mask.targets()``: the hidden ones,
    or those a decoder mask keeps) in the input's units, NaN elsewhere."""
    cfg = tok.config
    c, t = raw.shape[1:]
    rows, n = figure.tokens.rows_per_sample, figure.tokens.num_tokens
    assert figure.reconstruction is not None
    rec = figure.reconstruction[:rows].detach().float().cpu()  # [rows, Nt, patch] or [1, Nt, C, patch]
    where = figure.mask.targets()[:rows].cpu()  # [rows, Nt]
    full = torch.full((rows, n, *rec.shape[2:]), float("nan"))
    full.scatter_(1, where.reshape(rows, -1, *([1] * (rec.ndim - 2))).expand_as(rec), rec)
    patches = full[0].permute(1, 0, 2) if tok.mixed else full.reshape(c, n, cfg.patch)  # [C, N, patch]
    series = unpatchify(patches[None], cfg.stride, t)  # [1, C, T], normalised
    return tok.denormalize(series, tok.stats(raw))[0]
