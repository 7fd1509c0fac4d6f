"""The ``pointcloud`` modality: the object the ``mpt.modalities`` entry point returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from mpt.contract import PLUGIN_API, Batch, Figure, Modality, Target, Tokenizer
from mpt_pointcloud.config import PointCloudDataConfig, PointCloudTokenizerConfig
from mpt_pointcloud.io import SUPPORTED

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DATA = PACKAGE_DIR / "data"
RECIPES = PACKAGE_DIR / "recipes"


class PointCloud(Modality):
    """Point clouds and meshes (.ply .pcd .xyz .pts .npy .npz .off .obj .stl), Point-MAE tokens."""

    name = "pointcloud"
    description = ("Point clouds and meshes; Point-MAE tokenizer (FPS + KNN groups, mini-PointNet) "
                   "and Chamfer-L2 target, in plain PyTorch")
    plugin_api = PLUGIN_API
    default_recipe = "demo"
    data_config = PointCloudDataConfig
    recipe_dir = RECIPES
    extensions = SUPPORTED
    tokenizer_config = PointCloudTokenizerConfig

    def dataset(self, path: Path | None, split: str, config: PointCloudDataConfig, *,
                skip_bad_files: bool = False):  # noqa: ANN201 - a PointCloudDataset
        from mpt_pointcloud.dataset import PointCloudDataset

        return PointCloudDataset(DEMO_DATA if path is None else path, split, config,
                                 skip_bad_files=skip_bad_files)

    def augment(self, batch: Batch, config: PointCloudDataConfig, generator: torch.Generator) -> Batch:
        """Point-MAE ``PointcloudScaleAndTranslate`` on the normalised training batch (with
        ``data.augment``): each cloud's xyz scaled per axis by a factor uniform in ``data.scale`` and
        shifted per axis uniformly in ``±data.translate``; the ``[B, 3]`` scales, then the ``[B, 3]``
        shifts, drawn from ``generator``. Feature columns are unchanged."""
        if not config.augment:
            return batch
        x = batch.tensor
        b = x.shape[0]
        dev = generator.device  # draws on the generator's device (the trainer's: the CPU)
        lo, hi = config.scale
        scale = torch.rand(b, 3, generator=generator, device=dev) * (hi - lo) + lo
        shift = (torch.rand(b, 3, generator=generator, device=dev) * 2 - 1) * config.translate
        xyz = x[..., :3] * scale.to(x)[:, None] + shift.to(x)[:, None]
        return batch.replace(input=torch.cat([xyz, x[..., 3:]], dim=-1))

    def downstream_data(self, config: PointCloudDataConfig) -> PointCloudDataConfig:
        """Feature extraction reads each file once: ``repeats`` (a pretraining epoch length) set to 1."""
        return dataclasses.replace(config, repeats=1)

    def tokenizer(self, config: PointCloudTokenizerConfig, dim: int) -> Tokenizer:
        from mpt_pointcloud.tokenizer import PointTokenizer

        return PointTokenizer(config, dim, in_channels=3 + config.features)

    def targets(self) -> dict[str, Callable[[], Target]]:
        from mpt_pointcloud.targets import ChamferTarget

        return {"chamfer": ChamferTarget}

    def visualize(self, figure: Figure, path: Path) -> None:
        from mpt_pointcloud.figures import visualize

        visualize(figure, path)
