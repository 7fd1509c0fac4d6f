"""mpt_image: an image modality for mpt, written as a third-party plugin.

ViT patch tokens with MAE (He et al., CVPR 2022) and I-JEPA (Assran et al., CVPR 2023) recipes,
PNG/JPEG/BMP/TIFF/WebP folders through Pillow, any channel count. Importing this package imports
neither Pillow nor matplotlib; the reader and the figures do so when used.
"""

from mpt_image.config import ImageDataConfig, ImageTokenizerConfig
from mpt_image.modality import Image

__all__ = ["Image", "ImageDataConfig", "ImageTokenizerConfig"]
