"""Multispectral patch tokenizers: SatMAE band groups and a DOFA-style any-band embedding.

Raw batch (``batch.tensor``): float ``[B, C, H, W]`` (one date) or ``[B, T, C, H, W]`` (a multi-date
stack) of raw physical values (after the files' scale/offset), NaN where missing (nodata); H and W
multiples of ``tokenizer.patch``. Optional metadata: ``meta["bands"]`` a per-sample list of band-name
lists (checked against ``tokenizer.bands`` with :func:`~mpt_satellite.bands.check_bands`),
``meta["wavelengths"]`` ``[B, C]`` nm, ``meta["gsd"]`` ``[B]`` metres per pixel, ``meta["dates"]``
``[B, T]`` days since 1970-01-01 (``meta["date"]`` ``[B]`` for one date). ``normalize`` applies
``(x - mean) / std`` per band and keeps NaN; ``tokenize`` cuts ``p × p`` patches; ``embed`` reads a
missing value (NaN) as 0 — the band mean after normalisation — and the MAE target never scores it
(:class:`mpt.targets.PatchTarget` ignores NaN). A token without any observed value is marked invalid
(``TokenSet.valid``): never kept, predicted or attended to.

``kind: groups`` — SatMAE (Cong et al. NeurIPS 2022, ``models_mae_group_channels.py``, ``group_c``):
the bands are split into spectral ``groups`` and every group has its own patch embedding
``Linear(len(g)·p·p → D)``. Tokens lie on the grid ``(G, H/p, W/p)``, group-major; ``patches``
``[B, G·L, max_group_size, p, p]`` hold the group's bands in the group's order, padded with NaN for
smaller groups; ``groups`` ``[B, N]`` is the group id; coords ``(row, col, group)``. Positions
(:class:`mpt.pos_embed.SplitPosEmbed`): a 2-D sin-cos of (row, col) on ``D − group_dim`` channels ‖
a 1-D sin-cos of the group id on ``group_dim`` (SatMAE: 256 of 1024). Masking: ``random`` over all
tokens is SatMAE's independent masking across groups (its default, the better one in its README);
``tube`` on ``(G, H', W')`` hides the same spatial cells in every group (SatMAE's ``--spatial_mask``).

``kind: anyband`` — DOFA (Xiong et al. 2024, "Neural Plasticity-Inspired Multimodal Foundation Model
for Earth Observation"): a hypernetwork generates the patch embedding from each band's centre
wavelength, ``W_c = MLP(sincos(λ_c)) ∈ R^{D × p²}``, ``b = mean_c bias(λ_c)``, and a token is
``Σ_c W_c · patch_c + b``: one token per spatial patch over all bands (grid ``(H/p, W/p)``, coords
``(row, col)``, 2-D sin-cos), and the same weights embed any number and order of bands. The
wavelengths come from ``meta["wavelengths"]`` when every one is given (a band set the encoder was not
pretrained on), else from the config. Coords carry them after the position columns (``(row, col,
λ_1 … λ_C)``), so a subset of tokens (``TokenSet.select``) keeps them; the position embedding reads
only the position columns. MAE pretraining needs the config's band set (``patch_shape = (len(bands),
p, p)`` sizes the MAE head); a loaded encoder embeds any band set given with its wavelengths (and
``meta["mean"]``/``meta["std"]`` per band unless every band is one of ``tokenizer.bands``).

Scale-MAE (Reed et al. ICCV 2023, ``get_2d_sincos_pos_embed_with_resolution``): with
``gsd_positions`` the spatial coordinates are multiplied per sample by ``gsd / reference_gsd``
(``meta["gsd"]`` required), so a patch covers the same ground distance in position space at every
resolution; positions are computed from coords, so any chip size and GSD works.

Multi-date stacks ``[B, T, C, H, W]`` (SatMAE-temporal style, needs ``time_dim > 0`` and the dates):
every date is tokenized on its own, date-major. Groups: grid ``(T·G, H', W')`` — the leading axis
is (date, group), so ``random`` masks every (date, group, cell) independently and ``tube`` hides the
same spatial cells at every date and in every group (SatMAE's consistent masking); group ids stay
``g``. Anyband: grid ``(T, H', W')`` (``tube`` = the same cells at every date). The date of a token
is one more coordinate column, in years since 1970 (days / 365.25), after (row, col, group) for
groups and after (row, col) for anyband; the position is then the spatial (‖ group) part on
``D − time_dim`` channels ‖ a sin-cos date encoding on ``time_dim`` channels
(:func:`date_encoding`: periods from one week to about a century). With ``time_dim > 0`` a
single-date batch also gets the date column (its date from ``meta["date"]`` or ``meta["dates"]``).

Widths in a decoder or predictor of another width (``make_pos(dim)``): ``group_dim`` and
``time_dim`` are scaled by ``dim / model.dim`` and rounded down to even (at least 2): SatMAE's
ViT-L 1024 with 256 → its 512-wide decoder with 128 (:func:`scaled_width`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

import mpt.patches as blocks
from mpt.contract import Batch, Tokenizer, TokenSet
from mpt.errors import ConfigError, DataError
from mpt.pos_embed import SplitPosEmbed, sincos_nd
from mpt_satellite.bands import Band, BandSet, check_bands, sensor
from mpt_satellite.config import SatelliteTokenizerConfig

__all__ = ["SatellitePosEmbed", "SatelliteTokenizer", "create_tokenizer", "date_encoding", "patchify",
           "scaled_width", "unpatchify"]

DAYS_PER_YEAR = 365.25
DATE_TEMPERATURE = 5200.0  # date_encoding: frequencies from 1 / week down to 1 / (5200 weeks ≈ 100 years)
MIN_SPATIAL = 4  # channels the 2-D spatial sin-cos needs at least (a sine and a cosine per axis)


# --------------------------------------------------------------------------- helpers


def patchify(x: Tensor, p: int) -> Tensor:
    """``[B, C, H, W]`` (H, W multiples of ``p``) → ``[B, L, C, p, p]``, L = (H/p)·(W/p), row-major."""
    return blocks.patchify(x, (p, p))


def unpatchify(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, L, C, p, p]`` on ``grid`` (H', W') → ``[B, C, H'·p, W'·p]``."""
    return blocks.unpatchify(tokens, grid)


def date_encoding(years: Tensor, dim: int) -> Tensor:
    """Sin-cos encoding ``[..., dim]`` of dates ``years`` ``[...]`` (years since 1970, fractional).

    MAE's 1-D formula (:func:`mpt.pos_embed.sincos_nd`) on the date in units of 2π weeks with
    temperature :data:`DATE_TEMPERATURE`: ``dim / 2`` periods spaced geometrically from one week to
    about 100 years, so both the gap between the dates of a stack and the season are encoded."""
    return sincos_nd(years[..., None].float() * (2 * math.pi * DAYS_PER_YEAR / 7), dim, temperature=DATE_TEMPERATURE)


def scaled_width(width: int, dim: int, model_dim: int) -> int:
    """A position sub-width (``group_dim``, ``time_dim``) of the encoder (``model_dim``) carried to a
    module of width ``dim``: ``width · dim / model_dim`` rounded down to even, at least 2 (0 stays 0;
    ``dim == model_dim`` keeps it). SatMAE: 256 of 1024 → 128 of its 512-wide decoder."""
    if width == 0 or dim == model_dim:
        return width
    return max(2, 2 * (width * dim // (2 * model_dim)))


class SatellitePosEmbed(nn.Module):
    """``inner(coords[..., :cols])`` ‖ :func:`date_encoding` of ``coords[..., cols]`` on ``time_dim``
    channels (none when 0); later columns (anyband's wavelengths) are not positions and ignored.
    ``[B, n, >= cols (+1)]`` → ``[B, n, inner.dim + time_dim]``."""

    def __init__(self, inner: nn.Module, cols: int, time_dim: int = 0) -> None:
        super().__init__()
        self.inner, self.cols, self.time_dim = inner, cols, time_dim
        self.dim = int(inner.dim) + time_dim  # type: ignore[arg-type]

    def forward(self, coords: Tensor) -> Tensor:
        need = self.cols + (1 if self.time_dim else 0)
        if coords.shape[-1] < need:
            raise ValueError(f"SatellitePosEmbed: expected at least {need} coordinates, got {coords.shape[-1]}")
        out = self.inner(coords[..., : self.cols])
        if not self.time_dim:
            return out
        return torch.cat([out, date_encoding(coords[..., self.cols], self.time_dim).to(out.dtype)], dim=-1)


def _meta_tensor(value: Any, what: str, device: torch.device) -> Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float32, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise DataError("input batch", f"meta['{what}'] is not numeric: {value!r}") from None


def _per_sample(value: Any, b: int, what: str, device: torch.device) -> Tensor:
    """``meta[what]`` as ``[B]`` float32 (a single number is every sample's)."""
    t = _meta_tensor(value, what, device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise DataError("input batch", f"meta['{what}'] holds {t.numel()} values for {b} samples; give one per sample")
    return t


# --------------------------------------------------------------------------- groups (SatMAE)


class SatelliteTokenizer(Tokenizer):
    """Raw ``[B, (T,) C, H, W]`` → (``normalize``) per-band standardised → band-group patch tokens
    (SatMAE; see the module docstring). :func:`create_tokenizer` builds the
    :class:`~mpt_satellite.anyband.AnyBandTokenizer` subclass (a 2-axis grid) for ``kind: anyband``.

    Groups kind: ``patches`` ``[B, T·G·L, max_group_size, p, p]``, ``groups`` ``[B, N]``, coords
    ``(row, col, group[, years])``, grid ``(T·G, H/p, W/p)`` (T = 1 for one date), ``patch_shape =
    (max_group_size, p, p)``, ``grid_axes = 3``; ``embed`` = ``proj[g]`` (``Linear(len(g)·p·p → D)``)
    on the tokens of group ``g``; positions :class:`mpt.pos_embed.SplitPosEmbed` (with a date part
    when ``time_dim > 0``: :class:`SatellitePosEmbed`)."""

    coord_dim = 3
    pos_kind = "sincos"
    grid_axes: ClassVar[int] = 3
    missing_values: ClassVar[bool] = True

    def __init__(self, config: SatelliteTokenizerConfig, dim: int) -> None:
        self._setup(config, dim)
        self.group_index = self._resolve_groups(config)
        self.coord_dim = 3 + (1 if self.time_dim else 0)
        self.patch_shape = (max(len(g) for g in self.group_index), self.patch, self.patch)
        self._check_widths(dim, dim)
        super().__init__(dim)
        self._buffers_init()
        projs = [nn.Linear(len(g) * self.patch**2, dim) for g in self.group_index]
        for proj in projs:
            nn.init.xavier_uniform_(proj.weight)  # MAE's initialize_weights: the stem like a Linear
        self.proj = nn.ModuleList(projs)

    # ------------------------------------------------------------------ shared set-up

    def _setup(self, config: SatelliteTokenizerConfig, dim: int) -> None:
        """Bands, wavelengths, statistics and widths from the config (before ``Tokenizer.__init__``)."""
        self.config = config
        self.model_dim = dim
        self.patch = config.patch
        self.time_dim = config.time_dim
        if not config.bands:
            raise ConfigError("tokenizer.bands", "no bands: name the input bands in order (tokenizer.bands), or let "
                                                 "the training data fill them in (Modality.fit)")
        self.band_set = self._resolve_bands(config)
        n = len(self.band_set)
        if config.mean is None or config.std is None:
            raise ConfigError("tokenizer.mean", "per-band mean/std are not set: they are fitted on the training data "
                                                "before training (Modality.fit), or give tokenizer.mean and "
                                                f"tokenizer.std with one value per band ({n} bands)")
        for name, values in (("mean", config.mean), ("std", config.std)):
            if len(values) != n:
                raise ConfigError(f"tokenizer.{name}", f"{len(values)} values for the {n} bands "
                                                       f"{list(config.bands)}; give one per band")
            if not all(math.isfinite(v) for v in values):
                raise ConfigError(f"tokenizer.{name}", f"every value must be finite, got {list(values)}")
        if min(config.std) <= 0:
            raise ConfigError("tokenizer.std", f"every std must be > 0, got {list(config.std)}")
        if self.time_dim % 2:
            raise ConfigError("tokenizer.time_dim", f"the date encoding is sines and cosines: an even width, "
                                                    f"got {self.time_dim}")

    @staticmethod
    def _resolve_bands(config: SatelliteTokenizerConfig) -> BandSet:
        """The config's bands with their wavelengths: ``tokenizer.wavelengths``, else the sensor
        catalogue's by name, else unknown (None)."""
        names = list(config.bands)
        if config.wavelengths is not None:
            if len(config.wavelengths) != len(names):
                raise ConfigError("tokenizer.wavelengths", f"{len(config.wavelengths)} wavelengths for the "
                                                           f"{len(names)} bands {names}; give one per band (nm)")
            wavelengths: list[float | None] = [float(w) for w in config.wavelengths]
        elif config.sensor is not None:
            try:
                catalogue = sensor(config.sensor)
            except ConfigError as exc:
                raise ConfigError("tokenizer.sensor", str(exc).split(": ", 1)[-1]) from None
            try:
                wavelengths = list(catalogue.select(names).wavelengths)
            except DataError as exc:
                raise ConfigError("tokenizer.bands", exc.reason) from None
        else:
            wavelengths = [None] * len(names)
        try:
            return BandSet([Band(n, w) for n, w in zip(names, wavelengths, strict=True)], config.sensor)
        except ValueError as exc:
            key = "tokenizer.bands" if "duplicate" in str(exc) or "name" in str(exc) else "tokenizer.wavelengths"
            raise ConfigError(key, str(exc)) from None

    def _resolve_groups(self, config: SatelliteTokenizerConfig) -> list[list[int]]:
        """Band indices of every group (each band in exactly one group)."""
        if config.groups is None:
            return [list(range(len(self.band_set)))]
        if not config.groups or any(not g for g in config.groups):
            raise ConfigError("tokenizer.groups", f"groups must be non-empty lists of band names, got {config.groups}")
        out: list[list[int]] = []
        seen: dict[int, int] = {}
        for gi, group in enumerate(config.groups):
            idx = []
            for name in group:
                i = self.band_set.index(name)
                if i is None:
                    raise ConfigError(f"tokenizer.groups[{gi}]", f"no band '{name}' among tokenizer.bands "
                                                                 f"{list(self.band_set.names)}")
                if i in seen:
                    raise ConfigError(f"tokenizer.groups[{gi}]", f"band '{name}' is already in group {seen[i]}; "
                                                                 "every band belongs to one group")
                seen[i] = gi
                idx.append(i)
            out.append(idx)
        left = [self.band_set[i].name for i in range(len(self.band_set)) if i not in seen]
        if left:
            raise ConfigError("tokenizer.groups", f"bands {left} are in no group; add them to a group or drop them "
                                                  "from the input (data.bands)")
        return out

    def _check_widths(self, dim: int, model_dim: int) -> tuple[int, int]:
        """(group width, date width) of a position embedding at ``dim``, validated."""
        grouped = self.config.kind == "groups"
        g = scaled_width(self.config.group_dim, dim, model_dim) if grouped else 0
        t = scaled_width(self.time_dim, dim, model_dim)
        where = "model.dim" if dim == model_dim else f"a decoder/predictor width of {dim}"
        if grouped and (g % 2 or g >= dim):
            raise ConfigError("tokenizer.group_dim", f"the group encoding takes group_dim={g} of the {dim} channels "
                                                     f"of {where}: it must be even and < {dim} (SatMAE: 256 of 1024); "
                                                     "lower tokenizer.group_dim")
        if dim - g - t < MIN_SPATIAL:
            parts = f"group_dim={g}" + (f" + time_dim={t}" if t else "") if grouped else f"time_dim={t}"
            key = "tokenizer.group_dim" if grouped else "tokenizer.time_dim"
            raise ConfigError(key, f"{parts} leave {dim - g - t} of the {dim} channels of {where} for the 2-D spatial "
                                   f"sin-cos, which needs >= {MIN_SPATIAL}; lower them")
        return g, t

    def _buffers_init(self) -> None:
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor([float(v) for v in self.config.mean or []]), persistent=False)
        self.register_buffer("std", torch.tensor([float(v) for v in self.config.std or []]), persistent=False)

    def make_pos(self, dim: int) -> nn.Module:
        """Spatial ‖ group (‖ date) sin-cos at width ``dim`` (widths scaled by :func:`scaled_width`)."""
        g, t = self._check_widths(dim, self.model_dim)
        if not t:
            return SplitPosEmbed(3, dim, g)
        return SatellitePosEmbed(SplitPosEmbed(3, dim - t, g), 3, t)

    # ------------------------------------------------------------------ input checks

    @property
    def bands(self) -> tuple[str, ...]:
        return self.band_set.names

    def check(self, batch: Batch) -> Tensor:
        """The batch's input as float, after the checks every kind shares: rank, sizes, no Inf, a
        multi-date stack only with a date encoding."""
        x = batch.tensor
        if x.ndim not in (4, 5):
            raise DataError("input batch", f"a satellite batch is [B, C, H, W] (one date) or [B, T, C, H, W] (a "
                                           f"multi-date stack), got shape {tuple(x.shape)}")
        if x.ndim == 5 and not self.time_dim:
            raise ConfigError("tokenizer.time_dim", f"a multi-date stack {tuple(x.shape)} [B, T, C, H, W] needs a date "
                                                    "encoding: set tokenizer.time_dim (e.g. 32) and give "
                                                    "meta['dates'] [B, T]")
        if not x.is_floating_point():
            x = x.float()
        h, w = x.shape[-2:]
        p = self.patch
        if h % p or w % p or h < p or w < p:
            raise DataError("input batch", f"chips of {h}×{w} pixels (H×W) do not split into {p}×{p} patches "
                                           f"(tokenizer.patch): use data.size = a multiple of {p}")
        if x.numel() and bool(torch.isinf(x).any()):
            raise DataError("input batch", f"{int(torch.isinf(x).sum())} ±Inf values: raw values are finite or NaN "
                                           "(missing); check the files' nodata and scale")
        return x

    def _meta_names(self, batch: Batch, b: int) -> list[tuple[str, ...]] | None:
        names = batch.meta.get("bands")
        if names is None:
            return None
        if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
            return [tuple(names)] * b  # one list for every sample
        if not isinstance(names, (list, tuple)) or len(names) != b:
            raise DataError("input batch", f"meta['bands'] must list the band names of each of the {b} samples, "
                                           f"got {names!r}")
        return [tuple(str(n) for n in s) for s in names]

    def _meta_wavelengths(self, batch: Batch, b: int, c: int, device: torch.device) -> Tensor | None:
        """``meta["wavelengths"]`` as ``[B, C]`` float32 nm (NaN where unknown), or None."""
        value = batch.meta.get("wavelengths")
        if value is None:
            return None
        t = _meta_tensor(value, "wavelengths", device)
        if t.ndim == 1:
            t = t.expand(b, -1)
        if tuple(t.shape) != (b, c):
            raise DataError("input batch", f"meta['wavelengths'] has shape {tuple(t.shape)}, expected [B, C] = "
                                           f"{[b, c]} (nm per band)")
        return t

    def check_batch_bands(self, batch: Batch, c: int) -> None:
        """The batch's bands must be the config's, in order: the count always, and ``meta["bands"]``
        (names) and ``meta["wavelengths"]`` where given (:func:`~mpt_satellite.bands.check_bands`:
        a DataError listing both band lists and what differs)."""
        n = len(self.band_set)
        names = self._meta_names(batch, batch.batch_size)
        if c != n:
            listed = f" {list(names[0])}" if names else ""
            raise DataError("input batch", f"{c} bands{listed}, this tokenizer takes the {n} bands "
                                           f"{list(self.band_set.names)} (tokenizer.bands): select them, in this "
                                           "order, with data.bands=[...]")
        wl = self._meta_wavelengths(batch, batch.batch_size, c, torch.device("cpu"))
        if names is None and wl is None:
            return
        rows = [names[i] if names else self.band_set.names for i in range(batch.batch_size)]
        wls = wl.tolist() if wl is not None else [[math.nan] * c] * batch.batch_size
        known = {(r, tuple(v if math.isfinite(v) and v > 0 else None for v in w))
                 for r, w in zip(rows, wls, strict=True)}
        for got_names, got_wl in sorted(known, key=str):  # each distinct band list once
            if len(got_names) != n:
                raise DataError("input batch", f"meta['bands'] names {len(got_names)} bands {list(got_names)} for "
                                               f"{c} channels")
            got = BandSet([Band(nm, w) for nm, w in zip(got_names, got_wl, strict=True)])
            expected = BandSet([Band(e.name, e.wavelength_nm if w is not None else None)
                                for e, w in zip(self.band_set, got_wl, strict=True)])
            try:
                check_bands(expected, got, "input batch")
            except ValueError as exc:  # duplicate names in the batch's list
                raise DataError("input batch", f"meta['bands']: {exc}") from None

    def stats(self, batch: Batch, c: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Per-band ``(mean, std)`` ``[1, C]`` of the config (after :meth:`check_batch_bands`)."""
        self.check_batch_bands(batch, c)
        return self.mean.to(device)[None], self.std.to(device)[None]

    # ------------------------------------------------------------------ normalise / tokenize

    @staticmethod
    def _shape(stat: Tensor, ndim: int) -> Tensor:
        """``[B|1, C]`` → broadcastable to ``[B, C, H, W]`` or ``[B, T, C, H, W]``."""
        return stat[:, None, :, None, None] if ndim == 5 else stat[:, :, None, None]

    def standardize(self, x: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> Tensor:
        """``(x - mean) / std`` per band on ``[B, C, H, W]`` or ``[B, T, C, H, W]`` (NaN stays NaN); the
        config's statistics unless ``[B|1, C]`` ones are given."""
        m = self.mean.to(x.device)[None] if mean is None else mean
        s = self.std.to(x.device)[None] if std is None else std
        return (x.float() - self._shape(m, x.ndim)) / self._shape(s, x.ndim)

    def unstandardize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`standardize` (figures)."""
        m, s = self.mean.to(x.device)[None], self.std.to(x.device)[None]
        return x.float() * self._shape(s, x.ndim) + self._shape(m, x.ndim)

    def normalize(self, batch: Batch) -> Batch:
        """Raw values → ``(x - mean) / std`` per band, NaN (missing) kept. Errors: another rank, chip
        size or band count, bands that differ from ``tokenizer.bands`` (``meta["bands"]``), ±Inf."""
        x = self.check(batch)
        return batch.replace(input=self.standardize(x, *self.stats(batch, x.shape[-3], x.device)))

    def _stack(self, x: Tensor) -> Tensor:
        return x if x.ndim == 5 else x[:, None]

    def _years(self, batch: Batch, b: int, t: int, device: torch.device) -> Tensor:
        """Dates ``[B, T]`` in years since 1970 (``meta["dates"]``, or ``meta["date"]`` for one date)."""
        value = batch.meta.get("dates")
        if value is None and t == 1:
            value = batch.meta.get("date")
        if value is None:
            raise DataError("input batch", f"tokenizer.time_dim={self.time_dim} encodes dates: give meta['dates'] "
                                           "[B, T] (days since 1970-01-01) for every date of the stack")
        days = _meta_tensor(value, "dates", device)
        if days.numel() != b * t:
            raise DataError("input batch", f"meta['dates'] has {days.numel()} values, expected [B, T] = {[b, t]} "
                                           "(days since 1970-01-01)")
        days = days.reshape(b, t)
        if not bool(torch.isfinite(days).all()):
            raise DataError("input batch", "unknown acquisition dates (NaN in meta['dates']): tokenizer.time_dim > 0 "
                                           "needs every date; give them or set time_dim=0 (single-date input)")
        return days / DAYS_PER_YEAR

    def _gsd_scale(self, batch: Batch, b: int, device: torch.device) -> Tensor | None:
        """``gsd / reference_gsd`` ``[B]`` with ``gsd_positions``, else None."""
        if not self.config.gsd_positions:
            return None
        value = batch.meta.get("gsd")
        if value is None:
            raise DataError("input batch", "tokenizer.gsd_positions scales positions by the ground sampling "
                                           "distance: give meta['gsd'] [B] (metres per pixel; data.gsd for files "
                                           "without a CRS)")
        gsd = _per_sample(value, b, "gsd", device)
        if not bool((torch.isfinite(gsd) & (gsd > 0)).all()):
            raise DataError("input batch", f"meta['gsd'] must be positive metres per pixel, got {gsd.tolist()}; "
                                           "set data.gsd for files without a CRS")
        return gsd / self.config.reference_gsd

    def _spatial(self, batch: Batch, b: int, gh: int, gw: int, device: torch.device) -> Tensor:
        """``[B, L, 2]`` (row, col) of the ``(gh, gw)`` grid, scaled per sample with ``gsd_positions``."""
        rows, cols = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
        rc = torch.stack([rows, cols], -1).reshape(1, gh * gw, 2).float().expand(b, -1, -1)
        scale = self._gsd_scale(batch, b, device)
        return rc if scale is None else rc * scale[:, None, None]

    @staticmethod
    def _valid(patches: Tensor) -> Tensor | None:
        """``False`` for tokens without any observed value (None when every token has one)."""
        observed = ~patches.flatten(2).isnan().all(-1)
        if bool(observed.all()):
            return None
        empty = ~observed.any(1)
        if bool(empty.any()):
            raise DataError("input batch", f"samples {empty.nonzero()[:, 0].tolist()} have no observed pixel (all "
                                           "NaN); leave such chips out (data.max_nodata)")
        return observed

    @torch.no_grad()
    def tokenize(self, batch: Batch) -> TokenSet:
        """A normalised batch → band-group patches (date-major, then group-major, then row-major)."""
        x = self._stack(self.check(batch))
        b, t, c, h, w = x.shape
        self.check_batch_bands(batch, c)
        p, gh, gw = self.patch, h // self.patch, w // self.patch
        num_g, width, cells = len(self.group_index), self.patch_shape[0], gh * gw
        table = torch.full((num_g, width), c, dtype=torch.long)  # index c = the NaN padding channel
        for g, idx in enumerate(self.group_index):
            table[g, : len(idx)] = torch.tensor(idx)
        patches = patchify(x.reshape(b * t, c, h, w).float(), p)  # [B·T, L, C, p, p]
        patches = torch.cat([patches, patches.new_full((b * t, cells, 1, p, p), math.nan)], dim=2)
        patches = patches[:, :, table.to(x.device).reshape(-1)].reshape(b * t, cells, num_g, width, p, p)
        patches = patches.permute(0, 2, 1, 3, 4, 5).reshape(b, t * num_g * cells, width, p, p)
        gid = torch.arange(num_g, device=x.device).repeat_interleave(cells).repeat(t)  # [N]
        rc = self._spatial(batch, b, gh, gw, x.device).repeat(1, t * num_g, 1)  # [B, N, 2]
        cols = [rc, gid.float()[None, :, None].expand(b, -1, 1)]
        if self.time_dim:
            years = self._years(batch, b, t, x.device)  # [B, T]
            cols.append(years.repeat_interleave(num_g * cells, dim=1)[..., None])
        groups = gid[None].expand(b, -1)
        return TokenSet(patches=patches, coords=torch.cat(cols, -1), grid=(t * num_g, gh, gw),
                        valid=self._valid(patches), groups=groups)

    def embed(self, tokens: TokenSet) -> Tensor:
        """``proj[g]`` on the first ``len(group g)`` channels of every token of group ``g`` (NaN, a
        missing value or the padding of a smaller group, read as 0) → ``[B, n, dim]``."""
        if tokens.groups is None:
            raise ValueError("SatelliteTokenizer.embed: tokens without group ids (TokenSet.groups)")
        first: nn.Linear = self.proj[0]  # type: ignore[assignment]
        flat = tokens.patches.nan_to_num(0.0).to(first.weight.dtype)
        out = flat.new_zeros((*flat.shape[:2], self.dim))
        for g, (idx, proj) in enumerate(zip(self.group_index, self.proj, strict=True)):
            sel = tokens.groups == g
            # every group runs (DDP: all weights used); under autocast the Linear gives bf16: stored as out's dtype
            out[sel] = proj(flat[sel][:, : len(idx)].flatten(1)).to(out.dtype)
        return out

    def untokenize(self, patches: Tensor, grid: tuple[int, ...]) -> Tensor:
        """Inverse of :meth:`tokenize` for figures: ``[B, N, *patch_shape]`` on ``grid`` → ``[B, T, C, H, W]``
        in the config's band order (T = 1 for one date)."""
        num_g = len(self.group_index)
        lead, gh, gw = grid
        t = lead // num_g
        b, p = patches.shape[0], self.patch
        x = patches.reshape(b * t, num_g, gh * gw, *patches.shape[2:])
        out = patches.new_zeros((b * t, gh * gw, len(self.band_set), p, p))
        for g, idx in enumerate(self.group_index):
            out[:, :, idx] = x[:, g, :, : len(idx)]
        return unpatchify(out, (gh, gw)).reshape(b, t, len(self.band_set), gh * p, gw * p)

    # ------------------------------------------------------------------ card

    def _card_common(self) -> dict[str, Any]:
        cfg = self.config
        return {"kind": cfg.kind, "bands": list(self.band_set.names),
                "wavelengths": list(self.band_set.wavelengths), "sensor": cfg.sensor,
                "band_card": self.band_set.to_card(), "mean": [float(v) for v in cfg.mean or []],
                "std": [float(v) for v in cfg.std or []], "patch": self.patch,
                "gsd_positions": cfg.gsd_positions, "reference_gsd": cfg.reference_gsd, "time_dim": self.time_dim,
                "input": "[B, C, H, W] (one date) or [B, T, C, H, W] (dates, needs time_dim > 0) float raw physical "
                         "values (after the files' scale/offset), NaN where missing; H and W multiples of patch; "
                         "meta: 'bands' (names, checked), 'gsd' [B] m (gsd_positions), 'dates' [B, T] days since "
                         "1970-01-01 (time_dim > 0), 'wavelengths' [B, C] nm",
                "input_normalization": "(x - mean) / std per band, applied by the tokenizer's normalize (before "
                                       "tokenize, by the core): pass raw values; NaN stays missing and is embedded "
                                       "as 0 (the band mean), never scored"}

    def card(self) -> dict[str, Any]:
        names = self.band_set.names
        return {**self._card_common(), "groups": [[names[i] for i in g] for g in self.group_index],
                "group_dim": self.config.group_dim,
                "patch_layout": "[max_group_size, p, p]: the group's bands in group order, NaN-padded for "
                                "smaller groups; proj[g].weight is [dim, len(g)·p·p] on the flattened "
                                "[len(g), p, p] patch",
                "positions": "2-D sin-cos of (row, col) (× gsd / reference_gsd with gsd_positions) on dim − "
                             "group_dim (− time_dim) ‖ 1-D sin-cos of the group id on group_dim (‖ date sin-cos "
                             "on time_dim)"}


def create_tokenizer(config: SatelliteTokenizerConfig, dim: int) -> SatelliteTokenizer:
    """The tokenizer of ``config.kind``: band groups (:class:`SatelliteTokenizer`) or any band
    (:class:`~mpt_satellite.anyband.AnyBandTokenizer`)."""
    if config.kind == "anyband":
        from mpt_satellite.anyband import AnyBandTokenizer

        return AnyBandTokenizer(config, dim)
    return SatelliteTokenizer(config, dim)
