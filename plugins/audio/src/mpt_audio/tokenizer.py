"""Spectrogram patch tokenizer (AST, Gong et al. Interspeech 2021; AudioMAE, Huang et al. NeurIPS
2022, ``models_mae.py``: 16 × 16 patches of a (time × mel) log-mel filterbank, fixed 2-D sin-cos
positions from ``get_2d_sincos_pos_embed_flexible`` on the non-square grid).

A raw batch (``batch.tensor``) is mono waveforms ``[B, S]`` at ``rate`` Hz, padded at the end, with
``batch.meta["length"]`` ``[B]`` valid samples (the core's collate) and optionally
``batch.meta["rate"]``. ``normalize`` computes the Kaldi filterbank of every clip in one batched
call on the batch's device (:func:`mpt_audio.fbank.fbank`: the clip mean removed first, as AudioMAE
does) and applies ``(x - mean) / (std_scale · std)``: the batch becomes ``[B, frames, mel]`` with
``meta["frames"]`` valid frames per clip. ``tokenize`` cuts ``pt × pf`` patches on the
``(frames / pt, mel / pf)`` grid, time-major; a patch is valid only when all its frames are (the
last partial one of a clip is dropped, at most ``pt − 1`` frames), so padding is never a token. The
number of time patches follows the input length.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mpt import patches as blocks
from mpt.contract import Batch, Tokenizer, TokenSet
from mpt.errors import ConfigError, DataError
from mpt_audio.config import AUDIOSET_MEAN, AUDIOSET_STD, AudioTokenizerConfig
from mpt_audio.fbank import fbank


def patchify(spec: Tensor, pt: int, pf: int) -> Tensor:
    """``[B, T, F]`` (T, F multiples of the patch) → ``[B, N, pt, pf]``, N = (T/pt)·(F/pf), time-major."""
    return blocks.patchify(spec, (pt, pf))


def unpatchify(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, N, pt, pf]`` on ``grid`` (T', F') → ``[B, T'·pt, F'·pf]``."""
    return blocks.unpatchify(tokens, grid)


class AudioTokenizer(Tokenizer):
    """``[B, S]`` waveforms → (``normalize``) ``[B, T, mel]`` normalised log-mel → patches
    ``[B, N, pt, pf]``, coords ``[B, N, 2]`` = (time, mel) patch indices, ``grid = (T/pt, mel/pf)``,
    ``valid`` False for patches reaching into padding; ``patch_shape = (pt, pf)``, ``grid_axes = 2``
    (random, block, multiblock, bands maskers; ``mae.decoder_window`` for AudioMAE's decoder).

    ``mean``/``std`` must be known when the tokenizer is built: the modality's ``fit`` completes them
    from the training data (``stats: dataset``) or AudioSet's (``stats: audioset``)."""

    coord_dim = 2
    pos_kind = "sincos"
    grid_axes = 2

    def __init__(self, config: AudioTokenizerConfig, dim: int) -> None:
        if len(config.patch) != 2 or min(config.patch) < 1:
            raise ConfigError("tokenizer.patch", f"two positive sizes (time frames, mel bins), got {config.patch}")
        pt, pf = config.patch
        if config.mel % pf:
            raise ConfigError("tokenizer.patch", f"{config.mel} mel bins (tokenizer.mel) do not split into "
                                                 f"patches of {pf} bins; use a divisor of {config.mel}")
        mean, std = config.mean, config.std
        if config.stats == "audioset":
            mean, std = (AUDIOSET_MEAN if mean is None else mean), (AUDIOSET_STD if std is None else std)
        if mean is None or std is None:
            raise ConfigError("tokenizer.mean", "fbank mean/std are not set: they are fitted on the training data "
                                                "before training (tokenizer.stats: dataset), or set "
                                                "tokenizer.stats=audioset, or give tokenizer.mean and tokenizer.std")
        self.patch_shape = (pt, pf)
        super().__init__(dim)
        self.config = config
        self.pt, self.pf, self.rate = pt, pf, config.rate
        self.mean, self.std = float(mean), float(std)
        self.proj = nn.Linear(pt * pf, dim)
        nn.init.xavier_uniform_(self.proj.weight)  # MAE's initialize_weights: the stem like a Linear

    def standardize(self, spec: Tensor) -> Tensor:
        """Log-mel → what the encoder sees: ``(x - mean) / (std_scale · std)``."""
        return (spec - self.mean) / (self.config.std_scale * self.std)

    def unstandardize(self, spec: Tensor) -> Tensor:
        """Inverse of :meth:`standardize` (figures)."""
        return spec * (self.config.std_scale * self.std) + self.mean

    def spectrogram(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Raw waveforms → (log-mel ``[B, T, mel]`` float32, valid frames ``[B]``), not normalised."""
        x = batch.tensor
        if x.ndim != 2:
            raise DataError("input batch", f"an audio batch is mono waveforms [B, samples], got shape "
                                           f"{tuple(x.shape)}; mix channels down first (e.g. x.mean(1))")
        if not x.is_floating_point():
            raise DataError("input batch", f"{x.dtype} samples: pass float waveforms in [-1, 1] "
                                           "(int16 PCM / 32768)")
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise DataError("input batch", "NaN or Inf samples in the waveforms; check the recording")
        rate = batch.meta.get("rate")
        if rate is not None and bool((torch.as_tensor(rate) != self.rate).any()):
            raise DataError("input batch", f"waveforms at {torch.as_tensor(rate).unique().tolist()} Hz, this "
                                           f"tokenizer takes {self.rate} Hz: set data.rate={self.rate} "
                                           "(files are resampled) or resample the waveforms")
        length = batch.meta.get("length")
        lengths = None if length is None else torch.as_tensor(length, device=x.device)
        cfg = self.config
        return fbank(x.float(), lengths, self.rate, num_mel_bins=cfg.mel, frame_length_ms=cfg.frame_length_ms,
                     frame_shift_ms=cfg.frame_shift_ms, subtract_mean=True)

    def normalize(self, batch: Batch) -> Batch:
        """Waveforms ``[B, S]`` → normalised log-mel ``[B, T, mel]`` with ``meta["frames"]`` ``[B]``."""
        spec, frames = self.spectrogram(batch)
        return batch.replace(input=self.standardize(spec), frames=frames)

    @torch.no_grad()
    def tokenize(self, batch: Batch) -> TokenSet:
        """A normalised batch → patches (time-major) with (time, mel) patch indices as coords."""
        x = batch.tensor
        if x.ndim != 3 or x.shape[-1] != self.config.mel:
            raise DataError("input batch", f"tokenize takes normalised log-mel [B, frames, {self.config.mel}] "
                                           f"(normalize's output), got shape {tuple(x.shape)}")
        b, t, _ = x.shape
        gt, gf = t // self.pt, self.config.mel // self.pf
        if gt < 1:
            raise DataError("input batch", f"{t} frames make no patch of {self.pt} frames (tokenizer.patch): "
                                           f"clips need at least {self.pt} frames")
        patches = patchify(x[:, : gt * self.pt].float(), self.pt, self.pf)
        ti, fi = torch.meshgrid(torch.arange(gt, device=x.device), torch.arange(gf, device=x.device), indexing="ij")
        coords = torch.stack([ti, fi], -1).reshape(1, gt * gf, 2).expand(b, -1, -1).float()
        frames = batch.meta.get("frames")
        valid = None
        if frames is not None:
            whole = torch.div(torch.as_tensor(frames, device=x.device), self.pt, rounding_mode="floor")  # [B]
            if bool((whole < 1).any()):
                cfg = self.config
                least = (self.pt - 1) * cfg.frame_shift_ms + cfg.frame_length_ms
                raise DataError("input batch", f"a clip of {int(torch.as_tensor(frames).min())} frames makes no "
                                               f"patch of {self.pt} frames: clips must be at least {least:.0f} ms")
            valid = coords[..., 0] < whole[:, None]
            valid = None if bool(valid.all()) else valid
        return TokenSet(patches=patches, coords=coords, grid=(gt, gf), valid=valid)

    def embed(self, tokens: TokenSet) -> Tensor:
        return self.proj(tokens.patches.flatten(2).to(self.proj.weight.dtype))

    def card(self) -> dict[str, Any]:
        cfg = self.config
        source = ("AudioSet's (AudioMAE / SSAST)" if cfg.stats == "audioset" and cfg.mean is None
                  else "fitted on the training data" if cfg.stats == "dataset" else "given")
        return {"rate": self.rate, "mel": cfg.mel, "frame_length_ms": cfg.frame_length_ms,
                "frame_shift_ms": cfg.frame_shift_ms, "patch": [self.pt, self.pf],
                "mean": self.mean, "std": self.std, "std_scale": cfg.std_scale, "stats_source": source,
                "input": f"[B, samples] float mono waveforms in [-1, 1] at {self.rate} Hz, any length of at "
                         f"least one patch; meta['length'] [B] valid samples when padded",
                "input_normalization": "Kaldi log-mel fbank of the waveform minus its mean, then (x - mean) / "
                                       "(std_scale * std), by the tokenizer's normalize: pass raw waveforms"}
