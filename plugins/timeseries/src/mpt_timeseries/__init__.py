"""mpt time-series modality: PatchTST-style masked-patch pretraining (Nie et al., ICLR 2023)."""

from mpt_timeseries.modality import TimeSeries

__all__ = ["TimeSeries"]
