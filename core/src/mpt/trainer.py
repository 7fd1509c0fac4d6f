"""Pretraining (Accelerate): normalise → augment → tokenize → mask → objective → AdamW, with logs,
figures, checkpoints and the exported encoder.

:func:`pretrain` reads top to bottom as the steps of a run; each step is a named function below it.
Every random draw of a step (mask, augmentation, drop-path, the data order and per-sample
augmentation) is a function of the seed and the step, so ``resume=True`` continues an interrupted
run exactly: the loss at every later step equals that of an uninterrupted run with the same seed
(map-style datasets; an iterable dataset is replayed to its position, see :func:`mpt.loop.batches`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import yaml
from accelerate import Accelerator
from tqdm.auto import tqdm

from mpt.backbone import Backbone, build_backbone
from mpt.checkpoint import list_checkpoints, load_checkpoint, read_state, save_checkpoint
from mpt.config import Config
from mpt.contract import Batch, Mask, Masker, Modality, SampleDataset, TokenSet, as_masks
from mpt.errors import ConfigError, DataError, TrainingError
from mpt.loop import Loader, batches, make_accelerator, open_loader, optimize, set_lr, step_seed, take_skipped
from mpt.masking import check_masker, create_masker
from mpt.objectives import Objective, ObjectiveOutput
from mpt.optim import create_optimizer, lr_at
from mpt.pretrained import dist_version, encoder_card, save_encoder
from mpt.registry import OBJECTIVES

AUGMENT_SEED = 0x5EED_A06

# Keys that may change between an interrupted run and its resumption.
RESUMABLE_KEYS = ("train.max_steps", "train.epochs", "train.log_every", "train.figure_every",
                  "train.checkpoint_every", "train.keep_last", "train.num_workers", "train.log_with", "train.threads")


@dataclass
class RunResult:
    """What a finished run produced, for the CLI's closing summary."""

    out: Path
    steps: int
    first_loss: float
    last_loss: float
    encoder: Path
    figures: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    wall_s: float = 0.0
    main_process: bool = True  # False on the other processes of a multi-process run
    resumed_finished: bool = False  # --resume on a run that had already reached its last step


def pretrain(cfg: Config, modality: Modality, out: Path, data: Path | None = None, resume: bool = False,
             skip_bad_files: bool = False, progress: bool = True) -> RunResult:
    """Train ``cfg`` on ``data`` (or the modality's demo data), writing everything under ``out``."""
    t0 = time.perf_counter()
    out = Path(out)
    existing = check_out_folder(out, resume)
    accelerator = make_run_accelerator(cfg, out)
    threads = cpu_threads(cfg, accelerator, progress, existing[-1] if resume and existing else None)
    dataset, said = open_recording(modality, cfg, data, skip_bad_files)
    cfg, dataset, said, adapted = adapt_to_data(modality, cfg, dataset, said, data, skip_bad_files)
    for w in said:  # what opening the data warned (series skipped …), for the data as adapted
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if adapted and progress and accelerator.is_main_process:
        print("\n".join(adapted), file=sys.stderr, flush=True)
    cfg = fit_statistics(modality, dataset, cfg, progress and accelerator.is_main_process)
    torch.manual_seed(cfg.train.seed)
    objective, masker = build_model(cfg, modality)
    optimizer = create_optimizer(objective, cfg.optim)
    stream = open_loader(dataset, accelerator, cfg.train.batch_size, modality.collate, cfg.train.seed,
                         cfg.train.num_workers, what=str(data or "demo data"))
    total, warmup = schedule(cfg, stream)
    step, first_loss = restore(existing, cfg, objective, optimizer, accelerator.num_processes) if resume else (0, None)
    skipped = list(getattr(dataset, "skipped", []))
    if accelerator.is_main_process:
        write_run_files(out, cfg, step, skipped, adapted, {
            "processes": accelerator.num_processes, "batch_per_process": cfg.train.batch_size,
            "global_batch": cfg.train.batch_size * accelerator.num_processes * cfg.optim.accumulate, **threads})
    objective, optimizer = accelerator.prepare(objective, optimizer)
    model: Objective = accelerator.unwrap_model(objective)
    configure_attention(model, accelerator.device, cfg.train.precision)
    log = RunLog(cfg, out, accelerator, total, step, progress)
    figures: list[Path] = []
    last_ckpt, start = (existing[-1] if existing else None), step
    accumulate = cfg.optim.accumulate
    micro_losses: list[float] = []
    objective.train()
    for epoch, batch in batches(stream, step * accumulate, cfg.train.seed) if step < total else ():
        known = len(skipped)
        if not take_skipped(batch, skipped, skip_bad_files):
            continue
        if len(skipped) > known and accelerator.is_main_process:
            write_skipped(out, skipped)
        seed = step_seed(cfg.train.seed, step, len(micro_losses), accelerator.process_index)
        torch.manual_seed(seed)
        lr = set_lr(optimizer, lr_at(step, total, warmup, cfg.optim.lr, cfg.optim.min_lr))
        tokens, masks = prepare_batch(model.backbone, modality, cfg.data, masker, batch, seed)
        with accelerator.accumulate(objective):
            result = objective(tokens, masks)
            check_loss(result.loss, step, last_ckpt)
            grad_norm = optimize(accelerator, objective, result.loss, optimizer, cfg.optim.grad_clip)
        micro_losses.append(result.loss.item())
        log.samples += batch.batch_size * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        step += 1
        step_loss = sum(micro_losses) / len(micro_losses)
        micro_losses = []
        first_loss = step_loss if first_loss is None else first_loss
        model.step_end(step, total)
        log.step(step, epoch, step_loss, lr, masks[0], result.logs, grad_norm, first=step == start + 1)
        if accelerator.is_main_process and (step % log.figure_every == 0 or step == total):
            figures.append(write_figure(model, modality, cfg, out, step, step_loss, batch, tokens, masks, result))
        if accelerator.is_main_process and (
                (cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0) or step == total):
            state = {"config": cfg.to_dict(), "first_loss": first_loss, "last_loss": step_loss,
                     "processes": accelerator.num_processes, "threads": threads.get("threads")}
            last_ckpt = save_checkpoint(out / "checkpoints", step, model, optimizer, state, cfg.train.keep_last)
        every = cfg.train.export_every
        if accelerator.is_main_process and every and step % every == 0 and step < total:
            write_encoder(model, cfg, modality, data, dataset, skipped, step, accelerator.num_processes,
                          out / "encoders" / f"step-{step}")
        if step >= total:
            break
    log.close()
    finished_before = start >= total
    last_loss = log.last_loss if not finished_before else saved_last_loss(existing)
    encoder_dir = export_encoder(model, cfg, modality, data, dataset, skipped, total, accelerator, out)
    return RunResult(out=out, steps=step, first_loss=first_loss if first_loss is not None else float("nan"),
                     last_loss=last_loss, encoder=encoder_dir, figures=figures, skipped=skipped,
                     wall_s=time.perf_counter() - t0, main_process=accelerator.is_main_process,
                     resumed_finished=finished_before)


# ----------------------------------------------------------------------------------------------
# the steps of a run


def check_out_folder(out: Path, resume: bool) -> list[Path]:
    """The run folder's checkpoints; a ConfigError for a used folder without ``--resume`` or a
    ``--resume`` without any checkpoint."""
    existing = list_checkpoints(out / "checkpoints")
    if existing and not resume:
        raise ConfigError("--out", f"{out} already holds a run (checkpoint {existing[-1].name}); "
                                   "pass --resume to continue it or choose another --out")
    if resume and not existing:
        raise ConfigError("--resume", f"no checkpoint under {out / 'checkpoints'} to resume from")
    out.mkdir(parents=True, exist_ok=True)
    return existing


def check_launch() -> None:
    """A TrainingError for ``accelerate launch --cpu --num_processes N`` (N > 1): Accelerate's CPU
    launcher starts one process (several only through mpirun with ``--mpirun_hostfile``) and sets
    MASTER_ADDR as if it had started N; training would silently run on one process."""
    import os

    from accelerate.utils import str_to_bool

    one_process = os.environ.get("WORLD_SIZE") in (None, "1") and "OMPI_COMM_WORLD_SIZE" not in os.environ
    if one_process and str_to_bool(os.environ.get("ACCELERATE_USE_CPU", "false")) and "MASTER_ADDR" in os.environ:
        raise TrainingError("accelerate launch --cpu with --num_processes > 1 starts ONE process (Accelerate's CPU "
                            "launcher runs several only through mpirun, --mpirun_hostfile). For N CPU processes run "
                            "`accelerate launch --multi_gpu --num_processes N -m mpt_cli pretrain ...` (torchrun "
                            "with gloo on a machine without GPUs) or `torchrun --nproc_per_node N -m mpt_cli pretrain "
                            "...`; for one process drop --num_processes.")


def make_run_accelerator(cfg: Config, out: Path) -> Accelerator:
    check_launch()
    log_with = cfg.train.log_with
    if log_with != "none" and importlib.util.find_spec(log_with) is None:
        raise ConfigError("train.log_with", f"'{log_with}' is not installed; "
                                            f"pip install 'mpt-core[{log_with}]' or use --log-with none")
    accelerator = make_accelerator(cfg.train.precision, cfg.optim.accumulate, log_with, str(out))
    if log_with != "none":
        # trackers take scalars only (TensorBoard hparams): lists and None become text
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat(cfg.to_dict()).items()}
        accelerator.init_trackers("mpt", config=hparams)
    return accelerator


def open_training_data(modality: Modality, cfg: Config, data: Path | None, skip_bad_files: bool) -> SampleDataset:
    """The modality's "train" split of ``data`` (its demo data when None)."""
    try:
        return modality.dataset(data, "train", cfg.data, skip_bad_files=skip_bad_files)
    except DataError as exc:
        if skip_bad_files or data is None or Path(exc.path) == Path(data):
            raise
        raise DataError(exc.path, f"{exc.reason} (or pass --skip-bad-files to skip such files)") from None


def open_recording(modality: Modality, cfg: Config, data: Path | None,
                   skip_bad_files: bool) -> tuple[SampleDataset, list[warnings.WarningMessage]]:
    """:func:`open_training_data` and the warnings it gave (held back: adaptation may reopen the data)."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        dataset = open_training_data(modality, cfg, data, skip_bad_files)
    return dataset, said


def adapt_to_data(modality: Modality, cfg: Config, dataset: SampleDataset, said: list[warnings.WarningMessage],
                  data: Path | None, skip_bad_files: bool,
                  rounds: int = 4) -> tuple[Config, SampleDataset, list[warnings.WarningMessage], list[str]]:
    """``cfg`` with :meth:`Modality.adapt`'s proposals for keys the user did not set; the dataset
    reopened (:func:`open_recording`, ``said``: its warnings) when a ``data`` key changed; and lines
    for the user: every change, then the guidance of the last round (the one that changed nothing)."""
    from mpt.config import with_value

    changes: list[str] = []
    notes: list[str] = []
    for _ in range(rounds if cfg.train.adapt else 0):
        notes, changed = [], False
        for a in modality.adapt(dataset, cfg):
            now = current_value(cfg, a.key)
            if a.value is None or a.key in cfg.explicit:
                line = f"note: {a.key}: {a.reason}" + (f" (you set {now}: kept)" if a.value is not None else "")
                notes += [line] if line not in notes else []
            elif a.value != now:
                cfg = with_value(cfg, modality, a.key, a.value)
                changes.append(f"adapted to the data: {a.key} {now} → {a.value}: {a.reason}")
                changed = True
                if a.key.startswith("data."):
                    dataset, said = open_recording(modality, cfg, data, skip_bad_files)
        if not changed:
            break
    if changes:
        changes.append("(keep a recipe value with --set KEY=VALUE, all of them with --set train.adapt=false)")
    return cfg, dataset, said, changes + notes


def current_value(cfg: Config, key: str) -> Any:
    """The value of the dotted ``key`` in ``cfg`` (a ConfigError for an unknown key)."""
    value: Any = cfg.to_dict()
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(key, "Modality.adapt proposed an unknown config key")
        value = value[part]
    return value


def fit_statistics(modality: Modality, dataset: SampleDataset, cfg: Config, progress: bool) -> Config:
    """``cfg`` with the tokenizer config :meth:`Modality.fit` completes from the training data."""
    fitted = modality.fit(dataset, cfg.tokenizer, progress)
    if fitted is cfg.tokenizer or fitted == cfg.tokenizer:
        return cfg
    if type(fitted) is not type(cfg.tokenizer):
        raise TypeError(f"{type(modality).__name__}.fit must return a {type(cfg.tokenizer).__name__}, "
                        f"got {type(fitted).__name__}")
    return dataclasses.replace(cfg, tokenizer=fitted)


def build_model(cfg: Config, modality: Modality) -> tuple[Objective, Masker]:
    """A fresh backbone, the objective around it and the objective's masker — what every run trains.

    Everything is sized from the config (the tokenizer's declared ``patch_shape``); no data is read.
    A masker that needs a token grid the tokenizer does not make is a ConfigError here, before training.
    """
    backbone = build_backbone(modality, cfg.tokenizer, cfg.model)
    section = cfg.objective_config
    key = f"{cfg.objective}.mask"
    check_masker(section.mask, type(backbone.tokenizer).grid_axes, key, f"the {modality.name} tokenizer")
    objective = OBJECTIVES.get(cfg.objective, "objective").build(section, backbone, modality)
    return objective, create_masker(section.mask, key)


def schedule(cfg: Config, stream: Loader) -> tuple[int, int]:
    """Total optimiser steps and warm-up steps of the run."""
    tc, oc = cfg.train, cfg.optim
    per_epoch = stream.batches_per_epoch
    if per_epoch is None and (tc.max_steps is None or oc.warmup_epochs is not None):
        raise ConfigError("train.max_steps", "an iterable (streaming) dataset has no epoch length: give the "
                                             "run length as train.max_steps and the warm-up as optim.warmup_steps")
    steps_per_epoch = max(1, (per_epoch or 1) // oc.accumulate)
    total = tc.max_steps if tc.max_steps else math.ceil((tc.epochs or 1) * steps_per_epoch)
    warmup = oc.warmup_steps if oc.warmup_steps is not None else round((oc.warmup_epochs or 0) * steps_per_epoch)
    if warmup > total:
        warnings.warn(f"the warm-up ({warmup} steps) is longer than the run ({total} steps): the learning rate "
                      "never reaches optim.lr; lower optim.warmup_steps / optim.warmup_epochs", stacklevel=3)
    return total, warmup


def restore(existing: list[Path], cfg: Config, objective: Objective, optimizer: torch.optim.Optimizer,
            processes: int = 1) -> tuple[int, float | None]:
    """Load the last checkpoint into ``objective`` and ``optimizer``; its step and first loss.
    Configs are compared before any tensor is read, so a changed size names its key. Another
    process count resumes when the global batch (processes × train.batch_size) is the one saved."""
    saved = read_state(existing[-1])
    check_resume(saved.get("config", {}), cfg.to_dict(), int(saved.get("processes", 1)), processes)
    state = load_checkpoint(existing[-1], objective, optimizer)
    return state["step"], state.get("first_loss")


def saved_last_loss(existing: list[Path]) -> float:
    """The last loss a finished run recorded (its last checkpoint)."""
    value = read_state(existing[-1]).get("last_loss") if existing else None
    return float("nan") if value is None else float(value)


def write_skipped(out: Path, skipped: list[tuple[str, str]]) -> None:
    """``OUT/skipped.txt``: one ``file<TAB>reason`` line per file left out (nothing when none)."""
    if skipped:
        (out / "skipped.txt").write_text("".join(f"{p}\t{r}\n" for p, r in skipped))


def write_run_files(out: Path, cfg: Config, step: int, skipped: list[tuple[str, str]], adapted: list[str],
                    runtime: dict[str, Any] | None = None) -> None:
    """``config.yaml`` (with versions and the ``runtime`` this run got: processes, threads; what
    :func:`adapt_to_data` changed as comments at the top), ``skipped.txt``, and metrics cut back to ``step``."""
    write_skipped(out, skipped)
    keep_metrics(out / "metrics.jsonl", step)
    versions = {"mpt-core": dist_version("mpt-core"), "torch": str(torch.__version__)}
    header = "".join(f"# {line}\n" for line in adapted)
    record = {**cfg.to_dict(), "versions": versions, **({"runtime": runtime} if runtime else {})}
    (out / "config.yaml").write_text(header + yaml.safe_dump(record, sort_keys=False))


def cpu_threads(cfg: Config, accelerator: Accelerator, progress: bool, resuming: Path | None = None) -> dict[str, Any]:
    """On a CPU device, torch's intra-op threads by :func:`mpt.threads.apply_threads` (printed) — when
    ``resuming`` (the last checkpoint) the count the run was started with, for an exact resume —;
    ``{"threads": n, "threads_reason": ...}`` for config.yaml, or {} on an accelerator."""
    if accelerator.device.type != "cpu":
        return {}
    from mpt.threads import apply_threads, plural

    saved = read_state(resuming).get("threads") if resuming is not None and cfg.train.threads is None else None
    if saved:
        torch.set_num_threads(int(saved))
        n, reason = int(saved), f"{plural(int(saved))} (as the run being resumed: exact resume)"
    else:
        n, reason = apply_threads(cfg.train.threads, accelerator.num_processes)
    if progress and accelerator.is_main_process:
        print(f"cpu: {reason}", file=sys.stderr, flush=True)
    return {"threads": n, "threads_reason": reason}


def configure_attention(model: Objective, device: torch.device, precision: str = "no") -> None:
    """The explicit-vs-fused attention choice for ``device`` and ``precision``, once, for every
    transformer of the model."""
    from mpt.encoder import Transformer

    for m in model.modules():
        if isinstance(m, Transformer):
            m.configure_attention(device, precision)


def prepare_batch(backbone: Backbone, modality: Modality, data_config: Any, masker: Masker, batch: Batch,
                  seed: int) -> tuple[TokenSet, list[Mask]]:
    """Normalise, augment (seeded), tokenize and mask one batch."""
    generator = torch.Generator().manual_seed(seed ^ AUGMENT_SEED)  # draws independent of the mask's
    tokens = backbone.tokens(batch, augment=lambda b: modality.augment(b, data_config, generator))
    return tokens, as_masks(masker(tokens, torch.Generator().manual_seed(seed)))


def check_loss(loss: torch.Tensor, step: int, last_ckpt: Path | None) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"loss became {loss.item()} at step {step + 1}; stopped. Last good checkpoint: "
            f"{last_ckpt or 'none'}. Lower optim.lr, set optim.grad_clip, or check the data "
            "for extreme values.")


def write_figure(model: Objective, modality: Modality, cfg: Config, out: Path, step: int, loss: float,
                 batch: Batch, tokens: TokenSet, masks: list[Mask], result: ObjectiveOutput) -> Path:
    with torch.no_grad():
        fig = model.figure(batch, tokens, masks, result)
    fig.title = f"{cfg.modality} {cfg.objective} step {step} loss {loss:.4f}"
    path = out / "figures" / f"step-{step:06d}.png"
    path.parent.mkdir(exist_ok=True)
    modality.visualize(fig, path)
    return path


def write_encoder(model: Objective, cfg: Config, modality: Modality, data: Path | None, dataset: SampleDataset,
                  skipped: list[tuple[str, str]], steps: int, processes: int, path: Path) -> Path:
    """Save the encoder ``model`` exports after ``steps`` steps, with its card, to ``path``."""
    trained_on = {"data": str(data) if data else f"{modality.name} demo data",
                  "samples": len(dataset) if hasattr(dataset, "__len__") else None,  # type: ignore[arg-type]
                  "skipped_files": len(skipped), "steps": steps,
                  "batch_size": cfg.train.batch_size * processes * cfg.optim.accumulate}
    card = encoder_card(cfg, model.export(), trained_on, objective=model.card())
    return save_encoder(model.export(), card, path)


def export_encoder(model: Objective, cfg: Config, modality: Modality, data: Path | None, dataset: SampleDataset,
                   skipped: list[tuple[str, str]], total: int, accelerator: Accelerator, out: Path) -> Path:
    """Write ``out/encoder`` (rank 0) and end the run on every process."""
    encoder_dir = out / "encoder"
    if accelerator.is_main_process:
        write_encoder(model, cfg, modality, data, dataset, skipped, total, accelerator.num_processes, encoder_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return encoder_dir


# ----------------------------------------------------------------------------------------------
# logging


class RunLog:
    """The progress bar, ``metrics.jsonl`` and trackers: one record per log interval."""

    def __init__(self, cfg: Config, out: Path, accelerator: Accelerator, total: int, step: int,
                 progress: bool) -> None:
        self.cfg, self.accelerator = cfg, accelerator
        self.log_every = cfg.train.log_every
        self.figure_every = cfg.train.figure_every or self.log_every
        main = accelerator.is_main_process
        self.file: TextIO | None = (out / "metrics.jsonl").open("a") if main else None
        self.bar = tqdm(total=total, initial=step, disable=not (progress and main),
                        desc=f"{cfg.modality} {cfg.objective}", unit="step", dynamic_ncols=True)
        self.total, self.last_loss = total, float("nan")
        self.reset()

    def reset(self) -> None:
        self.start, self.samples = time.perf_counter(), 0
        self.losses: list[float] = []

    def step(self, step: int, epoch: int, loss: float, lr: float, mask: Mask, logs: dict[str, float],
             grad_norm: float | None, first: bool) -> None:
        self.losses.append(loss)
        self.last_loss = loss
        self.bar.update(1)
        if not (step % self.log_every == 0 or step == self.total or first):
            return
        if self.accelerator.num_processes > 1:  # every process logs at the same steps: the mean over them
            t = torch.tensor(loss, device=self.accelerator.device)
            self.losses[-1] = self.accelerator.reduce(t, "mean").item()
        elapsed = time.perf_counter() - self.start
        record: dict[str, Any] = {
            "step": step, "epoch": epoch, "loss": self.losses[-1], "loss_avg": sum(self.losses) / len(self.losses),
            "lr": lr, "samples_per_s": self.samples / elapsed, "s_per_step": elapsed / len(self.losses),
            "mask_ratio": mask.ratio, **logs}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.cfg.train.log_with != "none":
            self.accelerator.log(record, step=step)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{record['samples_per_s']:.1f}")
        self.reset()

    def close(self) -> None:
        self.bar.close()
        if self.file:
            self.file.close()


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(flat(v, key) if isinstance(v, dict) else {key: v})
    return out


def keep_metrics(path: Path, upto: int) -> None:
    """Drop the lines of ``path`` logged after step ``upto`` (an interrupted run's tail)."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    path.write_text("".join(ln for ln in lines if json.loads(ln)["step"] <= upto))


def check_resume(saved: dict[str, Any], current: dict[str, Any], saved_processes: int = 1, processes: int = 1) -> None:
    """A ConfigError naming the first key that differs from the run being resumed (other than
    :data:`RESUMABLE_KEYS`); ``train.batch_size`` may differ when the process count changed and the
    global batch did not (the data order is one global order, so the run continues where it stopped)."""
    a, b = flat(saved), flat(current)
    global_saved = int(a.get("train.batch_size", 0)) * saved_processes
    if saved_processes != processes and int(b.get("train.batch_size", 0)) * processes != global_saved:
        hint = (f"--batch-size {global_saved // processes}" if global_saved % processes == 0
                else f"a process count that divides {global_saved}")
        raise ConfigError("train.batch_size", f"the run being resumed had a global batch of {global_saved} "
                                              f"({saved_processes} processes × {a.get('train.batch_size')}); with "
                                              f"{processes} processes resume with {hint}")
    if saved_processes != processes:
        a.pop("train.batch_size", None)
        b.pop("train.batch_size", None)
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS]
    if changed:
        diffs = "; ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in changed[:5])
        raise ConfigError(changed[0], f"differs from the run being resumed ({diffs}); resume with the "
                                      "same options or start a new --out")
