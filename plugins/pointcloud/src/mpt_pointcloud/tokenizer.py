"""Point-MAE tokenizer (Pang et al., ECCV 2022): FPS centres, KNN groups, mini-PointNet embedding."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mpt.contract import Batch, Tokenizer, TokenSet
from mpt.errors import ConfigError
from mpt_pointcloud.config import PointCloudTokenizerConfig
from mpt_pointcloud.ops import farthest_point_sample, fill_padding, knn, normalize_clouds


class PointTokenizer(Tokenizer):
    """Cuts clouds ``[B, P, 3+F]`` into ``num_groups`` groups of ``group_size`` points.

    Tokens: ``patches [B, G, K, 3+F]`` (xyz relative to the group centre, features unchanged),
    ``coords [B, G, 3]`` (the FPS centres), ``grid=None`` (an unordered set).
    """

    coord_dim = 3
    pos_kind = "mlp"
    grid_axes = 0  # an unordered set of groups

    def __init__(self, config: PointCloudTokenizerConfig, dim: int, in_channels: int = 3) -> None:
        if in_channels < 3:
            raise ValueError(f"in_channels must be >= 3 (xyz first), got {in_channels}")
        self.config = config
        self.in_channels = in_channels
        self.patch_shape = (config.group_size, in_channels)
        super().__init__(dim)
        h = config.hidden
        # Point-MAE `Encoder`: Conv1d(k=1) layers, written as Linear + BatchNorm1d over all points.
        self.first = nn.Sequential(nn.Linear(in_channels, h // 2), nn.BatchNorm1d(h // 2),
                                   nn.ReLU(inplace=True), nn.Linear(h // 2, h))
        self.second = nn.Sequential(nn.Linear(2 * h, 2 * h), nn.BatchNorm1d(2 * h),
                                    nn.ReLU(inplace=True), nn.Linear(2 * h, dim))

    @torch.no_grad()
    def tokenize(self, batch: Batch) -> TokenSet:
        """A normalised batch of clouds ``[B, P, C≥3+F]`` (any P) → :class:`TokenSet` of
        ``num_groups`` point groups."""
        x, length = self._points(batch)
        real = None
        if length is not None:  # padding rows: repeats of real points (as normalize left them), never grouped
            x = fill_padding(x, length)
            real = torch.arange(x.shape[1], device=x.device)[None] < length.to(x.device)[:, None]
        k = self.config.group_size
        if x.shape[1] < k:  # too few points for one group: repeat them (deterministically)
            cycle = torch.arange(k, device=x.device) % x.shape[1]
            x, real = x[:, cycle], None if real is None else real[:, cycle]
        xyz = x[..., :3].contiguous()
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        centres = xyz[rows, farthest_point_sample(xyz, self.config.num_groups)]  # [B, G, 3]
        idx = knn(centres, xyz, k, real)  # [B, G, K]
        patches = x[rows[:, :, None], idx]  # [B, G, K, C]
        patches[..., :3] -= centres.unsqueeze(2)
        return TokenSet(patches=patches, coords=centres, grid=None)

    def embed(self, tokens: TokenSet) -> Tensor:
        """Mini-PointNet per group: ``tokens.patches`` ``[B, n, K, C]`` → ``[B, n, dim]``."""
        patches = tokens.patches
        b, n, k, c = patches.shape
        h = self.config.hidden
        f = self.first(patches.reshape(-1, c)).reshape(b * n, k, h)
        g = f.max(dim=1, keepdim=True).values.expand(-1, k, -1)  # global feature of each group
        f = self.second(torch.cat([g, f], dim=-1).reshape(-1, 2 * h)).reshape(b * n, k, self.dim)
        return f.max(dim=1).values.reshape(b, n, self.dim)

    def normalize(self, batch: Batch) -> Batch:
        """Point-MAE ``pc_norm``: each cloud centred at its centroid and scaled to the unit sphere
        (xyz only; feature columns unchanged). The core applies it to every batch before
        :meth:`tokenize` — training, feature extraction and a loaded encoder alike — so clouds may come
        in any units and position; the dataset does not normalise.

        A batch that :func:`mpt.contract.collate_samples` padded (clouds of different sizes,
        ``meta["length"]``) is normalised by its real points only, and its padding rows become
        repeats of them (:func:`~mpt_pointcloud.ops.fill_padding`), never a group of their own."""
        x, length = self._points(batch, every_column=True)
        x = normalize_clouds(x, length)
        return batch.replace(input=x if length is None else fill_padding(x, length))

    def _points(self, batch: Batch, every_column: bool = False) -> tuple[Tensor, Tensor | None]:
        """``batch.tensor`` as float ``[B, P, C]`` (its first ``in_channels`` columns unless
        ``every_column``) and ``meta["length"]`` when some cloud is padded; a ConfigError when the
        batch has too few columns."""
        x, c = Batch.of(batch).tensor, self.in_channels
        if x.ndim != 3 or x.shape[-1] < c:
            raise ConfigError("tokenizer.features", f"the point tokenizer expects [B, P, {c}] (xyz + {c - 3} "
                                                    f"feature columns), got {tuple(x.shape)}")
        length = Batch.of(batch).meta.get("length")
        if not isinstance(length, Tensor) or not bool((length < x.shape[1]).any()):
            length = None
        return (x if every_column else x[..., :c]).float(), length

    def adapt_weight(self, name: str, saved: Tensor, saved_config: Any) -> Tensor:
        """A pretrained encoder loaded with another ``tokenizer.features`` (``mpt.load_encoder(path,
        tokenizer={"features": 3})``): the first layer ``first.0.weight`` ``[h/2, 3+F_old]`` becomes
        ``[h/2, 3+F_new]``. The xyz columns are kept; the feature columns follow
        :func:`mpt.pretrained.adapt_channels` (one = their sum; more repeat them cyclically, each copy
        scaled so that repeated features give the same activation; fewer fold them together). From
        ``F_old = 0`` the new feature columns start at zero (the encoder ignores the features until
        fine-tuned, so it equals the xyz-only one). Dropping all features (``F_new = 0``) and changing
        ``hidden`` are refused."""
        old_f, new_f = saved_config.features, self.in_channels - 3
        if name == "first.0.weight" and old_f != new_f and saved.shape[0] == self.config.hidden // 2:
            if new_f == 0:
                raise ConfigError("tokenizer.features", f"the encoder was pretrained with {old_f} per-point "
                                                        "feature columns; loading it without them (features=0) is "
                                                        "not supported: pass clouds with those columns")
            if old_f == 0:
                feats = saved.new_zeros(saved.shape[0], new_f)
            else:
                from mpt.pretrained import adapt_channels

                feats = adapt_channels(saved[:, 3:], new_f, dim=1)
            return torch.cat([saved[:, :3], feats], dim=1)
        return super().adapt_weight(name, saved, saved_config)

    def card(self) -> dict[str, Any]:
        return {"num_groups": self.config.num_groups, "group_size": self.config.group_size,
                "hidden": self.config.hidden, "in_channels": self.in_channels,
                "input_normalization": "per cloud: xyz centred at the centroid, scaled to the unit sphere"}
