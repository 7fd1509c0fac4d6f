"""One evaluation of a pretrained encoder, the way users use encoders and against what they would do without one.

On one split (``eval_data``, or the probe's grouped stratified hold-out of ``data``), for the
pretrained encoder and its random-init twin (:func:`mpt.probe.random_twin`):

- ``linear``: the logistic-regression probe on frozen features (:func:`mpt.probe.linear_probe`);
- ``knn``: the weighted k-NN probe on frozen features (:func:`mpt.probe.knn_probe`);
- ``finetune``: a short fine-tune of the whole encoder with a linear head (:func:`mpt.finetune.finetune`,
  MAE's recipe; the last step's accuracy, never the best epoch's);

and the raw-input baselines of :mod:`mpt.baselines` (1-NN and logistic regression on the tokenizer's
normalised input). Linear probing under-rates MAE-style encoders (MAE ViT-B/16 on ImageNet-1K: 68 %
linear vs 83.6 % fine-tuned, He et al. 2022), hence both. The **goal** a pretrained encoder should
meet on a labelled set: the better of its linear probe and fine-tune ≥ max(best raw 1-NN, twin +
min(10 points, half the twin's distance to 100 %)), the twin scored the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Sized
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from torch.utils.data import Dataset

from mpt.baselines import raw_baselines, raw_features
from mpt.contract import Sample, SampleDataset, iter_samples
from mpt.errors import DataError, MptError
from mpt.features import Features, check_pool, data_config, extract_features, make_features, open_dataset, resolve_pool

if TYPE_CHECKING:
    from mpt.backbone import Backbone

ENCODERS = ("pretrained", "random-init")
FINETUNE_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "layer_decay": 0.75, "drop_path": 0.1, "weight_decay": 0.05,
                                     "label_smoothing": 0.1}


@dataclass
class Split:
    """Train and eval datasets with labels indexing one class list (``classes``): what every row uses."""

    train: SampleDataset
    eval: SampleDataset
    train_index: np.ndarray  # rows of the opened training dataset
    eval_index: np.ndarray  # rows of the eval dataset (of the training dataset for a hold-out)
    classes: list[str]
    holdout: dict[str, Any] | None  # how the hold-out was made, None with eval data


class LabelledView(Dataset):
    """Samples ``index`` of ``data`` with the class indices ``labels`` (into ``classes``)."""

    def __init__(self, data: SampleDataset, index: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
        self.data, self.index, self.labels, self.classes = data, index, labels, classes

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Sample:
        return replace(self.data[int(self.index[i])], label=int(self.labels[i]))


def goal(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The learning-quality goal of the module docstring from the result ``rows``."""
    def best(encoder: str, methods: tuple[str, ...]) -> float:
        values = [r["accuracy"] for r in rows if r["encoder"] == encoder and r["method"] in methods]
        return max((v for v in values if v is not None and not math.isnan(v)), default=float("nan"))

    pretrained, twin = best("pretrained", ("linear", "finetune")), best("random-init", ("linear", "finetune"))
    raw = max((r["accuracy"] for r in rows if r["method"] == "1-nn"), default=float("nan"))
    target = max(raw, twin + min(0.10, (1 - twin) / 2))
    return {"pretrained": pretrained, "twin": twin, "raw_1nn": raw, "target": target,
            "met": bool(pretrained >= target - 1e-9), "margin": pretrained - target,
            "rule": "max(linear, finetune) of the pretrained encoder >= max(best raw 1-NN, "
                    "twin + min(0.10, (1 - twin) / 2)), twin = max(linear, finetune) of the random-init twin"}


def sample_labels(dataset: SampleDataset, where: str | PathLike[str] | None,
                  labels: str | PathLike[str] | None) -> Features:
    """The labels and sources of ``dataset`` (from the data, or the ``labels`` CSV) as :class:`Features`
    without feature columns; a DataError naming ``where`` when there are none."""
    from mpt.probe import labelled

    samples = [(s.source, s.label) for s in iter_samples(dataset)]
    if not samples:
        raise DataError("the demo data" if where is None else str(where), "no samples")
    feats = make_features(np.zeros((len(samples), 0), np.float32), [s for s, _ in samples],
                          [lb for _, lb in samples], dataset)
    return labelled(feats, where, labels)


def make_split(card: dict[str, Any], data: str | PathLike[str] | None, eval_data: str | PathLike[str] | None,
               labels: str | PathLike[str] | None, data_sets: Sequence[str], seed: int, eval_fraction: float) -> Split:
    """Open the datasets and fix the split: ``eval_data`` when given, else the grouped stratified
    hold-out of :func:`mpt.probe.stratified_split` (grouped by ``Sample.source``). Labels come from
    the data or the ``labels`` CSV (:func:`sample_labels`)."""
    from mpt.probe import stratified_split

    def labels_of(dataset: SampleDataset, where: str | PathLike[str] | None) -> Features:
        return sample_labels(dataset, where, labels)

    train_set, _ = open_dataset(card, data, "probe", data_sets)
    train = labels_of(train_set, data)
    where = "the demo data" if data is None else str(data)
    if eval_data is not None:
        eval_set, _ = open_dataset(card, eval_data, "test", data_sets)
        ev = labels_of(eval_set, eval_data)
        tr_idx, ev_idx, holdout = np.arange(len(train)), np.arange(len(ev)), None
    else:
        eval_set, ev = train_set, train
        assert train.labels is not None  # sample_labels raises without labels
        tr_idx, ev_idx = stratified_split(train.labels, train.sources, eval_fraction, seed)
        if not len(ev_idx):
            raise DataError(where, "too few files per class for a hold-out (every class comes from a single "
                                   "file or series): give --eval-data")
        holdout = {"eval_fraction": eval_fraction, "grouped_by": "source",
                   "train_groups": len({train.sources[i] for i in tr_idx}),
                   "eval_groups": len({train.sources[i] for i in ev_idx})}
    from mpt.probe import align_classes

    a, b, _ = align_classes(train.subset(tr_idx), ev.subset(ev_idx))
    assert a.labels is not None and b.labels is not None
    if len(np.unique(a.labels)) < 2:
        raise DataError(where, f"an evaluation needs at least two classes in training, found only '{a.classes[0]}'")
    return Split(train=LabelledView(train_set, tr_idx, a.labels, a.classes),
                 eval=LabelledView(eval_set, ev_idx, b.labels, b.classes),
                 train_index=tr_idx, eval_index=ev_idx, classes=a.classes, holdout=holdout)


def frozen_rows(encoder: Backbone, name: str, split: Split, *, pool: str, collate: Any, batch_size: int,
                seed: int, k: int, progress: bool) -> list[dict[str, Any]]:
    """``linear`` and ``knn`` rows of ``encoder`` (named ``name``) on ``split``."""
    from mpt.probe import score_features

    feats = [extract_features(encoder, d, batch_size=batch_size, pool=pool, collate=collate, progress=progress)
             for d in (split.train, split.eval)]
    train, ev = (replace(f, classes=split.classes) for f in feats)
    return [{"encoder": name, **score_features(train, ev, method, seed, k)} for method in ("linear", "knn")]


def finetune_row(encoder: Backbone, name: str, split: Split, *, modality: Any, data_cfg: Any, pool: str,
                 steps: int, batch_size: int, seed: int, progress: bool, options: dict[str, Any]) -> dict[str, Any]:
    """The ``finetune`` row: ``steps`` optimiser steps (whole epochs, rounded up) of
    :func:`mpt.finetune.finetune` with the modality's augmentation; the last epoch's accuracy."""
    from mpt.finetune import finetune

    n = len(cast(Sized, split.train))
    batch = max(2, min(batch_size, n // 2))
    epochs = max(1, math.ceil(steps / max(1, n // batch)))
    result = finetune(encoder, split.train, split.eval, num_classes=len(split.classes), collate=modality.collate,
                      epochs=epochs, batch_size=batch, warmup_epochs=max(1.0, epochs / 10), seed=seed,
                      pool="cls" if pool == "cls" else "mean", progress=progress,
                      augment=lambda b, g: modality.augment(b, data_cfg, g), **{**FINETUNE_DEFAULTS, **options})
    last = result.history[-1]
    return {"encoder": name, "method": "finetune", "accuracy": last["accuracy"],
            "balanced_accuracy": last["balanced_accuracy"], "epochs": epochs, "batch_size": batch,
            "steps": epochs * max(1, n // batch), "train_loss": last["train_loss"],
            "pool": "cls" if pool == "cls" else "mean"}


def run_evaluation(encoder_path: str | PathLike[str], data: str | PathLike[str] | None, *,
                   eval_data: str | PathLike[str] | None = None, labels: str | PathLike[str] | None = None,
                   pool: str | None = None, data_sets: Sequence[str] = (), seed: int = 0, k: int = 20,
                   eval_fraction: float = 0.2, finetune_steps: int = 300,
                   finetune_options: dict[str, Any] | None = None, batch_size: int = 64,
                   progress: bool = True) -> dict[str, Any]:
    """``mpt evaluate``: every row of the module docstring on one split, and the goal.

    Returns a JSON-able dict: ``rows`` (``encoder``, ``method``, ``accuracy``, ``balanced_accuracy``
    and the method's settings), ``goal`` (:func:`goal`), ``split`` sizes, ``classes``, ``chance``,
    and what was evaluated. ``finetune_steps=0`` leaves fine-tuning out; ``pool`` None: the modality's
    ``feature_pool`` (``flat`` for time series, ``mean`` otherwise).
    """
    from mpt.pretrained import load_encoder, read_card
    from mpt.probe import encoder_folder, random_twin, recalibrate_batch_norms

    path = encoder_folder(encoder_path)
    card = read_card(path)
    pool = resolve_pool(card, pool)
    pretrained = load_encoder(path)
    check_pool(pretrained, pool)
    twin = random_twin(path, seed)
    _, modality = open_dataset(card, data, "probe", data_sets)

    split = make_split(card, data, eval_data, labels, data_sets, seed, eval_fraction)
    if not isinstance(split.train, Sized):
        raise MptError("an evaluation needs a map-style dataset (len and indexing)")
    recalibrated = recalibrate_batch_norms(twin, split.train, modality.collate, batch_size)
    rows: list[dict[str, Any]] = []
    for name, enc in zip(ENCODERS, (pretrained, twin), strict=True):
        rows += frozen_rows(enc, name, split, pool=pool, k=k, collate=modality.collate, batch_size=batch_size,
                            seed=seed, progress=progress)
    raw = [raw_features(pretrained, d, batch_size=batch_size, collate=modality.collate, progress=progress)
           for d in (split.train, split.eval)]
    rows += raw_baselines(*({kind: replace(f, classes=split.classes) for kind, f in r.items()} for r in raw), seed=seed)
    if finetune_steps > 0:
        data_cfg = data_config(card, modality, data_sets)
        for name, enc in zip(ENCODERS, (pretrained, twin), strict=True):
            rows.append(finetune_row(enc, name, split, modality=modality, data_cfg=data_cfg, pool=pool,
                                     steps=finetune_steps, options=finetune_options or {}, batch_size=32, seed=seed,
                                     progress=progress))
    eval_labels = np.asarray([split.eval[i].label for i in range(len(cast(Sized, split.eval)))])
    train_labels = cast(LabelledView, split.train).labels
    values, counts = np.unique(train_labels, return_counts=True)
    return {
        "modality": card["modality"], "encoder": str(path), "data": None if data is None else str(data),
        "eval_data": None if eval_data is None else str(eval_data), "labels": None if labels is None else str(labels),
        "pool": pool, "seed": seed, "k": k, "n_train": len(train_labels), "n_eval": len(eval_labels),
        "num_classes": len(split.classes), "classes": split.classes, "holdout": split.holdout,
        "chance": {"uniform": 1 / len(split.classes),
                   "majority": float((eval_labels == values[np.argmax(counts)]).mean())},
        "twin_batch_norm_recalibrated": recalibrated, "rows": rows, "goal": goal(rows),
        "pretraining": {"steps": card["trained_on"].get("steps"), "objective": card["objective"],
                        "recipe": card["recipe"]},
    }


# ----------------------------------------------------------------------------------------------
# the printed table and the figure

COLUMNS = (("linear", "linear"), ("knn", "k-NN"), ("finetune", "fine-tune"), ("1-nn", "1-NN"))


def table(report: dict[str, Any]) -> list[str]:
    """The lines ``mpt evaluate`` prints: accuracy (%) per encoder × method, then the goal."""
    cells: dict[tuple[str, str], float] = {(r["encoder"], r["method"]): r["accuracy"] for r in report["rows"]}
    names = list(dict.fromkeys(r["encoder"] for r in report["rows"]))
    used = [(m, title) for m, title in COLUMNS if any(key[1] == m for key in cells)]
    lines = [f"{report['n_train']} train / {report['n_eval']} eval samples, {report['num_classes']} classes, "
             f"pool {report['pool']}; accuracy (%)",
             f"{'':14s}" + "".join(f"{title:>11s}" for _, title in used)]
    for name in names:
        row = "".join(f"{100 * cells[(name, m)]:11.1f}" if (name, m) in cells else f"{'-':>11s}" for m, _ in used)
        lines.append(f"{name:14s}{row}")
    g = report["goal"]
    verdict = "met" if g["met"] else f"missed by {100 * -g['margin']:.1f} points"
    lines.append(f"goal: pretrained {100 * g['pretrained']:.1f} ≥ {100 * g['target']:.1f} = max(raw 1-NN "
                 f"{100 * g['raw_1nn']:.1f}, twin {100 * g['twin']:.1f} + headroom): {verdict}")
    lines.append(f"chance: {100 * report['chance']['uniform']:.1f} % uniform, "
                 f"{100 * report['chance']['majority']:.1f} % majority class")
    return lines


def figure(report: dict[str, Any], path: str | PathLike[str], title: str | None = None) -> Path:
    """A grouped bar chart of :func:`table` with the goal as a dashed line; written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = {(r["encoder"], r["method"]): r["accuracy"] for r in report["rows"]}
    names = list(dict.fromkeys(r["encoder"] for r in report["rows"]))
    used = [(m, t) for m, t in COLUMNS if any(key[1] == m for key in cells)]
    fig, ax = plt.subplots(figsize=(1.9 * len(used) + 2, 3.6))
    width = 0.8 / len(names)
    colours = {"pretrained": "tab:blue", "random-init": "tab:gray", "raw flat": "tab:orange", "raw pooled": "tab:brown"}
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i, (m, _) in enumerate(used) if (name, m) in cells]
        ys = [100 * cells[(name, m)] for m, _ in used if (name, m) in cells]
        bars = ax.bar(xs, ys, width, label=name, color=colours.get(name))
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.axhline(100 * report["goal"]["target"], color="tab:red", ls="--", lw=1, label="goal")
    ax.set_xticks(range(len(used)), [t for _, t in used])
    ax.set_ylabel("eval accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title or f"{report['modality']}: {report['n_train']} train / {report['n_eval']} eval", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | PathLike[str]) -> Path:
    """Lay out and write the matplotlib figure ``fig`` to ``path`` (PNG, parents created), then close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
