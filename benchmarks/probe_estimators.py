"""Before/after agreement of mpt.probe's estimators: the hand-written torch ones vs scikit-learn's.

Runs an old copy of ``mpt/probe.py`` (``--old``, imported from its path) and the installed
``mpt.probe`` on the same problems and the same train/eval split (the new :func:`stratified_split`'s),
and prints one JSON line per problem on stdout (progress goes to stderr):

- ``linear``: eval accuracy, chosen L2 and validation accuracies, wall time, old vs new, and the
  share of identical predictions. ``linear_old_new_split`` runs the old estimator with the new
  validation split patched in, so that a difference of estimator shows apart from one of split.
- ``knn``: eval accuracy, wall time old vs new, share of identical predictions.
- ``split``: the eval sets of the old and the new hold-out on the whole problem (sizes, classes
  held out, Jaccard overlap) and their wall times.
- ``metrics``: the largest difference between the old and the new accuracy / balanced accuracy.

Problems: scikit-learn's digits (raw 8x8 pixels, every image its own group), seeded synthetic
``make_classification`` problems whose samples come in groups sharing an offset (windows of one
series), and any ``--features X.npy --labels y.npy`` pairs (optionally ``--groups g.npy``).

    python benchmarks/probe_estimators.py --threads 2 > results.jsonl
    python benchmarks/probe_estimators.py --features feats.npy --labels labels.npy --no-builtin
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import patch

import numpy as np
import sklearn
import torch
from threadpoolctl import threadpool_limits

from mpt import probe as new

BENCH = "probe_estimators"
SYNTHETIC = (  # name, samples, features, classes, informative features, samples per group, seed
    ("blobs-binary-300", 300, 20, 2, 3, 5, 0),
    ("blobs-5c-1000", 1000, 50, 5, 4, 10, 1),
    ("blobs-10c-3000", 3000, 100, 10, 5, 20, 2),
    ("blobs-3c-wide-200", 200, 300, 3, 2, 4, 3),
    ("blobs-40c-384d-8000", 8000, 384, 40, 16, 10, 4),  # ModelNet40-sized features
)


@dataclass
class Problem:
    """Features ``x``, labels ``y`` and the group of each sample (None: every sample its own)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    groups: list[Any] | None


def log(msg: str) -> None:
    print(f"[{BENCH}] {msg}", file=sys.stderr, flush=True)


def load_old(path: str | Path) -> ModuleType:
    """The module at ``path`` (the old ``mpt/probe.py``), imported under the name ``probe_old``."""
    spec = importlib.util.spec_from_file_location("probe_old", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def digits() -> Problem:
    """scikit-learn's digits as 64 raw pixel values per image, 10 classes."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return Problem("digits-raw-pixels", x.astype(np.float64), y, None)


def synthetic(name: str, n: int, d: int, k: int, informative: int, per_group: int, seed: int) -> Problem:
    """``make_classification`` (``informative`` useful features of ``d``, ``k`` classes), its samples
    dealt per class into groups of ``per_group`` that share a Gaussian offset."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=d, n_informative=informative, n_redundant=0,
                               n_classes=k, n_clusters_per_class=1, class_sep=1.0, random_state=seed)
    rank = np.empty(n, dtype=np.int64)
    for c in range(k):
        rank[y == c] = np.arange((y == c).sum())
    _, group = np.unique(y * n + rank // per_group, return_inverse=True)
    offsets = np.random.default_rng(seed).normal(scale=0.5, size=(int(group.max()) + 1, d))
    return Problem(name, x + offsets[group], y, [f"c{c}/g{g}" for c, g in zip(y, group, strict=True)])


def from_files(features: Sequence[str], labels: Sequence[str], groups: Sequence[str]) -> Iterator[Problem]:
    """The ``--features`` / ``--labels`` (/ ``--groups``) .npy files, pairwise."""
    if len(features) != len(labels) or len(groups) not in (0, len(features)):
        raise SystemExit("give one --labels (and, if any, one --groups) per --features")
    for i, (fx, fy) in enumerate(zip(features, labels, strict=True)):
        g = np.load(groups[i], allow_pickle=False).tolist() if groups else None
        yield Problem(Path(fx).stem, np.load(fx).reshape(len(np.load(fy)), -1), np.load(fy), g)


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and its wall time in seconds."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def same(a: np.ndarray, b: np.ndarray) -> float:
    """Share of identical entries."""
    return float(np.mean(np.asarray(a) == np.asarray(b))) if len(a) else float("nan")


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two index sets (1 when both are empty)."""
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b)) / union if union else 1.0


def split_record(old: ModuleType, p: Problem, seed: int) -> dict[str, Any]:
    """The old and new hold-outs (20 %) of the whole problem compared."""
    (_, ev_old), t_old = timed(old.stratified_split, p.y, p.groups, 0.2, seed)
    (_, ev_new), t_new = timed(new.stratified_split, p.y, p.groups, 0.2, seed)
    return {"eval_old": len(ev_old), "eval_new": len(ev_new), "overlap_jaccard": jaccard(ev_old, ev_new),
            "eval_classes_old": len(np.unique(p.y[ev_old])), "eval_classes_new": len(np.unique(p.y[ev_new])),
            "wall_s_old": t_old, "wall_s_new": t_new}


def linear_record(old: ModuleType, xtr: np.ndarray, ytr: np.ndarray, xev: np.ndarray, yev: np.ndarray,
                  groups: list[Any] | None, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """Old and new linear probes on one split (the old one also with the new validation split), and
    the new one's predictions."""
    r_old, t_old = timed(old.linear_probe, xtr, ytr, xev, yev, seed=seed, groups=groups)
    r_new, t_new = timed(new.linear_probe, xtr, ytr, xev, yev, seed=seed, groups=groups)
    with patch.object(old, "stratified_split", new.stratified_split):
        r_mix, t_mix = timed(old.linear_probe, xtr, ytr, xev, yev, seed=seed, groups=groups)
    return {
        "accuracy_old": r_old.accuracy, "accuracy_new": r_new.accuracy,
        "l2_old": r_old.regularization, "l2_new": r_new.regularization,
        "agreement": same(r_old.predictions, r_new.predictions),
        "validation_old": {f"{k:g}": v for k, v in r_old.validation.items()},
        "validation_new": {f"{k:g}": v for k, v in r_new.validation.items()},
        "wall_s_old": t_old, "wall_s_new": t_new,
        "old_new_split": {"accuracy": r_mix.accuracy, "l2": r_mix.regularization,
                          "agreement_with_new": same(r_mix.predictions, r_new.predictions),
                          "validation": {f"{k:g}": v for k, v in r_mix.validation.items()}, "wall_s": t_mix},
    }, r_new.predictions


def knn_record(old: ModuleType, xtr: np.ndarray, ytr: np.ndarray, xev: np.ndarray, yev: np.ndarray,
               k: int) -> dict[str, Any]:
    """Old and new k-NN probes on one split."""
    r_old, t_old = timed(old.knn_probe, xtr, ytr, xev, k=k)
    r_new, t_new = timed(new.knn_probe, xtr, ytr, xev, k=k)
    return {"k": k, "accuracy_old": new.accuracy(yev, r_old.predictions),
            "accuracy_new": new.accuracy(yev, r_new.predictions),
            "agreement": same(r_old.predictions, r_new.predictions), "wall_s_old": t_old, "wall_s_new": t_new}


def metrics_record(old: ModuleType, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Largest |old - new| of the two metrics on these labels and predictions."""
    return {"accuracy_abs_diff": abs(old.accuracy(y, pred) - new.accuracy(y, pred)),
            "balanced_accuracy_abs_diff": abs(old.balanced_accuracy(y, pred) - new.balanced_accuracy(y, pred))}


def environment(threads: int) -> dict[str, Any]:
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = float("nan")
    return {"cpu_count": os.cpu_count(), "cpu_load": load, "threads": threads, "torch": torch.__version__,
            "sklearn": sklearn.__version__, "numpy": np.__version__}


def run(old: ModuleType, p: Problem, seed: int, k: int, threads: int) -> dict[str, Any]:
    """One JSON record: every comparison on problem ``p``."""
    tr, ev = new.stratified_split(p.y, p.groups, 0.2, seed)
    gtr = None if p.groups is None else [p.groups[i] for i in tr]
    lin, pred = linear_record(old, p.x[tr], p.y[tr], p.x[ev], p.y[ev], gtr, seed)
    knn = knn_record(old, p.x[tr], p.y[tr], p.x[ev], p.y[ev], k)
    return {"bench": BENCH, "problem": p.name, "n_train": len(tr), "n_eval": len(ev), "features": p.x.shape[1],
            "classes": len(np.unique(p.y)), "groups": len(set(p.groups)) if p.groups is not None else len(p.y),
            "seed": seed, "split": split_record(old, p, seed), "linear": lin, "knn": knn,
            "metrics": metrics_record(old, p.y[ev], pred), **environment(threads)}


def warm_up(old: ModuleType) -> None:
    """Both implementations once on a tiny problem, so that no timing holds first-call costs."""
    x, y = np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2
    for module in (old, new):
        module.linear_probe(x, y, x)
        module.knn_probe(x, y, x)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="/tmp/probe_old.py", help="path of the old mpt/probe.py")
    parser.add_argument("--features", action="append", default=[], help="X.npy (n, ...), repeatable")
    parser.add_argument("--labels", action="append", default=[], help="y.npy (n,), one per --features")
    parser.add_argument("--groups", action="append", default=[], help="groups.npy (n,), one per --features")
    parser.add_argument("--no-builtin", action="store_true", help="only the --features problems")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=20, help="k of the k-NN probe")
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = make_parser().parse_args(argv)
    old = load_old(args.old)
    torch.set_num_threads(args.threads)
    problems = [] if args.no_builtin else [digits(), *(synthetic(*spec) for spec in SYNTHETIC)]
    problems += list(from_files(args.features, args.labels, args.groups))
    records = []
    with threadpool_limits(args.threads):
        warm_up(old)
        for p in problems:
            log(f"{p.name}: {p.x.shape[0]} samples, {p.x.shape[1]} features")
            records.append(run(old, p, args.seed, args.k, args.threads))
            print(json.dumps(records[-1]), flush=True)
    return records


if __name__ == "__main__":
    main()
