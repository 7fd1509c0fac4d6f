"""PatchTST tokenizer (Nie et al., ICLR 2023): RevIN, patching, channel independence.

A raw batch is ``[B, C, T]`` (channels first, as aeon/sktime), any ``T``; NaN marks missing
values and padding. With ``channels: independent`` (PatchTST) every channel is its own token
sequence: the ``C`` channels fold into the batch (``rows_per_sample = C``) and share weights, so
an encoder works for any channel count. With ``channels: mixed`` one token holds one patch of
all channels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mpt.contract import Batch, Tokenizer, TokenSet
from mpt.errors import ConfigError, DataError
from mpt_timeseries.config import TimeSeriesTokenizerConfig
from mpt_timeseries.ops import num_patches, patchify, revin_denorm, revin_norm, revin_stats


class SeriesTokenizer(Tokenizer):
    """``[B, C, T]`` → patches ``[B·C, N, patch]`` (independent) or ``[B, N, C, patch]`` (mixed),
    coords = patch index ``[., N, 1]``, ``grid = (N,)``, ``valid`` = patch has an observed value.

    ``embed`` is PatchTST's shared ``Linear(patch → dim)`` (``Linear(C·patch → dim)`` when mixed)
    on the RevIN-normalised patch, missing values read as 0 (the series mean).
    """

    coord_dim = 1
    grid_axes = 1  # the patch axis
    missing_values = True

    def __init__(self, config: TimeSeriesTokenizerConfig, dim: int) -> None:
        if config.channels == "mixed" and config.num_channels is None:
            raise ConfigError("tokenizer.num_channels", "channels: mixed needs the channel count of the data")
        self.config = config
        self.pos_kind = config.pos
        # per-token patch: one channel's steps (independent) or every channel's (mixed)
        self.patch_shape = (config.patch,) if config.channels == "independent" else \
            (int(config.num_channels or 0), config.patch)
        size = (num_patches(config.max_len, config.patch, config.stride),) if config.pos == "learned" else None
        super().__init__(dim, size)
        width = config.patch * ((config.num_channels or 1) if config.channels == "mixed" else 1)
        self.proj = nn.Linear(width, dim)

    @property
    def mixed(self) -> bool:
        return self.config.channels == "mixed"

    def stats(self, batch: Batch | Tensor) -> tuple[Tensor, Tensor]:
        """RevIN mean and std ``[B, C, 1]`` of a raw batch (zeros and ones without RevIN)."""
        x = Batch.of(batch).tensor.float()
        if not self.config.revin:
            return x.new_zeros(*x.shape[:2], 1), x.new_ones(*x.shape[:2], 1)
        return revin_stats(x, self.config.revin_eps)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """Normalised values ``[B, C, *]`` back to the input's scale (forecasts, figures)."""
        return revin_denorm(y, *stats)

    @torch.no_grad()
    def tokenize(self, batch: Batch) -> TokenSet:
        """A raw batch ``[B, C, T]`` (``batch.tensor``; NaN = missing) → RevIN → patches.

        RevIN, the per-sample normalisation of time series, is done here rather than in
        :meth:`normalize` (the identity): the tokens are always RevIN values whoever calls
        ``tokenize``, and :meth:`stats` / :meth:`denormalize` of the raw batch invert it (forecasting
        heads, figures)."""
        cfg = self.config
        x = Batch.of(batch).tensor
        if x.ndim != 3:
            raise DataError("input batch", f"a time-series batch is [B, C, T] (channels first), got shape "
                                           f"{tuple(x.shape)}; add a channel axis for univariate series")
        b, c, t = x.shape
        if self.mixed and c != cfg.num_channels:
            raise ConfigError("tokenizer.num_channels", f"this tokenizer mixes {cfg.num_channels} channels, "
                                                        f"the batch has {c}")
        x = revin_norm(x.float(), *self.stats(x))
        p = patchify(x, cfg.patch, cfg.stride)  # [B, C, N, L]
        n = p.shape[2]
        observed = ~p.isnan()
        if self.mixed:
            patches, valid, rows = p.permute(0, 2, 1, 3), observed.any(-1).any(1), 1
        else:
            patches, valid, rows = p.reshape(b * c, n, cfg.patch), observed.any(-1).reshape(b * c, n), c
        coords = torch.arange(n, device=x.device, dtype=torch.float32)[None, :, None].expand(b * rows, n, 1)
        return TokenSet(patches=patches.contiguous(), coords=coords, grid=(n,),
                        valid=None if bool(valid.all()) else valid, rows_per_sample=rows)

    def embed(self, tokens: TokenSet) -> Tensor:
        """``tokens.patches`` ``[B, n, patch]`` or ``[B, n, C, patch]`` → ``[B, n, dim]``."""
        return self.proj(tokens.patches.nan_to_num(0.0).flatten(2).to(self.proj.weight.dtype))

    def adapt_weight(self, name: str, saved: Tensor, saved_config: Any) -> Tensor:
        """A pretrained ``channels: mixed`` encoder loaded with another ``tokenizer.num_channels``
        (``mpt.load_encoder(path, tokenizer={"num_channels": 9})``): ``proj.weight``
        ``[D, C_old·patch]`` (channel-major) becomes ``[D, C_new·patch]`` by
        :func:`mpt.pretrained.adapt_channels` (one channel = the sum over the old ones; more channels
        repeat the old ones cyclically, each copy scaled so that a series whose new channels repeat
        the old ones — a constant one in particular — gives the same activation). The bias is
        unchanged. ``independent`` encoders need no adaptation (any channel count works); changing
        ``channels`` or ``patch`` is refused. (A longer ``max_len`` resamples the learned position
        table in the core.)"""
        old, cfg = saved_config, self.config
        if old.channels != cfg.channels:
            raise ConfigError("tokenizer.channels", f"the encoder was pretrained with channels: {old.channels}; "
                                                    f"loading it as {cfg.channels} is not supported: keep the "
                                                    "card's tokenizer.channels")
        if old.patch != cfg.patch:
            raise ConfigError("tokenizer.patch", f"the encoder was pretrained with patches of {old.patch} steps; "
                                                 f"its embedding cannot be loaded at patch {cfg.patch} (not "
                                                 "supported): keep the card's tokenizer.patch")
        if name == "proj.weight" and self.mixed and cfg.num_channels and old.num_channels != cfg.num_channels:
            from mpt.pretrained import adapt_channels

            w = saved.reshape(saved.shape[0], old.num_channels, cfg.patch)
            return adapt_channels(w, cfg.num_channels, dim=1).reshape(saved.shape[0], -1)
        return super().adapt_weight(name, saved, saved_config)

    def card(self) -> dict[str, Any]:
        cfg = self.config
        return {"patch": cfg.patch, "stride": cfg.stride, "channels": cfg.channels,
                "num_channels": cfg.num_channels, "revin": cfg.revin, "pos": cfg.pos,
                "max_len": cfg.max_len if cfg.pos == "learned" else None,
                "input": "[B, C, T] float, channels first, any T; NaN = missing",
                "input_normalization": "RevIN per sample and channel over time (eps "
                                       f"{cfg.revin_eps})" if cfg.revin else "none"}
