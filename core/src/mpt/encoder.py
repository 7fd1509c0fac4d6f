"""Transformer over token sequences (ViT, Dosovitskiy et al. 2021), built from timm's ``Block``.

One class serves as the encoder, the MAE decoder and the JEPA predictor: a stack of pre-norm
blocks (SDPA attention, or timm's explicit attention on CPU for small heads), optional prefix
tokens (a CLS token, register tokens), position embeddings added once at the input or before every
block (Point-MAE), a final LayerNorm. Attention masks come from :mod:`mpt.attention`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from mpt.attention import combine, padding_mask

# On CPUs torch's fused SDPA kernel is slow for small heads: on a PatchTST step (32 tokens, head
# dim 8) it took a third of the fp32 step for 4 % of the FLOPs, and timm's explicit attention
# (q @ kᵀ, softmax, @ v) made attention 2-5x faster (fp32 0.36 → 0.29 s/step, bf16 0.58 → 0.20).
# With head dim 64 (ViT-B/16 MAE) explicit attention was slower: step-time ratio to HF 0.95
# explicit vs 1.01 fused in fp32 — but in bf16 the CPU flash kernel's backward is the slow part
# (PERF-ANCHORS: 1.3-4.6x slower than fp32 for <= 197 tokens) and explicit attention won there too:
# ViT-B/16 MAE bf16 ratio to HF 1.18 explicit vs 1.01 fused (same session, 2026-12-02). So on CPU the
# explicit path serves heads narrower than this and every reduced-precision (bf16/fp16) run; fp32
# with wide heads and GPUs use the fused kernel. Both paths take the same bool masks (timm turns
# them into -inf biases).
CPU_EXPLICIT_ATTENTION_BELOW_HEAD_DIM = 32


class Transformer(nn.Module):
    """``depth`` blocks of width ``dim``; input ``[B, n, dim]`` → output ``[B, prefix + n, dim]``.

    Args:
        cls_token: prepend a learnable CLS token (position embedding zero, as in MAE).
        pos_every_block: add ``pos`` before every block instead of once at the input.
        norm_eps: eps of every LayerNorm (the blocks' and the final one); MAE and VideoMAE use 1e-6.
        layer_scale: initial value of LayerScale on both residual branches of every block (CaiT,
            Touvron et al. ICCV 2021; timm's ``init_values``); None = no LayerScale.
        num_registers: learnable register tokens placed after the CLS token (Darcet et al.,
            "Vision Transformers Need Registers", ICLR 2024): position embedding zero, dropped
            from the features like the CLS token.
        block_fn: block factory, called with timm ``Block``'s keyword arguments ``dim``,
            ``num_heads``, ``mlp_ratio``, ``qkv_bias``, ``drop_path``, ``norm_layer`` and
            ``init_values``; its ``forward(x, attn_mask=...)`` takes an SDPA bool mask.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 cls_token: bool = False, pos_every_block: bool = False, *, norm_eps: float = 1e-6,
                 layer_scale: float | None = None, num_registers: int = 0,
                 block_fn: Callable[..., nn.Module] = Block) -> None:
        super().__init__()
        if dim % heads:
            from mpt.errors import ConfigError

            raise ConfigError("model.heads", f"width {dim} is not divisible by {heads} heads")
        self.dim = dim
        self.head_dim = dim // heads
        self.pos_every_block = pos_every_block
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, num_registers, dim)) if num_registers else None
        self.norm_eps = norm_eps
        norm = functools.partial(nn.LayerNorm, eps=norm_eps)
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            block_fn(dim=dim, num_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=r, norm_layer=norm,
                     init_values=layer_scale)
            for r in rates
        )
        self.norm = norm(dim)
        self.apply(_init_weights)
        for token in (self.cls_token, self.reg_token):
            if token is not None:
                nn.init.normal_(token, std=0.02)
        self.configure_attention("cpu")

    @property
    def num_prefix(self) -> int:
        """Tokens before the ``n`` input tokens in the output: CLS (if any), then the registers."""
        return sum(t.shape[1] for t in (self.cls_token, self.reg_token) if t is not None)

    def configure_attention(self, device: torch.device | str, precision: str = "no") -> None:
        """Pick fused SDPA or timm's explicit attention for ``device`` and the run's ``precision``
        ("no", "bf16", "fp16"; call after moving the model).

        Explicit on CPU when the head dim is below :data:`CPU_EXPLICIT_ATTENTION_BELOW_HEAD_DIM` or the
        precision is reduced, fused otherwise and on every GPU; blocks without timm's
        ``attn.fused_attn`` flag keep their own choice."""
        cpu = torch.device(device).type == "cpu"
        fused = not cpu or (self.head_dim >= CPU_EXPLICIT_ATTENTION_BELOW_HEAD_DIM and precision == "no")
        for block in self.blocks:
            attn = getattr(block, "attn", None)
            if hasattr(attn, "fused_attn"):
                attn.fused_attn = fused  # type: ignore[union-attr]  # timm's Attention flag

    def forward(self, x: Tensor, pos: Tensor, valid: Tensor | None = None, attn_mask: Tensor | None = None,
                block_masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """``x``, ``pos`` ``[B, n, dim]`` → ``[B, prefix + n, dim]``.

        ``valid`` ``[B, n]`` (False = padding: no token attends to it) or None. ``attn_mask`` (every
        block) and ``block_masks`` (one per block, None entries allowed) are SDPA bool masks over the
        whole sequence, prefix tokens included: broadcastable to ``[B, 1, prefix + n, prefix + n]``,
        e.g. ``mpt.attention.window_mask(coords, window, prefix=self.num_prefix)``. A block attends
        where the padding, ``attn_mask`` and its own block mask all allow (:func:`mpt.attention.combine`).
        """
        x, pos = self._prepend_prefix(x, pos)
        length = x.shape[1]
        masks = [attn_mask] if block_masks is None else [attn_mask, *block_masks]
        for m in masks:
            if m is not None and (m.shape[-1] != length or m.shape[-2] not in (1, length)):
                raise ValueError(f"attention mask {tuple(m.shape)} does not cover the prefix + n = {length} "
                                 "tokens (build it with prefix=num_prefix)")
        if block_masks is not None and len(block_masks) != len(self.blocks):
            raise ValueError(f"{len(block_masks)} block masks for {len(self.blocks)} blocks")
        shared = combine(padding_mask(valid, self.num_prefix), attn_mask)
        per_block = [shared] * len(self.blocks) if block_masks is None else [combine(shared, m) for m in block_masks]
        if not self.pos_every_block:
            x = x + pos
        for block, mask in zip(self.blocks, per_block, strict=True):
            x = block(x + pos if self.pos_every_block else x, attn_mask=mask)
        return self.norm(x)

    def _prepend_prefix(self, x: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Prepend CLS and register tokens to ``x`` and zeros to ``pos``: ``[B, prefix + n, dim]``."""
        tokens = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if not tokens:
            return x, pos
        prefix = torch.cat(tokens, dim=1)
        return (torch.cat([prefix, x], dim=1),
                torch.cat([pos.new_zeros(pos.shape[0], prefix.shape[1], pos.shape[2]), pos], dim=1))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
