"""mpt_satellite: the satellite modality plugin of mpt (SatMAE, Scale-MAE, any-band).

Importing this package imports neither rasterio nor matplotlib; readers and figures do so lazily.
"""

from mpt_satellite.config import SatelliteDataConfig, SatelliteTokenizerConfig
from mpt_satellite.modality import Satellite

__all__ = ["Satellite", "SatelliteDataConfig", "SatelliteTokenizerConfig"]
