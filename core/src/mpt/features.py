"""Downstream features: a pretrained encoder run over a dataset, one vector per sample.

:func:`open_dataset` reads files the way the encoder was trained to see them (the modality and data
config of its card, ``--set data.key=value`` overrides), :func:`extract_features` runs the frozen
encoder over them (eval mode, no gradient, no masking) and returns a :class:`Features`: the vectors,
the class labels when the data carries them and each sample's ``source`` (file, ``file#series``).
Labels from a ``path,label`` CSV: :mod:`mpt.labels`; writing the vectors: :mod:`mpt.embeddings`.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from mpt.config import merge_layer, parse, parse_set, to_plain
from mpt.contract import Batch, Modality, Sample, SampleDataset, collate_samples, iter_samples
from mpt.errors import ConfigError, DataError, MptError

if TYPE_CHECKING:
    from mpt.backbone import Backbone

POOLS = ("mean", "cls", "groups", "flat")


@dataclass
class Features:
    """One feature vector per sample, in dataset order.

    Attributes:
        x: ``float32 [N, D]``.
        labels: ``int [N]`` class indices into ``classes``, or None when not every sample has one.
        sources: the ``Sample.source`` of each row (a file, ``file#series``; windows of one series
            and repeats of one file share it).
        classes: class names (``dataset.classes`` or the labels of a manifest).
        unlabelled: how many samples had no label (for error messages; 0 when ``labels`` is set).
    """

    x: np.ndarray
    labels: np.ndarray | None
    sources: list[str]
    classes: list[str] = field(default_factory=list)
    unlabelled: int = 0

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: Sequence[int] | np.ndarray) -> Features:
        """The rows at ``index`` (same classes)."""
        idx = np.asarray(index, dtype=np.int64)
        return Features(x=self.x[idx], labels=None if self.labels is None else self.labels[idx],
                        sources=[self.sources[i] for i in idx.tolist()], classes=list(self.classes),
                        unlabelled=self.unlabelled)


def resolve_pool(card: dict[str, Any], pool: str | None) -> str:
    """``pool``, or when None the ``feature_pool`` of the card's modality (``Modality.feature_pool``)."""
    from mpt.registry import get_modality

    return pool if pool is not None else get_modality(card["modality"]).feature_pool


def check_pool(encoder: Backbone, pool: str) -> None:
    """A ValueError for an unknown pool, an MptError for ``cls`` on an encoder without a CLS token."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if pool == "cls" and encoder.encoder.cls_token is None:
        raise MptError("this encoder has no CLS token (its card says encoder.cls_token: false): "
                       "use --pool mean")


def pool_output(encoder: Backbone, batch: Batch | Tensor, pool: str = "mean",
                augment: Callable[[Batch], Batch] | None = None) -> Tensor:
    """``[B, D]`` (``groups``: ``[B, G·D]``, ``flat``: ``[B, N·D]``) features of a raw batch.

    ``mean``: the mean over the valid (non-padding) tokens, CLS excluded — ``out.pooled`` when the
    encoder has no CLS token; ``cls``: the CLS token's output (averaged over the rows of a sample when
    a tokenizer folds channels into the batch), an error when the encoder has no CLS token;
    ``groups``: the mean over each token group's valid tokens, concatenated in group order — the G
    rows a tokenizer folds into the batch (PatchTST's channel independence: the mean pool would
    average the channels together and lose which channel did what) or the G ``groups`` ids of the
    tokens (band groups); ``mean`` when the tokens form one group; ``flat``: every token's output in
    token order, padding tokens zeroed, CLS excluded — PatchTST's flatten head (Nie et al., ICLR 2023),
    which keeps *where* in the input a pattern occurs; samples with fewer tokens are zero-padded
    at the end (:func:`pad_columns`).
    """
    check_pool(encoder, pool)
    has_cls = encoder.encoder.cls_token is not None
    out = encoder(batch, augment)
    if pool == "cls" or (pool == "mean" and not has_cls):
        return out.pooled  # the CLS token with a prefix, the mean over valid tokens without one
    b, d = out.tokens.shape[0], out.tokens.shape[-1]
    valid = out.valid if out.valid is not None else torch.ones(out.tokens.shape[:2], dtype=torch.bool,
                                                               device=out.tokens.device)
    if pool == "flat":
        return (out.tokens * valid.unsqueeze(-1).to(out.tokens.dtype)).flatten(1)
    if pool == "groups" and out.rows_per_sample == 1 and out.groups is not None:
        onehot = F.one_hot(out.groups.long(), int(out.groups.max()) + 1).to(out.tokens.dtype)  # [B, N, G]
        w = onehot * valid.unsqueeze(-1).to(onehot.dtype)
        sums = torch.einsum("bng,bnd->bgd", w, out.tokens)
        return (sums / w.sum(1).unsqueeze(-1).clamp_min(1)).flatten(1)
    rows = out.rows_per_sample if pool == "groups" else 1
    feats = out.tokens.reshape(b, rows, -1, d)  # [B, rows, tokens per row, D]
    w = valid.reshape(b, rows, -1).to(feats.dtype).unsqueeze(-1)
    return ((feats * w).sum(2) / w.sum(2).clamp_min(1)).flatten(1)


def extract_features(encoder: Backbone, dataset: SampleDataset, *, batch_size: int = 64, pool: str = "mean",
                     collate: Callable[[list[Sample]], Batch] | None = None, progress: bool = True,
                     device: str | torch.device = "cpu") -> Features:
    """Run ``encoder`` (moved to ``device``, in eval mode, without gradients or masking) over every
    sample of ``dataset`` in order, ``batch_size`` at a time (progress bar on stderr).

    ``collate`` is the modality's ``collate`` (default: stack the inputs). Labels come from
    ``Sample.label`` and class names from ``dataset.classes``; ``labels`` is None unless every sample
    has one. The encoder's train/eval mode is restored afterwards.
    """
    check_pool(encoder, pool)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    collate = collate or collate_samples
    n = len(dataset) if hasattr(dataset, "__len__") else None  # type: ignore[arg-type]
    was_training = encoder.training
    encoder.to(device).eval()
    chunks: list[np.ndarray] = []
    sources: list[str] = []
    labels: list[int | None] = []
    try:
        with torch.no_grad(), tqdm(total=n, desc="features", unit="sample", file=sys.stderr,
                                   disable=not progress, leave=False) as bar:
            stream = iter_samples(dataset)
            while samples := list(itertools.islice(stream, batch_size)):
                batch = collate(samples).to(device)
                chunks.append(pool_output(encoder, batch, pool).float().cpu().numpy())
                sources += [s.source for s in samples]
                labels += [s.label for s in samples]
                bar.update(len(samples))
    finally:
        encoder.train(was_training)
    if not chunks:
        raise DataError("dataset", "no samples")
    n = len(sources)
    x = np.concatenate(pad_columns(*chunks)).astype(np.float32, copy=False)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise MptError(f"the encoder gave non-finite features for {int(bad.sum())} of {n} samples "
                       f"(e.g. {sources[int(np.argmax(bad))]})")
    return make_features(x, sources, labels, dataset)


def pad_columns(*arrays: np.ndarray) -> list[np.ndarray]:
    """Feature matrices zero-padded on the right to the widest one (``flat`` features of windows with
    fewer tokens, a longest series only in one split)."""
    width = max(a.shape[1] for a in arrays)
    return [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays]


def make_features(x: np.ndarray, sources: list[str], labels: Sequence[int | None], dataset: SampleDataset) -> Features:
    """:class:`Features` of the rows ``x`` of ``dataset``'s samples: labels only when every sample has
    one, class names from ``dataset.classes`` (or the label indices as names)."""
    missing = sum(lb is None for lb in labels)
    y = None if missing else np.asarray(labels, dtype=np.int64)
    classes = [str(c) for c in getattr(dataset, "classes", None) or []]
    if y is not None and (not classes or int(y.max()) >= len(classes)):
        classes = [str(i) for i in range(int(y.max()) + 1)]
    return Features(x=x, labels=y, sources=sources, classes=classes, unlabelled=missing)


def data_config(card: dict[str, Any], modality: Modality, data_sets: Sequence[str] = ()) -> Any:
    """The card's ``data`` section with ``data.key=value`` overrides, validated (errors name the key).

    The card's config first goes through :meth:`Modality.downstream_data` (e.g. each file read once
    instead of ``repeats`` times), then the overrides apply.
    """
    names = {f.name for f in dataclasses.fields(modality.data_config)}
    saved: dict[str, Any] = dict(card.get("data") or {})
    stale = sorted(set(saved) - names)
    if stale:  # a card written by another version of the plugin
        warnings.warn(f"ignoring data keys of the encoder card that this plugin does not know: {', '.join(stale)}",
                      stacklevel=2)
    base = parse(modality.data_config, {k: v for k, v in saved.items() if k not in stale}, "data")
    raw: dict[str, Any] = to_plain(modality.downstream_data(base))
    for assignment in data_sets:
        layer = parse_set(assignment)
        top = next(iter(layer))
        if top != "data" or not isinstance(layer[top], dict):
            raise ConfigError(assignment.split("=", 1)[0].strip(),
                              "only data.* keys can be set here (e.g. --set data.context=128)")
        raw = merge_layer({"data": raw}, layer)["data"]
    return parse(modality.data_config, raw, "data")


def open_dataset(card: dict[str, Any], path: str | PathLike[str] | None, split: str,
                 data_sets: Sequence[str] = ()) -> tuple[SampleDataset, Modality]:
    """The dataset of ``path`` (a file or folder; None: the plugin's demo data) as the encoder of
    ``card`` reads it: its modality, its training data config with ``data_sets`` overrides
    (``"data.key=value"`` strings), split ``"probe"`` or ``"test"`` (or ``"train"``).

    Returns the dataset and the modality (whose ``collate`` batches it).
    """
    from mpt.contract import SPLITS
    from mpt.registry import get_modality

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    modality = get_modality(card["modality"])
    cfg = data_config(card, modality, data_sets)
    return modality.dataset(None if path is None else Path(path), split, cfg), modality
