"""mpt: masked pretraining (MAE / JEPA) for any modality, through plugins.

Public API::

    import mpt
    mpt.list_modalities()                 # names of installed modality plugins (no plugin import)
    modality = mpt.get_modality("pointcloud")
    encoder = mpt.load_encoder("runs/demo/encoder")
    out = encoder(batch)                  # a Batch, or a plain tensor: out.tokens [B, N, D], out.pooled [B, D]
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any

import torch

from mpt.contract import (
    PLUGIN_API,
    Adaptation,
    Batch,
    Figure,
    Mask,
    Masker,
    Modality,
    Recipe,
    Sample,
    Target,
    Tokenizer,
    TokenSet,
)
from mpt.errors import CheckpointError, ConfigError, DataError, MptError, PluginError, TrainingError
from mpt.registry import get_modality, list_modalities, plugin_status

if TYPE_CHECKING:
    from mpt.backbone import Backbone

__version__ = "0.2.0"

__all__ = [
    "PLUGIN_API", "Adaptation", "Batch", "Figure", "Mask", "Masker", "Modality", "Recipe", "Sample", "Target",
    "Tokenizer", "TokenSet", "CheckpointError", "ConfigError", "DataError", "MptError", "PluginError",
    "TrainingError", "get_modality", "list_modalities", "plugin_status", "load_encoder", "__version__",
]


def load_encoder(path: str | PathLike[str], device: str | torch.device = "cpu", *,
                 tokenizer: Mapping[str, Any] | None = None) -> Backbone:
    """Rebuild a pretrained encoder from ``path`` (an ``encoder/`` folder), strictly, in eval mode.

    ``encoder(batch)`` takes a raw batch of its modality and returns ``.tokens`` ``[B, N, D]`` and
    ``.pooled`` ``[B, D]``. ``tokenizer`` overrides tokenizer settings of the encoder card to load it
    at another input size (``{"max_len": 1024}``, ``{"channels": 4, "mean": [...], "std": [...]}``):
    learned position tables are resampled and channel-count changes follow the plugin's documented
    rule, each with a warning; ``encoder.adapted`` lists the adapted tensors. Imported lazily so
    that ``import mpt`` stays light; see :mod:`mpt.pretrained`.
    """
    from mpt.pretrained import load_encoder as _load

    return _load(path, device=device, tokenizer=tokenizer)
