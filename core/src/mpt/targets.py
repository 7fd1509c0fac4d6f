"""Reconstruction targets of the core. Plugins add their own (e.g. Chamfer-L2 on point groups).

``PatchTarget`` is MAE's pixel target (He et al. 2022, ``forward_loss``): mean squared error over
the patch values of the masked tokens, optionally on per-token standardised values
(``norm_pix_loss``: ``(x - mean) / sqrt(var + 1e-6)``, unbiased variance).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from mpt.contract import Modality, Target
from mpt.errors import ConfigError


class PatchTarget(Target):
    """MSE between ``pred`` ``[B, Np, P]`` and the flattened patches ``[B, Np, *patch_shape]``."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def _target(self, patches: Tensor) -> Tensor:
        t = patches.flatten(2).float()
        if self.normalize:
            t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
        return t

    def loss(self, pred: Tensor, patches: Tensor) -> Tensor:
        return (pred.float() - self._target(patches)).pow(2).mean()

    def reconstruct(self, pred: Tensor, patches: Tensor) -> Tensor:
        """Prediction in patch layout; with normalisation, mapped back with the true patch stats."""
        out = pred.float()
        if self.normalize:
            t = patches.flatten(2).float()
            out = out * (t.var(-1, keepdim=True) + 1e-6).sqrt() + t.mean(-1, keepdim=True)
        return out.reshape(patches.shape)


def create_target(name: str, modality: Modality, normalize: bool) -> Target:
    """Target ``name`` from the modality's targets or the core's (``patch``)."""
    known: dict[str, Callable[[], Target]] = {"patch": lambda: PatchTarget(normalize)}
    known.update(modality.targets())
    if name not in known:
        raise ConfigError("mae.target", f"unknown target '{name}' for {modality.name}; "
                                        f"choose one of {', '.join(sorted(known))}")
    return known[name]()
