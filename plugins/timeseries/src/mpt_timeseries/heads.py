"""Downstream heads on a (pretrained) time-series encoder: forecasting and classification.

``encoder`` is a :class:`~mpt.backbone.Backbone` with the PatchTST tokenizer, e.g. from
:func:`mpt.load_encoder`. Following PatchTST (Nie et al., "A Time Series is Worth 64 Words", ICLR 2023),
``freeze_encoder=True`` is linear probing (encoder frozen, in eval mode, run without gradients) and
``False`` is end-to-end fine-tuning::

    encoder = mpt.load_encoder("runs/demo/encoder")
    model = Forecaster(encoder, context=100, horizon=24)
    loss = masked_mse(model(x), y)  # x [B, C, 100], y [B, C, 24] in the data's units, NaN = missing
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mpt.backbone import Backbone, EncoderOutput
from mpt.contract import Batch
from mpt_timeseries.ops import num_patches
from mpt_timeseries.tokenizer import SeriesTokenizer

__all__ = ["Classifier", "Forecaster", "masked_mse"]


class _Head(nn.Module):
    """An encoder plus a head; ``freeze_encoder`` keeps the encoder frozen and in eval mode."""

    def __init__(self, encoder: Backbone, freeze_encoder: bool) -> None:
        super().__init__()
        if not isinstance(encoder.tokenizer, SeriesTokenizer):
            raise TypeError(f"{type(self).__name__} needs a time-series encoder (PatchTST tokenizer), "
                            f"got one with {type(encoder.tokenizer).__name__}")
        self.encoder = encoder
        self.tokenizer: SeriesTokenizer = encoder.tokenizer
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            encoder.requires_grad_(False)
            encoder.eval()

    def train(self, mode: bool = True) -> _Head:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def encode(self, x: Batch | Tensor) -> EncoderOutput:
        if self.freeze_encoder:
            with torch.no_grad():
                return self.encoder(x)
        return self.encoder(x)


class Forecaster(_Head):
    """PatchTST's prediction ("flatten") head on an encoder: ``[B, C, context]`` → ``[B, C, horizon]``,
    in the input's units.

    Independent channels: the ``N`` token features of each channel, flattened to ``N·D``, go through one
    ``Linear(N·D → horizon)`` shared by all channels (PatchTST's head with ``individual=False``), so any
    channel count ``C`` works. Mixed channels: ``Linear(N·D → C·horizon)`` with ``C = num_channels``.
    The forecast is made in RevIN-normalised units and mapped back with the statistics of the input
    window (inverse RevIN). ``dropout`` acts on the flattened features (PatchTST's ``head_dropout``).
    """

    def __init__(self, encoder: Backbone, context: int, horizon: int, *, freeze_encoder: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__(encoder, freeze_encoder)
        if context < 1 or horizon < 1:
            raise ValueError(f"context and horizon must be >= 1, got context={context}, horizon={horizon}")
        cfg = self.tokenizer.config
        self.context, self.horizon = context, horizon
        self.num_patches = num_patches(context, cfg.patch, cfg.stride)
        self.out_channels = (cfg.num_channels or 1) if self.tokenizer.mixed else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_patches * encoder.dim, self.out_channels * horizon)

    def forward(self, batch: Batch | Tensor) -> Tensor:
        """A window ``[B, C, context]`` (NaN = missing; a tensor or an ``mpt.contract.Batch``) →
        forecast ``[B, C, horizon]``."""
        x = Batch.of(batch).tensor
        if x.ndim != 3 or x.shape[-1] != self.context:
            raise ValueError(f"Forecaster expects a window [B, C, {self.context}] (context={self.context}), "
                             f"got shape {tuple(x.shape)}")
        b, c, _ = x.shape
        tokens = self.encode(batch).tokens  # [B, C·N, D] (independent) or [B, N, D] (mixed)
        rows = 1 if self.tokenizer.mixed else c
        y = self.head(self.dropout(tokens.reshape(b, rows, -1)))  # [B, rows, out_channels·horizon]
        y = y.reshape(b, c, self.horizon)
        return self.tokenizer.denormalize(y, self.tokenizer.stats(x))


class Classifier(_Head):
    """Linear classifier on the encoder's pooled features: ``[B, C, T]`` → logits ``[B, num_classes]``.

    ``pooled`` ``[B, D]`` (mean over tokens and channels, or the CLS token) → Dropout → Linear, as in
    PatchTST's classification fine-tuning and linear probing (Nie et al., ICLR 2023).
    """

    def __init__(self, encoder: Backbone, num_classes: int, *, freeze_encoder: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__(encoder, freeze_encoder)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.dim, num_classes)

    def forward(self, batch: Batch | Tensor) -> Tensor:
        """Series ``[B, C, T]`` (any ``T``, NaN = missing; a tensor or an ``mpt.contract.Batch``) →
        logits ``[B, num_classes]``."""
        return self.head(self.dropout(self.encode(batch).pooled))


def masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the observed (non-NaN) values of ``target``; 0 when none is observed.

    ``pred`` and ``target`` have the same shape; ``pred`` at missing positions does not matter (no
    gradient flows there).
    """
    if pred.shape != target.shape:
        raise ValueError(f"masked_mse: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    observed = ~target.isnan()
    diff = torch.where(observed, pred - target.nan_to_num(0.0), 0.0)
    return diff.pow(2).sum() / observed.sum().clamp_min(1)
