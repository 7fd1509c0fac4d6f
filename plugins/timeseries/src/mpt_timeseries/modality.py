"""The ``timeseries`` modality: the object the ``mpt.modalities`` entry point returns."""

from __future__ import annotations

from pathlib import Path

from mpt.contract import PLUGIN_API, Adaptation, Figure, Modality, Tokenizer
from mpt_timeseries.config import TimeSeriesDataConfig, TimeSeriesTokenizerConfig
from mpt_timeseries.io import SUPPORTED

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DATA = PACKAGE_DIR / "data"
RECIPES = PACKAGE_DIR / "recipes"


class TimeSeries(Modality):
    """Multivariate time series (.csv .parquet .npy .npz .ts); PatchTST tokens, any channel count."""

    name = "timeseries"
    description = ("Time series (CSV, Parquet, NumPy, UCR/UEA .ts); PatchTST tokens: RevIN, patches, "
                   "channel independence; missing values masked")
    plugin_api = PLUGIN_API
    default_recipe = "demo"
    data_config = TimeSeriesDataConfig
    recipe_dir = RECIPES
    extensions = SUPPORTED
    tokenizer_config = TimeSeriesTokenizerConfig
    # every patch's token in order (PatchTST's flatten head): on the four shared UCR/UEA sets it beat the
    # mean pool on three (ArrowHead +5.7, BasicMotions +2.5, JapaneseVowels +16.5 points) and lost 1.1 on
    # ItalyPowerDemand (benchmarks/README.md, learning_quality.py)
    feature_pool = "flat"

    def dataset(self, path: Path | None, split: str, config: TimeSeriesDataConfig, *,
                skip_bad_files: bool = False):  # noqa: ANN201 - a TimeSeriesDataset
        from mpt_timeseries.dataset import TimeSeriesDataset

        return TimeSeriesDataset(DEMO_DATA if path is None else path, split, config,
                                 skip_bad_files=skip_bad_files)

    def adapt(self, dataset, config) -> list[Adaptation]:  # noqa: ANN001 - TimeSeriesDataset, Config
        from mpt_timeseries.adapt import adapt

        return adapt(dataset, config)

    def tokenizer(self, config: TimeSeriesTokenizerConfig, dim: int) -> Tokenizer:
        from mpt_timeseries.tokenizer import SeriesTokenizer

        return SeriesTokenizer(config, dim)

    def visualize(self, figure: Figure, path: Path) -> None:
        from mpt_timeseries.figures import visualize

        visualize(figure, path)
