"""Raw-input baselines: what a user gets without any encoder, computed the same way for every modality.

The raw input is what the encoder sees before its first learnable layer: the tokenizer's normalised
tokens (:meth:`mpt.backbone.Backbone.tokens`: RevIN'd patches, normalised pixels, centred point
groups …), so a baseline and the encoder start from the same numbers. Two vectors per sample:

- ``flat``: every token's patch and coordinates, concatenated in token order (absent values and
  padding tokens read as 0; samples with fewer tokens are zero-padded at the end) — the normalised
  input itself, e.g. a z-normalised series or the pixels of an image;
- ``pooled``: the mean and standard deviation over the valid tokens of each patch and coordinate
  value (per folded row for channel-independent series), an order-free summary that also suits
  unordered point sets.

:func:`raw_baselines` scores a 1-nearest-neighbour classifier (Euclidean, on the unscaled vectors:
the classic time-series baseline of the UCR archive, Dau et al. 2019) and the probe's logistic
regression (:func:`mpt.probe.linear_probe`) on each.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mpt.contract import Batch, Sample, SampleDataset, TokenSet, collate_samples, iter_samples
from mpt.errors import DataError
from mpt.features import Features, make_features, pad_columns

if TYPE_CHECKING:
    from mpt.backbone import Backbone

RAW_KINDS = ("flat", "pooled")


def token_vectors(tokens: TokenSet) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokens`` → ``(flat [B, rows·N·F], pooled [B, rows·2F])`` with ``F`` = patch size + coordinate
    columns; absent values (NaN) and padding tokens are 0 in ``flat`` and left out of ``pooled``."""
    b_rows, n = tokens.patches.shape[:2]
    x = torch.cat([tokens.patches.reshape(b_rows, n, -1).float(), tokens.coords.float()], dim=-1)
    present = ~torch.isnan(x)
    if tokens.valid is not None:
        present &= tokens.valid.unsqueeze(-1)
    x = torch.where(present, x, torch.zeros((), dtype=x.dtype))
    w = present.to(x.dtype)
    count = w.sum(1).clamp_min(1)
    mean = x.sum(1) / count
    std = ((((x - mean.unsqueeze(1)) ** 2) * w).sum(1) / count).sqrt()
    rows = tokens.rows_per_sample
    b = b_rows // rows
    return x.reshape(b, -1), torch.cat([mean, std], dim=-1).reshape(b, -1)


def raw_features(backbone: Backbone, dataset: SampleDataset, *, batch_size: int = 64,
                 collate: Callable[[list[Sample]], Batch] | None = None,
                 progress: bool = True) -> dict[str, Features]:
    """``{"flat": Features, "pooled": Features}`` of every sample of ``dataset`` in order, from
    ``backbone``'s tokenizer (no learnable layer is used: a pretrained encoder and its random twin
    give the same vectors). Labels, sources and classes as :func:`mpt.features.extract_features`."""
    collate = collate or collate_samples
    flats: list[np.ndarray] = []
    pooled: list[np.ndarray] = []
    sources: list[str] = []
    labels: list[int | None] = []
    n = len(dataset) if hasattr(dataset, "__len__") else None  # type: ignore[arg-type]
    with tqdm(total=n, desc="raw input", unit="sample", file=sys.stderr, disable=not progress, leave=False) as bar:
        stream = iter_samples(dataset)
        while samples := list(itertools.islice(stream, batch_size)):
            flat, pool = token_vectors(backbone.tokens(collate(samples)))
            flats += list(flat.numpy())
            pooled.append(pool.numpy())
            sources += [s.source for s in samples]
            labels += [s.label for s in samples]
            bar.update(len(samples))
    if not sources:
        raise DataError("dataset", "no samples")
    flat_x = np.concatenate(pad_columns(*(f[None] for f in flats))).astype(np.float32)
    pooled_x = np.concatenate(pooled).astype(np.float32)
    return {kind: make_features(x, sources, labels, dataset) for kind, x in (("flat", flat_x), ("pooled", pooled_x))}


def nearest_neighbour(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """1-NN predictions by Euclidean distance on the unscaled vectors (ties: the first training sample)."""
    tr = torch.as_tensor(train_x, dtype=torch.float64)
    ev = torch.as_tensor(eval_x, dtype=torch.float64)
    y = np.asarray(train_y)
    out = [y[torch.cdist(ev[i : i + chunk], tr).argmin(1).numpy()] for i in range(0, len(ev), chunk)]
    return np.concatenate(out) if out else np.zeros(0, dtype=y.dtype)


def raw_baselines(train: dict[str, Features], eval_: dict[str, Features], *, seed: int = 0,
                  kinds: Sequence[str] = RAW_KINDS) -> list[dict[str, Any]]:
    """One row per (classifier, raw vector): ``{"encoder": "raw <kind>", "method": "1-nn" | "linear",
    "accuracy", "balanced_accuracy"}``; ``train``/``eval_`` as :func:`raw_features` returns them, with
    labels indexing one class list (:func:`mpt.probe.align_classes`)."""
    from mpt.probe import accuracy, balanced_accuracy, linear_probe

    rows: list[dict[str, Any]] = []
    for kind in kinds:
        tr, ev = train[kind], eval_[kind]
        assert tr.labels is not None and ev.labels is not None
        xtr, xev = pad_columns(tr.x, ev.x)
        preds = {"1-nn": nearest_neighbour(xtr, tr.labels, xev),
                 "linear": linear_probe(xtr, tr.labels, xev, seed=seed, groups=tr.sources).predictions}
        for method, pred in preds.items():
            rows.append({"encoder": f"raw {kind}", "method": method, "accuracy": accuracy(ev.labels, pred),
                         "balanced_accuracy": balanced_accuracy(ev.labels, pred)})
    return rows
