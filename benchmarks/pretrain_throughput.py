"""Pretraining throughput of one modality: s/step, samples/s, FLOPs, MFU, peak RSS.

Builds a run exactly as ``mpt pretrain`` does (config → dataset → backbone → objective → AdamW →
masker, all from the library) and times ``--steps`` training steps (tokenize → mask → forward →
backward → AdamW) per precision, after ``--warmup`` untimed ones; a step's input path is the
trainer's own (:func:`mpt.trainer.prepare_batch`: normalise → augment → tokenize → mask). Prints
one JSON object per line on stdout per measurement (DESIGN.md §7) and nothing else; progress goes
to stderr.

    python benchmarks/pretrain_throughput.py --modality pointcloud
    python benchmarks/pretrain_throughput.py --modality pointcloud --recipe point-mae --precision no
    python benchmarks/pretrain_throughput.py --modality timeseries --recipe patchtst \
        --set tokenizer.patch=16 --set tokenizer.stride=16 --batch 32 --against hf

``--against hf`` also trains the Hugging Face ``transformers`` model of the same config
(``benchmarks/hf_reference.py``; transformers is a benchmark-only dependency) in the same process,
alternating steps with the mpt run on the same batch with the same optimizer and autocast, and
prints a line per implementation plus ``{"ratio": mpt samples/s / hf samples/s, ...}``.
``--variant KEY=VALUE`` (repeatable) trains, the same way, a second mpt run with those extra overrides
(``impl: "mpt-variant"``) and prints ``{"ratio": mpt samples/s / variant samples/s, ...}``, e.g. VideoMAE V2's
dual masking against plain tube masking::

    python benchmarks/pretrain_throughput.py --modality video \
        --variant 'mae.mask={name: dual, encoder: {name: tube, ratio: 0.9}, decoder_ratio: 0.5}'

After the timed steps, ``--data-batches`` batches are drawn from the training set through the trainer's own
DataLoader (``mpt.loop.open_loader`` with ``train.num_workers``) to time data loading (``data_*`` fields).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over one training step, with
formulas registered here for the CPU SDPA kernels, which torch counts as zero. See README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils import flop_counter

BENCH = "pretrain_throughput"
PRECISIONS = ("no", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
GEMM_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FLOPS_NOTE = ("flops_per_step counts one training step (forward + backward + AdamW) of the model as "
              "torch.utils.flop_counter.FlopCounterMode sees its torch ops (matmuls, convs, SDPA with "
              "the CPU flash-attention formulas registered by this script); the tokenizer's non-GEMM "
              "work (FPS, KNN, gathers), elementwise ops, norms and the optimizer count zero")

aten = torch.ops.aten


# --------------------------------------------------------------------------- FLOP counting


def sdpa_forward_flops(query_shape: Sequence[int], key_shape: Sequence[int],
                       value_shape: Sequence[int]) -> int:
    """``Q Kᵀ`` plus ``P V``: ``2·B·H·Lq·Lk·d + 2·B·H·Lq·Lk·d_v`` (= 4·B·H·Lq·Lk·d when d_v = d).

    Heads are the query's (grouped-query attention broadcasts K/V heads); causal masking is
    ignored, as torch's own SDPA formulas do.
    """
    b, h, lq, d = query_shape
    lk = key_shape[-2]
    dv = value_shape[-1]
    return 2 * b * h * lq * lk * d + 2 * b * h * lq * lk * dv


def sdpa_backward_flops(query_shape: Sequence[int], key_shape: Sequence[int],
                        value_shape: Sequence[int]) -> int:
    """Gradients of both products, two GEMMs each: 2 × the forward (8·B·H·Lq·Lk·d).

    The flash kernel also recomputes ``Q Kᵀ`` in the backward; that recomputation is not counted
    (the usual MFU convention: backward = 2 × forward).
    """
    return 2 * sdpa_forward_flops(query_shape, key_shape, value_shape)


def _cpu_flash_fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_forward_flops(query_shape, key_shape, value_shape)


def _cpu_flash_bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                   **kwargs) -> int:
    return sdpa_backward_flops(query_shape, key_shape, value_shape)


def _cpu_sdpa_formulas() -> dict[Any, Callable[..., int]]:
    """Our formulas for the SDPA ops torch counts as zero (those missing from its registry)."""
    wanted = {
        "_scaled_dot_product_flash_attention_for_cpu": _cpu_flash_fwd,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _cpu_flash_bwd,
    }
    out = {}
    for name, formula in wanted.items():
        op = getattr(aten, name, None)
        if op is not None:
            out[op] = formula
    return out


_REGISTERED = False


def sdpa_flop_mapping() -> dict[Any, Callable[..., int]]:
    """Make FlopCounterMode count the CPU SDPA kernels; returns the ``custom_mapping`` still needed.

    Registers the formulas globally with ``register_flop_formula`` when this torch has it (once;
    an op torch already counts itself is left alone, so nothing is counted twice, and the CUDA
    flash / efficient / cuDNN kernels keep torch's own formulas). Otherwise returns them for
    ``FlopCounterMode(custom_mapping=...)``.
    """
    global _REGISTERED
    registry = getattr(flop_counter, "flop_registry", {})
    missing = {op: f for op, f in _cpu_sdpa_formulas().items() if op not in registry}
    register = getattr(flop_counter, "register_flop_formula", None)
    if register is None:
        return missing
    if not _REGISTERED:
        for op, formula in missing.items():
            register(op)(formula)
        _REGISTERED = True
    return {}


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    """A silent FlopCounterMode that counts the CPU SDPA kernels too."""
    return flop_counter.FlopCounterMode(display=False, custom_mapping=sdpa_flop_mapping())


def is_attention_op(name: str) -> bool:
    """SDPA kernels, or the batched matmuls of the explicit attention path (``q @ kᵀ``, ``attn @ v``:
    mpt's blocks use it on CPU for heads narrower than ``mpt.encoder.CPU_EXPLICIT_ATTENTION_BELOW_HEAD_DIM``;
    a transformer step has no other ``bmm``)."""
    return "attention" in name or name.rsplit(".", 1)[-1] == "bmm"


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """Total FLOPs of running ``fn()`` once, and the count per aten op."""
    with flop_counter_mode() as counter:
        fn()
    per_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


# --------------------------------------------------------------------------- machine figures


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn: Callable[[], Any], device: torch.device, reps: int, budget_s: float,
               warm: bool = True) -> float:
    """Best wall time of ``fn()`` over up to ``reps`` runs (after one warm-up run unless ``warm``
    is False); stops early once ``budget_s`` is spent, after at least two timed runs."""
    if warm:
        fn()  # warm-up: thread pool, oneDNN/cuBLAS kernel selection
        sync(device)
    best, start = float("inf"), time.perf_counter()
    for i in range(reps):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
        if i >= 1 and time.perf_counter() - start > budget_s:
            break
    return best


def gemm_peak(dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5,
              device: torch.device | str = "cpu", max_product_s: float = 1.0) -> tuple[float, int]:
    """Best GFLOP/s of an ``n × n × n`` matrix product (2·n³ FLOPs) in ``dtype``, and the n used.

    Times ``torch.mm(a, b)`` and, as nn.Linear computes it, ``F.linear(a, b)`` (= a @ bᵀ), and
    keeps the faster: on CPUs without native bf16 (AVX2) ``torch.mm`` in bf16 takes a slow
    fallback while ``F.linear`` goes through oneDNN, and a model's GEMMs are linears. The size
    doubles from 256 up to ``n`` while the next product is predicted to take at most
    ``max_product_s``, so an emulated dtype or a loaded machine costs seconds, not minutes.
    """
    device = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    ops: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "mm": torch.mm, "linear": torch.nn.functional.linear}
    m = 256
    while True:
        a = torch.randn(m, m, generator=g).to(device=device, dtype=dtype)
        b = torch.randn(m, m, generator=g).to(device=device, dtype=dtype)
        times = {k: _best_time(lambda f=f, a=a, b=b: f(a, b), device, 1, 0.0) for k, f in ops.items()}
        fastest = min(times.values())
        ops = {k: f for k, f in ops.items() if times[k] <= 4 * fastest}  # drop a clearly slow path
        if m >= n or fastest * 8 > max_product_s:
            break
        m *= 2
    name = min(ops, key=times.__getitem__)  # already warm at size m: reps - 1 more timed runs
    f = ops[name]
    best = min(times[name], _best_time(lambda: f(a, b), device, max(reps - 1, 1), reps * max_product_s / 2,
                                       warm=False))
    return 2 * m**3 / best / 1e9, m


def gemm_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5,
                     device: torch.device | str = "cpu") -> float:
    """Peak matrix-product GFLOP/s in ``dtype`` (see :func:`gemm_peak`)."""
    return gemm_peak(dtype, n, reps, device)[0]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (monotone), MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if platform.system() == "Darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _vm_hwm_mib() -> float | None:
    """VmHWM (the RSS high-water mark) of this process in MiB, from /proc/self/status (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux: ``5`` into /proc/self/clear_refs), so
    that :func:`_vm_hwm_mib` then reports the peak since the reset; False where that is unavailable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _vm_hwm_mib() is not None


def cpu_capability(device: torch.device) -> str:
    """The CPU's SIMD level as torch dispatches it (``AVX2``, ``AVX512``), with ``+AVX512_BF16`` /
    ``+AMX`` when present (native bf16 GEMMs); or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        out = str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:
        return "unknown"
    for flag, probe in (("AVX512_BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported")):
        fn = getattr(torch.cpu, probe, None)
        with contextlib.suppress(Exception):
            if fn is not None and fn():
                out += f"+{flag}"
    return out


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def log(msg: str) -> None:
    print(f"[{BENCH}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the run


@dataclass
class Run:
    """Everything one precision's measurement trains: the pieces ``mpt.trainer.pretrain`` builds."""

    cfg: Any
    modality: Any
    objective: Any  # mpt.objectives.Objective
    optimizer: torch.optim.Optimizer
    masker: Callable
    batch: Any  # mpt.Batch, on the run's device
    params: int


def load_config(modality: Any, args: argparse.Namespace):  # noqa: ANN201 - mpt.config.Config
    from mpt.config import build_config

    flags = {"objective": args.objective, "train": {"batch_size": args.batch}}
    return build_config(modality, args.recipe, None, args.set, flags)


def open_data(modality: Any, cfg: Any, data: Path | None) -> tuple[Any, Any]:  # noqa: ANN401
    """The training split of ``data`` (the demo data when None) and ``cfg`` with the statistics the
    trainer fits on it before building the model (:func:`mpt.trainer.fit_statistics`, ``Modality.fit``)."""
    from mpt.trainer import fit_statistics

    dataset = modality.dataset(data, "train", cfg.data)
    return fit_statistics(modality, dataset, cfg, progress=False), dataset


def build_batch(modality: Any, cfg: Any, dataset: Any) -> Any:  # noqa: ANN401 - mpt.Batch
    """The first ``batch_size`` samples of the (seeded) training set, collated (``modality.collate``: a Batch)."""
    from mpt.contract import Batch

    if hasattr(dataset, "reseed"):
        dataset.reseed(cfg.train.seed)
    n = cfg.train.batch_size
    return Batch.of(modality.collate([dataset[i % len(dataset)] for i in range(n)]))


def build_run(modality: Any, cfg: Any, batch: Any, device: torch.device, precision: str = "no") -> Run:
    """Backbone, objective, optimizer and masker as the trainer builds them (seeded: identical
    initial weights for every precision)."""
    from mpt.optim import create_optimizer
    from mpt.trainer import build_model, configure_attention

    torch.manual_seed(cfg.train.seed)
    objective, masker = build_model(cfg, modality)
    objective = objective.to(device)
    configure_attention(objective, device, precision)  # as the trainer does after moving the model
    optimizer = create_optimizer(objective, cfg.optim)
    params = sum(p.numel() for p in objective.parameters() if p.requires_grad)
    objective.train()
    return Run(cfg, modality, objective, optimizer, masker, batch.to(device), params)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Accelerate's mixed precision: autocast (bf16/fp16) around the model's forward only."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def backward_and_update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                        clip: float | None, scaler: torch.amp.GradScaler | None = None) -> None:
    """The trainer's update: backward (scaled for fp16), optional grad-norm clip, AdamW step, zero grads."""
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    if clip:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_step(run: Run, step: int, precision: str, device: torch.device,
               scaler: torch.amp.GradScaler | None = None) -> tuple[float, float, float]:
    """One training step as ``mpt.trainer.pretrain`` runs it; returns (tokenize s, step s, loss).

    The input path is the trainer's :func:`mpt.trainer.prepare_batch` (normalise → seeded augment →
    tokenize → mask, a fresh mask every step); the tokenize time is measured up to the masker's call.
    """
    from mpt.loop import step_seed
    from mpt.trainer import prepare_batch

    seed = step_seed(run.cfg.train.seed, step, 0, 0)
    torch.manual_seed(seed)  # drop-path draws, as in the trainer
    tokenized: list[float] = []

    def masker(tokens: Any, generator: torch.Generator) -> Any:  # noqa: ANN401 - the run's masker, timed
        sync(device)
        tokenized.append(time.perf_counter())
        return run.masker(tokens, generator)

    sync(device)
    t0 = time.perf_counter()
    tokens, masks = prepare_batch(run.objective.backbone, run.modality, run.cfg.data, masker, run.batch, seed)
    t_tok = tokenized[0] - t0
    with autocast_for(precision, device):  # Accelerate's mixed precision: autocast around the forward only
        loss = run.objective(tokens, masks).loss
    backward_and_update(loss, run.optimizer, run.objective, run.cfg.optim.grad_clip, scaler)
    # after every optimiser step, as the trainer does (JEPA's EMA teacher update; the momentum's
    # schedule position is irrelevant to timing)
    run.objective.step_end(step + 1, max(step + 1, 1000))
    sync(device)
    return t_tok, time.perf_counter() - t0, float(loss.detach())


def reference_step(ref: Any, cfg: Any, step: int, precision: str, device: torch.device,
                   scaler: torch.amp.GradScaler | None = None) -> tuple[None, float, float]:
    """One training step of a reference implementation (``hf_reference.Reference``): its forward
    (tokenization and masking happen inside) under the same autocast, then the same update.
    Returns (None: no separate tokenize time, step s, loss)."""
    from mpt.loop import step_seed

    torch.manual_seed(step_seed(cfg.train.seed, step, 0, 0))  # its mask comes from the global RNG
    sync(device)
    t0 = time.perf_counter()
    with autocast_for(precision, device):
        loss = ref.forward()
    backward_and_update(loss, ref.optimizer, ref.model, cfg.optim.grad_clip, scaler)
    sync(device)
    return None, time.perf_counter() - t0, float(loss.detach())


@dataclass
class Impl:
    """One implementation measured by :func:`measure`: ``step(i)`` runs training step ``i`` and
    returns (tokenize s or None, step s, loss); ``fields`` are extra fields of its record."""

    name: str
    step: Callable[[int], tuple[float | None, float, float]]
    params: int
    fields: dict[str, Any] = field(default_factory=dict)
    cfg: Any = None  # its own mpt config when it differs from the measurement's (--variant)


def mpt_impl(modality: Any, cfg: Any, batch: Any, precision: str, device: torch.device,
             name: str = "mpt") -> Impl:
    """The mpt run (fresh, seeded) as an :class:`Impl` named ``name``."""
    run = build_run(modality, cfg, batch, device, precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return Impl(name, lambda i: train_step(run, i, precision, device, scaler), run.params, cfg=cfg)


def reference_impl(ref: Any, cfg: Any, precision: str, device: torch.device) -> Impl:
    """A built ``hf_reference.Reference`` as an :class:`Impl`."""
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    fields = {"reference": ref.name, **ref.versions, "config": ref.config, "hf_defaults_kept": ref.kept_defaults}
    return Impl(ref.impl, lambda i: reference_step(ref, cfg, i, precision, device, scaler), ref.params, fields)


def measure(impls: Sequence[Impl], cfg: Any, precision: str, args: argparse.Namespace,
            device: torch.device, cpu_load: float) -> list[dict[str, Any]]:
    """Warm-up, FLOP count and timed steps of one precision → one JSON record per implementation.

    With several implementations every phase alternates between them step by step (impl 1 step i,
    impl 2 step i, impl 1 step i+1, …) so that machine noise hits all alike, and each one's peak RSS
    is the high-water mark during its own timed steps (reset before each step where Linux allows).
    """
    caps = cpu_capability(device)
    from mpt.loop import cpu_has_native_bf16

    if device.type == "cpu" and precision == "bf16" and not cpu_has_native_bf16():
        log(f"warning: this CPU ({caps}) has no native bf16 GEMMs; bf16 is emulated and slow here")
    step = 0
    flops: dict[str, tuple[int, int]] = {}
    for impl in impls:
        log(f"{precision}: counting FLOPs of one {impl.name} step")
        total, per_op = count_flops(lambda impl=impl: impl.step(step))
        attention = sum(v for k, v in per_op.items() if is_attention_op(k))
        flops[impl.name] = total, attention
        log(f"{precision}: {impl.name} {total / 1e9:.3f} GFLOP/step ({attention / max(total, 1):.1%} attention)")
    step += 1
    for _ in range(args.warmup):
        for impl in impls:
            impl.step(step)
        step += 1
    peak, gemm_n = gemm_peak(GEMM_DTYPES[precision], args.gemm_size, device=device)
    peak_fp32 = peak if precision == "no" else gemm_peak(torch.float32, args.gemm_size, device=device)[0]
    log(f"{precision}: GEMM peak {peak:.1f} GFLOP/s ({GEMM_DTYPES[precision]}, n={gemm_n}), "
        f"fp32 {peak_fp32:.1f}; timing {args.steps} steps" + (" per implementation, alternating" if len(impls) > 1
                                                             else ""))
    per_step_rss = len(impls) > 1 and reset_peak_rss()
    process_rss = peak_rss_mib()
    times: dict[str, list[float]] = {impl.name: [] for impl in impls}
    shares: dict[str, list[float]] = {impl.name: [] for impl in impls}
    rss: dict[str, float] = {impl.name: 0.0 for impl in impls}
    loss: dict[str, float] = {impl.name: float("nan") for impl in impls}
    for _ in range(args.steps):
        for impl in impls:
            if per_step_rss:
                reset_peak_rss()
            t_tok, t_step, loss[impl.name] = impl.step(step)
            if per_step_rss:
                rss[impl.name] = max(rss[impl.name], _vm_hwm_mib() or 0.0)
            times[impl.name].append(t_step)
            if t_tok is not None:
                shares[impl.name].append(t_tok / t_step)
        step += 1
    process_rss = max(process_rss, *rss.values())
    records = []
    for impl in impls:
        total, attention = flops[impl.name]
        record = make_record(impl, impl.cfg or cfg, precision, args, device, times[impl.name], shares[impl.name],
                             total, attention, peak, peak_fp32, gemm_n, caps, cpu_load, loss[impl.name])
        if len(impls) > 1:
            record["peak_rss_mib"] = rss[impl.name] if per_step_rss else process_rss
            record["peak_rss_scope"] = ("this implementation's timed steps (VmHWM reset before each step; "
                                        "both models resident)" if per_step_rss else
                                        "process high-water mark (all implementations)")
            record["process_peak_rss_mib"] = process_rss
        records.append(record)
    return records


def make_record(impl: Impl, cfg: Any, precision: str, args: argparse.Namespace, device: torch.device,
                times: Sequence[float], shares: Sequence[float], flops: int, attention: int, peak: float,
                peak_fp32: float, gemm_n: int, caps: str, cpu_load: float, loss: float) -> dict[str, Any]:
    """The JSON record of one implementation's timed steps (DESIGN.md §7)."""
    s = statistics.median(times)
    record: dict[str, Any] = {
        "bench": BENCH, "modality": cfg.modality, "impl": impl.name, "recipe": cfg.recipe,
        "objective": cfg.objective, "precision": precision, "batch": cfg.train.batch_size,
        "s_per_step": s, "s_per_step_min": min(times), "s_per_step_max": max(times),
        "samples_per_s": cfg.train.batch_size / s, "flops_per_step": float(flops),
        "gemm_peak_gflops": peak, "mfu": flops / s / (peak * 1e9),
        "peak_rss_mib": peak_rss_mib(), "threads": torch.get_num_threads(), "torch": str(torch.__version__),
        "tokenize_share": statistics.median(shares) if shares else None, "params": impl.params,
        "cpu_load": cpu_load,
        # extras
        "gemm_peak_gflops_fp32": peak_fp32, "mfu_fp32": flops / s / (peak_fp32 * 1e9),
        "attention_flops_share": attention / flops if flops else 0.0,
        "gemm_n": gemm_n, "steps": args.steps, "warmup": args.warmup, "device": device.type,
        "cpu_capability": caps,
        "cpu_load_end": load_avg(), "loss": loss, "flops_note": FLOPS_NOTE,
        "data": str(getattr(args, "data", None) or "demo data"), "sets": list(getattr(args, "set", [])),
    }
    if device.type == "cuda":
        record["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    record.update(impl.fields)
    return record


def comparison(records: Sequence[dict[str, Any]], against: str, extra: dict[str, Any],
               prefix: str | None = None) -> dict[str, Any]:
    """The ratio line of one precision: ``mpt samples/s / other samples/s`` (> 1: mpt is faster); the
    other implementation's figures are named ``{prefix}_…`` (default: its impl name, e.g. ``hf_s_per_step``)."""
    mine = next(r for r in records if r["impl"] == "mpt")
    other = next(r for r in records if r["impl"] == against)
    prefix = prefix or against
    return {
        "bench": BENCH, "modality": mine["modality"], "precision": mine["precision"],
        "ratio": mine["samples_per_s"] / other["samples_per_s"], "against": against,
        "recipe": mine["recipe"], "objective": mine["objective"], "batch": mine["batch"],
        "mpt_s_per_step": mine["s_per_step"], f"{prefix}_s_per_step": other["s_per_step"],
        "mpt_samples_per_s": mine["samples_per_s"], f"{prefix}_samples_per_s": other["samples_per_s"],
        "ratio_of_fastest_steps": other["s_per_step_min"] / mine["s_per_step_min"],
        "flops_ratio": mine["flops_per_step"] / other["flops_per_step"] if other["flops_per_step"] else None,
        "mpt_mfu": mine["mfu"], f"{prefix}_mfu": other["mfu"],
        "threads": mine["threads"], "torch": mine["torch"], "cpu_load": mine["cpu_load"],
        "cpu_load_end": load_avg(), "steps": mine["steps"], "warmup": mine["warmup"], **extra,
    }


# --------------------------------------------------------------------------- data loading


DATA_NOTE = ("data_s_per_batch: mean wall time of the next batch from the trainer's DataLoader (built by "
             "mpt.loop.open_loader with train.num_workers workers, iterated by mpt.loop.batches; without Accelerate's "
             "wrapper, which only looks one batch ahead and moves it to the device) over data_batches batches after "
             "a first one (data_first_batch_s: worker start-up, first decode); data_share = data_s_per_batch / "
             "(data_s_per_batch + s_per_step): the share of a step spent waiting for data if loading were not "
             "overlapped with training")


@dataclass
class _PlainLoader:
    """What :func:`mpt.loop.open_loader` asks of its Accelerator, keeping the DataLoader as built: Accelerate's
    prepared loader fetches one batch ahead (its first ``next`` reads two), which would blur a per-batch time."""

    num_processes: int = 1

    def prepare(self, loader: Any) -> Any:  # noqa: ANN401 - torch DataLoader
        return loader


def measure_data(modality: Any, cfg: Any, dataset: Any, n_batches: int, what: str) -> dict[str, Any]:  # noqa: ANN401
    """Time the trainer's own loader of ``dataset`` (:func:`mpt.loop.open_loader`: its sampler, collate,
    ``train.num_workers`` and ``drop_last``; iterated by :func:`mpt.loop.batches` as the training loop does,
    epoch after epoch): the first batch (worker start-up), then the mean of the next ``n_batches``. Fields of
    the mpt records (without ``data_share``, which needs the record's ``s_per_step``)."""
    from mpt.loop import batches, open_loader

    workers = cfg.train.num_workers
    stream = open_loader(dataset, _PlainLoader(), cfg.train.batch_size, modality.collate, cfg.train.seed,  # type: ignore[arg-type]
                         workers, what=what)
    it = batches(stream, 0, cfg.train.seed)
    try:
        t0 = time.perf_counter()
        next(it)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n_batches):
            next(it)
        per_batch = (time.perf_counter() - t0) / n_batches
    finally:
        it.close()  # ends the loader's worker processes
    return {"data_s_per_batch": per_batch, "data_samples_per_s": cfg.train.batch_size / per_batch,
            "data_workers": workers, "data_batches": n_batches, "data_first_batch_s": first, "data_note": DATA_NOTE}


def with_data_share(record: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the data-loading fields and ``data_share`` against its own ``s_per_step``."""
    d = data["data_s_per_batch"]
    record.update(data)
    record["data_share"] = d / (d + record["s_per_step"])
    return record


# --------------------------------------------------------------------------- --variant


VARIANT = "mpt-variant"


class VariantError(ValueError):
    """A ``--variant`` that cannot be built or changes nothing (an argparse error in :func:`main`)."""


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:  # noqa: ANN401
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_changes(base: Any, other: Any) -> dict[str, list[Any]]:  # noqa: ANN401 - mpt.config.Config
    """``{dotted key: [base value, other value]}`` for every setting that differs (a whole masker or target
    ``Choice`` by its ``name`` and parameters, key by key)."""
    a, b = _flat(base.to_dict()), _flat(other.to_dict())
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def load_variant(modality: Any, args: argparse.Namespace, base: Any, dataset: Any) -> tuple[Any, Any]:  # noqa: ANN401
    """The ``--variant`` config (recipe ← ``--set`` ← ``--variant`` ← flags), fitted on its training data, and
    that data (``dataset`` reused when the variant keeps the ``data`` section)."""
    from mpt.errors import ConfigError
    from mpt.trainer import fit_statistics

    try:
        cfg = load_config(modality, argparse.Namespace(**{**vars(args), "set": [*args.set, *args.variant]}))
        if cfg.to_dict()["data"] != base.to_dict()["data"]:
            return open_data(modality, cfg, args.data)
        cfg = fit_statistics(modality, dataset, cfg, progress=False)
    except ConfigError as exc:
        raise VariantError(str(exc)) from None
    if not config_changes(base, cfg):
        raise VariantError("the overrides change nothing in the config (already the values of --recipe / --set)")
    return cfg, dataset


# --------------------------------------------------------------------------- CLI


def parse_precisions(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or ["no,bf16"]:
        for p in v.split(","):
            p = p.strip()
            if not p:
                continue
            if p not in PRECISIONS:
                raise argparse.ArgumentTypeError(
                    f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
            if p not in out:
                out.append(p)
    return out


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--modality", required=True, help="installed modality, e.g. pointcloud")
    p.add_argument("--recipe", default=None, help="recipe name (default: the modality's default recipe)")
    p.add_argument("--objective", choices=("mae", "jepa"), default="mae")
    p.add_argument("--precision", action="append", default=None,
                   help="no | bf16 | fp16; repeatable or comma-separated (default: no,bf16)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the recipe's)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per precision")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, as `mpt pretrain --set` (repeatable)")
    p.add_argument("--data", type=Path, default=None, help="training data (default: the demo data)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--gemm-size", type=int, default=2048, help="n of the n×n×n GEMM peak measurement")
    p.add_argument("--against", choices=("hf",), default=None,
                   help="also train the Hugging Face transformers model of the same config, alternating "
                        "steps in this process, and print a ratio line per precision (benchmarks/hf_reference.py)")
    p.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE",
                   help="also train a second mpt run with this extra config override (repeatable; applied after "
                        "--set), alternating steps in this process, and print a ratio line mpt / variant per "
                        "precision; not with --against")
    p.add_argument("--data-batches", type=int, default=5,
                   help="batches drawn through the trainer's DataLoader after the timed steps to time data "
                        "loading (data_* fields of the mpt records); 0: skip")
    return p


def hf_reference():  # noqa: ANN201 - the benchmarks/hf_reference.py module
    """benchmarks/hf_reference.py, imported from next to this script (it needs no transformers)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import hf_reference as module

    return module


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; prints (and returns) one record per precision."""
    cpu_load = load_avg()
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        precisions = parse_precisions(args.precision)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or (args.batch is not None and args.batch < 1):
        parser.error("--steps and --threads must be >= 1, --warmup >= 0, --batch >= 1")
    if args.data_batches < 0:
        parser.error("--data-batches must be >= 0 (0: no data-loading measurement)")
    if args.variant and args.against:
        parser.error("--variant and --against are mutually exclusive: each adds a second implementation to "
                     "alternate with the mpt run; run them in separate processes")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if "fp16" in precisions and device.type != "cuda":
        parser.error("fp16 needs a CUDA device (on CPU use bf16 or no)")
    reference = None
    if args.against == "hf":
        refs = hf_reference()
        reference = refs.REFERENCES.get(args.modality)
        if reference is None:
            parser.error(f"--against hf: no Hugging Face reference for modality '{args.modality}'; "
                         f"supported: {refs.supported()}")
        try:
            refs.require_transformers()
        except ImportError as exc:
            parser.error(str(exc))
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, precisions, device, cpu_load, reference)
    except VariantError as exc:
        parser.error(f"--variant {' '.join(args.variant)}: {exc}")
    except Exception as exc:
        if reference is not None and isinstance(exc, hf_reference().UnsupportedConfig):
            parser.error(f"--against hf ({reference.name}): {exc}")
        raise
    finally:
        torch.set_num_threads(threads_before)  # main() may be called in-process (tests)


def _json_line(record: dict[str, Any]) -> str:
    """Strict JSON: a non-finite float (e.g. no load average on this OS) becomes null."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(clean, allow_nan=False)


def _run(args: argparse.Namespace, precisions: list[str], device: torch.device, cpu_load: float,
         reference: Any = None) -> list[dict[str, Any]]:  # noqa: ANN401 - hf_reference.ReferenceSpec
    from mpt.registry import get_modality

    out = sys.stdout
    records = []
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON lines only
        modality = get_modality(args.modality)
        cfg = load_config(modality, args)
        if reference is not None:
            reference.check(cfg)  # before reading any data: a config the reference cannot express
        log(f"{cfg.modality} recipe={cfg.recipe} objective={cfg.objective} batch={cfg.train.batch_size} "
            f"threads={args.threads} device={device} load={cpu_load:.2f}"
            + (f" against={reference.name}" if reference is not None else "")
            + (f" variant={args.variant}" if args.variant else ""))
        cfg, dataset = open_data(modality, cfg, args.data)
        batch = build_batch(modality, cfg, dataset)
        variant = None
        if args.variant:
            vcfg, vdataset = load_variant(modality, args, cfg, dataset)
            changes = config_changes(cfg, vcfg)
            log(f"variant changes: {changes}")
            variant = vcfg, vdataset, build_batch(modality, vcfg, vdataset), changes
        data_fields: dict[str, dict[str, Any]] = {}  # impl name -> its data-loading fields (measured once)
        for precision in precisions:
            impls = [mpt_impl(modality, cfg, batch, precision, device)]
            ref = None
            if reference is not None:
                ref = reference.build(cfg, batch, device)
                impls[0].fields.update({"against": args.against, "config": ref.mpt_config})
                impls.append(reference_impl(ref, cfg, precision, device))
                log(f"{precision}: mpt {impls[0].params} parameters, {ref.impl} ({ref.name}) {ref.params}")
            if variant is not None:
                vcfg, _, vbatch, changes = variant
                impls[0].fields.update({"against": VARIANT})
                impls.append(mpt_impl(modality, vcfg, vbatch, precision, device, VARIANT))
                impls[1].fields.update({"variant": list(args.variant), "variant_changes": changes})
                log(f"{precision}: mpt {impls[0].params} parameters, {VARIANT} {impls[1].params}")
            lines = measure(impls, cfg, precision, args, device, cpu_load)
            if args.data_batches and not data_fields:  # after the training timing, once per run
                data_fields["mpt"] = measure_data(modality, cfg, dataset, args.data_batches, str(args.data or
                                                                                                 "demo data"))
                if variant is not None:
                    vcfg, vdataset = variant[0], variant[1]
                    same = (vdataset is dataset and vcfg.train.batch_size == cfg.train.batch_size
                            and vcfg.train.num_workers == cfg.train.num_workers)
                    data_fields[VARIANT] = data_fields["mpt"] if same else measure_data(
                        modality, vcfg, vdataset, args.data_batches, str(args.data or "demo data"))
            for record in lines:
                if record["impl"] in data_fields:
                    with_data_share(record, data_fields[record["impl"]])
            for record in lines:
                share = record["tokenize_share"]
                log(f"{precision}: {record['impl']} {record['s_per_step']:.4f} s/step, "
                    f"{record['samples_per_s']:.1f} samples/s, MFU {record['mfu']:.1%}"
                    + (f", tokenize {share:.1%}" if share is not None else "")
                    + (f", data {record['data_s_per_batch']:.4f} s/batch ({record['data_share']:.1%} of a "
                       f"non-overlapped step, {record['data_workers']} workers)" if "data_share" in record else ""))
            if ref is not None:
                lines.append(comparison(lines, ref.impl, {"reference": ref.name, **ref.versions,
                                                          "differences": ref.differences}))
                log(f"{precision}: mpt / {ref.impl} samples/s = {lines[-1]['ratio']:.3f}")
            if variant is not None:
                lines.append(comparison(lines, VARIANT, {"variant": list(args.variant),
                                                         "variant_changes": variant[3]}, prefix="variant"))
                log(f"{precision}: mpt / {VARIANT} samples/s = {lines[-1]['ratio']:.3f} ({' '.join(args.variant)})")
            for record in lines:
                print(_json_line(record), file=out, flush=True)
            records.extend(lines)
    return records


if __name__ == "__main__":
    main()
