"""Reconstruction targets of the core. Plugins add their own (e.g. Chamfer-L2 on point groups).

``PatchTarget`` is MAE's pixel target (He et al. 2022, ``forward_loss``): mean squared error over
the patch values of the masked tokens, optionally on per-token standardised values
(``norm_pix_loss``: ``(x - mean) / sqrt(var + 1e-6)``, unbiased variance).
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


class PatchTarget(Target):
    """MSE between ``pred`` ``[B, Np, P]`` and the flattened patches ``[B, Np, *patch_shape]``.

    NaN in ``patches`` marks a missing value (time series): it is no target, and with
    ``normalize`` the per-token statistics use the observed values only.
    """

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def _stats(self, t: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        n = observed.sum(-1, keepdim=True)
        mean = t.sum(-1, keepdim=True) / n.clamp_min(1)
        var = ((t - mean) * observed).pow(2).sum(-1, keepdim=True) / (n - 1).clamp_min(1)
        return mean, (var + 1e-6).sqrt()

    def _target(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        raw = patches.flatten(2).float()
        observed = ~raw.isnan()
        t = raw.nan_to_num(0.0)
        if self.normalize:
            mean, std = self._stats(t, observed)
            t = (t - mean) / std
        return t, observed

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
            raw = patches.flatten(2).float()
            observed = ~raw.isnan()
            mean, std = self._stats(raw.nan_to_num(0.0), observed)
            out = out * std + mean
        return out.reshape(patches.shape)


TARGETS.register(Registered("patch", lambda params: PatchTarget(params.normalize), PatchTargetConfig,
                            "MSE on the (per-token standardised) patch values (MAE)"))
