"""Frozen-feature probes: how much class information a pretrained encoder's features hold.

- :func:`linear_probe`: multinomial logistic regression on standardised features (full-batch L-BFGS
  in float64), its L2 strength chosen on a grouped, stratified validation split of the training data
  and then refit on all of it.
- :func:`knn_probe`: a weighted k-nearest-neighbour vote on cosine similarity (DINO, Caron et al. 2021).
- :func:`stratified_split`: a seeded hold-out, stratified by class and grouped by source (the windows
  of one series, the repeats of one file all land on the same side: no leak).
- :func:`probe` scores a method on train/eval :class:`~mpt.features.Features` into a report dict;
  :func:`run_probe` is ``mpt probe``: encoder + data paths → report, with an optional random-init
  baseline (:func:`random_twin`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from mpt.errors import DataError, MptError
from mpt.features import Features, check_pool, extract_features, open_dataset
from mpt.files import label_key
from mpt.labels import apply_manifest

if TYPE_CHECKING:
    from mpt.backbone import Backbone

METHODS = ("linear", "knn")
L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""L2 strengths the linear probe tries (penalty ``λ/2 · ‖W‖²`` on the mean cross-entropy)."""
DEFAULT_L2 = 1e-2  # used when the training data is too small for a validation split
NO_LABELS = ("the data carries no class labels: use folders {path}/<class>/..., a format with labels, "
             "or --labels CSV")

ProbeReport = dict[str, Any]


# ----------------------------------------------------------------------------------------------
# metrics


def accuracy(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int]) -> float:
    """Share of correct predictions."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{t.shape[0] if t.ndim else 0} labels but {p.shape[0] if p.ndim else 0} predictions")
    return float((t == p).mean()) if t.size else float("nan")


def balanced_accuracy(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int]) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{t.shape[0] if t.ndim else 0} labels but {p.shape[0] if p.ndim else 0} predictions")
    if not t.size:
        return float("nan")
    return float(np.mean([(p[t == c] == c).mean() for c in np.unique(t)]))


# ----------------------------------------------------------------------------------------------
# the grouped, stratified hold-out


def stratified_split(labels: np.ndarray | Sequence[int], groups: Sequence[Any] | None = None,
                     eval_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded hold-out ``(train_idx, eval_idx)`` (sorted int arrays), stratified by class and grouped.

    All samples of a group (``groups[i]``, e.g. the ``source``: windows of one series, repeats of one
    file) go to the same side. Per class, its groups (a group belongs to its most frequent label) are
    shuffled and the first ones, holding closest to ``eval_fraction`` of the class's samples, go to
    eval — at least one group when the class has two or more, never all of them. A class with a
    single group stays in training. Same inputs and seed, same split.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    g = list(range(len(y))) if groups is None else list(groups)
    if len(g) != len(y):
        raise ValueError(f"{len(y)} labels but {len(g)} groups")
    members: dict[Any, list[int]] = {}
    for i, key in enumerate(g):
        members.setdefault(key, []).append(i)
    by_class: dict[int, list[Any]] = {}
    for key, idx in members.items():
        values, counts = np.unique(y[idx], return_counts=True)
        by_class.setdefault(int(values[np.argmax(counts)]), []).append(key)
    rng = np.random.default_rng(seed)
    eval_idx: list[int] = []
    for c in sorted(by_class):
        keys = sorted(by_class[c], key=str)
        if len(keys) < 2:
            continue
        order = [keys[j] for j in rng.permutation(len(keys))]
        sizes = np.cumsum([len(members[k]) for k in order])
        target = eval_fraction * sizes[-1]
        take = 1 + int(np.argmin(np.abs(sizes[: len(order) - 1] - target)))  # 1 .. len-1 groups
        for k in order[:take]:
            eval_idx += members[k]
    ev = np.zeros(len(y), dtype=bool)
    ev[eval_idx] = True
    return np.flatnonzero(~ev), np.flatnonzero(ev)


# ----------------------------------------------------------------------------------------------
# probes


@dataclass
class ProbeResult:
    """Predictions on the eval features (class indices as given), and what the probe chose."""

    predictions: np.ndarray
    regularization: float | None = None  # linear: the L2 strength chosen
    validation: dict[float, float] = field(default_factory=dict)  # linear: validation accuracy per L2
    accuracy: float | None = None  # when eval labels were given


def standardize(train_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``(x - mean) / std`` with the training statistics (a constant feature is only centred)."""
    x = np.asarray(train_x, dtype=np.float64)
    mean = x.mean(0)
    std = x.std(0)
    std[std < 1e-12] = 1.0
    return [(np.asarray(a, dtype=np.float64) - mean) / std for a in (x, *others)]


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, k: int, l2: float,
                init: tuple[torch.Tensor, torch.Tensor] | None = None,
                max_iter: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression: mean cross-entropy + ``l2/2 · ‖W‖²`` (bias free), L-BFGS."""
    w = (init[0].clone() if init else torch.zeros(x.shape[1], k, dtype=x.dtype)).requires_grad_(True)
    b = (init[1].clone() if init else torch.zeros(k, dtype=x.dtype)).requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray | None = None,
                 *, seed: int = 0, groups: Sequence[Any] | None = None,
                 grid: Sequence[float] = L2_GRID) -> ProbeResult:
    """Logistic-regression probe; returns the eval predictions and the L2 strength chosen.

    Features are standardised with the training statistics. Each L2 strength of ``grid`` is fitted on
    80 % of the training data and scored on the other 20 % (a seeded split stratified by class and
    grouped by ``groups``, see :func:`stratified_split`); the best validation accuracy wins, ties go
    to the lower validation cross-entropy, then to the stronger regularisation. The chosen strength
    is refitted on all the training data. When no validation split is possible (every class in a
    single group) ``DEFAULT_L2`` is used.
    """
    ty = np.asarray(train_y)
    classes, y_idx = np.unique(ty, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least two classes in training, got {classes.tolist()}")
    xtr, xev = standardize(train_x, eval_x)
    k = len(classes)
    ytr = torch.as_tensor(y_idx, dtype=torch.long)
    xtr_t = torch.as_tensor(xtr)
    fit_idx, val_idx = stratified_split(y_idx, groups, 0.2, seed)
    scores: dict[float, float] = {}
    chosen = DEFAULT_L2
    if len(val_idx) and len(np.unique(y_idx[fit_idx])) == k:
        xf, xv = standardize(train_x[fit_idx], train_x[val_idx])
        xf_t, xv_t = torch.as_tensor(xf), torch.as_tensor(xv)
        yf, yv = ytr[fit_idx], ytr[val_idx]
        best: tuple[float, float, float] | None = None
        init = None
        for l2 in sorted(grid, reverse=True):  # strong to weak: each fit warm-starts the next
            init = _fit_logreg(xf_t, yf, k, l2, init)
            logits = xv_t @ init[0] + init[1]
            acc = float((logits.argmax(1) == yv).double().mean())
            ce = float(F.cross_entropy(logits, yv))
            scores[float(l2)] = acc
            key = (acc, -ce, l2)
            if best is None or key > best:
                best, chosen = key, float(l2)
    w, b = _fit_logreg(xtr_t, ytr, k, chosen)
    pred = classes[(torch.as_tensor(xev) @ w + b).argmax(1).numpy()]
    return ProbeResult(predictions=pred, regularization=chosen, validation=scores,
                       accuracy=None if eval_y is None else accuracy(eval_y, pred))


def knn_probe(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, *, k: int = 20,
              temperature: float = 0.07, chunk: int = 1024) -> ProbeResult:
    """Weighted k-NN probe (DINO's): features standardised with the training statistics and
    L2-normalised; each eval sample's ``k`` most cosine-similar training samples (``k`` capped at
    the training size) vote for their class with weight ``exp(similarity / temperature)``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    classes, y_idx = np.unique(np.asarray(train_y), return_inverse=True)
    xtr, xev = standardize(train_x, eval_x)
    tr = F.normalize(torch.as_tensor(xtr, dtype=torch.float32), dim=1)
    ev = F.normalize(torch.as_tensor(xev, dtype=torch.float32), dim=1)
    ytr = torch.as_tensor(y_idx, dtype=torch.long)
    k = min(k, tr.shape[0])
    preds = []
    for start in range(0, ev.shape[0], chunk):
        sim, idx = (ev[start : start + chunk] @ tr.T).topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], len(classes))
        votes.scatter_add_(1, ytr[idx], torch.exp((sim - 1) / temperature))  # -1: same order, no overflow
        preds.append(votes.argmax(1))
    pred = torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
    return ProbeResult(predictions=classes[pred])


# ----------------------------------------------------------------------------------------------
# a report


def align_classes(train: Features, eval_: Features) -> tuple[Features, Features, list[str]]:
    """Both feature sets with labels indexing one class list: the training classes, then the eval
    classes training never saw (by name). Returns the remapped sets and the unseen class names."""
    if train.labels is None or eval_.labels is None:
        raise ValueError("both feature sets need labels")
    if train.classes == eval_.classes:
        return train, eval_, []
    classes = list(train.classes)
    unseen = sorted({eval_.classes[i] for i in np.unique(eval_.labels).tolist()} - set(classes), key=label_key)
    classes += unseen
    where = {c: i for i, c in enumerate(classes)}
    remap = np.asarray([where.get(c, -1) for c in eval_.classes], dtype=np.int64)
    return (replace(train, classes=classes),
            replace(eval_, labels=remap[eval_.labels], classes=classes), unseen)


def _scores(train: Features, eval_: Features, method: str, seed: int, k: int) -> dict[str, Any]:
    assert train.labels is not None and eval_.labels is not None
    if method == "linear":
        res = linear_probe(train.x, train.labels, eval_.x, eval_.labels, seed=seed, groups=train.sources)
    elif method == "knn":
        res = knn_probe(train.x, train.labels, eval_.x, k=k)
    else:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    out: dict[str, Any] = {
        "method": method,
        "accuracy": accuracy(eval_.labels, res.predictions),
        "balanced_accuracy": balanced_accuracy(eval_.labels, res.predictions),
        "n_train": len(train), "n_eval": len(eval_),
    }
    if method == "linear":
        out["regularization"] = res.regularization
        out["validation_accuracy"] = {f"{l2:g}": acc for l2, acc in res.validation.items()}
    else:
        out["k"] = min(k, len(train))
    return out


def probe(encoder: str | PathLike[str] | None, train_features: Features, eval_features: Features,
          method: str = "linear", *, seed: int = 0, k: int = 20,
          baseline: tuple[Features, Features] | None = None, pool: str = "mean",
          data: str | PathLike[str] | None = None, eval_data: str | PathLike[str] | None = None,
          ) -> ProbeReport:
    """Fit ``method`` ("linear" or "knn") on ``train_features`` and score it on ``eval_features``.

    ``encoder``, ``pool``, ``data`` and ``eval_data`` are recorded in the report; ``baseline`` is the
    (train, eval) features of a random-init twin, probed the same way. Eval classes that training
    never saw are warned about and still scored (their samples count as errors).

    Returns a JSON-able dict: ``method``, ``accuracy``, ``balanced_accuracy``, ``n_train``,
    ``n_eval``, ``num_classes``, ``classes``, ``chance`` (``uniform`` = 1/num_classes, ``majority`` =
    the accuracy of always answering training's most frequent class), ``regularization`` (linear) or
    ``k`` (knn), ``baseline`` (None or the same metrics for the twin), ``pool``, ``encoder``,
    ``data``, ``eval_data``, ``unseen_eval_classes``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if train_features.labels is None or eval_features.labels is None:
        raise ValueError("probe() needs labelled features (see run_probe for the checks on data)")
    train, eval_, unseen = align_classes(train_features, eval_features)
    assert train.labels is not None and eval_.labels is not None
    if len(np.unique(train.labels)) < 2:
        raise DataError(str(data or "training data"), "a probe needs at least two classes in the training data, "
                                                      f"found only '{train.classes[int(train.labels[0])]}'")
    if unseen:
        warnings.warn(f"eval classes not in the training data: {', '.join(unseen)}; their "
                      f"{int(np.isin(eval_.labels, [train.classes.index(c) for c in unseen]).sum())} "
                      "samples are scored (always wrong)", stacklevel=2)
    report: dict[str, Any] = _scores(train, eval_, method, seed, k)
    values, counts = np.unique(train.labels, return_counts=True)
    majority = int(values[np.argmax(counts)])
    report.update({
        "num_classes": len(train.classes),
        "classes": list(train.classes),
        "chance": {"uniform": 1 / len(train.classes), "majority": float((eval_.labels == majority).mean())},
        "baseline": None,
        "pool": pool,
        "encoder": None if encoder is None else str(encoder),
        "data": None if data is None else str(data),
        "eval_data": None if eval_data is None else str(eval_data),
        "unseen_eval_classes": unseen,
        "seed": seed,
    })
    if method != "linear":
        report["regularization"] = None
    if baseline is not None:
        btrain, beval, _ = align_classes(*baseline)
        report["baseline"] = {"kind": "random-init", **_scores(btrain, beval, method, seed, k)}
    return report


# ----------------------------------------------------------------------------------------------
# the whole pipeline (mpt probe)


def random_twin(card_path: str | PathLike[str], seed: int = 0) -> Backbone:
    """A random-init encoder of the same architecture and tokenizer as the one at ``card_path``
    (an ``encoder/`` folder), built with a fixed seed and in eval mode: the baseline a probe
    compares pretraining against."""
    from mpt.backbone import build_backbone
    from mpt.pretrained import card_configs, read_card

    path = Path(card_path)
    modality, tok_cfg, model_cfg = card_configs(read_card(path), path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(modality, tok_cfg, model_cfg)
    return backbone.eval()


def encoder_folder(path: str | PathLike[str]) -> Path:
    """``path``, or its ``encoder/`` subfolder when ``path`` is a run folder."""
    path = Path(path)
    return path / "encoder" if (path / "encoder" / "config.json").is_file() else path


def labelled(features: Features, path: str | PathLike[str] | None, labels_csv: str | PathLike[str] | None,
             ) -> Features:
    """``features`` with labels from ``labels_csv`` when given; a DataError when there are none."""
    if labels_csv is not None:
        return apply_manifest(features, labels_csv, path)
    if features.labels is None:
        where = "the demo data" if path is None else str(path)
        message = NO_LABELS.format(path=path or "PATH")
        if features.unlabelled < len(features):
            message += f" ({features.unlabelled} of {len(features)} samples have no label)"
        raise DataError(where, message)
    return features


def recalibrate_batch_norms(encoder: Backbone, dataset: Any, collate: Any, batch_size: int = 64) -> bool:
    """Recompute the running statistics of every BatchNorm of ``encoder`` on ``dataset``'s inputs
    (labels unused, no gradient); False when it has none. A random-init twin otherwise keeps its
    initial statistics (mean 0, variance 1) while a pretrained encoder's fit the data, and the
    probe would credit pretraining with what is only a normalisation (seen on Point-MAE's
    mini-PointNet: +9.5 points from statistics alone)."""
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all batches
        m.train()
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            encoder(collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]))
    encoder.eval()
    return True


def run_probe(encoder_path: str | PathLike[str], data: str | PathLike[str] | None, *,
              eval_data: str | PathLike[str] | None = None, labels: str | PathLike[str] | None = None,
              method: str = "linear", baseline: str | None = None, pool: str = "mean", batch_size: int = 64,
              data_sets: Sequence[str] = (), seed: int = 0, k: int = 20, eval_fraction: float = 0.2,
              progress: bool = True, device: str = "cpu") -> ProbeReport:
    """``mpt probe``: features of ``data`` (split "probe") and of ``eval_data`` (split "test"; when
    None, a seeded hold-out of ``data`` grouped by source and stratified by class), then
    :func:`probe`. ``baseline="random"`` also probes a random-init twin (:func:`random_twin`) whose
    BatchNorm statistics, if any, are recomputed on ``data`` (:func:`recalibrate_batch_norms`)."""
    from mpt.pretrained import load_encoder, read_card

    if method not in METHODS:
        raise MptError(f"unknown probe method '{method}'; choose one of {', '.join(METHODS)}")
    if baseline not in (None, "none", "random"):
        raise MptError(f"unknown baseline '{baseline}'; choose random")
    path = encoder_folder(encoder_path)
    card = read_card(path)
    encoders: list[Backbone] = [load_encoder(path)]
    check_pool(encoders[0], pool)
    if baseline == "random":
        encoders.append(random_twin(path, seed))
    train_set, modality = open_dataset(card, data, "probe", data_sets)
    eval_set = None if eval_data is None else open_dataset(card, eval_data, "test", data_sets)[0]
    recalibrated = len(encoders) > 1 and recalibrate_batch_norms(encoders[1], train_set, modality.collate, batch_size)

    if labels is None:  # fail before any feature is computed when the data plainly has no labels
        for dataset, where_ in ((train_set, data), (eval_set, eval_data)):
            if dataset is not None and len(cast(Sized, dataset)) and dataset[0].label is None:
                raise DataError("the demo data" if where_ is None else str(where_),
                                NO_LABELS.format(path=where_ or "PATH"))

    def features(enc: Backbone, dataset: Any) -> Features:
        return extract_features(enc, dataset, batch_size=batch_size, pool=pool, collate=modality.collate,
                                progress=progress, device=device)

    where = "the demo data" if data is None else str(data)
    split: dict[str, Any] = {}
    pairs: list[tuple[Features, Features]] = []
    for enc in encoders:
        train = labelled(features(enc, train_set), data, labels)
        if eval_set is not None:
            ev = labelled(features(enc, eval_set), eval_data, labels)
        else:
            if not split:
                assert train.labels is not None
                if len(np.unique(train.labels)) < 2:
                    only = train.classes[int(train.labels[0])]
                    raise DataError(where, f"a probe needs at least two classes, found only '{only}'")
                tr_idx, ev_idx = stratified_split(train.labels, train.sources, eval_fraction, seed)
                if not len(ev_idx):
                    raise DataError(where, "too few files per class for a hold-out (every class comes from "
                                           "a single file or series): give --eval-data")
                split = {"train": tr_idx, "eval": ev_idx}
            train, ev = train.subset(split["train"]), train.subset(split["eval"])
        pairs.append((train, ev))
    report = probe(path, *pairs[0], method, seed=seed, k=k, baseline=pairs[1] if len(pairs) > 1 else None,
                   pool=pool, data=data, eval_data=eval_data)
    report["labels"] = None if labels is None else str(labels)
    if report.get("baseline"):
        report["baseline"]["batch_norm_recalibrated"] = recalibrated
    report["holdout"] = None if eval_data is not None else {
        "eval_fraction": eval_fraction, "grouped_by": "source",
        "train_groups": len(set(pairs[0][0].sources)), "eval_groups": len(set(pairs[0][1].sources))}
    report["modality"] = card["modality"]
    return report


def summary(report: ProbeReport) -> list[str]:
    """The readable lines ``mpt probe`` prints for a report."""
    def pct(v: float) -> str:
        return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"

    method = report["method"] + ("" if report["method"] == "linear" else f" (k={report.get('k')})")
    lines = [f"{method} probe, pool {report['pool']}: {report['n_train']} train / {report['n_eval']} eval samples, "
             f"{report['num_classes']} classes",
             f"{'':14s}{'accuracy':>10s}{'balanced':>10s}",
             f"{'encoder':14s}{pct(report['accuracy']):>9s}%{pct(report['balanced_accuracy']):>9s}%"]
    base = report.get("baseline")
    if base:
        lines.append(f"{'random init':14s}{pct(base['accuracy']):>9s}%{pct(base['balanced_accuracy']):>9s}%")
        gap = [100 * (report[m] - base[m]) for m in ("accuracy", "balanced_accuracy")]
        lines.append(f"{'gap':14s}{gap[0]:+9.2f}%{gap[1]:+9.2f}%")
    chance = report["chance"]
    lines.append(f"chance: {100 * chance['uniform']:.2f}% uniform, {100 * chance['majority']:.2f}% majority class")
    if report.get("regularization") is not None:
        lines.append(f"L2 regularisation: {report['regularization']:g} (chosen on a validation split of the "
                     "training data)")
    if report.get("holdout"):
        h = report["holdout"]
        lines.append(f"eval: a hold-out of {100 * h['eval_fraction']:.0f}% of the data, grouped by source "
                     f"({h['train_groups']} train / {h['eval_groups']} eval sources)")
    return lines
