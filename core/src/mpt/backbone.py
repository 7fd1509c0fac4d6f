"""Tokenizer + Transformer encoder: the part of a model that is pretrained and exported.

``Backbone.forward`` takes a raw batch of its modality (a ``Batch``, or a plain tensor; no masking)
and returns per-token features
and a pooled vector; this is what :func:`mpt.load_encoder` gives back downstream.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mpt.config import ModelConfig
from mpt.contract import Batch, Input, Modality, Tokenizer, TokenSet
from mpt.encoder import Transformer
from mpt.errors import DataError, PluginError


@dataclass
class EncoderOutput:
    """``tokens`` ``[B, N, D]`` (one feature per input token, CLS and registers excluded), ``pooled``
    ``[B, D]``; ``valid`` ``[B, N]`` (False = padding) or None; ``groups`` ``[B, N]`` token group ids
    or None; ``rows_per_sample`` as in the TokenSet (the ``N`` tokens of a sample are
    ``rows_per_sample`` channel-major runs)."""

    tokens: Tensor
    pooled: Tensor
    valid: Tensor | None = None
    rows_per_sample: int = 1
    groups: Tensor | None = None


class Backbone(nn.Module):
    """``tokenizer`` (normalise + patchify + embed + position) followed by a ``Transformer`` encoder."""

    def __init__(self, tokenizer: Tokenizer, encoder: Transformer) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.adapted: list[str] = []  # tensors load_encoder adapted to another input size

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @torch.no_grad()
    def tokens(self, batch: Batch | Input, augment: Callable[[Batch], Batch] | None = None) -> TokenSet:
        """A raw batch (a :class:`~mpt.contract.Batch`, or a plain tensor for single-input modalities)
        → checked for NaN/Inf, ``Tokenizer.normalize``, then ``augment`` (training only), then
        ``Tokenizer.tokenize``. The one input path of training, feature extraction and a loaded encoder."""
        batch = Batch.of(batch)
        check_finite(batch, allow_nan=self.tokenizer.missing_values)
        batch = self.tokenizer.normalize(batch)
        if augment is not None:
            batch = augment(batch)
        return self.tokenizer.tokenize(batch)

    def encode(self, tokens: TokenSet, index: Tensor | None = None) -> Tensor:
        """Encode the tokens at ``index`` ``[B, n]`` (all when None) → ``[B, prefix + n, D]``."""
        if index is not None:
            tokens = tokens.select(index)
        x = self.tokenizer.embed(tokens)
        pos = self.tokenizer.pos(tokens.coords.to(x.dtype))
        return self.encoder(x, pos, tokens.valid)

    def forward(self, batch: Batch | Input, augment: Callable[[Batch], Batch] | None = None) -> EncoderOutput:
        """Raw batch → :class:`EncoderOutput` (see :meth:`tokens`; no masking; ``augment`` only when
        fine-tuning).

        Rows a tokenizer folded into the batch (``TokenSet.rows_per_sample``) are rejoined: one
        sample's tokens are ``[rows_per_sample * N, D]``, channel-major.
        """
        tokens = self.tokens(batch, augment)
        x = self.encode(tokens)
        prefix = self.encoder.num_prefix
        r = tokens.rows_per_sample
        feats = x[:, prefix:].reshape(-1, r * tokens.num_tokens, x.shape[-1])
        valid = None if tokens.valid is None else tokens.valid.reshape(feats.shape[:2])
        groups = None if tokens.groups is None else tokens.groups.reshape(feats.shape[:2])
        if self.encoder.cls_token is not None:
            pooled = x[:, 0].reshape(-1, r, x.shape[-1]).mean(dim=1)
        elif valid is None:
            pooled = feats.mean(dim=1)
        else:
            w = valid.to(feats.dtype).unsqueeze(-1)
            pooled = (feats * w).sum(1) / w.sum(1).clamp_min(1)
        return EncoderOutput(tokens=feats, pooled=pooled, valid=valid, rows_per_sample=r, groups=groups)


def check_finite(batch: Batch, allow_nan: bool = False) -> None:
    """A DataError for NaN/Inf in a raw batch's inputs (NaN passes when it marks missing values)."""
    inputs = batch.input.items() if isinstance(batch.input, dict) else [("input", batch.input)]
    for name, x in inputs:
        if not x.is_floating_point():
            continue
        bad = (torch.isinf(x) if allow_nan else ~torch.isfinite(x)).sum().item()
        if bad:
            what = "±Inf" if allow_nan else "NaN/Inf"
            where = f"input batch ({', '.join(batch.sources[:3])})" if batch.sources else "input batch"
            raise DataError(where, f"{bad} {what} values of {x.numel()} in '{name}'; clean the input first")


CONTRACT_METHODS = ("tokenize", "embed", "normalize", "card", "adapt_weight", "make_pos")


def check_tokenizer(tokenizer: Tokenizer, modality: str) -> None:
    """A PluginError for a tokenizer that breaks the contract where it can be seen without data: an
    attribute (parameter, buffer, submodule, value) hiding a contract method, or no ``patch_shape``."""
    for name in CONTRACT_METHODS:
        hidden = next((kind for kind, table in (("parameter", tokenizer._parameters), ("buffer", tokenizer._buffers),
                                                ("submodule", tokenizer._modules), ("attribute", vars(tokenizer)))
                       if name in table), None)
        if hidden:
            raise PluginError(f"{modality}: {type(tokenizer).__name__} has a {hidden} named '{name}' that hides the "
                              f"contract method Tokenizer.{name}; rename the {hidden}")
    shape = getattr(tokenizer, "patch_shape", None)
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise PluginError(f"{modality}: {type(tokenizer).__name__} must set patch_shape, the per-token patch shape "
                          f"as a tuple of positive ints, in __init__ (PLUGIN_API 2), got {shape!r}")


def build_backbone(modality: Modality, tokenizer_config: object, model: ModelConfig) -> Backbone:
    """The backbone a config describes (random weights)."""
    try:
        tokenizer = modality.tokenizer(tokenizer_config, model.dim)
    except KeyError as exc:  # torch: register_buffer/parameter("card") → KeyError "attribute 'card' already exists"
        clash = re.fullmatch(r"attribute '(\w+)' already exists", str(exc.args[0]) if exc.args else "")
        if clash is None or clash.group(1) not in CONTRACT_METHODS:
            raise
        name = clash.group(1)
        raise PluginError(f"{modality.name}: its tokenizer registers a buffer or parameter named '{name}', which would "
                          f"hide the contract method Tokenizer.{name}; rename it") from None
    check_tokenizer(tokenizer, modality.name)
    encoder = Transformer(model.dim, model.depth, model.heads, model.mlp_ratio, model.drop_path,
                          cls_token=model.cls_token, pos_every_block=model.pos_every_block,
                          norm_eps=model.norm_eps, layer_scale=model.layer_scale, num_registers=model.num_registers)
    return Backbone(tokenizer, encoder)
