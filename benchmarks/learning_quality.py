"""Learning quality after a fixed wall-clock budget of pretraining: ``mpt evaluate --budget`` as one JSON line.

A thin wrapper over the library's evaluation: :func:`mpt.curve.pretrain_for_budget` calibrates the
recipe's step time (``--calibration-steps`` steps, the median after the first two), sets
``train.max_steps`` so the warm-up + cosine schedule fits the budget and pretrains with ``--points``
encoder snapshots on the inputs of the labelled training split (labels unused);
:func:`mpt.evaluation.run_evaluation` then scores the pretrained encoder and its random-init twin
(linear probe, k-NN, a short fine-tune) and the raw-input baselines on one split, with the goal;
:func:`mpt.curve.run_curve` probes every snapshot (step 0: the twin) on the same split. The split is
``--eval-data`` (an official split) or the grouped stratified hold-out of
:func:`mpt.evaluation.make_split` (then pretraining sees only the hold-out's training side when every
sample is its own file). Prints one JSON line on stdout (DESIGN.md §7); progress and the table go to
stderr; ``evaluation.png`` and ``curve.png`` go to ``--out`` (default ``WORKDIR/figures``).

    python benchmarks/learning_quality.py --modality timeseries --budget-minutes 3 \
        --data A_TRAIN.ts --eval-data A_TEST.ts --set data.context=251 --set tokenizer.patch=16
    python benchmarks/learning_quality.py --modality image --dataset digits --budget-minutes 3 ...
    python benchmarks/learning_quality.py --modality pointcloud --dataset mesh-crops --data MESHES/ ...
    python benchmarks/learning_quality.py --modality video --dataset clip-identity --data VIDEOS/ ...
    python benchmarks/learning_quality.py --modality audio --dataset sound-families --data SONIC_PI/ ...
    python benchmarks/learning_quality.py --modality medical --dataset mni-tissue --data MNI152_FOLDER/ ...

``--dataset digits`` writes scikit-learn's digits (benchmark-only extra: ``pip install scikit-learn``)
as 32×32 PNGs; ``--dataset mesh-crops`` writes partial views of the meshes under ``--data`` (see
:func:`write_mesh_crops`), ``--dataset clip-identity`` time segments of the videos under ``--data``
(:func:`write_clip_segments`), ``--dataset sound-families`` a labels file of the sounds' file-name
prefixes (:func:`write_prefix_labels`), ``--dataset mni-tissue`` crops of the MNI152 T1 labelled by
its tissue maps, left hemisphere / right hemisphere (:func:`write_mni_tissue`; pretraining with
``MNI_SETS`` first: the crops are z-scored with the whole volume's statistics, so
``tokenizer.intensity=none``). They land in ``--workdir`` (default: a temporary folder).

Pretraining draws the modality's figure at its last step (``pretrain_for_budget`` sets
``train.figure_every`` to the run's length). The time-series figure of a univariate series used to
fail (the old ``probe_quality.py`` replaced ``visualize`` with a no-op); it no longer does, with
``channels: independent`` or ``mixed`` (checked on ArrowHead), so the modality is used as registered.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpt.features import POOLS  # mean, cls, groups ("channels" before PLUGIN_API 2), flat

BENCH = "learning_quality"
EVAL_FRACTION = 0.2  # the hold-out of mpt.evaluation.make_split (run_evaluation's default)
DIGITS_TASK = ("scikit-learn digits (1797 grey 8x8 images, 10 classes) upscaled bilinearly to 32x32 PNGs in "
               "class folders; no official split: a seeded stratified 80/20 split (mpt.probe.stratified_split, "
               "seed 0) written to train/ and eval/")
# one file per distinct object (the shared folder holds some objects in several formats)
MESHES = {"airplane": "airplane.ply", "ant": "ant.ply", "cube": "OFF_Cube.off", "nut": "nut.ply",
          "sphere": "sphere.ply", "spider": "OBJ_spider.obj", "wuson": "OFF_Wuson.off"}
MNI_CLASSES = ("background", "grey", "white")  # mni-tissue: background = 1 - gm - wm (CSF and outside the brain)
MNI_CENTRE = 8  # mni-tissue: side of the central box whose mean probabilities label a crop
# mni-tissue: set before --set (which can override them): files are the 32^3 crops, already z-scored with the
# whole volume's statistics (so no per-file intensity policy), at their own 1 mm spacing, one crop per file
MNI_SETS = ("data.crop=32", "data.spacing=none", "data.crops=1", "tokenizer.patch=8", "tokenizer.intensity=none")


def log(msg: str) -> None:
    print(f"[{BENCH}] {msg}", file=sys.stderr, flush=True)


def load_avg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def cpu_capability(device: torch.device) -> str:
    """``pretrain_throughput.cpu_capability`` (benchmarks/pretrain_throughput.py, imported from next to
    this script): the CPU's SIMD level as torch dispatches it, or the GPU's name."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from pretrain_throughput import cpu_capability as capability

    return capability(device)


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


def write_clip_segments(source: Path, root: Path, *, segment: int = 16, train_share: float = 0.7,
                        short_side: int = 128) -> tuple[Path, Path, str]:
    """Clip identity: which video a short segment comes from, one class per video under ``source``.

    Each video (``carphone_distorted`` left out: the same scene as ``carphone_pristine``) is decoded once
    (PyAV, shorter side ``short_side``) and cut in time: segments of ``segment`` frames, back to back,
    from its first ``train_share`` of the frames go to ``root/train/<video>/``, from the rest (after a
    gap of half a segment) to ``root/eval/<video>/``, each as an MPEG-4 file at the source's frame rate.
    No frame is on both sides, but each side shows the same scenes: instance recognition in time."""
    import av

    videos = sorted(f for f in source.iterdir() if f.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm")
                    and "distorted" not in f.stem)
    counts = {}
    for f in videos:
        with av.open(str(f)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 25)
            frames = [fr.to_ndarray(format="rgb24") for fr in container.decode(stream)]
        h, w = frames[0].shape[:2]
        scale = short_side / min(h, w)
        size = (2 * round(w * scale / 2), 2 * round(h * scale / 2))
        cut = int(len(frames) * train_share)
        sides = {"train": range(0, cut - segment + 1, segment),
                 "eval": range(cut + segment // 2, len(frames) - segment + 1, segment)}
        for side, starts in sides.items():
            (root / side / f.stem).mkdir(parents=True, exist_ok=True)
            for s in starts:
                with av.open(str(root / side / f.stem / f"{s:04d}.mp4"), "w") as out:
                    v = out.add_stream("mpeg4", rate=max(1, round(rate)))  # MPEG-4 needs a small time base
                    v.width, v.height, v.pix_fmt, v.bit_rate = size[0], size[1], "yuv420p", 2_000_000
                    for fr in frames[s : s + segment]:
                        out.mux(v.encode(av.VideoFrame.from_ndarray(fr, format="rgb24").reformat(*size)))
                    out.mux(v.encode())
        counts[f.stem] = (len(sides["train"]), len(sides["eval"]))
    task = (f"clip identity over {len(videos)} videos ({', '.join(f'{k} {a}/{b}' for k, (a, b) in counts.items())} "
            f"train/eval segments of {segment} frames): each video's first {train_share:.0%} of frames gives the "
            "train segments, the rest after a half-segment gap the eval ones; no frame on both sides")
    return root / "train", root / "eval", task


def write_prefix_labels(source: Path, root: Path, min_files: int = 4,
                        min_seconds: float = 0.175) -> tuple[Path, Path, int]:
    """Sound family from the file name: ``labels.csv`` (file name, the text before its first ``_``)
    for every audio file in ``source`` at least ``min_seconds`` long (one token of the audio
    tokenizer) whose prefix at least ``min_files`` such files share (sonic-pi: ambi, bass, bd, drum,
    elec, …). Returns the folder of copies of those files (the evaluation's data), the labels file
    (its ``--labels``) and how many files were left out as too short."""
    import soundfile

    audio = sorted(f for f in source.iterdir() if f.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))
    files = [f for f in audio if soundfile.info(str(f)).duration >= min_seconds]
    prefixes = [f.name.split("_", 1)[0] for f in files]
    kept = [(f, p) for f, p in zip(files, prefixes, strict=True) if prefixes.count(p) >= min_files]
    (root / "files").mkdir(parents=True, exist_ok=True)
    for f, _ in kept:  # copies: the hold-out links its training side by path below this folder
        if not (root / "files" / f.name).exists():
            shutil.copyfile(f, root / "files" / f.name)
    labels = root / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{f.name},{p}\n" for f, p in kept))
    return root / "files", labels, len(audio) - len(files)


def box_means(vol: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``vol`` over every ``size``³ box inside it, indexed by the box's first voxel (an
    integral volume: shape ``vol.shape - size + 1``, float64)."""
    c = np.pad(vol.astype(np.float64), ((1, 0),) * 3).cumsum(0).cumsum(1).cumsum(2)
    lo, hi = slice(None, -size), slice(size, None)
    total = (c[hi, hi, hi] - c[lo, hi, hi] - c[hi, lo, hi] - c[hi, hi, lo]
             + c[lo, lo, hi] + c[lo, hi, lo] + c[hi, lo, lo] - c[lo, lo, lo])
    return total / size**3


def mni_crop_table(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Per crop start ``(sx, sy, sz)`` (every ``crop``³ crop fully inside the volume): the label —
    argmax of the mean background / grey / white probability over the crop's central ``MNI_CENTRE``³
    voxels (background = 1 − gm − wm; ties go to the lower class) — and whether the crop may be used:
    some T1 > 0 voxel in it and its centre voxel inside the bounding box of the T1 > 0 voxels."""
    probs = (np.clip(1 - gm - wm, 0, 1), gm, wm)
    n = [s - crop + 1 for s in t1.shape]
    off = (crop - MNI_CENTRE) // 2
    means = np.stack([box_means(p, MNI_CENTRE)[off:off + n[0], off:off + n[1], off:off + n[2]] for p in probs])
    usable = box_means(t1 > 0, crop) > 0
    fg = np.argwhere(t1 > 0)
    for k, (lo, hi) in enumerate(zip(fg.min(0), fg.max(0), strict=True)):
        centre = np.arange(n[k]) + crop // 2
        shape = [1, 1, 1]
        shape[k] = n[k]
        usable &= ((centre >= lo) & (centre <= hi)).reshape(shape)
    return means.argmax(0), usable


def write_mni_tissue(t1: Path, gm: Path, wm: Path, root: Path, *, crop: int = 32, per_class: int = 200,
                     seed: int = 0) -> tuple[Path, Path, str]:
    """Tissue class of the centre of a crop of the MNI152 T1, train on the left hemisphere, eval on the right.

    ``t1``, ``gm``, ``wm``: the T1 and its grey / white-matter probability maps (uint8 0–255 read as
    0–1) on one grid with a diagonal RAS affine. Classes ``MNI_CLASSES`` by :func:`mni_crop_table`;
    per hemisphere and class, ``per_class`` crop starts drawn without replacement (fewer if there are
    fewer), each (side, class) from its own seeded stream, so eval crops are not chosen as mirrors of
    train ones. Train: crop centres at world x < −crop/2 (left), eval: x > +crop/2 (right): no crop
    reaches the midline. Files ``root/{train,eval}/<class>/NNNN.nii.gz`` (float32, the source affine
    moved to the crop's first voxel). Intensity: the T1 z-scored with the WHOLE volume's foreground
    statistics (mean / std of its T1 ≠ 0 voxels), 0 where T1 = 0 — the plugin's ``mri`` policy would
    z-score each file over its own nonzero voxels, i.e. per crop, so pretrain with
    ``tokenizer.intensity=none`` (``MNI_SETS``). The sym_09a template is exactly left-right symmetric,
    so the right hemisphere is the mirror image of the left: this is a mirrored-anatomy split of one
    brain, not new subjects.
    """
    from mpt_medical.io import probe_volume, read_raw, write_nifti

    vols = [read_raw(f)[0][0].numpy().astype(np.float64) for f in (t1, gm, wm)]
    affine = probe_volume(t1).affine
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))) or (np.diag(affine)[:3] <= 0).any():
        raise SystemExit(f"--dataset mni-tissue: {t1} needs a diagonal RAS affine, got {affine.tolist()}")
    x, g, w = vols[0], vols[1] / 255, vols[2] / 255
    labels, usable = mni_crop_table(x, g, w, crop)
    fg = x[x != 0]
    z = np.where(x != 0, (x - fg.mean()) / fg.std(), 0).astype(np.float32)
    world_x = affine[0, 0] * (np.arange(labels.shape[0]) + (crop - 1) / 2) + affine[0, 3]
    counts: dict[str, list[int]] = {}
    for side_index, (side, wanted) in enumerate((("train", world_x < -crop / 2), ("eval", world_x > crop / 2))):
        for k, name in enumerate(MNI_CLASSES):
            pool = np.argwhere(usable & (labels == k) & wanted[:, None, None])
            rng = np.random.default_rng([seed, side_index, k])
            picked = pool[rng.choice(len(pool), size=min(per_class, len(pool)), replace=False)]
            (root / side / name).mkdir(parents=True, exist_ok=True)
            for j, (sx, sy, sz) in enumerate(picked.tolist()):
                where = affine.copy()
                where[:3, 3] = affine[:3, :3] @ np.array([sx, sy, sz]) + affine[:3, 3]
                write_nifti(root / side / name / f"{j:04d}.nii.gz", z[sx:sx + crop, sy:sy + crop, sz:sz + crop], where)
            counts.setdefault(name, []).append(len(picked))
    task = (f"tissue class (argmax of the mean background / grey / white probability over the central "
            f"{MNI_CENTRE}^3 voxels; background = 1 - gm - wm) of {crop}^3 crops of the MNI152 2009a sym T1 "
            "(1 mm, skull-stripped), crops with some T1 > 0 voxel and the centre in the T1 > 0 bounding box; "
            + ", ".join(f"{n} {a}/{b}" for n, (a, b) in counts.items())
            + f" train/eval crops; train: left hemisphere (centre world x < -{crop / 2:g} mm), eval: right "
            f"(x > {crop / 2:g} mm), no crop reaches the midline; the template is exactly left-right symmetric, so "
            "eval is the mirror image of the anatomy train draws from; T1 z-scored with the whole volume's "
            "foreground (T1 != 0) statistics, 0 outside, pretrained with tokenizer.intensity=none")
    return root / "train", root / "eval", task


def mni_files(source: Path) -> tuple[Path, Path, Path]:
    """The T1, grey- and white-matter maps under ``source`` (``*_t1_*``, ``*_gm_*``, ``*_wm_*`` .nii.gz)."""
    found = [sorted(source.glob(f"*_{kind}_*.nii*")) for kind in ("t1", "gm", "wm")]
    if any(len(f) != 1 for f in found):
        raise SystemExit(f"--dataset mni-tissue: expected one *_t1_*, *_gm_* and *_wm_* NIfTI each under {source}, "
                         f"found {[[p.name for p in f] for f in found]}")
    return found[0][0], found[1][0], found[2][0]


def holdout_train_folder(modality: Any, cfg: Any, data: Path, root: Path, seed: int,  # noqa: ANN401
                         data_sets: Sequence[str] = (), labels: Path | None = None) -> Path | None:
    """Without ``--eval-data``: a folder of links to the files on the training side of the hold-out the
    evaluation will draw (:func:`mpt.evaluation.make_split`: the same labels — from the data or the
    ``labels`` CSV —, sources, ``eval_fraction`` 0.2 and seed), so pretraining never sees an eval input;
    None when samples are not whole files (series inside one file): pretraining then reads all of ``data``."""
    from mpt.config import to_plain
    from mpt.evaluation import sample_labels
    from mpt.features import open_dataset
    from mpt.probe import stratified_split

    if data.is_file():
        return None
    dataset, _ = open_dataset({"modality": modality.name, "data": to_plain(cfg.data)}, data, "probe", data_sets)
    feats = sample_labels(dataset, data, labels)
    if any(not Path(s).is_file() for s in feats.sources):
        return None
    assert feats.labels is not None  # sample_labels raises without labels
    train_idx, _ = stratified_split(feats.labels, feats.sources, EVAL_FRACTION, seed)
    for src in {feats.sources[i] for i in train_idx.tolist()}:
        link = root / Path(src).resolve().relative_to(data.resolve())
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(src).resolve())
    return root


# --------------------------------------------------------------------------- the benchmark


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modality", required=True)
    p.add_argument("--data", type=Path, help="labelled training data (mesh-crops: the mesh folder)")
    p.add_argument("--eval-data", type=Path, help="official eval split; default: the evaluation's grouped hold-out")
    p.add_argument("--labels", type=Path, default=None, help="labels CSV (source,label), as mpt evaluate --labels")
    p.add_argument("--budget-minutes", type=float, required=True, help="pretraining wall-clock budget")
    p.add_argument("--recipe", default=None)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for pretraining (data.* ones are in the card, so the evaluation uses them)")
    p.add_argument("--eval-set", dest="eval_sets", action="append", default=[], metavar="data.KEY=VALUE",
                   help="data override for the evaluation only (e.g. data.crop_pct=1.0)")
    p.add_argument("--pool", choices=POOLS, default=None,
                   help="mpt.features pool: mean, cls, groups (per token group / folded channel row, concatenated) "
                        "or flat (every token, in order); default: the modality's feature_pool")
    p.add_argument("--seed", type=int, default=0, help="train.seed, the twin's seed and the evaluation's splits")
    p.add_argument("--k", type=int, default=20, help="neighbours of the k-NN probe")
    p.add_argument("--finetune-steps", type=int, default=300, help="optimiser steps of each fine-tune (0: none)")
    p.add_argument("--points", type=int, default=8, help="encoder snapshots along the run (the curve's points)")
    p.add_argument("--calibration-steps", type=int, default=15)
    p.add_argument("--dataset", default=None,
                   help="name in the output; 'digits', 'mesh-crops', 'clip-identity', 'sound-families' and "
                        "'mni-tissue' build the data")
    p.add_argument("--out", type=Path, default=None,
                   help="where evaluation.png and curve.png go (default: WORKDIR/figures)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--workdir", type=Path, default=None, help="where runs and built data go (default: a temp dir)")
    return p


def finite(value: Any) -> Any:  # noqa: ANN401
    """``value`` with every non-finite float (at any depth of dicts and lists) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(finite(record), allow_nan=False)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; prints (and returns) the record, non-finite floats as None."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.budget_minutes <= 0 or args.calibration_steps < 3 or args.threads < 1 or args.points < 1:
        parser.error("--budget-minutes must be > 0, --calibration-steps >= 3, --threads >= 1, --points >= 1")
    if args.k < 1 or args.finetune_steps < 0:
        parser.error("--k must be >= 1 and --finetune-steps >= 0")
    if args.dataset in ("mesh-crops", "clip-identity", "sound-families", "mni-tissue") and args.data is None:
        parser.error(f"--dataset {args.dataset} needs --data: the folder holding the meshes / videos / sounds / "
                     "MNI152 T1 and tissue maps")
    if args.data is None and args.dataset != "digits":
        parser.error("--data is required (except with --dataset digits)")
    cpu_load = load_avg()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))  # stdout: the JSON line only
            work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="learning-quality-")))
            line = _json_line(_run(args, Path(work), cpu_load))
    finally:
        torch.set_num_threads(threads_before)  # main() may be called in-process
    print(line, flush=True)
    return json.loads(line)


def adapted_lines(run: Path) -> list[str]:
    """What adapting the config to the data changed: the ``# `` comment lines at the top of ``RUN/config.yaml``."""
    lines: list[str] = []
    path = run / "config.yaml"
    for line in path.read_text().splitlines() if path.is_file() else []:
        if not line.startswith("# "):
            break
        lines.append(line[2:])
    return lines


def _run(args: argparse.Namespace, work: Path, cpu_load: float) -> dict[str, Any]:
    from mpt.config import build_config
    from mpt.curve import curve_figure, pretrain_for_budget, run_curve
    from mpt.evaluation import figure, run_evaluation, table
    from mpt.registry import get_modality

    modality = get_modality(args.modality)
    data, eval_data, task = args.data, args.eval_data, None
    split = "official (--eval-data)" if eval_data is not None else None
    if args.dataset == "digits":
        data, eval_data = write_digits(work / "digits")
        task, split = DIGITS_TASK, "seeded stratified 80/20 (seed 0), written by the script"
    elif args.dataset == "mesh-crops":
        data, eval_data, task = write_mesh_crops(args.data, work / "mesh-crops", seed=0)
        split = "disjoint point pools per mesh (seed 0), written by the script"
    elif args.dataset == "clip-identity":
        data, eval_data, task = write_clip_segments(args.data, work / "clip-identity")
        split = "disjoint time spans per video, written by the script"
    elif args.dataset == "sound-families":
        data, args.labels, short = write_prefix_labels(args.data, work / "sound-families")
        counts = Counter(line.split(",")[1] for line in args.labels.read_text().splitlines()[1:])
        task = (f"sound family from the file-name prefix ({len(counts)} families with >= 4 files: "
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                + f"; {short} files under 175 ms, one token, left out); each file one group")
    elif args.dataset == "mni-tissue":
        data, eval_data, task = write_mni_tissue(*mni_files(args.data), work / "mni-tissue", seed=0)
        split = "left hemisphere train / right hemisphere eval (seed 0), written by the script"
        args.sets = [*MNI_SETS, *args.sets]
    sets = [*args.sets, f"train.seed={args.seed}"]
    pretrain_on, pretrain_note = data, f"the inputs of the training split {data}, labels unused"
    if eval_data is None:
        split = f"grouped stratified hold-out of mpt.evaluation ({EVAL_FRACTION * 100:.0f} %, seed {args.seed})"
        cfg = build_config(modality, args.recipe, sets=sets)
        linked = holdout_train_folder(modality, cfg, data, work / "holdout-train", args.seed, args.eval_sets,
                                      args.labels)
        pretrain_on = linked or data
        pretrain_note = (f"the inputs of the hold-out's training side (links under {linked}), labels unused" if linked
                         else f"all inputs of {data}, the hold-out's eval samples too (labels unused): transductive")

    log(f"{args.modality} {args.dataset or data}: {args.budget_minutes} min, calibrating {args.calibration_steps} "
        f"steps, threads {args.threads}, load {cpu_load}")
    run = pretrain_for_budget(modality, pretrain_on, work / "pretrain", args.budget_minutes, recipe=args.recipe,
                              sets=sets, points=args.points, calibration_steps=args.calibration_steps, progress=True)
    log(f"{run.s_per_step:.4f} s/step calibrated; pretrained {run.steps} steps in {run.wall_s:.1f} s, "
        f"loss {run.first_loss:.4f} → {run.last_loss:.4f}")
    split_args: dict[str, Any] = {"eval_data": eval_data, "labels": args.labels, "pool": args.pool,
                                  "data_sets": args.eval_sets, "seed": args.seed, "k": args.k}
    t0 = time.perf_counter()
    report = run_evaluation(run.out, data, finetune_steps=args.finetune_steps, progress=False, **split_args)
    evaluation_wall = time.perf_counter() - t0
    for line in table(report):
        log(line)
    t0 = time.perf_counter()
    curve = run_curve(run.out, data, progress=False, **split_args)
    curve_wall = time.perf_counter() - t0
    log("curve (step: linear / k-NN %): " + ", ".join(
        f"{p['step']}: {100 * p['linear']:.1f} / {100 * p['knn']:.1f}" for p in curve))
    name = args.dataset or Path(data).stem
    out = args.out or work / "figures"
    figures = {"evaluation": str(figure(report, out / "evaluation.png")),
               "curve": str(curve_figure(curve, out / "curve.png", raw_1nn=report["goal"]["raw_1nn"],
                                         title=f"{args.modality} {name}: {run.steps} steps "
                                               f"({args.budget_minutes:g} min), pool {report['pool']}"))}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "bench": BENCH, "modality": args.modality, "dataset": name, "task": task, "split": split,
        "pretrain_data": pretrain_note,
        **{key: report[key] for key in ("rows", "goal", "n_train", "n_eval", "num_classes", "classes", "chance",
                                        "pool", "holdout", "twin_batch_norm_recalibrated", "pretraining", "k",
                                        "data", "eval_data", "labels")},
        "curve": curve, "figures": figures,
        "budget_minutes": args.budget_minutes, "steps": run.steps, "s_per_step": run.s_per_step,
        "calibration_steps": args.calibration_steps, "points": args.points, "finetune_steps": args.finetune_steps,
        "pretrain_wall_s": run.wall_s, "evaluation_wall_s": evaluation_wall, "curve_wall_s": curve_wall,
        "first_loss": run.first_loss, "last_loss": run.last_loss,
        "sets": run.sets, "eval_sets": args.eval_sets, "adapted": adapted_lines(run.out),
        "recipe": report["pretraining"]["recipe"], "objective": report["pretraining"]["objective"],
        "source": None if args.data is None else str(args.data),
        "cpu_load": cpu_load, "cpu_load_end": load_avg(), "cpu_count": os.cpu_count(), "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "cpu_capability": cpu_capability(device),
        "torch": str(torch.__version__), "seed": args.seed,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    main()
