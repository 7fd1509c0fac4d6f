"""Pretraining objectives over a :class:`~mpt.backbone.Backbone`: MAE and JEPA.

- MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022): encode only the
  visible tokens, decode them with mask tokens at the hidden positions, regress a target on the
  hidden tokens only.
- JEPA (Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive
  Architecture", CVPR 2023): encode the context tokens, predict the layer-normed features an EMA
  teacher gives the target tokens, smooth-L1 loss.

The MAE decoder and the JEPA predictor are the same component, :class:`MaskedPredictor`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from mpt.attention import combine, padding_mask, window_mask
from mpt.backbone import Backbone
from mpt.config import JEPAConfig, MAEConfig, target_choices
from mpt.contract import Batch, Figure, Mask, Modality, Target, TokenSet, gather_tokens, weighted_mean
from mpt.encoder import Transformer
from mpt.errors import ConfigError
from mpt.optim import ema_momentum
from mpt.registry import OBJECTIVES, TARGETS, Registered


@dataclass
class ObjectiveOutput:
    """``loss`` (scalar), ``pred`` ``[B, Np, *]`` (decoder/predictor output), scalar ``logs``."""

    loss: Tensor
    pred: Tensor
    logs: dict[str, float] = field(default_factory=dict)


class MaskedPredictor(nn.Module):
    """Narrow transformer that fills in hidden tokens from the encoded visible ones.

    ``latent`` ``[B, prefix + Nk, in_dim]`` (encoder output for the kept tokens, its CLS and
    register tokens first) plus a learned mask token at each of the ``Np`` hidden positions, each
    with a position embedding of its coordinates → ``[B, Np, out_dim]``.
    """

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, out_dim: int, pos: nn.Module,
                 pos_every_block: bool = False, *, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = pos
        self.blocks = Transformer(dim, depth, heads, pos_every_block=pos_every_block, norm_eps=norm_eps)
        self.head = nn.Linear(dim, out_dim)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: Tensor, coords_keep: Tensor, coords_pred: Tensor, *, valid: Tensor | None = None,
                attn_mask: Tensor | None = None, block_masks: list[Tensor | None] | None = None) -> Tensor:
        """``coords_keep`` ``[B, Nk, C]``, ``coords_pred`` ``[B, Np, C]`` → ``[B, Np, out_dim]``.

        ``valid`` ``[B, Nk + Np]``: validity of the kept then the predicted tokens (False =
        padding, never attended), or None. ``attn_mask`` / ``block_masks`` as in
        :meth:`Transformer.forward`, over the whole decoder sequence ``[prefix, kept, predicted]``
        (``prefix`` = the encoder's ``num_prefix``), e.g. ``window_mask(torch.cat([coords_keep,
        coords_pred], 1), window, shift, prefix)`` for AudioMAE's (shifted) window decoder."""
        x = self.embed(latent)
        b, n_pred = coords_pred.shape[:2]
        x = torch.cat([x, self.mask_token.to(x.dtype).expand(b, n_pred, -1)], dim=1)
        pos = self.pos(torch.cat([coords_keep, coords_pred], dim=1).to(x.dtype))
        prefix = x.shape[1] - pos.shape[1]
        pos = torch.cat([pos.new_zeros(b, prefix, pos.shape[2]), pos], dim=1)
        mask = combine(padding_mask(valid, prefix), attn_mask)
        return self.head(self.blocks(x, pos, attn_mask=mask, block_masks=block_masks)[:, -n_pred:])


class Objective(nn.Module):
    """The objective protocol: what the trainer, the encoder export and the figures use.

    ``forward(tokens, masks)`` → :class:`ObjectiveOutput` (loss + logs) for one step's masks;
    :meth:`step_end` runs after every optimiser step (JEPA's EMA); :meth:`export` is the backbone
    published as ``encoder/``; :meth:`card` adds objective-specific entries to the encoder card;
    :meth:`figure` describes a batch for ``Modality.visualize``. Objectives are registered by name
    (``mpt.registry.OBJECTIVES``; entry points ``mpt.objectives``) with a config dataclass that has
    a ``mask`` field (the masker :class:`~mpt.config.Choice`).
    """

    backbone: Backbone

    def forward(self, tokens: TokenSet, masks: list[Mask]) -> ObjectiveOutput:
        raise NotImplementedError

    def step_end(self, step: int, total: int) -> None:
        """Called after optimiser step ``step`` (1-based) of ``total``."""

    def export(self) -> Backbone:
        """The backbone to publish as the pretrained encoder."""
        return self.backbone

    def card(self) -> dict[str, Any]:
        """Objective-specific entries of the encoder card (e.g. which encoder was exported)."""
        return {}

    def figure(self, batch: Batch, tokens: TokenSet, masks: list[Mask], out: ObjectiveOutput) -> Figure:
        return Figure(batch=batch, tokens=tokens, mask=masks[0], reconstruction=None,
                      tokenizer=self.backbone.tokenizer)


def one_mask(masks: list[Mask], objective: str) -> Mask:
    if len(masks) != 1:
        raise ConfigError(f"{objective}.mask.name", f"{objective} takes one mask per step, the masker gave "
                                                    f"{len(masks)}; use a single-mask masker")
    return masks[0]


class MAE(Objective):
    """Masked autoencoder: ``forward(tokens, [mask])`` → loss of ``target`` on the hidden tokens
    (``mask.targets()``: all hidden tokens, or those the decoder keeps under VideoMAE V2's decoder
    masking), weighted per token by validity and ``TokenSet.weight``.

    With ``cfg.masked_tokens == "zero"`` the hidden tokens stay in the encoder input with zeroed
    contents and a linear head predicts them from their encoder outputs: PatchTST's self-supervised
    setting (Nie et al. 2023; masking then saves no compute) and SimMIM's (Xie et al. 2022).
    """

    def __init__(self, backbone: Backbone, target: Target, cfg: MAEConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.target = target
        self.masked_tokens = cfg.masked_tokens
        self.window = None if cfg.decoder_window is None else tuple(cfg.decoder_window)
        self.decoder_depth = cfg.decoder_depth
        if self.window is not None and (len(self.window) != type(backbone.tokenizer).grid_axes
                                        or min(self.window) < 1):
            raise ConfigError("mae.decoder_window", f"one positive window size per token-grid axis "
                                                    f"({type(backbone.tokenizer).grid_axes}), got {list(self.window)}")
        out_dim = target.pred_dim(backbone.tokenizer.patch_shape)
        self.decoder: nn.Module
        if self.masked_tokens == "zero":
            self.decoder = nn.Linear(backbone.dim, out_dim)
        else:
            self.decoder = MaskedPredictor(
                backbone.dim, cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads, out_dim,
                backbone.tokenizer.make_pos(cfg.decoder_dim), pos_every_block=backbone.encoder.pos_every_block,
                norm_eps=backbone.encoder.norm_eps)

    def forward(self, tokens: TokenSet, masks: list[Mask]) -> ObjectiveOutput:
        mask = one_mask(masks, "mae")
        targets = mask.targets()
        if self.masked_tokens == "zero":
            hidden = torch.zeros(tokens.patches.shape[:2], dtype=torch.bool, device=mask.pred.device)
            hidden.scatter_(1, mask.pred, True)
            shape = (*hidden.shape, *([1] * (tokens.patches.ndim - 2)))
            zeroed = dataclasses.replace(tokens, patches=tokens.patches.masked_fill(hidden.view(shape), 0.0))
            latent = self.backbone.encode(zeroed)[:, self.backbone.encoder.num_prefix:]
            pred = self.decoder(gather_tokens(latent, targets))
        else:
            kept, queried = tokens.select(mask.keep), tokens.select(targets)
            latent = self.backbone.encode(kept)
            pred = self.decoder(latent, kept.coords, queried.coords, valid=joint_valid(kept, queried),
                                block_masks=self.window_masks(kept, queried))
        loss = self.target.loss(pred, gather_tokens(tokens.patches, targets), tokens.loss_weight(targets))
        return ObjectiveOutput(loss=loss, pred=pred)

    def window_masks(self, kept: TokenSet, queried: TokenSet) -> list[Tensor | None] | None:
        """AudioMAE's decoder attention (``mae.decoder_window``): local windows on the token grid,
        shifted by half a window in every other block (Swin); None = global attention."""
        if self.window is None:
            return None
        coords = torch.cat([kept.coords, queried.coords], dim=1).round().long()
        prefix = self.backbone.encoder.num_prefix
        shifted = [w // 2 for w in self.window]
        return [window_mask(coords, self.window, shifted if i % 2 else None, prefix)
                for i in range(self.decoder_depth)]

    def figure(self, batch: Batch, tokens: TokenSet, masks: list[Mask], out: ObjectiveOutput) -> Figure:
        mask = masks[0]
        recon = self.target.reconstruct(out.pred.detach(), gather_tokens(tokens.patches, mask.targets()))
        return Figure(batch=batch, tokens=tokens, mask=mask, reconstruction=recon, tokenizer=self.backbone.tokenizer)


def joint_valid(kept: TokenSet, queried: TokenSet) -> Tensor | None:
    """Validity of the decoder/predictor sequence ``[kept, queried]`` ``[B, Nk + Nq]`` (None: all valid)."""
    if kept.valid is None and queried.valid is None:
        return None
    return torch.cat([kept.valid_or_ones(), queried.valid_or_ones()], dim=1)


JEPA_LOSSES = {"smooth_l1": F.smooth_l1_loss, "l2": F.mse_loss, "l1": F.l1_loss}


class JEPA(Objective):
    """Context encoder + EMA teacher + predictor (I-JEPA; V-JEPA with several masks per step: the
    loss is the mean over the masks, each predicting its targets from its own context).

    Targets are the teacher's layer-normed features; the loss is smooth-L1 (I-JEPA), L2, or L1
    (V-JEPA), weighted per token by validity and ``TokenSet.weight``. Exports the teacher (as I-JEPA
    and V-JEPA evaluate) unless ``cfg.export == "context"``.
    """

    def __init__(self, backbone: Backbone, cfg: JEPAConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.teacher = copy.deepcopy(backbone).requires_grad_(False)
        self.predictor = MaskedPredictor(
            backbone.dim, cfg.predictor_dim, cfg.predictor_depth, cfg.predictor_heads, backbone.dim,
            backbone.tokenizer.make_pos(cfg.predictor_dim), pos_every_block=backbone.encoder.pos_every_block,
            norm_eps=backbone.encoder.norm_eps)
        self.loss_kind, self.ema, self.exported = cfg.loss, cfg.ema, cfg.export

    def forward(self, tokens: TokenSet, masks: list[Mask]) -> ObjectiveOutput:
        with torch.no_grad():
            full = self.teacher.encode(tokens)[:, self.teacher.encoder.num_prefix:]
            normed = F.layer_norm(full.float(), full.shape[-1:])
        losses, preds, stds = [], [], []
        for mask in masks:
            kept, queried = tokens.select(mask.keep), tokens.select(mask.pred)
            latent = self.backbone.encode(kept)
            pred = self.predictor(latent, kept.coords, queried.coords, valid=joint_valid(kept, queried))
            target = gather_tokens(normed, mask.pred)
            per_token = JEPA_LOSSES[self.loss_kind](pred.float(), target, reduction="none").mean(-1)  # [B, Np]
            losses.append(weighted_mean(per_token, tokens.loss_weight(mask.pred)))
            preds.append(pred)
            stds.append(float(target.std(0).mean()))
        loss = torch.stack(losses).mean()
        return ObjectiveOutput(loss=loss, pred=preds[0], logs={"target_std": sum(stds) / len(stds)})

    def train(self, mode: bool = True) -> JEPA:
        """The teacher follows ``mode`` (as in I-JEPA; batch norms in a tokenizer then use batch
        statistics) except its stochastic layers: no drop-path or dropout in the targets."""
        super().train(mode)
        for m in self.teacher.modules():
            if isinstance(m, (DropPath, nn.Dropout)):
                m.eval()
        return self

    def step_end(self, step: int, total: int) -> None:
        self.update_teacher(ema_momentum(step, total, *self.ema))

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA step: teacher ← m·teacher + (1−m)·student; buffers (norm statistics) are copied."""
        for t, s in zip(self.teacher.parameters(), self.backbone.parameters(), strict=True):
            t.lerp_(s.detach(), 1.0 - momentum)
        for tb, sb in zip(self.teacher.buffers(), self.backbone.buffers(), strict=True):
            tb.copy_(sb)

    def export(self) -> Backbone:
        return self.teacher if self.exported == "target" else self.backbone

    def card(self) -> dict[str, Any]:
        which = "target (EMA teacher)" if self.exported == "target" else "context (student)"
        return {"exported_encoder": which}


def build_mae(cfg: MAEConfig, backbone: Backbone, modality: Modality) -> MAE:
    item = TARGETS.get(cfg.target.name, "mae.target.name", target_choices(modality))
    return MAE(backbone, item.build(cfg.target.params), cfg)


def build_jepa(cfg: JEPAConfig, backbone: Backbone, modality: Modality) -> JEPA:
    return JEPA(backbone, cfg)


OBJECTIVES.register(Registered("mae", build_mae, MAEConfig, "masked autoencoder (He et al. 2022)"))
OBJECTIVES.register(Registered("jepa", build_jepa, JEPAConfig, "joint-embedding predictive architecture "
                                                               "(Assran et al. 2023; V-JEPA, Bardes et al. 2024)"))
