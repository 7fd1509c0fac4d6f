"""mpt_medical: the medical-volume modality plugin of mpt (3-D MAE / JEPA on CT and MRI).

Importing this package imports neither nibabel nor matplotlib; readers and figures do so lazily.
"""

from mpt_medical.config import MedicalDataConfig, MedicalTokenizerConfig
from mpt_medical.modality import Medical

__all__ = ["Medical", "MedicalDataConfig", "MedicalTokenizerConfig"]
