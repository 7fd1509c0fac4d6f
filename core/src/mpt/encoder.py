"""Transformer over token sequences (ViT, Dosovitskiy et al. 2021), built from timm's ``Block``.

One class serves as the encoder, the MAE decoder and the JEPA predictor: a stack of pre-norm
blocks (SDPA attention; timm's explicit attention on CPU for short sequences), an optional CLS
token, position embeddings added once at the input or before every block (Point-MAE), a final
LayerNorm.
"""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

# On CPUs, torch's fused (flash) attention kernel is slow for short sequences and small heads: on a
# PatchTST step (32 tokens, head dim 8) it took a third of the fp32 step for 4 % of the FLOPs, and its
# bf16 backward two thirds. Up to this many tokens the blocks use timm's explicit attention there
# (same result, bool padding masks included); longer sequences and GPUs keep the fused kernel.
CPU_EXPLICIT_ATTENTION_MAX_TOKENS = 256


def attention_mask(valid: Tensor | None, extra: int = 0) -> Tensor | None:
    """``[B, n]`` validity → SDPA boolean mask ``[B, 1, 1, extra + n]`` (True = attend).

    A row without any valid token (all padding, e.g. a masker kept only padding of a short series)
    attends to all its tokens, so its output stays finite; losses ignore such tokens anyway."""
    if valid is None:
        return None
    valid = valid | ~valid.any(dim=1, keepdim=True)
    if extra:
        valid = torch.cat([valid.new_ones(valid.shape[0], extra), valid], dim=1)
    return valid[:, None, None, :]


class Transformer(nn.Module):
    """``depth`` timm blocks of width ``dim``; input ``[B, n, dim]`` → output ``[B, n(+1), dim]``.

    Args:
        cls_token: prepend a learnable CLS token (position embedding zero, as in MAE).
        pos_every_block: add ``pos`` before every block instead of once at the input.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 cls_token: bool = False, pos_every_block: bool = False) -> None:
        super().__init__()
        if dim % heads:
            from mpt.errors import ConfigError

            raise ConfigError("model.heads", f"width {dim} is not divisible by {heads} heads")
        self.dim = dim
        self.pos_every_block = pos_every_block
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=r, norm_layer=nn.LayerNorm)
            for r in rates
        )
        self.norm = nn.LayerNorm(dim)
        self.apply(_init_weights)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    @property
    def num_prefix(self) -> int:
        return 0 if self.cls_token is None else 1

    def forward(self, x: Tensor, pos: Tensor, valid: Tensor | None = None) -> Tensor:
        """``x``, ``pos`` ``[B, n, dim]``, ``valid`` ``[B, n]`` or None → ``[B, prefix + n, dim]``."""
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            pos = torch.cat([pos.new_zeros(pos.shape[0], 1, pos.shape[2]), pos], dim=1)
        mask = attention_mask(valid, self.num_prefix)
        fused = x.device.type != "cpu" or x.shape[1] > CPU_EXPLICIT_ATTENTION_MAX_TOKENS
        for block in self.blocks:
            block.attn.fused_attn = fused  # type: ignore[union-attr]  # timm's Attention flag
        if not self.pos_every_block:
            x = x + pos
        for block in self.blocks:
            x = block(x + pos if self.pos_every_block else x, attn_mask=mask)
        return self.norm(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
