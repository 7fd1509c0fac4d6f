"""Reconstruction targets of the core. Plugins add their own (e.g. Chamfer-L2 on point groups).

``PatchTarget`` is MAE's pixel target (He et al. 2022, ``forward_loss``): mean squared error over
the patch values of the masked tokens, optionally on per-token standardised values
(``norm_pix_loss``: ``(x - mean) / sqrt(var + 1e-6)``, unbiased variance), or per token and channel
(``per_channel``: VideoMAE's target, Tong et al. NeurIPS 2022, ``engine_for_pretraining.py``: the
statistics of each tubelet's ``t × p × p`` values of one channel).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from mpt.contract import Target
from mpt.registry import TARGETS, Registered


@dataclass
class PatchTargetConfig:
    """``normalize``: MAE's ``norm_pix_loss`` (per-token standardised target)."""

    normalize: bool = True  # MAE's norm_pix_loss: each target patch standardised by its own mean and std
    per_channel: bool = False  # with normalize: per token and channel (the first patch axis; VideoMAE)


class PatchTarget(Target):
    """MSE between ``pred`` ``[B, Np, P]`` and the flattened patches ``[B, Np, *patch_shape]``.

    NaN in ``patches`` marks a missing value (time series): it is no target, and with
    ``normalize`` the per-token statistics use the observed values only. ``per_channel``: the
    statistics are those of each channel of a token (``patches[b, n, c]``, the first patch axis)
    rather than of the whole token; the flattened order (channel first) is unchanged.
    """

    def __init__(self, normalize: bool = True, per_channel: bool = False) -> None:
        super().__init__()
        self.normalize, self.per_channel = normalize, per_channel

    def _flat(self, patches: Tensor) -> Tensor:
        """``[B, n, *patch_shape]`` → ``[B, n, P]``, or ``[B, n, C, P / C]`` per channel (float)."""
        return patches.flatten(3 if self.per_channel else 2).float()

    def _stats(self, t: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        n = observed.sum(-1, keepdim=True)
        mean = t.sum(-1, keepdim=True) / n.clamp_min(1)
        var = ((t - mean) * observed).pow(2).sum(-1, keepdim=True) / (n - 1).clamp_min(1)
        return mean, (var + 1e-6).sqrt()

    def _target(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        raw = self._flat(patches)
        observed = ~raw.isnan()
        t = raw.nan_to_num(0.0)
        if self.normalize:
            mean, std = self._stats(t, observed)
            t = (t - mean) / std
        return t.flatten(2), observed.flatten(2)

    def loss(self, pred: Tensor, patches: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean squared error over the observed values, each weighted by its token's ``weight``."""
        t, observed = self._target(patches)
        err = (pred.float() - t).pow(2)
        if weight is None and bool(observed.all()):
            return err.mean()
        w = observed.float() * (1.0 if weight is None else weight.float().unsqueeze(-1))
        return (err * w).sum() / w.sum().clamp_min(1e-12)

    def reconstruct(self, pred: Tensor, patches: Tensor) -> Tensor:
        """Prediction in patch layout; with normalisation, mapped back with the true patch stats."""
        out = pred.float()
        if self.normalize:
            raw = self._flat(patches)
            observed = ~raw.isnan()
            mean, std = self._stats(raw.nan_to_num(0.0), observed)
            out = (out.reshape(raw.shape) * std + mean).flatten(2)
        return out.reshape(patches.shape)


TARGETS.register(Registered("patch", lambda params: PatchTarget(params.normalize, params.per_channel),
                            PatchTargetConfig,
                            "MSE on the (per-token standardised) patch values (MAE)"))
