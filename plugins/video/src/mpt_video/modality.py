"""The ``video`` modality: the object the ``mpt.modalities`` entry point returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mpt.contract import PLUGIN_API, Figure, Modality, Tokenizer
from mpt_video.config import VideoDataConfig, VideoTokenizerConfig
from mpt_video.io import EXTENSIONS

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DATA = PACKAGE_DIR / "data"
RECIPES = PACKAGE_DIR / "recipes"


class Video(Modality):
    """Videos (.mp4 .avi .mov .mkv .webm through PyAV) and folders of frames (.jpg .png); tubelet tokens.

    Samples are raw ``[C, T, size, size]`` clips in [0, 1] (decoded by seeking to the clip's window,
    cropped and flipped by the dataset), collated by the core's default into ``[B, C, T, H, W]``; the
    tokenizer's ``normalize`` applies mean/std, its ``tokenize`` cuts the tubelets."""

    name = "video"
    description = ("Videos (MP4, AVI, MOV, MKV, WebM via PyAV; frame folders); tubelets with 3-D sin-cos "
                   "positions; VideoMAE, VideoMAE V2 (dual masking) and V-JEPA recipes")
    plugin_api = PLUGIN_API
    default_recipe = "demo"
    data_config = VideoDataConfig
    tokenizer_config = VideoTokenizerConfig
    recipe_dir = RECIPES
    extensions = EXTENSIONS

    def dataset(self, path: Path | None, split: str, config: VideoDataConfig, *,
                skip_bad_files: bool = False):  # noqa: ANN201 - a VideoDataset
        from mpt_video.dataset import VideoDataset

        return VideoDataset(DEMO_DATA if path is None else path, split, config, skip_bad_files=skip_bad_files)

    def downstream_data(self, config: VideoDataConfig) -> VideoDataConfig:
        """Feature extraction reads one clip per video, from its middle, centre-cropped: ``clips`` (an
        epoch length of pretraining) set to 1 (``--set data.clips=N`` for N evenly spaced clips)."""
        return dataclasses.replace(config, clips=1)

    def tokenizer(self, config: VideoTokenizerConfig, dim: int) -> Tokenizer:
        from mpt_video.tokenizer import VideoTokenizer

        return VideoTokenizer(config, dim)

    def visualize(self, figure: Figure, path: Path) -> None:
        from mpt_video.figures import visualize

        visualize(figure, path)
