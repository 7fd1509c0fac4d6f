"""Frozen-feature probes: how much class information a pretrained encoder's features hold.

The estimators are scikit-learn's, the ones the field's papers report their probes with (imported
where used: scikit-learn takes about a second to load, and ``mpt embed`` imports this module for
:func:`encoder_folder` only).

- :func:`linear_probe`: multinomial logistic regression on standardised features
  (``sklearn.linear_model.LogisticRegression``, L-BFGS in float64), its L2 strength chosen on a
  grouped, stratified validation split of the training data and then refit on all of it.
- :func:`knn_probe`: DINO's weighted k-nearest-neighbour vote on cosine similarity (Caron et al.
  2021), as ``sklearn.neighbors.KNeighborsClassifier`` (brute force, cosine distance, weights
  ``exp(-distance / temperature)``).
- :func:`stratified_split`: a seeded hold-out, stratified by class and grouped by source (the windows
  of one series, the repeats of one file all land on the same side: no leak): one fold of
  ``sklearn.model_selection.StratifiedGroupKFold``.
- :func:`accuracy`, :func:`balanced_accuracy`: ``sklearn.metrics.accuracy_score`` and
  ``balanced_accuracy_score`` (NaN on no samples).
- :func:`probe` scores a method on train/eval :class:`~mpt.features.Features` into a report dict;
  :func:`run_probe` is ``mpt probe``: encoder + data paths → report, with an optional random-init
  baseline (:func:`random_twin`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field, replace
from functools import partial
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from mpt.errors import DataError, MptError
from mpt.features import Features, check_pool, extract_features, open_dataset, pad_columns, resolve_pool
from mpt.files import label_key
from mpt.labels import apply_manifest

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin
    from sklearn.linear_model import LogisticRegression

    from mpt.backbone import Backbone

METHODS = ("linear", "knn")
L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""L2 strengths the linear probe tries (penalty ``λ/2 · ‖W‖²`` on the mean cross-entropy)."""
DEFAULT_L2 = 1e-2  # used when the training data is too small for a validation split
LOGREG_TOL = 1e-8  # L-BFGS gradient tolerance; 1e-4 (the default) changed an L2 choice (benchmarks/probe_estimators.py)
LOGREG_MAX_ITER = 10_000
NO_LABELS = ("the data carries no class labels: use folders {path}/<class>/..., a format with labels, "
             "or --labels CSV")

ProbeReport = dict[str, Any]


# ----------------------------------------------------------------------------------------------
# metrics


def _label_arrays(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int],
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Both as arrays; a ValueError when their shapes differ."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{t.shape[0] if t.ndim else 0} labels but {p.shape[0] if p.ndim else 0} predictions")
    return t, p


def accuracy(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int]) -> float:
    """Share of correct predictions (``sklearn.metrics.accuracy_score``); NaN when there are none."""
    from sklearn.metrics import accuracy_score

    t, p = _label_arrays(y_true, y_pred)
    return float(accuracy_score(t, p)) if t.size else float("nan")


def balanced_accuracy(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int]) -> float:
    """Mean per-class recall over the classes present in ``y_true``
    (``sklearn.metrics.balanced_accuracy_score``); NaN when there are no samples."""
    from sklearn.metrics import balanced_accuracy_score

    t, p = _label_arrays(y_true, y_pred)
    if not t.size:
        return float("nan")
    with warnings.catch_warnings():  # classes only predicted are left out of the mean, as documented
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(t, p))


# ----------------------------------------------------------------------------------------------
# the grouped, stratified hold-out


def _held_out(test: np.ndarray, group: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """The groups of the sample indices ``test`` as a boolean mask over groups, less every class
    (``owner[g]``: group ``g``'s class) that would keep no group in training."""
    held = np.zeros(len(owner), dtype=bool)
    held[group[test]] = True
    return held & (np.bincount(owner[~held], minlength=owner.max() + 1) > 0)[owner]


def stratified_split(labels: np.ndarray | Sequence[int], groups: Sequence[Any] | None = None,
                     eval_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded hold-out ``(train_idx, eval_idx)`` (sorted int arrays), stratified by class and grouped.

    All samples of a group (``groups[i]``, hashable, e.g. the ``source``: windows of one series,
    repeats of one file; None: every sample its own group) go to the same side.
    ``sklearn.model_selection.StratifiedGroupKFold`` (shuffled with ``seed``) deals the groups into
    ``round(1 / eval_fraction)`` folds, fewer when there are fewer groups or samples of the largest
    class, spreading each class over the folds. A group belongs to its most frequent label; a class
    none of whose groups would stay in training is moved back there whole, so every class keeps a
    group in training and a class with a single group never reaches eval. Eval is the fold, so
    amended, that holds out the most classes, then whose size is closest to ``eval_fraction`` of the
    samples, then the first. A class with fewer groups than folds may be absent from eval; eval is
    empty when there is nothing to hold out (fewer than two folds, or every class in one group).
    Same inputs and seed, same split, whatever the order of the samples.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if not 0 < eval_fraction <= 0.5:
        raise ValueError(f"eval_fraction must be in (0, 0.5] (one fold of k >= 2), got {eval_fraction}")
    g = list(range(len(y))) if groups is None else list(groups)
    if len(g) != len(y):
        raise ValueError(f"{len(y)} labels but {len(g)} groups")
    _, y_idx = np.unique(y, return_inverse=True)
    code = {key: i for i, key in enumerate(sorted(set(g), key=str))}
    group = np.asarray([code[key] for key in g], dtype=np.int64)
    counts = np.zeros((len(code), int(y_idx.max(initial=-1)) + 1), dtype=np.int64)
    np.add.at(counts, (group, y_idx), 1)
    owner = counts.argmax(1)
    n_splits = min(round(1 / eval_fraction), len(code), int(counts.sum(0).max(initial=0)))
    if n_splits < 2:
        return np.arange(len(y)), np.zeros(0, dtype=np.int64)
    folds = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has only n members": see _held_out
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        held = [_held_out(test, group, owner) for _, test in folds.split(y_idx, y_idx, group)]
    target = eval_fraction * len(y)
    best = max(held, key=lambda h: (len(np.unique(owner[h])), -abs(counts[h].sum() - target)))
    ev = best[group]
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


def row_space(train_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Coordinates in the span of the training rows when there are more features than rows.

    The L2-regularised logistic regression weights (unpenalised bias) lie in the span of the
    training rows (representer theorem: a component orthogonal to every row changes no training
    score and only adds to the penalty), so fitting on the coordinates ``x @ V`` of an orthonormal
    basis ``V`` of that span gives the same scores on any input, exactly, with at most ``n`` features
    instead of ``d`` (a flattened video clip has ~10⁵). Returns the arrays unchanged when ``d <= n``."""
    x = np.asarray(train_x, dtype=np.float64)
    n, d = x.shape
    if d <= n:
        return [x, *(np.asarray(a, dtype=np.float64) for a in others)]
    _, s, vt = np.linalg.svd(x, full_matrices=False)  # vt: [min(n, d), d]
    basis = vt[s > s.max(initial=0.0) * max(n, d) * np.finfo(np.float64).eps].T  # [d, rank]
    return [a @ basis for a in (x, *(np.asarray(o, dtype=np.float64) for o in others))]


def _predict(model: ClassifierMixin, x: np.ndarray) -> np.ndarray:
    """``model``'s predicted class indices for the rows of ``x`` (none for no rows)."""
    return np.asarray(model.predict(x)) if len(x) else np.zeros(0, dtype=np.int64)


def logreg_c(l2: float, n: int, k: int) -> float:
    """scikit-learn's ``C`` for mean cross-entropy + ``l2/2 · ‖W‖²`` over ``k`` classes' weight
    columns, fitted on ``n`` samples: ``C · Σ CE + ½‖W‖²`` is that objective times ``C · n`` when
    ``C = 1 / (l2 · n)``. Two classes get one weight vector ``w = w₁ - w₀`` in scikit-learn, and
    the penalty ``l2/2 · (‖w₀‖² + ‖w₁‖²)`` at its optimum ``w₁ = -w₀`` is ``l2/4 · ‖w‖²``: ``C = 2 / (l2 · n)``."""
    return (2.0 if k == 2 else 1.0) / (l2 * n)


def _logreg(c: float = 1.0, warm_start: bool = False) -> LogisticRegression:
    """The linear probe's estimator: logistic regression (multinomial; one weight vector for two
    classes), L-BFGS, bias unpenalised, strength ``c`` (:func:`logreg_c`)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, solver="lbfgs", tol=LOGREG_TOL, max_iter=LOGREG_MAX_ITER, warm_start=warm_start)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray | None = None,
                 *, seed: int = 0, groups: Sequence[Any] | None = None,
                 grid: Sequence[float] = L2_GRID) -> ProbeResult:
    """Logistic-regression probe; returns the eval predictions and the L2 strength chosen.

    Features are standardised with the training statistics (and, when they outnumber the training
    rows, fitted in the rows' span: :func:`row_space`, the same solution). Each L2 strength of ``grid`` (mean
    cross-entropy + ``l2/2 · ‖W‖²``, see :func:`logreg_c`) is fitted on 80 % of the training data
    and scored on the other 20 % (a seeded split stratified by class and grouped by ``groups``, see
    :func:`stratified_split`), strong to weak, each fit warm-started from the previous one; the best
    validation accuracy wins, ties go to the lower validation cross-entropy, then to the stronger
    regularisation. The chosen strength is refitted on all the training data. When no validation
    split is possible (every class in a single group) ``DEFAULT_L2`` is used.
    """
    from sklearn.metrics import log_loss

    classes, y_idx = np.unique(np.asarray(train_y), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least two classes in training, got {classes.tolist()}")
    k = len(classes)
    xtr, xev = row_space(*standardize(train_x, eval_x))
    fit_idx, val_idx = stratified_split(y_idx, groups, 0.2, seed)
    scores: dict[float, float] = {}
    chosen = DEFAULT_L2
    if len(val_idx) and len(np.unique(y_idx[fit_idx])) == k:
        xf, xv = row_space(*standardize(np.asarray(train_x)[fit_idx], np.asarray(train_x)[val_idx]))
        yf, yv = y_idx[fit_idx], y_idx[val_idx]
        model = _logreg(warm_start=True)
        best: tuple[float, float, float] | None = None
        for l2 in sorted(grid, reverse=True):
            proba = model.set_params(C=logreg_c(l2, len(yf), k)).fit(xf, yf).predict_proba(xv)
            acc = accuracy(yv, proba.argmax(1))
            key = (acc, -float(log_loss(yv, proba, labels=np.arange(k))), float(l2))
            scores[float(l2)] = acc
            if best is None or key > best:
                best, chosen = key, float(l2)
    final = _logreg(logreg_c(chosen, len(y_idx), k)).fit(xtr, y_idx)
    pred = classes[_predict(final, xev)]
    return ProbeResult(predictions=pred, regularization=chosen, validation=scores,
                       accuracy=None if eval_y is None else accuracy(eval_y, pred))


def dino_weights(distances: np.ndarray, temperature: float) -> np.ndarray:
    """DINO's vote weights for cosine distances ``1 - similarity``: ``exp(-distance / temperature)``,
    i.e. ``exp(similarity / temperature)`` scaled by ``exp(-1 / temperature)`` (same vote, no overflow)."""
    return np.exp(-np.asarray(distances) / temperature)


def knn_probe(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, *, k: int = 20,
              temperature: float = 0.07, chunk: int = 1024) -> ProbeResult:
    """Weighted k-NN probe (DINO's): features standardised with the training statistics; each eval
    sample's ``k`` most cosine-similar training samples (``k`` capped at the training size) vote for
    their class with weight ``exp(similarity / temperature)`` (:func:`dino_weights`); a tied vote goes
    to the lowest class. ``sklearn.neighbors.KNeighborsClassifier`` computes the distances ``chunk``
    eval samples at a time (its ``working_memory``)."""
    from sklearn import config_context
    from sklearn.neighbors import KNeighborsClassifier

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    classes, y_idx = np.unique(np.asarray(train_y), return_inverse=True)
    xtr, xev = standardize(train_x, eval_x)
    model = KNeighborsClassifier(n_neighbors=min(k, len(xtr)), metric="cosine", algorithm="brute",
                                 weights=partial(dino_weights, temperature=temperature)).fit(xtr, y_idx)
    with config_context(working_memory=chunk * xtr.itemsize * len(xtr) / 2**20):  # MiB of distances
        pred = _predict(model, xev)
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


def score_features(train: Features, eval_: Features, method: str, seed: int, k: int) -> dict[str, Any]:
    """Fit the ``method`` probe (``linear`` or ``knn``) on ``train`` and score it on ``eval_`` (labels
    indexing one class list): ``{"method", "accuracy", "balanced_accuracy", "n_train", "n_eval", …}``
    with the method's settings (the chosen regularisation, or k and the temperature)."""
    assert train.labels is not None and eval_.labels is not None
    if train.x.shape[1] != eval_.x.shape[1]:  # flat features of series of other lengths
        train_x, eval_x = pad_columns(train.x, eval_.x)
        train, eval_ = replace(train, x=train_x), replace(eval_, x=eval_x)
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
    report: dict[str, Any] = score_features(train, eval_, method, seed, k)
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
        report["baseline"] = {"kind": "random-init", **score_features(btrain, beval, method, seed, k)}
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
              method: str = "linear", baseline: str | None = None, pool: str | None = None, batch_size: int = 64,
              data_sets: Sequence[str] = (), seed: int = 0, k: int = 20, eval_fraction: float = 0.2,
              progress: bool = True, device: str = "cpu") -> ProbeReport:
    """``mpt probe``: features of ``data`` (split "probe") and of ``eval_data`` (split "test"; when
    None, a seeded hold-out of ``data`` grouped by source and stratified by class), then
    :func:`probe`. ``pool`` None: the modality's ``feature_pool``. ``baseline="random"`` also probes a
    random-init twin (:func:`random_twin`) whose BatchNorm statistics, if any, are recomputed on
    ``data`` (:func:`recalibrate_batch_norms`)."""
    from mpt.pretrained import load_encoder, read_card

    if method not in METHODS:
        raise MptError(f"unknown probe method '{method}'; choose one of {', '.join(METHODS)}")
    if baseline not in (None, "none", "random"):
        raise MptError(f"unknown baseline '{baseline}'; choose random")
    path = encoder_folder(encoder_path)
    card = read_card(path)
    pool = resolve_pool(card, pool)
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
