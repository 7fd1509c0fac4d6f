"""Tokenizer + Transformer encoder: the part of a model that is pretrained and exported.

``Backbone.forward`` takes a raw batch of its modality (no masking) and returns per-token features
and a pooled vector; this is what :func:`mpt.load_encoder` gives back downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mpt.config import ModelConfig
from mpt.contract import Modality, Tokenizer, TokenSet
from mpt.encoder import Transformer
from mpt.errors import DataError


@dataclass
class EncoderOutput:
    """``tokens`` ``[B, N, D]`` (one feature per input token, CLS excluded), ``pooled`` ``[B, D]``;
    ``valid`` ``[B, N]`` (False = padding) or None; ``rows_per_sample`` as in the TokenSet (the
    ``N`` tokens of a sample are ``rows_per_sample`` channel-major runs)."""

    tokens: Tensor
    pooled: Tensor
    valid: Tensor | None = None
    rows_per_sample: int = 1


class Backbone(nn.Module):
    """``tokenizer`` (patchify + embed + position) followed by a ``Transformer`` encoder."""

    def __init__(self, tokenizer: Tokenizer, encoder: Transformer) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.adapted: list[str] = []  # tensors load_encoder adapted to another input size

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, tokens: TokenSet, index: Tensor | None = None) -> Tensor:
        """Encode the tokens at ``index`` ``[B, n]`` (all when None) → ``[B, prefix + n, D]``."""
        if index is not None:
            tokens = tokens.select(index)
        x = self.tokenizer.embed(tokens.patches)
        pos = self.tokenizer.pos(tokens.coords.to(x.dtype))
        return self.encoder(x, pos, tokens.valid)

    def forward(self, batch: Tensor) -> EncoderOutput:
        """Raw batch (as the modality's collate returns it) → :class:`EncoderOutput`.

        The batch is normalised per sample as in training (``Tokenizer.normalize``) and tokenized.
        Rows a tokenizer folded into the batch (``TokenSet.rows_per_sample``) are rejoined: one
        sample's tokens are ``[rows_per_sample * N, D]``, channel-major.
        """
        check_finite(batch, allow_nan=self.tokenizer.missing_values)
        with torch.no_grad():
            tokens = self.tokenizer.tokenize(self.tokenizer.normalize(batch))
        x = self.encode(tokens)
        prefix = self.encoder.num_prefix
        r = tokens.rows_per_sample
        feats = x[:, prefix:].reshape(-1, r * tokens.num_tokens, x.shape[-1])
        valid = None if tokens.valid is None else tokens.valid.reshape(feats.shape[:2])
        if prefix:
            pooled = x[:, 0].reshape(-1, r, x.shape[-1]).mean(dim=1)
        elif valid is None:
            pooled = feats.mean(dim=1)
        else:
            w = valid.to(feats.dtype).unsqueeze(-1)
            pooled = (feats * w).sum(1) / w.sum(1).clamp_min(1)
        return EncoderOutput(tokens=feats, pooled=pooled, valid=valid, rows_per_sample=r)


def check_finite(batch: Tensor, allow_nan: bool = False) -> None:
    """A DataError for NaN/Inf in a raw batch (NaN passes when it marks missing values)."""
    if not batch.is_floating_point():
        return
    bad = (torch.isinf(batch) if allow_nan else ~torch.isfinite(batch)).sum().item()
    if bad:
        what = "±Inf" if allow_nan else "NaN/Inf"
        raise DataError("input batch", f"{bad} {what} values of {batch.numel()}; clean the input first")


def build_backbone(modality: Modality, tokenizer_config: object, model: ModelConfig) -> Backbone:
    """The backbone a config describes (random weights)."""
    tokenizer = modality.tokenizer(tokenizer_config, model.dim)
    encoder = Transformer(model.dim, model.depth, model.heads, model.mlp_ratio, model.drop_path,
                          cls_token=model.cls_token, pos_every_block=model.pos_every_block)
    return Backbone(tokenizer, encoder)
