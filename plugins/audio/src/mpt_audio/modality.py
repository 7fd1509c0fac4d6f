"""The ``audio`` modality: the object the ``mpt.modalities`` entry point returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mpt.contract import PLUGIN_API, Figure, Modality, SampleDataset, Tokenizer
from mpt.errors import ConfigError
from mpt_audio.config import AudioDataConfig, AudioTokenizerConfig
from mpt_audio.io import EXTENSIONS

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DATA = PACKAGE_DIR / "data"
RECIPES = PACKAGE_DIR / "recipes"


class Audio(Modality):
    """Audio files (.wav .flac .ogg .mp3 through soundfile), mono at ``data.rate``; log-mel patch tokens.

    Samples are raw mono waveforms ``[samples]``, collated by the core's default into ``[B, S]``
    padded with ``meta["length"]``; the tokenizer's ``normalize`` computes the batched Kaldi fbank
    and applies the fitted (or AudioSet) mean/std, its ``tokenize`` cuts the patches."""

    name = "audio"
    description = ("Audio (WAV, FLAC, OGG, MP3 via soundfile; any rate, resampled); Kaldi log-mel patches, "
                   "AudioMAE / SSAST recipes")
    plugin_api = PLUGIN_API
    default_recipe = "demo"
    data_config = AudioDataConfig
    tokenizer_config = AudioTokenizerConfig
    recipe_dir = RECIPES
    extensions = EXTENSIONS

    def dataset(self, path: Path | None, split: str, config: AudioDataConfig, *,
                skip_bad_files: bool = False):  # noqa: ANN201 - an AudioDataset
        from mpt_audio.dataset import AudioDataset

        return AudioDataset(DEMO_DATA if path is None else path, split, config, skip_bad_files=skip_bad_files)

    def downstream_data(self, config: AudioDataConfig) -> AudioDataConfig:
        """Feature extraction reads every segment once: ``repeats`` set to 1."""
        return dataclasses.replace(config, repeats=1)

    def fit(self, dataset: SampleDataset, config: AudioTokenizerConfig,
            progress: bool = True) -> AudioTokenizerConfig:
        """The fbank mean and std over (up to ``fit_segments``) training segments, unless given or
        ``stats: audioset``; checks that the data's rate is the tokenizer's first."""
        data = getattr(dataset, "config", None)
        if isinstance(data, AudioDataConfig) and data.rate != config.rate:
            raise ConfigError("tokenizer.rate", f"{config.rate} Hz, but data.rate is {data.rate} Hz: the encoder "
                                                "takes waveforms at one rate; set both to the same value")
        if config.stats == "audioset" or (config.mean is not None and config.std is not None):
            return config
        import torch

        from mpt.stats import fit_moments
        from mpt_audio.fbank import fbank

        def values(sample):  # noqa: ANN001, ANN202 - a Sample → its log-mel values [n, 1]
            spec, frames = fbank(sample.input[None].float(), None, config.rate, num_mel_bins=config.mel,
                                 frame_length_ms=config.frame_length_ms, frame_shift_ms=config.frame_shift_ms,
                                 subtract_mean=True)
            return spec[0, : int(frames[0])].reshape(-1, 1)

        with torch.no_grad():
            mean, std = fit_moments(dataset, values, max_samples=config.fit_segments, progress=progress,
                                    what="fbank mean/std")
        return dataclasses.replace(config, mean=float(mean[0]), std=max(float(std[0]), 1e-6))

    def tokenizer(self, config: AudioTokenizerConfig, dim: int) -> Tokenizer:
        from mpt_audio.tokenizer import AudioTokenizer

        return AudioTokenizer(config, dim)

    def visualize(self, figure: Figure, path: Path) -> None:
        from mpt_audio.figures import visualize

        visualize(figure, path)
