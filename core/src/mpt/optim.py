"""AdamW with MAE's parameter groups and a per-step linear-warm-up + half-cycle cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from mpt.config import OptimConfig

NO_DECAY_NAMES = ("cls_token", "reg_token", "mask_token", "pos_embed")
NO_DECAY_SUFFIXES = (".pos.table", ".pos.group.table")  # learned position and group tables (mpt.pos_embed)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight decay on weight matrices; none on norms, biases, learned position
    tables and cls/mask tokens (MAE / timm ``param_groups_weight_decay``)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES or name.endswith(NO_DECAY_SUFFIXES)
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def create_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)


def lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total``: linear from 0 over
    ``warmup`` steps, then half-cycle cosine from ``lr`` down to ``min_lr`` (MAE ``lr_sched``)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def ema_momentum(step: int, total: int, start: float, end: float) -> float:
    """JEPA teacher momentum, linear from ``start`` to ``end`` over the run (I-JEPA)."""
    return start + (end - start) * min(1.0, step / max(1, total))
