"""DOFA-style any-band patch embedding (Xiong et al. 2024, "Neural Plasticity-Inspired Multimodal
Foundation Model for Earth Observation"): each band's patch-embedding weights are generated from its
centre wavelength, so one encoder embeds any band set (``tokenizer.kind: anyband``; the raw-batch
contract, normalisation and missing values are :mod:`mpt_satellite.tokenizer`'s).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mpt.contract import Batch, Tokenizer, TokenSet
from mpt.errors import ConfigError, DataError
from mpt.pos_embed import SinCosPosEmbed, sincos_nd
from mpt_satellite.bands import band_key
from mpt_satellite.config import SatelliteTokenizerConfig
from mpt_satellite.tokenizer import (
    SatellitePosEmbed,
    SatelliteTokenizer,
    _meta_tensor,
    patchify,
    unpatchify,
)

WAVE_DIM = 128  # anyband: width of the wavelength sin-cos and of the hypernetwork's hidden layers (DOFA: 128)


class AnyBandTokenizer(SatelliteTokenizer):
    """DOFA-style wavelength-conditioned patch embedding (``kind: anyband``; see the module docstring).

    ``patches`` ``[B, T·L, C, p, p]`` (C = the batch's bands), coords ``(row, col[, years], λ_1 … λ_C)``
    (``coord_dim`` counts the position columns only), grid ``(H/p, W/p)`` or ``(T, H/p, W/p)`` for a
    stack, ``patch_shape = (len(tokenizer.bands), p, p)``, ``grid_axes = 2``. ``embed``:
    ``Σ_c W(λ_c) · patch_c + mean_c b(λ_c)`` with ``W(λ) = weight_head(hyper(sincos(λ))) / sqrt(C₀·p²)``
    (C₀ = ``len(tokenizer.bands)``, a fixed init scale) and ``b(λ) = bias_head(hyper(sincos(λ)))``."""

    grid_axes: ClassVar[int] = 2

    def __init__(self, config: SatelliteTokenizerConfig, dim: int) -> None:
        self._setup(config, dim)
        missing = [b.name for b in self.band_set if b.wavelength_nm is None]
        if missing:
            raise ConfigError("tokenizer.wavelengths", f"the any-band embedding is generated from each band's centre "
                                                       f"wavelength; none is known for {missing}: give "
                                                       "tokenizer.wavelengths (nm) or tokenizer.sensor")
        self.coord_dim = 2 + (1 if self.time_dim else 0)
        self.patch_shape = (len(self.band_set), self.patch, self.patch)
        self._check_widths(dim, dim)
        Tokenizer.__init__(self, dim)  # not SatelliteTokenizer.__init__: no band groups here
        self._buffers_init()
        self.config_wavelengths: Tensor
        self.register_buffer("config_wavelengths", torch.tensor([float(b.wavelength_nm or 0) for b in self.band_set]),
                             persistent=False)
        p2 = self.patch**2
        self.hyper = nn.Sequential(nn.Linear(WAVE_DIM, WAVE_DIM), nn.GELU(), nn.Linear(WAVE_DIM, WAVE_DIM), nn.GELU())
        self.weight_head = nn.Linear(WAVE_DIM, dim * p2)
        self.bias_head = nn.Linear(WAVE_DIM, dim)
        self.scale = 1.0 / math.sqrt(len(self.band_set) * p2)

    def make_pos(self, dim: int) -> nn.Module:
        """2-D sin-cos of (row, col) (‖ date sin-cos) at width ``dim``; the wavelength columns are ignored."""
        _, t = self._check_widths(dim, self.model_dim)
        return SatellitePosEmbed(SinCosPosEmbed(2, dim - t), 2, t)

    def wavelengths(self, batch: Batch, c: int, device: torch.device) -> Tensor:
        """The batch's centre wavelengths ``[B, C]`` nm: ``meta["wavelengths"]`` when all are known,
        else the config's (then the bands must be the config's: :meth:`check_batch_bands`)."""
        b = batch.batch_size
        wl = self._meta_wavelengths(batch, b, c, device)
        if wl is not None and bool((torch.isfinite(wl) & (wl > 0)).all()):
            return wl
        if c != len(self.band_set):
            raise DataError("input batch", f"{c} bands without their centre wavelengths: the any-band embedding "
                                           f"takes another band set than its {len(self.band_set)} bands "
                                           f"{list(self.band_set.names)} only with meta['wavelengths'] [B, C] (nm)")
        self.check_batch_bands(batch, c)
        return self.config_wavelengths.to(device)[None].expand(b, -1)

    def stats(self, batch: Batch, c: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Per-band ``(mean, std)`` ``[B|1, C]``: ``meta["mean"]``/``meta["std"]`` when given, else the
        config's for the config's bands (by name when the batch names other ones)."""
        b = batch.batch_size
        given = [batch.meta.get("mean"), batch.meta.get("std")]
        if given[0] is not None and given[1] is not None:
            out = []
            for what, value in zip(("mean", "std"), given, strict=True):
                t = _meta_tensor(value, what, device)
                t = t[None] if t.ndim == 1 else t
                if t.shape[-1] != c or t.shape[0] not in (1, b) or t.ndim != 2:
                    raise DataError("input batch", f"meta['{what}'] has shape {tuple(t.shape)}, expected [C] or "
                                                   f"[B, C] = {[b, c]}")
                out.append(t)
            if not bool((out[1] > 0).all()):
                raise DataError("input batch", "meta['std'] must be > 0 for every band")
            return out[0], out[1]
        wl = self._meta_wavelengths(batch, b, c, device)
        names = self._meta_names(batch, b)
        foreign = wl is not None and bool(torch.isfinite(wl).all()) and (c != len(self.band_set) or names is not None)
        if not foreign:
            self.wavelengths(batch, c, device)  # the config's bands: checks count, names and wavelengths
            return self.mean.to(device)[None], self.std.to(device)[None]
        keys = [b_.key for b_ in self.band_set]
        rows = sorted(set(names)) if names is not None else []
        if len(rows) != 1:
            raise DataError("input batch", "a band set other than tokenizer.bands needs its per-band statistics: give "
                                           "meta['mean'] and meta['std'] ([C] or [B, C]), or meta['bands'] naming "
                                           "bands of tokenizer.bands (one list for the batch)")
        unknown = [n for n in rows[0] if band_key(n) not in keys]
        if unknown or len(rows[0]) != c:
            raise DataError("input batch", f"no statistics for bands {unknown or list(rows[0])}: tokenizer.bands are "
                                           f"{list(self.band_set.names)}; give meta['mean'] and meta['std'] per band")
        idx = torch.tensor([keys.index(band_key(n)) for n in rows[0]], device=device)
        return self.mean.to(device)[idx][None], self.std.to(device)[idx][None]

    @torch.no_grad()
    def tokenize(self, batch: Batch) -> TokenSet:
        """A normalised batch → one token per (date,) spatial patch over all bands, wavelengths in coords."""
        x = self.check(batch)
        stacked = x.ndim == 5
        x = self._stack(x)
        b, t, c, h, w = x.shape
        wl = self.wavelengths(batch, c, x.device)  # [B, C]
        p, gh, gw = self.patch, h // self.patch, w // self.patch
        cells = gh * gw
        patches = patchify(x.reshape(b * t, c, h, w).float(), p).reshape(b, t * cells, c, p, p)
        cols = [self._spatial(batch, b, gh, gw, x.device).repeat(1, t, 1)]
        if self.time_dim:
            cols.append(self._years(batch, b, t, x.device).repeat_interleave(cells, dim=1)[..., None])
        cols.append(wl[:, None, :].expand(b, t * cells, c))
        grid = (t, gh, gw) if stacked else (gh, gw)
        return TokenSet(patches=patches, coords=torch.cat(cols, -1), grid=grid, valid=self._valid(patches))

    def generate(self, wavelengths: Tensor) -> tuple[Tensor, Tensor]:
        """Embedding weights of bands at ``wavelengths`` ``[U, C]`` nm → (``[U, C, dim, p²]`` weights,
        ``[U, dim]`` bias = the mean over the bands of their bias vectors)."""
        u, c = wavelengths.shape
        dtype = self.weight_head.weight.dtype
        h = self.hyper(sincos_nd(wavelengths.float()[..., None], WAVE_DIM).to(dtype))  # [U, C, WAVE_DIM]
        weight = (self.weight_head(h) * self.scale).reshape(u, c, self.dim, self.patch**2)
        return weight, self.bias_head(h).mean(1)

    def embed(self, tokens: TokenSet) -> Tensor:
        """``Σ_c W(λ_c) · patch_c + b`` per token (NaN read as 0), the wavelengths from the coords."""
        patches = tokens.patches
        b, n, c = patches.shape[:3]
        wl = tokens.coords[..., self.coord_dim:]
        if wl.shape[-1] != c:
            raise ValueError(f"AnyBandTokenizer.embed: {c} bands but {wl.shape[-1]} wavelength columns in coords")
        dtype = self.weight_head.weight.dtype
        flat = patches.nan_to_num(0.0).to(dtype).reshape(b * n, c * self.patch**2)
        rows, inverse = torch.unique(wl.reshape(b * n, c).float(), dim=0, return_inverse=True)
        weight, bias = self.generate(rows)  # [U, C, D, p²], [U, D]
        mats = weight.permute(0, 1, 3, 2).reshape(rows.shape[0], c * self.patch**2, self.dim)
        if rows.shape[0] == 1:
            out = flat @ mats[0] + bias[0]
        else:
            out = flat.new_zeros((b * n, self.dim))
            for i in range(rows.shape[0]):
                sel = inverse == i
                out[sel] = (flat[sel] @ mats[i] + bias[i]).to(out.dtype)  # bf16 under autocast
        return out.reshape(b, n, self.dim)

    def untokenize(self, patches: Tensor, grid: tuple[int, ...]) -> Tensor:
        """Inverse of :meth:`tokenize`: ``[B, N, C, p, p]`` on ``grid`` → ``[B, T, C, H, W]`` (T = 1 for one date)."""
        t, gh, gw = grid if len(grid) == 3 else (1, *grid)
        b, _, c, p, _ = patches.shape
        x = unpatchify(patches.reshape(b * t, gh * gw, c, p, p), (gh, gw))
        return x.reshape(b, t, c, gh * p, gw * p)

    def card(self) -> dict[str, Any]:
        return {**self._card_common(), "wave_dim": WAVE_DIM,
                "patch_layout": "[C, p, p] in the batch's band order; the embedding weights are generated per band "
                                "from its wavelength (hyper, weight_head, bias_head), so any band set embeds",
                "positions": "2-D sin-cos of (row, col) (× gsd / reference_gsd with gsd_positions) on dim (− "
                             "time_dim) (‖ date sin-cos on time_dim); coords carry the band wavelengths after the "
                             "position columns"}
