"""The pieces every training loop is made of: pretraining (:mod:`mpt.trainer`) and fine-tuning
(:mod:`mpt.finetune`) are both written with them.

* :func:`make_accelerator` — Accelerate with the run's precision (CPU multi-process over gloo);
* :func:`open_loader` / :func:`batches` — the data: a seeded permutation per epoch for map-style
  datasets (exactly resumable from any step), or the stream of an iterable dataset; the DataLoader
  goes through ``accelerator.prepare``, which shards batches across processes;
* :func:`set_lr` and :func:`optimize` — one optimiser step (backward, clip, step, zero-grad).
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from mpt.contract import Batch, Sample, SampleDataset, Skipped
from mpt.errors import ConfigError, DataError


def make_accelerator(precision: str, accumulate: int = 1, log_with: str = "none",
                     project_dir: str | None = None) -> Accelerator:
    """An Accelerator for ``precision`` ("no", "bf16", "fp16"); several processes without a GPU
    (torchrun, ``accelerate launch --cpu``) run data-parallel on CPUs over gloo.

    Accelerate keeps the mixed precision in a process-wide singleton that refuses a change: the
    previous run's is cleared (the process group stays) so a later run in this process may use
    another precision."""
    AcceleratorState._reset_state()
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    try:
        accelerator = Accelerator(cpu=multi_cpu, mixed_precision=precision, gradient_accumulation_steps=accumulate,
                                  log_with=None if log_with == "none" else log_with, project_dir=project_dir,
                                  dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
    except ValueError as exc:  # e.g. fp16 without a GPU
        raise ConfigError("train.precision", f"{precision!r} is not available here: {exc} "
                                             "(on CPU use bf16 or no)") from None
    if precision == "bf16" and accelerator.device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("this CPU has no native bf16 matrix units (AVX512-BF16 / AMX): bf16 is emulated and "
                      "several times slower than --precision no here", stacklevel=2)
    return accelerator


def cpu_has_native_bf16() -> bool:
    """Whether the CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: True)() for name in probes)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch cut to whole global batches (``batch_size × world``),
    optionally starting ``skip_batches`` global batches into the epoch (exact resumption).

    It yields the global order; Accelerate's prepared loader hands process ``r`` the local batches
    ``r, r + world, …`` of it. The position is set with :meth:`start`, deliberately not named
    ``set_epoch``: Accelerate's loader calls ``sampler.set_epoch(its own pass count)`` at every pass,
    which would reset a resumed run to epoch 0, batch 0."""

    def __init__(self, n: int, seed: int, batch_size: int, world: int = 1) -> None:
        self.n, self.seed, self.batch_size, self.world = n, seed, batch_size, world
        self.epoch, self.skip = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Global batches (optimiser micro-steps) per epoch."""
        return self.n // (self.batch_size * self.world)

    def start(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        per_batch = self.batch_size * self.world
        perm = torch.randperm(self.n, generator=g)[self.skip * per_batch: self.batches_per_epoch * per_batch]
        return iter(perm.tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip) * self.batch_size * self.world


@dataclass
class Loader:
    """A prepared DataLoader, its dataset and (map-style) its resumable sampler."""

    dataset: SampleDataset
    loader: DataLoader
    sampler: EpochSampler | None  # None for an iterable dataset

    @property
    def batches_per_epoch(self) -> int | None:
        """Global batches per epoch (None: an iterable dataset's length is unknown)."""
        return None if self.sampler is None else self.sampler.batches_per_epoch


class GuardedItems(Dataset):
    """A map-style dataset whose items are the wrapped dataset's, or a :class:`~mpt.contract.Skipped`
    record where reading one raises a DataError (a file that fails mid-run). Other attributes
    (``reseed``, ``skipped`` …) are the wrapped dataset's."""

    def __init__(self, dataset: SampleDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample | Skipped:
        try:
            return self.dataset[index]
        except DataError as exc:
            return Skipped(exc.path, exc.reason)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class SkipAwareCollate:
    """The modality's ``collate`` over the items that were read; the :class:`~mpt.contract.Skipped`
    ones go to ``Batch.skipped`` (a batch of only failed items has an empty ``[0]`` input)."""

    def __init__(self, collate: Callable[[list[Sample]], Batch]) -> None:
        self.collate = collate

    def __call__(self, items: list[Sample | Skipped]) -> Batch:
        failed = [(s.source, s.reason) for s in items if isinstance(s, Skipped)]
        samples = [s for s in items if not isinstance(s, Skipped)]
        batch = self.collate(samples) if samples else Batch(input=torch.empty(0))
        batch.skipped = failed
        return batch


def is_iterable(dataset: SampleDataset) -> bool:
    return isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__")


def open_loader(dataset: SampleDataset, accelerator: Accelerator, batch_size: int,
                collate: Callable[[list[Sample]], Any], seed: int, num_workers: int = 0,
                what: str = "data") -> Loader:
    """The training loader of ``dataset`` (``batch_size`` samples per process and step). Map-style
    items that fail when read come as ``Batch.skipped`` entries (see :func:`take_skipped`)."""
    world = accelerator.num_processes
    if is_iterable(dataset):
        loader = DataLoader(cast(Dataset, dataset), batch_size=batch_size, collate_fn=collate,
                            num_workers=num_workers, drop_last=True)
        return Loader(dataset, accelerator.prepare(loader), None)
    n = len(dataset)  # type: ignore[arg-type]
    sampler = EpochSampler(n, seed, batch_size, world)
    if sampler.batches_per_epoch == 0:
        raise DataError(what, f"{n} samples make no full batch of {batch_size} × {world} processes; "
                              "lower --batch-size")
    loader = DataLoader(GuardedItems(dataset), batch_size=batch_size, sampler=sampler,
                        collate_fn=SkipAwareCollate(collate), num_workers=num_workers, drop_last=True)
    return Loader(dataset, accelerator.prepare(loader), sampler)


def batches(data: Loader, consumed: int, seed: int) -> Iterator[tuple[int, Batch]]:
    """``(epoch, batch)`` forever, starting after ``consumed`` global batches.

    Map-style: epoch ``e`` is the permutation of (seed, e); the dataset's ``reseed`` gets
    ``seed * 7919 + e`` so per-sample randomness is a function of (seed, epoch, index), and resuming
    skips to the exact position without reading the skipped samples. Iterable: each pass over the
    stream is an epoch (``set_epoch(e)`` when the dataset has it); resuming replays the stream and
    drops the first ``consumed`` batches, which restores the position exactly for a deterministic stream.
    """
    dataset, sampler = data.dataset, data.sampler
    if sampler is not None:
        epoch, skip = divmod(consumed, sampler.batches_per_epoch)
        for e in itertools.count(epoch):
            sampler.start(e, skip if e == epoch else 0)
            if hasattr(dataset, "reseed"):
                dataset.reseed(seed * 7919 + e)
            for batch in data.loader:
                yield e, batch
    else:
        seen = 0
        for e in itertools.count():
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(e)
            empty = True
            for batch in data.loader:
                empty = False
                seen += 1
                if seen > consumed:
                    yield e, batch
            if empty:
                raise DataError("data", "the iterable dataset yielded no full batch")


def take_skipped(batch: Batch, skipped: list[tuple[str, str]], skip_bad_files: bool) -> bool:
    """Record the items of ``batch`` that failed when read: without ``skip_bad_files`` the first one is
    the DataError it was (naming the file); with it, each file not yet in ``skipped`` is added (one
    warning per file). Returns whether the batch still holds samples."""
    for path, reason in batch.skipped:
        if not skip_bad_files:
            raise DataError(path, f"{reason} (when read during training; pass --skip-bad-files to skip such files)")
        if all(path != p for p, _ in skipped):
            skipped.append((path, reason))
            warnings.warn(f"{path}: {reason}; skipped (--skip-bad-files), listed in skipped.txt", stacklevel=2)
    return batch.batch_size > 0


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every group's learning rate to ``lr × group["lr_scale"]`` (1 when absent); returns ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr


def optimize(accelerator: Accelerator, model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             grad_clip: float | None) -> float | None:
    """Backward, clip (when the accumulation ends), step and zero-grad; the gradient norm if clipped."""
    accelerator.backward(loss)
    grad_norm = None
    if accelerator.sync_gradients and grad_clip:
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), grad_clip))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """The seed of every random draw of one micro-step (mask, augmentation, drop path)."""
    return (seed * 1_000_003 + step * 1009 + micro * 31 + rank) % (2**62)
