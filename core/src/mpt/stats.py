"""Fitted statistics: one pass over the training data, with a progress bar (``Modality.fit``).

A plugin whose tokenizer needs statistics of the data (per-band or per-column mean and std, fbank
mean/std, intensity percentiles, category lists) computes them in :meth:`mpt.Modality.fit` with
the helpers here and returns its tokenizer config with the values filled in; the trainer stores
that config in ``config.yaml`` and the encoder card, so training and :func:`mpt.load_encoder` use
the same numbers. Values the recipe or ``--set`` already gives are kept (a plugin fits only what is
unset), so a recipe can pin published statistics instead.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mpt.contract import Sample, SampleDataset, iter_samples
from mpt.errors import DataError


def fit_moments(dataset: SampleDataset, values: Callable[[Sample], Tensor], *, max_samples: int | None = None,
                progress: bool = True, what: str = "statistics") -> tuple[Tensor, Tensor]:
    """Mean and standard deviation ``[C]`` (float64) of ``values(sample)`` ``[n, C]`` over the samples
    (all, or the first ``max_samples``), ignoring NaN entries; a progress bar on stderr.

    Computed with Chan et al.'s pairwise update (numerically stable in one pass, constant memory).
    A channel with no finite value is a DataError; a constant channel gets std 0 (callers decide how
    to guard the division, e.g. ``clamp_min``).
    """
    count: Tensor | None = None
    mean = m2 = torch.zeros(0, dtype=torch.float64)
    stream = iter_samples(dataset)
    if max_samples is not None:
        stream = itertools.islice(stream, max_samples)
    total = min(len(dataset), max_samples or len(dataset)) if hasattr(dataset, "__len__") else max_samples  # type: ignore[arg-type]
    for sample in tqdm(stream, total=total, desc=f"fitting {what}", unit="sample", file=sys.stderr,
                       disable=not progress, leave=False):
        v = values(sample).double()
        if v.ndim != 2:
            raise ValueError(f"fit_moments: values(sample) must be [n, C], got {tuple(v.shape)}")
        ok = torch.isfinite(v)
        n = ok.sum(0).double()
        x = torch.where(ok, v, 0.0)
        m = x.sum(0) / n.clamp_min(1)
        d2 = (torch.where(ok, v - m, 0.0) ** 2).sum(0)
        if count is None:
            count, mean, m2 = n, m, d2
            continue
        tot = count + n
        delta = m - mean
        mean = mean + delta * n / tot.clamp_min(1)
        m2 = m2 + d2 + delta**2 * count * n / tot.clamp_min(1)
        count = tot
    if count is None:
        raise DataError("data", f"no samples to fit {what} on")
    empty = (count == 0).nonzero().flatten().tolist()
    if empty:
        raise DataError("data", f"channels {empty} have no finite value in any sample; cannot fit {what}")
    return mean, (m2 / count).sqrt()  # type: ignore[operator]
