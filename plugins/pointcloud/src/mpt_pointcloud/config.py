"""Config sections of the point-cloud modality (``data:`` and ``tokenizer:`` in a recipe)."""

from __future__ import annotations

from dataclasses import dataclass

from mpt.config import bounded


@dataclass
class PointCloudDataConfig:
    """How files become samples (Point-MAE, Pang et al. ECCV 2022: 8192 stored → 1024 per sample)."""

    num_points: int = bounded(1024, ge=1)  # points per sample
    cache_points: int = bounded(8192, ge=1)  # points read per file (a fixed subset); meshes are sampled to this
    augment: bool = True  # Point-MAE PointcloudScaleAndTranslate (PointCloud.augment), train split only
    scale: tuple[float, float] = (2 / 3, 3 / 2)  # per-axis scale range
    translate: float = bounded(0.2, ge=0)  # per-axis translation range ±translate
    repeats: int = bounded(1, ge=1)  # each file appears this many times per epoch (1 for feature extraction)


@dataclass
class PointCloudTokenizerConfig:
    """Point-MAE grouping (FPS centres + KNN groups) and mini-PointNet width.

    ``features`` is the number of per-point feature columns after xyz (normals, colours, extra
    ``.npy`` columns) that the tokenizer consumes: its input width is ``3 + features``. It lives
    here, not in ``data``, because it fixes the tokenizer's weights (it is in the encoder card);
    the dataset keeps every feature column the files share and the tokenizer takes the first
    ``features`` of them.
    """

    num_groups: int = bounded(64, ge=1)
    group_size: int = bounded(32, ge=1)
    hidden: int = bounded(256, ge=2)
    features: int = bounded(0, ge=0)
