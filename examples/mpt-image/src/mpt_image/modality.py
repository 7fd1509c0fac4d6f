"""The ``image`` modality: the object the ``mpt.modalities`` entry point returns."""

from __future__ import annotations

from pathlib import Path

from mpt.contract import PLUGIN_API, Figure, Modality, Tokenizer
from mpt_image.config import ImageDataConfig, ImageTokenizerConfig
from mpt_image.io import EXTENSIONS

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DATA = PACKAGE_DIR / "data"
RECIPES = PACKAGE_DIR / "recipes"


class Image(Modality):
    """Images (.png .jpg .jpeg .bmp .tif .tiff .webp), any channel count; ViT patch tokens.

    Samples are raw ``[C, size, size]`` crops in [0, 1], collated by the core's default
    (:func:`mpt.contract.collate_samples`: a :class:`mpt.contract.Batch` of ``[B, C, size, size]``); the
    tokenizer's ``normalize`` applies mean/std, its ``tokenize`` cuts the patches."""

    name = "image"
    description = ("Images (PNG, JPEG, BMP, TIFF, WebP; any channel count); ViT patches with 2-D sin-cos "
                   "positions; MAE and I-JEPA recipes")
    plugin_api = PLUGIN_API
    default_recipe = "demo"
    data_config = ImageDataConfig
    tokenizer_config = ImageTokenizerConfig
    recipe_dir = RECIPES
    extensions = EXTENSIONS

    def dataset(self, path: Path | None, split: str, config: ImageDataConfig, *,
                skip_bad_files: bool = False):  # noqa: ANN201 - an ImageDataset
        from mpt_image.dataset import ImageDataset

        return ImageDataset(DEMO_DATA if path is None else path, split, config, skip_bad_files=skip_bad_files)

    def downstream_data(self, config: ImageDataConfig) -> ImageDataConfig:
        """Feature extraction (probe, embed, finetune) reads every image once: ``repeats`` 1."""
        from mpt_image.dataset import downstream_data

        return downstream_data(config)

    def tokenizer(self, config: ImageTokenizerConfig, dim: int) -> Tokenizer:
        from mpt_image.tokenizer import ImageTokenizer

        return ImageTokenizer(config, dim)

    def visualize(self, figure: Figure, path: Path) -> None:
        from mpt_image.figures import visualize

        visualize(figure, path)
