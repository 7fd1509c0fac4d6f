"""The ``satellite`` modality: the object the ``mpt.modalities`` entry point returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mpt.contract import PLUGIN_API, Figure, Modality, SampleDataset, Tokenizer
from mpt.errors import ConfigError
from mpt_satellite.config import SatelliteDataConfig, SatelliteTokenizerConfig
from mpt_satellite.io import EXTENSIONS

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DATA = PACKAGE_DIR / "data"
RECIPES = PACKAGE_DIR / "recipes"


class Satellite(Modality):
    """Multispectral rasters (GeoTIFF / COG through rasterio: one stack or one file per band), cut
    into chips by windowed reading; band-group or any-band (wavelength-conditioned) patch tokens.

    Samples are raw ``[C, size, size]`` chips (NaN where missing) with typed band metadata in
    ``meta`` (names, wavelengths, GSD, date); the tokenizer checks the bands against its own and
    applies the per-band mean/std fitted on the training data (or the recipe's)."""

    name = "satellite"
    description = ("Multispectral GeoTIFFs (rasterio, windowed chips, nodata as missing); SatMAE band groups, "
                   "Scale-MAE GSD positions, any-band wavelength-conditioned embedding")
    plugin_api = PLUGIN_API
    default_recipe = "demo"
    data_config = SatelliteDataConfig
    tokenizer_config = SatelliteTokenizerConfig
    recipe_dir = RECIPES
    extensions = EXTENSIONS
    feature_suffixes = (".tif", ".tiff")  # mpt embed --out features.tif: a feature raster (mpt_satellite.tiles)

    def dataset(self, path: Path | None, split: str, config: SatelliteDataConfig, *,
                skip_bad_files: bool = False):  # noqa: ANN201 - a SatelliteDataset
        from mpt_satellite.dataset import SatelliteDataset

        return SatelliteDataset(DEMO_DATA if path is None else path, split, config, skip_bad_files=skip_bad_files)

    def downstream_data(self, config: SatelliteDataConfig) -> SatelliteDataConfig:
        """Feature extraction reads every chip once: ``repeats`` set to 1."""
        return dataclasses.replace(config, repeats=1)

    def fit(self, dataset: SampleDataset, config: SatelliteTokenizerConfig,
            progress: bool = True) -> SatelliteTokenizerConfig:
        """The tokenizer config completed from the training data: its bands and wavelengths (checked
        against the config's when the recipe names them) and the per-band mean/std over the chips'
        valid pixels, unless given."""
        from mpt_satellite.bands import BandSet, band_key

        bands: BandSet | None = getattr(dataset, "bands", None)
        if bands is not None:
            if not config.bands:
                config = dataclasses.replace(config, bands=list(bands.names))
            elif [band_key(n) for n in config.bands] != [b.key for b in bands]:
                raise ConfigError("tokenizer.bands", f"{list(config.bands)}, but the data gives "
                                                     f"{list(bands.names)}: select the tokenizer's bands, in its "
                                                     "order, with data.bands=[...]")
            if config.wavelengths is None and all(b.wavelength_nm is not None for b in bands):
                config = dataclasses.replace(config, wavelengths=[float(b.wavelength_nm or 0) for b in bands])
        if config.mean is not None and config.std is not None:
            return config
        import torch

        from mpt.stats import fit_moments

        def values(sample):  # noqa: ANN001, ANN202 - [C, H, W] or [T, C, H, W] → [n, C]
            return torch.as_tensor(sample.input).movedim(-3, 0).flatten(1).T

        mean, std = fit_moments(dataset, values, progress=progress, what="band mean/std", max_samples=2000)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return dataclasses.replace(config, mean=[float(v) for v in mean], std=[float(v) for v in std])

    def write_features(self, backbone: object, data: Path, out: Path, config: SatelliteDataConfig,
                       batch_size: int = 64, progress: bool = True) -> Path:
        """A feature raster of the scene ``data``: one pixel per patch, the scene's CRS
        (:mod:`mpt_satellite.tiles`)."""
        from mpt_satellite.tiles import write_feature_raster

        return write_feature_raster(backbone, Path(data), Path(out), config, batch_size=batch_size, progress=progress)

    def tokenizer(self, config: SatelliteTokenizerConfig, dim: int) -> Tokenizer:
        from mpt_satellite.tokenizer import create_tokenizer

        return create_tokenizer(config, dim)

    def visualize(self, figure: Figure, path: Path) -> None:
        from mpt_satellite.figures import visualize

        visualize(figure, path)

