"""Probe quality after a fixed CPU budget of pretraining: pretrained encoder vs its random-init twin.

Calibrates the recipe's step time (``--calibration-steps`` steps, one log record each, the median
after the first two), sets ``train.max_steps = budget / s_per_step`` so the cosine schedule
completes, pretrains with :func:`mpt.trainer.pretrain` on the inputs of the labelled training split
(labels unused), then :func:`mpt.probe.run_probe` probes the encoder and a random-init twin of the
same card (:func:`mpt.probe.random_twin`, seeded like ``train.seed``: the weights pretraining started
from) on the same split: ``--eval-data`` (an official split) or the grouped stratified hold-out of
``mpt.probe`` (then pretraining sees only the hold-out's training side when every sample is its own
file). Prints one JSON line on stdout (DESIGN.md §7); progress goes to stderr.

    python benchmarks/probe_quality.py --modality timeseries --budget-minutes 3 \
        --data A_TRAIN.ts --eval-data A_TEST.ts --set data.context=251 --set tokenizer.patch=16
    python benchmarks/probe_quality.py --modality image --dataset digits --budget-minutes 3 ...
    python benchmarks/probe_quality.py --modality pointcloud --dataset mesh-crops --data MESHES/ ...

``--dataset digits`` writes scikit-learn's digits (benchmark-only extra: ``pip install scikit-learn``)
as 32×32 PNGs; ``--dataset mesh-crops`` writes partial views of the meshes under ``--data`` (see
:func:`write_mesh_crops`). Both land in ``--workdir`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCH = "probe_quality"
POOLS = ("mean", "cls", "groups")  # mpt.features.POOLS ("groups" was "channels" before PLUGIN_API 2)
DIGITS_TASK = ("scikit-learn digits (1797 grey 8x8 images, 10 classes) upscaled bilinearly to 32x32 PNGs in "
               "class folders; no official split: a seeded stratified 80/20 split (mpt.probe.stratified_split, "
               "seed 0) written to train/ and eval/")
# one file per distinct object (the shared folder holds some objects in several formats)
MESHES = {"airplane": "airplane.ply", "ant": "ant.ply", "cube": "OFF_Cube.off", "nut": "nut.ply",
          "sphere": "sphere.ply", "spider": "OBJ_spider.obj", "wuson": "OFF_Wuson.off"}


def log(msg: str) -> None:
    print(f"[probe_quality] {msg}", file=sys.stderr, flush=True)


def load_avg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


# --------------------------------------------------------------------------- data sets written here


def write_digits(root: Path, size: int = 32, eval_fraction: float = 0.2, split_seed: int = 0) -> tuple[Path, Path]:
    """scikit-learn's digits as ``root/{train,eval}/<digit>/<index>.png`` (grey, ``size``×``size``)."""
    from PIL import Image
    from sklearn.datasets import load_digits  # benchmark-only extra; the data ships inside the package

    from mpt.probe import stratified_split

    digits = load_digits()
    sides = dict(zip(("train", "eval"), stratified_split(digits.target, None, eval_fraction, split_seed),
                     strict=True))
    for side, idx in sides.items():
        for i in idx.tolist():
            pixels = np.round(digits.images[i] * (255 / 16)).astype(np.uint8)
            path = root / side / str(digits.target[i]) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR).save(path)
    return root / "train", root / "eval"


def write_mesh_crops(source: Path, root: Path, *, pool: int = 4096, crop: int = 1024,
                     counts: tuple[int, int] = (48, 24), seed: int = 0) -> tuple[Path, Path, str]:
    """Partial views of each mesh of ``MESHES`` found under ``source`` (by file name), one class per mesh.

    Per mesh: ``2·pool`` points uniform on its surface (``mpt_pointcloud.io.read_points``, deterministic
    per file), a seeded random half of them is the train pool, the other half the eval pool. A sample
    is the ``crop`` pool points nearest to a random pool point (a contiguous patch of ~crop/pool of the
    surface), saved as ``.npy`` ``[crop, 3]`` in ``root/{train,eval}/<mesh>/``; ``counts`` samples per
    mesh and side. Train and eval samples share no point, but they show the same surfaces: this is
    instance recognition (which of these objects is this patch from), not generalisation to new shapes.
    """
    from mpt_pointcloud.io import read_points

    found = {name: next(iter(sorted(source.rglob(fname))), None) for name, fname in MESHES.items()}
    meshes = {name: f for name, f in found.items() if f is not None}
    if len(meshes) < 2:
        raise SystemExit(f"--dataset mesh-crops: fewer than two of {sorted(MESHES.values())} under {source}")
    for k, (name, f) in enumerate(sorted(meshes.items())):
        pts = read_points(f, n=2 * pool)[:, :3]
        rng = np.random.default_rng([seed, k])
        perm = rng.permutation(len(pts))
        for side, part, count in (("train", perm[:pool], counts[0]), ("eval", perm[pool:], counts[1])):
            p = pts[part]
            (root / side / name).mkdir(parents=True, exist_ok=True)
            for j in range(count):
                d = ((p - p[rng.integers(len(p))]) ** 2).sum(1)
                np.save(root / side / name / f"{j:03d}.npy", p[np.argsort(d, kind="stable")[:crop]])
    names = ", ".join(f"{n}={meshes[n].name}" for n in sorted(meshes))
    task = (f"instance recognition over {len(meshes)} distinct meshes ({names}): "
            f"per mesh {2 * pool} surface points, a seeded half is the train pool, the other half the eval pool; "
            f"a sample is the {crop} pool points nearest a random pool point (~{crop / pool:.0%} of the surface); "
            f"{counts[0]} train / {counts[1]} eval samples per mesh; train and eval share no point but show "
            "the same surfaces (instance recognition, not new shapes)")
    return root / "train", root / "eval", task


def holdout_train_folder(modality: Any, cfg: Any, data: Path, root: Path, seed: int,  # noqa: ANN401
                         probe_sets: Sequence[str]) -> Path | None:
    """Without ``--eval-data``: a folder of links to the files on the training side of the hold-out
    ``run_probe`` will draw (same labels, sources, seed), so pretraining never sees an eval input; None
    when samples are not whole files (series inside one file): pretraining then reads all of ``data``."""
    from mpt.config import to_plain
    from mpt.features import open_dataset
    from mpt.probe import stratified_split

    dataset, _ = open_dataset({"modality": modality.name, "data": to_plain(cfg.data)}, data, "probe", probe_sets)
    samples = [dataset[i] for i in range(len(dataset))]
    if data.is_file() or any(not Path(s.source).is_file() for s in samples) or samples[0].label is None:
        return None
    train_idx, _ = stratified_split(np.asarray([s.label for s in samples]), [s.source for s in samples], 0.2, seed)
    for src in {samples[i].source for i in train_idx.tolist()}:
        link = root / Path(src).resolve().relative_to(data.resolve())
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(src).resolve())
    return root


# --------------------------------------------------------------------------- the benchmark


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modality", required=True)
    p.add_argument("--data", type=Path, help="labelled training data (mesh-crops: the mesh folder)")
    p.add_argument("--eval-data", type=Path, help="official eval split; default: mpt.probe's grouped hold-out")
    p.add_argument("--budget-minutes", type=float, required=True, help="pretraining wall-clock budget")
    p.add_argument("--recipe", default=None)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for pretraining (data.* ones also shape the probe's features)")
    p.add_argument("--probe-set", dest="probe_sets", action="append", default=[], metavar="data.KEY=VALUE",
                   help="data override for the probe's features only (e.g. data.crop_pct=1.0)")
    p.add_argument("--method", choices=("linear", "knn"), default="linear")
    p.add_argument("--pool", choices=POOLS, default="mean",
                   help="mpt.features pool: mean, cls, or groups (per token group / folded channel row, concatenated)")
    p.add_argument("--seed", type=int, default=0, help="train.seed, the twin's seed and the probe's splits")
    p.add_argument("--dataset", default=None, help="name in the output; 'digits' and 'mesh-crops' build the data")
    p.add_argument("--calibration-steps", type=int, default=15)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--workdir", type=Path, default=None, help="where runs and built data go (default: a temp dir)")
    return p


def _json_line(record: dict[str, Any]) -> str:
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(clean, allow_nan=False)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.budget_minutes <= 0 or args.calibration_steps < 3 or args.threads < 1:
        parser.error("--budget-minutes must be > 0, --calibration-steps >= 3, --threads >= 1")
    if args.dataset == "mesh-crops" and args.data is None:
        parser.error("--dataset mesh-crops needs --data: the folder holding the meshes")
    if args.data is None and args.dataset != "digits":
        parser.error("--data is required (except with --dataset digits)")
    cpu_load = load_avg()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))  # stdout: the JSON line only
            work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="probe-quality-")))
            record = _run(args, Path(work), cpu_load)
    finally:
        torch.set_num_threads(threads_before)  # main() may be called in-process
    print(_json_line(record), flush=True)
    return record


def _run(args: argparse.Namespace, work: Path, cpu_load: float) -> dict[str, Any]:
    from mpt.config import build_config
    from mpt.probe import run_probe
    from mpt.registry import get_modality
    from mpt.trainer import pretrain

    modality = get_modality(args.modality)
    # no figures: the benchmark does not use them, and the time-series figure of a univariate series fails
    # (mpt_timeseries.figures._reconstruction takes rows == 1 for channels: mixed; see README.md)
    trainee = copy.copy(modality)
    trainee.visualize = lambda figure, path: None  # type: ignore[method-assign]
    data, eval_data, task = args.data, args.eval_data, None
    split = "official (--eval-data)" if eval_data is not None else None
    if args.dataset == "digits":
        data, eval_data = write_digits(work / "digits")
        task, split = DIGITS_TASK, "seeded stratified 80/20 (seed 0), written by the script"
    elif args.dataset == "mesh-crops":
        data, eval_data, task = write_mesh_crops(args.data, work / "mesh-crops", seed=0)
        split = "disjoint point pools per mesh (seed 0), written by the script"
    sets = [*args.sets, f"train.seed={args.seed}", "train.log_every=1", "train.figure_every=1000000000"]
    cfg = build_config(modality, args.recipe, sets=[*sets, f"train.max_steps={args.calibration_steps}"])
    pretrain_on, pretrain_note = data, f"the inputs of the training split {data}, labels unused"
    if eval_data is None:
        split = f"grouped stratified hold-out of mpt.probe (20 %, seed {args.seed})"
        linked = holdout_train_folder(modality, cfg, data, work / "holdout-train", args.seed, args.probe_sets)
        pretrain_on = linked or data
        pretrain_note = (f"the inputs of the hold-out's training side (links under {linked}), labels unused" if linked
                         else f"all inputs of {data}, the hold-out's eval samples too (labels unused): transductive")

    log(f"{args.modality} {args.dataset or data}: calibrating {args.calibration_steps} steps, threads {args.threads}, "
        f"load {cpu_load}")
    with warnings.catch_warnings():  # a calibration run shorter than the warm-up is expected
        warnings.filterwarnings("ignore", message="the warm-up")
        cal = pretrain(cfg, trainee, work / "calibrate", data=pretrain_on, progress=False)
    per_step = [r["s_per_step"] for r in map(json.loads, (cal.out / "metrics.jsonl").read_text().splitlines())]
    s_per_step = statistics.median(per_step[2:])
    steps = max(1, int(args.budget_minutes * 60 / s_per_step))
    extra = [f"train.max_steps={steps}", f"train.log_every={max(1, steps // 20)}"]
    if cfg.optim.warmup_steps is not None and cfg.optim.warmup_steps >= steps:
        extra.append(f"optim.warmup_steps={steps // 5}")  # only for budgets shorter than the recipe's warm-up
    cfg = build_config(modality, args.recipe, sets=[*sets, *extra])
    log(f"{s_per_step:.4f} s/step (median of {len(per_step) - 2}) → {steps} steps for {args.budget_minutes} min")
    t0 = time.perf_counter()
    run = pretrain(cfg, trainee, work / "run", data=pretrain_on, progress=True)
    pretrain_wall = time.perf_counter() - t0
    log(f"pretrained {run.steps} steps in {pretrain_wall:.1f} s, loss {run.first_loss:.4f} → {run.last_loss:.4f}")
    t0 = time.perf_counter()
    report = run_probe(run.encoder, data, eval_data=eval_data, method=args.method, baseline="random", pool=args.pool,
                       data_sets=args.probe_sets, seed=args.seed, progress=False)
    base = report["baseline"]
    log(f"accuracy {report['accuracy']:.4f} vs random init {base['accuracy']:.4f}")
    return {
        "bench": BENCH, "modality": args.modality, "dataset": args.dataset or Path(data).stem,
        "task": task, "split": split, "method": args.method, "pool": args.pool,
        "accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"],
        "baseline_accuracy": base["accuracy"], "baseline_balanced_accuracy": base["balanced_accuracy"],
        "gap": report["accuracy"] - base["accuracy"],
        "balanced_gap": report["balanced_accuracy"] - base["balanced_accuracy"],
        "baseline": "random-init twin of the card (mpt.probe.random_twin, seed = train.seed: pretraining's start)",
        "budget_minutes": args.budget_minutes, "steps": run.steps, "s_per_step": s_per_step,
        "calibration_steps": args.calibration_steps, "s_per_step_run": pretrain_wall / max(run.steps, 1),
        "pretrain_wall_s": pretrain_wall, "probe_wall_s": time.perf_counter() - t0,
        "first_loss": run.first_loss, "last_loss": run.last_loss,
        "n_train": report["n_train"], "n_eval": report["n_eval"], "num_classes": report["num_classes"],
        "chance": report["chance"], "regularization": report.get("regularization"),
        "baseline_regularization": base.get("regularization"), "k": report.get("k"),
        "recipe": cfg.recipe, "objective": cfg.objective, "sets": args.sets, "probe_sets": args.probe_sets,
        "warmup_steps": cfg.optim.warmup_steps, "batch_size": cfg.train.batch_size,
        "pretrain_data": pretrain_note, "source": None if args.data is None else str(args.data),
        "data": str(data), "eval_data": None if eval_data is None else str(eval_data),
        "cpu_load": cpu_load, "cpu_load_end": load_avg(), "cpu_count": os.cpu_count(), "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch": str(torch.__version__), "seed": args.seed,
    }


if __name__ == "__main__":
    main()
