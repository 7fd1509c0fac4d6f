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

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from mpt.backbone import Backbone
from mpt.config import JEPAConfig, MAEConfig
from mpt.contract import Figure, Mask, Target, TokenSet, gather_tokens
from mpt.encoder import Transformer


@dataclass
class ObjectiveOutput:
    """``loss`` (scalar), ``pred`` ``[B, Np, *]`` (decoder/predictor output), scalar ``logs``."""

    loss: Tensor
    pred: Tensor
    logs: dict[str, float] = field(default_factory=dict)


class MaskedPredictor(nn.Module):
    """Narrow transformer that fills in hidden tokens from the encoded visible ones.

    ``latent`` ``[B, prefix + Nk, in_dim]`` (encoder output for the kept tokens, CLS first) plus a
    learned mask token at each of the ``Np`` hidden positions, each with a position embedding of
    its coordinates → ``[B, Np, out_dim]``.
    """

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, out_dim: int, pos: nn.Module,
                 pos_every_block: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = pos
        self.blocks = Transformer(dim, depth, heads, pos_every_block=pos_every_block)
        self.head = nn.Linear(dim, out_dim)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: Tensor, coords_keep: Tensor, coords_pred: Tensor) -> Tensor:
        x = self.embed(latent)
        b, n_pred = coords_pred.shape[:2]
        x = torch.cat([x, self.mask_token.to(x.dtype).expand(b, n_pred, -1)], dim=1)
        pos = self.pos(torch.cat([coords_keep, coords_pred], dim=1).to(x.dtype))
        prefix = x.shape[1] - pos.shape[1]
        pos = torch.cat([pos.new_zeros(b, prefix, pos.shape[2]), pos], dim=1)
        return self.head(self.blocks(x, pos)[:, -n_pred:])


class MAE(nn.Module):
    """Masked autoencoder: ``forward(tokens, mask)`` → loss of ``target`` on the hidden tokens.

    With ``cfg.masked_tokens == "zero"`` the hidden tokens stay in the encoder input with zeroed
    contents and a linear head predicts them from their encoder outputs: PatchTST's self-supervised
    setting (Nie et al. 2023; masking then saves no compute) and SimMIM's (Xie et al. 2022).
    """

    def __init__(self, backbone: Backbone, target: Target, patch_shape: tuple[int, ...], cfg: MAEConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.target = target
        self.masked_tokens = cfg.masked_tokens
        out_dim = target.pred_dim(patch_shape)
        self.decoder: nn.Module
        if self.masked_tokens == "zero":
            self.decoder = nn.Linear(backbone.dim, out_dim)
        else:
            self.decoder = MaskedPredictor(
                backbone.dim, cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads, out_dim,
                backbone.tokenizer.make_pos(cfg.decoder_dim), pos_every_block=backbone.encoder.pos_every_block)

    def forward(self, tokens: TokenSet, mask: Mask) -> ObjectiveOutput:
        if self.masked_tokens == "zero":
            hidden = torch.zeros(tokens.patches.shape[:2], dtype=torch.bool, device=mask.pred.device)
            hidden.scatter_(1, mask.pred, True)
            shape = (*hidden.shape, *([1] * (tokens.patches.ndim - 2)))
            zeroed = dataclasses.replace(tokens, patches=tokens.patches.masked_fill(hidden.view(shape), 0.0))
            latent = self.backbone.encode(zeroed)[:, self.backbone.encoder.num_prefix:]
            pred = self.decoder(gather_tokens(latent, mask.pred))
        else:
            latent = self.backbone.encode(tokens, mask.keep)
            coords = tokens.coords
            pred = self.decoder(latent, gather_tokens(coords, mask.keep), gather_tokens(coords, mask.pred))
        loss = self.target.loss(pred, gather_tokens(tokens.patches, mask.pred))
        return ObjectiveOutput(loss=loss, pred=pred)

    def export(self) -> Backbone:
        """The backbone to publish as the pretrained encoder."""
        return self.backbone

    def figure(self, batch: Tensor, tokens: TokenSet, mask: Mask, out: ObjectiveOutput) -> Figure:
        recon = self.target.reconstruct(out.pred.detach(), gather_tokens(tokens.patches, mask.pred))
        return Figure(batch=batch, tokens=tokens, mask=mask, reconstruction=recon, tokenizer=self.backbone.tokenizer)


class JEPA(nn.Module):
    """Context encoder + EMA teacher + predictor; exports the teacher (as I-JEPA evaluates it)."""

    def __init__(self, backbone: Backbone, cfg: JEPAConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.teacher = copy.deepcopy(backbone).requires_grad_(False)
        self.predictor = MaskedPredictor(
            backbone.dim, cfg.predictor_dim, cfg.predictor_depth, cfg.predictor_heads, backbone.dim,
            backbone.tokenizer.make_pos(cfg.predictor_dim),
            pos_every_block=backbone.encoder.pos_every_block)
        self.loss_kind = cfg.loss

    def forward(self, tokens: TokenSet, mask: Mask) -> ObjectiveOutput:
        with torch.no_grad():
            full = self.teacher.encode(tokens)[:, self.teacher.encoder.num_prefix:]
            target = gather_tokens(F.layer_norm(full.float(), full.shape[-1:]), mask.pred)
        latent = self.backbone.encode(tokens, mask.keep)
        coords = tokens.coords
        pred = self.predictor(latent, gather_tokens(coords, mask.keep), gather_tokens(coords, mask.pred))
        fn = F.smooth_l1_loss if self.loss_kind == "smooth_l1" else F.mse_loss
        loss = fn(pred.float(), target, reduction="none").mean(-1)  # [B, Np]
        if tokens.valid is None:
            loss = loss.mean()
        else:  # padding tokens are no targets
            w = torch.gather(tokens.valid, 1, mask.pred).to(loss.dtype)
            loss = (loss * w).sum() / w.sum().clamp_min(1)
        return ObjectiveOutput(loss=loss, pred=pred, logs={"target_std": float(target.std(0).mean())})

    def train(self, mode: bool = True) -> JEPA:
        """The teacher follows ``mode`` (as in I-JEPA; batch norms in a tokenizer then use batch
        statistics) except its stochastic layers: no drop-path or dropout in the targets."""
        super().train(mode)
        for m in self.teacher.modules():
            if isinstance(m, (DropPath, nn.Dropout)):
                m.eval()
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA step: teacher ← m·teacher + (1−m)·student; buffers (norm statistics) are copied."""
        for t, s in zip(self.teacher.parameters(), self.backbone.parameters(), strict=True):
            t.lerp_(s.detach(), 1.0 - momentum)
        for tb, sb in zip(self.teacher.buffers(), self.backbone.buffers(), strict=True):
            tb.copy_(sb)

    def export(self) -> Backbone:
        return self.teacher

    def figure(self, batch: Tensor, tokens: TokenSet, mask: Mask, out: ObjectiveOutput) -> Figure:
        return Figure(batch=batch, tokens=tokens, mask=mask, reconstruction=None, tokenizer=self.backbone.tokenizer)


Objective = MAE | JEPA
