"""The pretraining loop (Accelerate): tokenize → mask → objective → AdamW, with logs and checkpoints.

Every random draw of a step (mask, drop-path, the data order and per-sample augmentation) is a
function of the seed and the step, so ``resume=True`` continues an interrupted run exactly: the loss
at every later step equals that of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from mpt.backbone import Backbone, build_backbone
from mpt.checkpoint import list_checkpoints, load_checkpoint, read_state, save_checkpoint
from mpt.config import Config
from mpt.contract import Mask, Masker, Modality, SampleDataset
from mpt.errors import ConfigError, DataError, TrainingError
from mpt.masking import create_masker
from mpt.objectives import JEPA, MAE, Objective
from mpt.optim import create_optimizer, ema_momentum, lr_at
from mpt.pretrained import dist_version, encoder_card, save_encoder
from mpt.targets import create_target

# Keys that may change between an interrupted run and its resumption.
RESUMABLE_KEYS = ("train.max_steps", "train.epochs", "train.log_every", "train.figure_every",
                  "train.checkpoint_every", "train.keep_last", "train.num_workers", "train.log_with")


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


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, cut to whole global batches, sharded across processes,
    optionally starting ``skip_batches`` into the epoch (for exact resumption)."""

    def __init__(self, n: int, seed: int, batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.batch_size, self.rank, self.world = n, seed, batch_size, rank, world
        self.epoch, self.skip = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def __iter__(self):  # noqa: ANN204 - Sampler protocol
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: self.batches_per_epoch * self.batch_size * self.world]
        mine = perm.view(-1, self.world, self.batch_size)[self.skip :, self.rank]
        return iter(mine.reshape(-1).tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip) * self.batch_size


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 1009 + micro * 31 + rank) % (2**62)


def build_objective(cfg: Config, modality: Modality, backbone: Backbone, patch_shape: tuple[int, ...]) -> Objective:
    """The MAE or JEPA model a config describes around ``backbone``."""
    if cfg.objective == "mae":
        target = create_target(cfg.mae.target, modality, cfg.mae.norm_target)
        return MAE(backbone, target, patch_shape, cfg.mae)
    return JEPA(backbone, cfg.jepa)


def build_model(cfg: Config, modality: Modality, batch: torch.Tensor) -> tuple[Objective, Masker]:
    """A fresh backbone, the objective around it (its head sized by the tokens of ``batch``, a
    collated sample batch) and the objective's masker — what every run trains."""
    backbone = build_backbone(modality, cfg.tokenizer, cfg.model)
    patch_shape = backbone.tokenizer.tokenize(batch[:1]).patch_shape
    objective = build_objective(cfg, modality, backbone, patch_shape)
    return objective, create_masker(cfg.mae.mask if cfg.objective == "mae" else cfg.jepa.mask)


def make_accelerator(cfg: Config, out: Path) -> Accelerator:
    log_with = cfg.train.log_with
    if log_with != "none" and importlib.util.find_spec(log_with) is None:
        raise ConfigError("train.log_with", f"'{log_with}' is not installed; "
                                            f"pip install 'mpt-core[{log_with}]' or use --log-with none")
    # Accelerate keeps the mixed precision in a process-wide singleton that refuses a change: clear the
    # previous run's (the process group stays) so a later run in this process may use another precision.
    AcceleratorState._reset_state()
    try:
        # several processes without a GPU (torchrun, accelerate launch): data parallel on CPUs over gloo
        multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        accelerator = Accelerator(cpu=multi_cpu, mixed_precision=cfg.train.precision,
                                  gradient_accumulation_steps=cfg.optim.accumulate,
                                  log_with=None if log_with == "none" else log_with, project_dir=str(out))
    except ValueError as exc:  # e.g. fp16 without a GPU
        raise ConfigError("train.precision", f"{cfg.train.precision!r} is not available here: {exc} "
                                             "(on CPU use bf16 or no)") from None
    if cfg.train.precision == "bf16" and accelerator.device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("this CPU has no native bf16 matrix units (AVX512-BF16 / AMX): bf16 is emulated and "
                      "several times slower than --precision no here", stacklevel=2)
    return accelerator


def cpu_has_native_bf16() -> bool:
    """Whether the CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: True)() for name in probes)


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


def check_resume(saved: dict[str, Any], current: dict[str, Any]) -> None:
    a, b = flat(saved), flat(current)
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS]
    if changed:
        diffs = "; ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in changed[:5])
        raise ConfigError(changed[0], f"differs from the run being resumed ({diffs}); resume with the "
                                      "same options or start a new --out")


def open_data(modality: Modality, cfg: Config, data: Path | None, skip_bad_files: bool, rank: int,
              world: int) -> tuple[SampleDataset, EpochSampler, DataLoader]:
    """The training dataset, its resumable sampler (this process's shard) and the loader."""
    tc = cfg.train
    try:
        dataset = modality.dataset(data, "train", cfg.data, skip_bad_files=skip_bad_files)
    except DataError as exc:
        if skip_bad_files or data is None or Path(exc.path) == Path(data):
            raise
        raise DataError(exc.path, f"{exc.reason} (or pass --skip-bad-files to skip such files)") from None
    sampler = EpochSampler(len(dataset), tc.seed, tc.batch_size, rank, world)
    if sampler.batches_per_epoch == 0:
        raise DataError(data or "demo data", f"{len(dataset)} samples make no full batch of "
                                             f"{tc.batch_size} × {world} processes; lower --batch-size")
    loader: DataLoader = DataLoader(cast(Dataset, dataset), batch_size=tc.batch_size, sampler=sampler,
                                    collate_fn=modality.collate, num_workers=tc.num_workers, drop_last=True)
    return dataset, sampler, loader


class Window:
    """Losses, samples and time since the last log line → one ``metrics.jsonl`` record."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start, self.samples = time.perf_counter(), 0
        self.losses: list[float] = []

    def record(self, step: int, epoch: int, lr: float, mask: Mask, logs: dict[str, float]) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.start
        out = {"step": step, "epoch": epoch, "loss": self.losses[-1],
               "loss_avg": sum(self.losses) / len(self.losses), "lr": lr,
               "samples_per_s": self.samples / elapsed, "s_per_step": elapsed / len(self.losses),
               "mask_ratio": mask.ratio, **logs}
        self.reset()
        return out


def pretrain(cfg: Config, modality: Modality, out: Path, data: Path | None = None, resume: bool = False,
             skip_bad_files: bool = False, progress: bool = True) -> RunResult:
    """Train ``cfg`` on ``data`` (or the modality's demo data), writing everything under ``out``."""
    t0 = time.perf_counter()
    out = Path(out)
    tc, oc = cfg.train, cfg.optim
    existing = list_checkpoints(out / "checkpoints")
    if existing and not resume:
        raise ConfigError("--out", f"{out} already holds a run (checkpoint {existing[-1].name}); "
                                   "pass --resume to continue it or choose another --out")
    if resume and not existing:
        raise ConfigError("--resume", f"no checkpoint under {out / 'checkpoints'} to resume from")
    out.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg, out)
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device

    dataset, sampler, loader = open_data(modality, cfg, data, skip_bad_files, rank, world)
    skipped = list(getattr(dataset, "skipped", []))
    if accelerator.is_main_process and skipped:
        (out / "skipped.txt").write_text("".join(f"{p}\t{r}\n" for p, r in skipped))
    steps_per_epoch = max(1, sampler.batches_per_epoch // oc.accumulate)
    total = tc.max_steps if tc.max_steps else math.ceil((tc.epochs or 1) * steps_per_epoch)
    warmup = oc.warmup_steps if oc.warmup_steps is not None else round((oc.warmup_epochs or 0) * steps_per_epoch)
    if warmup > total:
        warnings.warn(f"the warm-up ({warmup} steps) is longer than the run ({total} steps): the learning rate "
                      "never reaches optim.lr; lower optim.warmup_steps / optim.warmup_epochs", stacklevel=2)
    log_every = tc.log_every
    figure_every = tc.figure_every or log_every

    torch.manual_seed(tc.seed)
    objective, masker = build_model(cfg, modality, modality.collate([dataset[0]]))
    optimizer = create_optimizer(objective, oc)
    config_dict = cfg.to_dict()

    step, first_loss, step_loss = 0, None, float("nan")
    if resume:
        # Compare configs before touching tensors: a changed size must name its key, not fail on shapes.
        check_resume(read_state(existing[-1]).get("config", {}), config_dict)
        state = load_checkpoint(existing[-1], objective, optimizer)
        step, first_loss = state["step"], state.get("first_loss")
    start_step = step
    if accelerator.is_main_process:
        keep_metrics(out / "metrics.jsonl", step)
        versions = {"mpt-core": dist_version("mpt-core"), "torch": str(torch.__version__)}
        (out / "config.yaml").write_text(yaml.safe_dump({**config_dict, "versions": versions}, sort_keys=False))
    objective, optimizer = accelerator.prepare(objective, optimizer)
    model = accelerator.unwrap_model(objective)
    tokenizer = model.backbone.tokenizer
    if tc.log_with != "none":
        # trackers take scalars only (TensorBoard hparams): lists and None become text
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat(config_dict).items()}
        accelerator.init_trackers("mpt", config=hparams)

    metrics_file = (out / "metrics.jsonl").open("a") if accelerator.is_main_process else None
    bar = tqdm(total=total, initial=step, disable=not (progress and accelerator.is_main_process),
               desc=f"{cfg.modality} {cfg.objective}", unit="step", dynamic_ncols=True)
    figures: list[Path] = []
    last_ckpt = existing[-1] if existing else None
    window = Window()
    micro_losses: list[float] = []
    objective.train()
    while step < total:
        # batches consumed so far, counting those of a step whose accumulation crosses the epoch's end
        epoch, skip = divmod(step * oc.accumulate + len(micro_losses), sampler.batches_per_epoch)
        sampler.set_epoch(epoch, skip)
        if hasattr(dataset, "reseed"):
            dataset.reseed(tc.seed * 7919 + epoch)
        for batch in loader:
            s = step_seed(tc.seed, step, len(micro_losses), rank)
            torch.manual_seed(s)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, warmup, oc.lr, oc.min_lr)
            batch = batch.to(device)
            with torch.no_grad():
                tokens = tokenizer.tokenize(batch)
            mask = masker(tokens, torch.Generator().manual_seed(s))
            with accelerator.accumulate(objective):
                result = objective(tokens, mask)
                loss = result.loss
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {step + 1}; stopped. Last good checkpoint: "
                        f"{last_ckpt or 'none'}. Lower optim.lr, set optim.grad_clip, or check the data "
                        "for extreme values.")
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients and oc.grad_clip:
                    grad_norm = float(accelerator.clip_grad_norm_(objective.parameters(), oc.grad_clip))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            micro_losses.append(loss.item())
            window.samples += batch.shape[0] * world
            if not accelerator.sync_gradients:
                continue
            step += 1
            step_loss = sum(micro_losses) / len(micro_losses)
            micro_losses = []
            window.losses.append(step_loss)
            first_loss = step_loss if first_loss is None else first_loss
            if isinstance(model, JEPA):
                model.update_teacher(ema_momentum(step, total, *cfg.jepa.ema))
            lr = optimizer.param_groups[0]["lr"]
            bar.update(1)
            if step % log_every == 0 or step == total or step == start_step + 1:
                if world > 1:  # every process logs at the same steps: report the mean over processes
                    window.losses[-1] = accelerator.reduce(torch.tensor(step_loss, device=device), "mean").item()
                record = window.record(step, epoch, lr, mask, result.logs)
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                if metrics_file:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                if tc.log_with != "none":
                    accelerator.log(record, step=step)
                bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{record['samples_per_s']:.1f}")
            if accelerator.is_main_process and (step % figure_every == 0 or step == total):
                with torch.no_grad():
                    fig = model.figure(batch, tokens, mask, result)
                fig.title = f"{cfg.modality} {cfg.objective} step {step} loss {step_loss:.4f}"
                path = out / "figures" / f"step-{step:06d}.png"
                path.parent.mkdir(exist_ok=True)
                modality.visualize(fig, path)
                figures.append(path)
            if accelerator.is_main_process and (
                    (tc.checkpoint_every and step % tc.checkpoint_every == 0) or step == total):
                state = {"config": config_dict, "first_loss": first_loss}
                last_ckpt = save_checkpoint(out / "checkpoints", step, model, optimizer, state, tc.keep_last)
            if step >= total:
                break
    bar.close()
    if metrics_file:
        metrics_file.close()
    encoder_dir = out / "encoder"
    if accelerator.is_main_process:
        trained_on = {"data": str(data) if data else f"{modality.name} demo data", "samples": len(dataset),
                      "skipped_files": len(skipped), "steps": total,
                      "batch_size": tc.batch_size * world * oc.accumulate}
        save_encoder(model.export(), encoder_card(cfg, model.export(), trained_on), encoder_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return RunResult(out=out, steps=step, first_loss=first_loss if first_loss is not None else float("nan"),
                     last_loss=step_loss, encoder=encoder_dir,
                     figures=figures, skipped=skipped, wall_s=time.perf_counter() - t0,
                     main_process=accelerator.is_main_process)
